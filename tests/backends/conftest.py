"""The backend contract suite runs every test on every backend URL below."""

from __future__ import annotations

import pytest

BACKENDS = ["memory://", "memory://?serialize=true"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    url: str = request.param
    return url
