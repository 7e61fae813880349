"""The container tests run against a real Docker Engine, started here (R8).

* ``docker_engine``: one ``dockerd`` per session on a private socket and data root
  in a temporary directory, stopped by PID at the end (:mod:`docker_engine`).
  Never skipped: without ``dockerd`` the tests fail, saying how to install it.
* ``box_image``: the test image, built once per session the way ``aioflow
  containers build-image --otel`` builds one (this Python installation, aioflow,
  the OpenTelemetry SDK, and the tasks of :mod:`box_tasks`), with ``docker
  import``'s API: no registry.
* Every test sees ``DOCKER_HOST`` pointing at that engine.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest
from docker_engine import DockerEngine, DockerMissing

from aioflow.handlers._docker_image import build_image

IMAGE = "aioflow-tests:box"


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerEngine]:
    # A short path: dockerd's and containerd's unix sockets live under it.
    engine = DockerEngine(tmp_path_factory.mktemp("dockerd"))
    try:
        engine.start()
    except DockerMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def box_image(docker_engine: DockerEngine) -> str:
    anyio.run(lambda: build_image(IMAGE, ["box_tasks"], docker_host=docker_engine.host, otel=True))
    return IMAGE


@pytest.fixture(autouse=True)
def docker_host(docker_engine: DockerEngine, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DOCKER_HOST", docker_engine.host)
    return docker_engine.host
