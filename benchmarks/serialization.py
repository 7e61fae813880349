"""Serialization throughput: TaskCall round trips, 1 MB results vs pickle, signing overhead.

Run::

    .venv/bin/python benchmarks/serialization.py [--quick]

Output: one JSON line per measurement on stdout (``"kind": "measurement"``),
then one ``"kind": "target"`` line per performance target (``met``: true/false),
and first a ``"kind": "machine"`` line. Every figure is the best of several
repeats, and the repeats of the things compared are interleaved (the machine
may be shared: the best run is the least disturbed one, and a disturbance hits
both sides of a comparison alike).

Measurements:

* ``taskcall_roundtrip``: ``encode_call`` + ``decode_call`` of a typical call
  (10 small arguments, options, trace context, importable task); compared with
  ``pickle.dumps`` + ``pickle.loads`` of the same ``TaskCall`` (unsigned).
* ``result_1mb_*``: ``encode_result`` + ``decode_result`` of a ~1 MB value
  (rows as dicts, rows as tuples, a bytes blob) vs ``pickle`` (protocol 5) of the
  same value, in MB/s of pickle-size data.
* ``signing_overhead_*``: for payloads under 10 KB, the signed ``encode_value``
  vs the unsigned msgpack encoding alone (same codec, no envelope), and the
  same for encode + decode.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aioflow.serialization import (
    Keyring,
    TaskCall,
    TaskRef,
    TaskResult,
    decode_call,
    decode_result,
    decode_value,
    encode_call,
    encode_result,
    encode_value,
)
from aioflow.serialization.codec import VerifiedBody, pack, unpack

KEYRING = Keyring("benchmark-key-0123456789abcdefghijklmnopqrstuvwxyz")


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def best_rates(
    functions: dict[str, Callable[[], object]], *, seconds: float, repeats: int
) -> dict[str, float]:
    """Operations per second of each function: the best of ``repeats`` timed batches.

    The batches of the functions are interleaved (round 1: a, b, c; round 2: a, b,
    c...), so that a disturbance of the machine hits all of them alike and the
    ratios stay meaningful. Each batch lasts about ``seconds / repeats``.
    """
    sizes = {}
    for name, function in functions.items():
        function()
        start = time.perf_counter()
        calls = 0
        while time.perf_counter() - start < 0.05:
            function()
            calls += 1
        sizes[name] = max(1, int(calls * (seconds / repeats) / 0.05))
    best = dict.fromkeys(functions, 0.0)
    for _ in range(repeats):
        for name, function in functions.items():
            gc.collect()
            count = sizes[name]
            start = time.perf_counter()
            for _ in range(count):
                function()
            best[name] = max(best[name], count / (time.perf_counter() - start))
    return best


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "kind": "machine",
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "load_average": os.getloadavg(),
    }


def typical_call() -> TaskCall:
    args = {
        "user_id": 123456,
        "name": "Ada Lovelace",
        "ratio": 0.75,
        "enabled": True,
        "tags": ["etl", "daily"],
        "limit": 1000,
        "offset": 0,
        "region": "eu-west-1",
        "threshold": 1e-3,
        "note": None,
    }
    return TaskCall(
        run_id="6f1c2b9a0d4e4f7b8a3c5d2e1f0a9b8c",
        task_name="transform",
        ref=TaskRef("json:dumps"),  # an importable function: travels by name
        args=args,
        attempt=1,
        options={"timeout": 30.0, "retries": 3, "queue": "default", "priority": 5},
        trace={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        workflow="etl",
    )


def bench_taskcall(seconds: float, repeats: int) -> list[dict[str, Any]]:
    call = typical_call()
    data = encode_call(call, KEYRING)
    assert decode_call(data, KEYRING) == call
    pickled = pickle.dumps(call, protocol=5)
    rates = best_rates(
        {
            "roundtrip": lambda: decode_call(encode_call(call, KEYRING), KEYRING),
            "encode": lambda: encode_call(call, KEYRING),
            "decode": lambda: decode_call(data, KEYRING),
            "pickle": lambda: pickle.loads(pickle.dumps(call, protocol=5)),
        },
        seconds=seconds,
        repeats=repeats,
    )
    rate, encode_rate, decode_rate = rates["roundtrip"], rates["encode"], rates["decode"]
    pickle_rate = rates["pickle"]
    return [
        {
            "kind": "measurement",
            "name": "taskcall_roundtrip",
            "ops_per_s": round(rate),
            "encode_ops_per_s": round(encode_rate),
            "decode_ops_per_s": round(decode_rate),
            "payload_bytes": len(data),
            "compare": "pickle.dumps+loads of the same TaskCall (unsigned)",
            "compare_ops_per_s": round(pickle_rate),
            "compare_payload_bytes": len(pickled),
        }
    ]


def one_mb_values() -> dict[str, Any]:
    rows = [
        {"id": i, "name": f"customer-{i:06d}", "score": i * 0.37, "active": i % 3 == 0,
         "tags": ["a", "bb", "ccc"]}
        for i in range(10_000)
    ]  # fmt: skip
    tuples = [(i, f"customer-{i:06d}", i * 0.37, i % 3 == 0) for i in range(22_000)]
    return {"rows_dicts": rows, "rows_tuples": tuples, "bytes_blob": os.urandom(1 << 20)}


def bench_results(seconds: float, repeats: int) -> list[dict[str, Any]]:
    call = typical_call()
    out = []
    for name, value in one_mb_values().items():
        result = TaskResult.succeeded(call, value)
        data = encode_result(result, KEYRING)
        assert decode_result(data, KEYRING).value == value
        size = len(pickle.dumps(value, protocol=5))

        def ours(r: TaskResult = result) -> object:
            return decode_result(encode_result(r, KEYRING), KEYRING)

        def theirs(v: Any = value) -> object:
            return pickle.loads(pickle.dumps(v, protocol=5))

        rates = best_rates({"ours": ours, "pickle": theirs}, seconds=seconds, repeats=repeats)
        rate, prate = rates["ours"], rates["pickle"]
        out.append(
            {
                "kind": "measurement",
                "name": f"result_1mb_{name}",
                "mb_per_s": round(rate * size / 1e6, 1),
                "ops_per_s": round(rate, 1),
                "payload_bytes": len(data),
                "pickle_bytes": size,
                "compare": "pickle.dumps+loads (protocol 5, unsigned) of the same value",
                "compare_mb_per_s": round(prate * size / 1e6, 1),
                "slowdown_vs_pickle": round(prate / rate, 2),
            }
        )
    return out


def small_payloads() -> dict[str, Any]:
    def row(i: int) -> dict[str, Any]:
        return {"id": i, "name": f"item-{i}", "price": i * 1.25, "ok": True}

    return {
        "100B": {"id": 1, "name": "item", "price": 9.99, "tags": ["a", "b"], "ok": True},
        "1KB": [row(i) for i in range(20)],
        "6KB": [row(i) for i in range(160)],
        "8KB_bytes": os.urandom(8000),
    }


def bench_signing(seconds: float, repeats: int) -> list[dict[str, Any]]:
    out = []
    for name, value in small_payloads().items():
        signed = encode_value(value, KEYRING, allow_pickle=False)
        body = pack(value, allow_pickle=False, root="value")
        assert len(signed) < 10_240

        def signed_encode(v: Any = value) -> object:
            return encode_value(v, KEYRING, allow_pickle=False)

        def plain_encode(v: Any = value) -> object:
            return pack(v, allow_pickle=False, root="value")

        def plain_roundtrip(v: Any = value) -> Any:
            packed = pack(v, allow_pickle=False, root="value")
            verified = VerifiedBody(memoryview(packed))
            return unpack(verified, allow_pickle=False, what="value")

        def signed_roundtrip(v: Any = value) -> Any:
            data = encode_value(v, KEYRING, allow_pickle=False)
            return decode_value(data, KEYRING, allow_pickle=False)

        rates = best_rates(
            {
                "signed_encode": signed_encode,
                "plain_encode": plain_encode,
                "signed_roundtrip": signed_roundtrip,
                "plain_roundtrip": plain_roundtrip,
            },
            seconds=seconds,
            repeats=repeats,
        )
        enc_signed, enc_plain = rates["signed_encode"], rates["plain_encode"]
        rt_signed, rt_plain = rates["signed_roundtrip"], rates["plain_roundtrip"]
        out.append(
            {
                "kind": "measurement",
                "name": f"signing_overhead_{name}",
                "payload_bytes": len(signed),
                "body_bytes": len(body),
                "encode_signed_ops_per_s": round(enc_signed),
                "compare": "the same msgpack encoding without the signed envelope",
                "encode_unsigned_ops_per_s": round(enc_plain),
                "encode_overhead_pct": round((enc_plain / enc_signed - 1) * 100, 1),
                "roundtrip_signed_ops_per_s": round(rt_signed),
                "roundtrip_unsigned_ops_per_s": round(rt_plain),
                "roundtrip_overhead_pct": round((rt_plain / rt_signed - 1) * 100, 1),
            }
        )
    return out


def targets(measurements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_name = {m["name"]: m for m in measurements}
    call = by_name["taskcall_roundtrip"]
    result = [
        {"kind": "target", "name": "taskcall_roundtrip >= 100000/s",
         "value": call["ops_per_s"], "met": call["ops_per_s"] >= 100_000},
    ]  # fmt: skip
    for name, m in by_name.items():
        if name.startswith("result_1mb_"):
            result.append({"kind": "target", "name": f"{name} within 2x of pickle",
                           "value": m["slowdown_vs_pickle"],
                           "met": m["slowdown_vs_pickle"] <= 2.0})  # fmt: skip
        if name.startswith("signing_overhead_"):
            result.append({"kind": "target", "name": f"{name} encode overhead <= 10%",
                           "value": m["encode_overhead_pct"],
                           "met": m["encode_overhead_pct"] <= 10.0})  # fmt: skip
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    options = parser.parse_args(argv)
    seconds, repeats = (0.2, 2) if options.quick else (2.0, 7)
    emit(machine())
    measurements = [
        *bench_taskcall(seconds, repeats),
        *bench_results(seconds, repeats),
        *bench_signing(seconds, repeats),
    ]
    for record in measurements:
        emit(record)
    for record in targets(measurements):
        emit(record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
