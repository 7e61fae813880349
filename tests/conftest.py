"""Suite-wide setup: nothing a test does may touch the user's files or the repository.

* ``AIOFLOW_HOME`` points at a fresh temporary directory in every test (processes a
  test starts inherit it), so the local signing key is never read from, or created
  in, the real ``~/.aioflow``; the developer's own ``AIOFLOW_SECRET_KEY`` and
  friends are unset.
* Hypothesis keeps no example database, and its other files (constants and
  unicode caches) go to a temporary directory, not to ``.hypothesis/``.
* ``redis_server``: one real ``redis-server`` per test session, on a free port of
  127.0.0.1, started on first use and stopped by PID at the end.
* Tests marked ``slow`` (fuzz volume, benchmark harnesses) are deselected by the
  plain ``pytest`` command (``-m "not slow"`` in pyproject's ``addopts``) and run
  by ``pytest -m slow``, as ``.ci/run`` does.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import configuration as hypothesis_configuration
from hypothesis import settings
from redis_server import RedisServer, RedisServerMissing

_HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="aioflow-tests-hypothesis-")
atexit.register(shutil.rmtree, _HYPOTHESIS_HOME, ignore_errors=True)
hypothesis_configuration.set_hypothesis_home_dir(_HYPOTHESIS_HOME)
settings.register_profile("aioflow-tests", database=None)
settings.load_profile("aioflow-tests")

_HOST_SETTINGS = (
    "AIOFLOW_SECRET_KEY",
    "AIOFLOW_SECRET_KEYS_OLD",
    "AIOFLOW_MAX_PAYLOAD_BYTES",
    "AIOFLOW_HISTORY_RETENTION",
)


@pytest.fixture(autouse=True)
def aioflow_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private ``AIOFLOW_HOME`` (not created yet) for each test; the local key goes there."""
    home = tmp_path_factory.mktemp("home") / "aioflow"
    monkeypatch.setenv("AIOFLOW_HOME", str(home))
    for name in _HOST_SETTINGS:  # the developer's own keys and limits do not leak in
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of this test session on 127.0.0.1 (stopped at the end).

    Never skipped: without ``redis-server`` the tests that use it fail, saying how to
    install it (``.ci/run`` does).
    """
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        server.start()
    except RedisServerMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()
