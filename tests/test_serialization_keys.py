"""The local key: per user, random, created once and race-free, in a 0600 file.

No public key signs anything: a checkpoint forged with the former public
development key is refused before anything in it is unpickled.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import pytest
import serialization_helpers as h

import aioflow
from aioflow import cli, task, workflow
from aioflow.errors import CheckpointError, ConfigurationError
from aioflow.serialization import Keyring, PayloadKind, encode_value, keyfile
from aioflow.stores import JournalRecord, RecordKind, RunInfo, open_run_store

FORMER_PUBLIC_KEY = b"aioflow-development-key/not-secret/never-use-in-production"
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@posix_only
def test_local_key_is_created_on_first_use_private_and_then_reused(aioflow_home: Path) -> None:
    assert not aioflow_home.exists()
    ring = Keyring.from_env()  # no AIOFLOW_SECRET_KEY: the local key of AIOFLOW_HOME
    key_file = aioflow_home / "local.key"
    assert ring.is_local
    assert mode(aioflow_home) == 0o700 and mode(key_file) == 0o600
    assert len(key_file.read_bytes()) == 32
    assert key_file.read_bytes().hex() not in repr(ring)
    assert Keyring.from_env().key_id == Keyring.local().key_id == ring.key_id
    assert sorted(p.name for p in aioflow_home.iterdir()) == ["local.key"]


def test_local_keys_differ_between_homes(tmp_path: Path) -> None:
    assert Keyring.local(tmp_path / "a").key_id != Keyring.local(tmp_path / "b").key_id


def test_default_home_is_dot_aioflow_in_the_user_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # never the real home
    monkeypatch.delenv("AIOFLOW_HOME")
    ring = Keyring.from_env({})
    assert ring.is_local
    assert (tmp_path / ".aioflow" / "local.key").is_file()
    assert Keyring.local().key_id == ring.key_id


def test_configured_key_is_not_local(tmp_path: Path) -> None:
    ring = Keyring.from_env({"AIOFLOW_SECRET_KEY": h.KEY, "AIOFLOW_HOME": str(tmp_path)})
    assert not ring.is_local
    assert not (tmp_path / "local.key").exists()  # nothing created when a key is set


def test_processes_creating_the_key_at_once_get_the_same_key(tmp_path: Path) -> None:
    home, gate = tmp_path / "shared-home", tmp_path / "gate"
    gate.mkdir()
    child = textwrap.dedent(
        """
        import os, sys, time
        from aioflow.serialization import Keyring

        home, gate, me = sys.argv[1:]
        open(os.path.join(gate, me), "w").close()  # imported: ready
        while not os.path.exists(os.path.join(gate, "go")):  # all start together
            time.sleep(0.0005)
        print(Keyring.local(home).key_id)
        """
    )
    count = 8
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", child, str(home), str(gate), f"ready{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(count)
    ]
    deadline = time.monotonic() + 30
    while len(list(gate.iterdir())) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    (gate / "go").touch()
    outputs = [proc.communicate(timeout=30) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * count, [err for _, err in outputs]
    key_ids = {out.strip() for out, _ in outputs}
    assert key_ids == {Keyring.local(home).key_id}
    assert sorted(p.name for p in home.iterdir()) == ["local.key"]  # no temporary left


def test_a_process_that_loses_the_creation_race_uses_the_winners_key(
    aioflow_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_create = keyfile._create
    winner: list[bytes] = []

    def another_process_wins_first(path: Path) -> None:
        real_create(path)  # the other process: its key lands between our read and create
        winner.append(path.read_bytes())
        real_create(path)  # ours: must neither replace it nor keep a key of its own

    with monkeypatch.context() as patch:
        patch.setattr(keyfile, "_create", another_process_wins_first)
        ring = Keyring.local()
    assert (aioflow_home / "local.key").read_bytes() == winner[0]
    assert ring.key_id == Keyring(winner[0]).key_id == Keyring.local().key_id
    assert sorted(p.name for p in aioflow_home.iterdir()) == ["local.key"]


def test_key_is_created_where_hard_links_are_not_supported(
    aioflow_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(src: object, dst: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    with monkeypatch.context() as patch:
        patch.setattr(os, "link", no_links)
        ring = Keyring.local()
        assert Keyring.local().key_id == ring.key_id
        key_file = aioflow_home / "local.key"
        assert len(key_file.read_bytes()) == 32
        if os.name == "posix":
            assert mode(key_file) == 0o600
    assert sorted(p.name for p in aioflow_home.iterdir()) == ["local.key"]


@posix_only
@pytest.mark.parametrize("too_open", [0o640, 0o644, 0o604, 0o660, 0o666])
def test_key_file_readable_by_others_is_refused(aioflow_home: Path, too_open: int) -> None:
    Keyring.local()
    key_file = aioflow_home / "local.key"
    key_file.chmod(too_open)
    with pytest.raises(ConfigurationError) as info:
        Keyring.from_env()
    assert f"{too_open:04o}" in info.value.message and "0600" in info.value.message
    assert f"chmod 600 {key_file}" in info.value.hint
    key_file.chmod(0o600)
    assert Keyring.from_env().is_local  # fixed as the hint says


@pytest.mark.parametrize("content", [b"short", b"x" * 31, b"y" * 33, b"z" * 100])
def test_key_file_of_the_wrong_size_is_refused(aioflow_home: Path, content: bytes) -> None:
    aioflow_home.mkdir(mode=0o700)
    key_file = aioflow_home / "local.key"
    key_file.write_bytes(content)
    key_file.chmod(0o600)
    with pytest.raises(ConfigurationError) as info:
        Keyring.local()
    assert "exactly 32 bytes" in info.value.message
    assert f"Delete {key_file}" in info.value.hint and "AIOFLOW_SECRET_KEY" in info.value.hint
    assert key_file.read_bytes() == content  # refused, never repaired silently


def test_key_file_that_is_not_a_file_is_refused(aioflow_home: Path) -> None:
    (aioflow_home / "local.key").mkdir(parents=True)
    with pytest.raises(ConfigurationError, match="not a regular file"):
        Keyring.local()


def test_home_that_cannot_be_created_is_a_configuration_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigurationError) as info:
        Keyring.local(blocker / "home")
    assert "AIOFLOW_HOME" in info.value.hint


def test_local_key_is_refused_for_backends_of_other_processes() -> None:
    ring = Keyring.local()
    ring.require_production(backend="memory://")
    with pytest.raises(ConfigurationError) as info:
        ring.require_production(backend="redis://cache:6379/0")
    assert "local key" in info.value.message and "AIOFLOW_SECRET_KEY" in info.value.hint


@pytest.mark.parametrize("where", ["current", "old"])
def test_the_former_public_key_is_refused_as_a_configured_key(where: str) -> None:
    public = FORMER_PUBLIC_KEY.decode()
    env = (
        {"AIOFLOW_SECRET_KEY": public}
        if where == "current"
        else {"AIOFLOW_SECRET_KEY": h.KEY, "AIOFLOW_SECRET_KEYS_OLD": public}
    )
    with pytest.raises(ConfigurationError, match="public") as info:
        Keyring.from_env(env)
    assert "secrets.token_urlsafe" in info.value.hint
    with pytest.raises(ConfigurationError, match="public"):
        Keyring(FORMER_PUBLIC_KEY)


def test_no_public_key_is_left_in_the_api() -> None:
    import aioflow.serialization as serialization

    assert not hasattr(serialization, "DEVELOPMENT_KEY")
    assert not hasattr(Keyring, "development")


# --- a forged checkpoint ------------------------------------------------------------------


class Payload:
    """Unpickling this writes a file: proof that forged data was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (Path.write_text, (self.marker, "forged code ran"))


async def forge_checkpoint(path: Path, marker: Path) -> None:
    """Journal a run whose first record holds a hostile pickle, signed with the old key."""
    payload = {
        "format": 1,
        "n": 1,
        "workflow": "victim",
        "fingerprint": "x",
        "inputs": {"payload": Payload(marker)},
    }
    signed = encode_value(payload, Keyring(h.KEY), allow_pickle=True, kind=PayloadKind.CHECKPOINT)
    body = signed[48:]  # the body only: re-signed below, as an attacker would
    key_id = hmac.new(FORMER_PUBLIC_KEY, b"aioflow/key-id/v1", hashlib.sha256).digest()[:8]
    head = struct.pack(">2sBB8sI", b"AF", 1, PayloadKind.CHECKPOINT, key_id, len(body))
    tag = hmac.new(FORMER_PUBLIC_KEY, head + body, hashlib.sha256).digest()
    async with open_run_store(f"sqlite:///{path}") as store:
        await store.begin_run(
            RunInfo(run_id="r", workflow="victim", fingerprint="x", started_at=1.0),
            [JournalRecord(RecordKind.RUN_STARTED, at=1.0, data=head + tag + body)],
        )


@task
async def victim_step() -> int:
    return 1


with workflow("victim") as victim:
    victim.add(victim_step)


async def test_checkpoint_forged_with_the_former_public_key_is_refused(tmp_path: Path) -> None:
    ckpt, marker = tmp_path / "forged.ckpt", tmp_path / "pwned"
    await forge_checkpoint(ckpt, marker)
    with pytest.raises(CheckpointError, match="signed with another key"):
        await aioflow.resume(ckpt, victim)
    assert not marker.exists()  # nothing was unpickled
    assert ckpt.exists()  # and the file was left as it is


def test_cli_resume_of_a_forged_checkpoint_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt, marker = tmp_path / "forged.ckpt", tmp_path / "pwned"
    anyio.run(forge_checkpoint, ckpt, marker)
    flows = tmp_path / "victim_flows.py"
    flows.write_text(
        "from aioflow import task, workflow\n\n"
        "@task\ndef victim_step() -> int:\n    return 1\n\n"
        "with workflow('victim') as wf:\n    wf.add(victim_step)\n"
    )
    code = cli.main(["resume", str(ckpt), f"{flows}:wf"])
    _, err = capsys.readouterr()
    assert code == cli.EXIT_USAGE
    assert "[aioflow.checkpoint]" in err
    assert not marker.exists()
    sys.modules.pop("victim_flows", None)
