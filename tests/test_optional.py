"""Optional dependencies are imported lazily, with a clear error when missing."""

from __future__ import annotations

import sys

import pytest

from aioflow import MissingDependencyError
from aioflow._optional import require


def test_installed_module_is_returned() -> None:
    assert require("msgpack", feature="the codec", extra="core") is sys.modules["msgpack"]


def test_missing_module_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # makes `import redis` fail
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)  # also when already imported
    with pytest.raises(MissingDependencyError) as info:
        require("redis.asyncio", feature="the Redis backend")
    err = info.value
    assert err.hint == 'pip install "aioflow[redis]"'
    assert "the Redis backend" in str(err)
    assert isinstance(err.__cause__, ImportError)
    assert err.extra == "redis"


def test_unknown_module_falls_back_to_all() -> None:
    with pytest.raises(MissingDependencyError) as info:
        require("no_such_module_for_aioflow", feature="a test")
    assert info.value.hint == 'pip install "aioflow[all]"'
