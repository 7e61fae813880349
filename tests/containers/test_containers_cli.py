"""``aioflow containers ls | prune``: orphans of a killed coordinator, found by label only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from docker_engine import containers

from aioflow.cli import main
from aioflow.handlers._docker_config import labels

HERE = Path(__file__).resolve().parent
COORDINATOR = """
import anyio, aioflow, box_tasks
from aioflow import workflow
from aioflow.handlers import DockerHandler
with workflow("doomed") as wf:
    wf.add(box_tasks.sleeper)
anyio.run(lambda: aioflow.run(wf, handlers={"box": DockerHandler(%r)}))
"""


async def _create(host: str, image: str, container_labels: dict[str, str]) -> str:
    import aiodocker

    async with aiodocker.Docker(url=host) as docker:
        config = {"Image": image, "Cmd": ["python", "-c", "pass"], "Labels": container_labels}
        container = await docker.containers.create(config)
        return container.id


async def _remove(host: str, *ids: str) -> None:
    import aiodocker

    async with aiodocker.Docker(url=host) as docker:
        for cid in ids:
            await docker.containers.container(cid).delete(force=True)


def test_prune_removes_only_the_orphans_of_a_killed_process(
    box_image: str, docker_host: str, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {**os.environ, "PYTHONPATH": str(HERE), "DOCKER_HOST": docker_host}
    coordinator = subprocess.Popen(
        [sys.executable, "-c", COORDINATOR % box_image], env=env, stdin=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        orphans: list[dict[str, object]] = []
        while not orphans and time.monotonic() < deadline:
            time.sleep(0.1)
            orphans = anyio.run(
                lambda: containers(docker_host, **{"aioflow.owner.pid": str(coordinator.pid)})
            )
        assert orphans, "the coordinator started no container"
    finally:
        coordinator.kill()  # a crash: no finally, no cleanup runs in that process
        coordinator.wait()
    foreign = anyio.run(lambda: _create(docker_host, box_image, {"someone.else": "yes"}))
    ours = anyio.run(lambda: _create(docker_host, box_image, labels("r", "t", "h", pool=False)))
    try:
        assert main(["containers", "ls", "--json"]) == 0
        listed = {row["id"]: row for row in json.loads(capsys.readouterr().out)}
        orphan_id = str(orphans[0]["Id"])[:12]
        assert listed[orphan_id]["owner_state"] == "gone"
        assert listed[ours[:12]]["owner_state"] == "running"
        assert foreign[:12] not in listed  # not aioflow's: not even listed

        assert main(["containers", "prune", "--json"]) == 0
        removed = [row["id"] for row in json.loads(capsys.readouterr().out)]
        assert removed == [orphan_id]
        left = {c["Id"] for c in anyio.run(lambda: containers(docker_host))}
        assert left == {ours}
        assert foreign in {
            c["Id"] for c in anyio.run(lambda: containers(docker_host, **{"someone.else": "yes"}))
        }
    finally:
        anyio.run(lambda: _remove(docker_host, foreign, ours))


def test_build_image_otel_adds_the_sdk(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from aioflow.handlers import _docker_image

    asked: list[tuple[str, list[str], bool]] = []

    async def build(tag: str, modules: list[str], **options: object) -> str:
        asked.append((tag, list(modules), bool(options["otel"])))
        return "sha256:" + "0" * 64

    monkeypatch.setattr(_docker_image, "build_image", build)
    assert main(["containers", "build-image", "flows:1", "--module", "m", "--otel"]) == 0
    assert main(["containers", "build-image", "flows:2"]) == 0
    assert asked == [("flows:1", ["m"], True), ("flows:2", [], False)]
    assert capsys.readouterr().out.split() == ["flows:1", "flows:2"]
    # What --otel adds: the SDK and its requirements, the API among them.
    fs = _docker_image.collect_rootfs(include=["aioflow", *_docker_image.OTEL_DISTRIBUTIONS])
    paths = "\n".join(fs.files)
    assert "/opentelemetry/sdk/trace/__init__.py" in paths
    assert "/opentelemetry/trace/__init__.py" in paths
