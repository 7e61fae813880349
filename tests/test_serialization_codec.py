"""The msgpack data codec: types round-trip, unsupported values are refused with a path."""

from __future__ import annotations

import ast
import dataclasses
import enum
import inspect
import socket
import subprocess
import sys
import threading
from collections import OrderedDict
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
import serialization_helpers as h
from hypothesis import HealthCheck, given, settings
from serialization_helpers import Color, Level, Mode, Outer, Pair, Perm, Point, Slotted, same

from aioflow.errors import AioflowError, SerializationError
from aioflow.serialization import PayloadKind, decode_value, encode_value, refs

KR = h.keyring()


def roundtrip(value: Any, *, allow_pickle: bool = False) -> Any:
    data = encode_value(value, KR, allow_pickle=allow_pickle)
    return decode_value(data, KR, allow_pickle=allow_pickle)


def signed_value_body(obj: Any) -> bytes:
    """A VALUE payload whose msgpack body is ``obj`` packed as is (crafted wire forms)."""
    return h.sign(msgpack.packb(obj, use_bin_type=True), PayloadKind.VALUE)


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(data: Any) -> Any:
        raise AssertionError("unpickled although it must not")

    monkeypatch.setattr(refs, "unpickle_verified", refuse)


# --- round trips ------------------------------------------------------------------------


def test_every_supported_type_round_trips_without_pickle() -> None:
    value = h.sample_value()
    decoded = roundtrip(value)
    assert same(value, decoded)
    for key in value:
        assert same(value[key], decoded[key]), key


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(h.values)
def test_property_round_trip_preserves_types(value: Any) -> None:
    assert same(value, roundtrip(value))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(h.values)
def test_property_round_trip_with_pickle_allowed_needs_no_pickle(value: Any) -> None:
    # Supported values never fall back to pickle, even when it is allowed.
    data = encode_value(value, KR, allow_pickle=True)
    assert same(value, decode_value(data, KR, allow_pickle=False))


@pytest.mark.parametrize(
    "number", [2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**300, -(10**300)]
)
def test_ints_of_any_size(number: int) -> None:
    assert roundtrip(number) == number
    assert type(roundtrip(number)) is int


def test_tuples_stay_tuples_and_lists_stay_lists() -> None:
    value = ([1, (2, [3, (4,)])], (), [()])
    decoded = roundtrip(value)
    assert decoded == value
    assert type(decoded) is tuple and type(decoded[0]) is list and type(decoded[0][1]) is tuple
    assert type(decoded[0][1][1][1]) is tuple


def test_dict_keys_keep_their_types() -> None:
    value = {
        1: "a",
        (1, 2): "b",
        2.5: "c",
        None: "d",
        b"k": "e",
        frozenset({1}): "f",
        Color.RED: "g",
        Pair(1, 2): "h",
    }
    decoded = roundtrip(value)
    assert decoded == value
    assert [type(k) for k in decoded] == [type(k) for k in value]


def test_datetimes_keep_time_zones_and_naive_stays_naive() -> None:
    naive = datetime(2024, 1, 2, 3, 4, 5, 6)
    assert roundtrip(naive).tzinfo is None
    paris = h.sample_value()["zone"]
    decoded = roundtrip(paris)
    assert decoded.tzinfo is paris.tzinfo  # ZoneInfo instances are cached: the same zone
    assert decoded.fold == 1 and decoded.utcoffset() == paris.utcoffset()
    named = datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=2), "EET-ish"))
    assert roundtrip(named).tzname() == "EET-ish"
    assert roundtrip(datetime.now(UTC)).tzinfo is UTC


def test_floats_nan_inf_and_negative_zero() -> None:
    decoded = roundtrip([float("nan"), float("inf"), -float("inf"), -0.0])
    assert same(decoded, [float("nan"), float("inf"), -float("inf"), -0.0])


def test_enum_members_come_back_as_the_same_members() -> None:
    members = [Color.RED, Color.BLUE, Level.LOW, Mode.READ, Perm.R | Perm.W]
    decoded = roundtrip(members)
    assert all(a is b for a, b in zip(decoded, members, strict=True))
    assert type(roundtrip(Level.HIGH)) is Level  # not flattened to int


def test_dataclasses_round_trip_recursively_frozen_and_slotted_too() -> None:
    value = [Point(Pair(1, (2, 3)), [Point(4)]), Slotted("x", ("a", "b")), Outer.Inner(3)]
    decoded = roundtrip(value)
    assert decoded == value
    assert type(decoded[0].x) is Pair and type(decoded[0].x.right) is tuple


def test_dataclass_is_rebuilt_without_calling_init() -> None:
    value = h.WithDerived(3)
    value.doubled = 100  # state as it was, not recomputed by __post_init__
    assert roundtrip(value).doubled == 100


def test_dataclass_from_other_version_ignores_unknown_and_defaults_missing_fields() -> None:
    tag = msgpack.ExtType(25, b"")
    body = [tag, "serialization_helpers:Evolving", {"a": 1, "newer_field": 5}]
    decoded = decode_value(signed_value_body(body), KR, allow_pickle=False)
    assert decoded == h.Evolving(a=1, b=7, c=[])
    body = [tag, "serialization_helpers:Evolving", {"b": 2}]
    with pytest.raises(SerializationError, match="field 'a' is missing"):
        decode_value(signed_value_body(body), KR, allow_pickle=False)


def test_bytearray_and_memoryview_decode_as_bytes() -> None:
    assert roundtrip([bytearray(b"ab"), memoryview(b"cd")]) == [b"ab", b"cd"]


def test_allow_pickle_is_an_explicit_choice() -> None:
    for function in (encode_value, decode_value):
        parameter = inspect.signature(function).parameters["allow_pickle"]
        assert parameter.default is inspect.Parameter.empty
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY


def test_channel_and_checkpoint_kinds_are_separate() -> None:
    data = encode_value({"a": 1}, KR, allow_pickle=False, kind=PayloadKind.CHANNEL)
    assert decode_value(data, KR, allow_pickle=False, kind=PayloadKind.CHANNEL) == {"a": 1}
    with pytest.raises(SerializationError, match="expected a VALUE"):
        decode_value(data, KR, allow_pickle=False)
    with pytest.raises(SerializationError, match="not"):
        encode_value(1, KR, allow_pickle=False, kind=PayloadKind.CALL)


# --- refusals and pickles -----------------------------------------------------------------


class Opaque:
    def __init__(self, v: int) -> None:
        self.v = v

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and other.v == self.v

    __hash__ = None  # type: ignore[assignment]


def test_unsupported_value_is_refused_with_type_and_path() -> None:
    value = {"rows": [1, 2, 3, Opaque(1)]}
    with pytest.raises(SerializationError) as info:
        encode_value(value, KR, allow_pickle=False, root="result")
    message = str(info.value)
    assert "result['rows'][3]" in message
    assert "Opaque" in message
    assert "allow_pickle=True" in info.value.hint


def test_unsupported_value_travels_as_signed_pickle_when_allowed() -> None:
    value = {"rows": [1, Opaque(2)], "ok": OrderedDict(a=1)}
    decoded = roundtrip(value, allow_pickle=True)
    assert decoded == value and type(decoded["ok"]) is OrderedDict


def test_pickled_value_is_refused_by_a_receiver_that_does_not_allow_it(
    no_unpickling: None,
) -> None:
    data = encode_value([Opaque(1)], KR, allow_pickle=True)
    with pytest.raises(SerializationError, match="pickled values are not allowed"):
        decode_value(data, KR, allow_pickle=False)


@pytest.mark.parametrize("allow_pickle", [False, True])
def test_lock_is_refused_with_its_path_never_a_raw_type_error(allow_pickle: bool) -> None:
    with pytest.raises(SerializationError) as info:
        encode_value({"state": {"lock": threading.Lock()}}, KR, allow_pickle=allow_pickle)
    assert "value['state']['lock']" in str(info.value)
    assert "lock" in str(info.value)
    if allow_pickle:
        assert isinstance(info.value.__cause__, TypeError)  # chained, not raised


@pytest.mark.parametrize("allow_pickle", [False, True])
def test_open_socket_is_refused(allow_pickle: bool) -> None:
    with socket.socket() as sock, pytest.raises(SerializationError) as info:
        encode_value([0, sock], KR, allow_pickle=allow_pickle, root="args")
    assert "args[1]" in str(info.value) and "socket" in str(info.value)


def test_local_classes_are_not_importable_so_they_need_pickle() -> None:
    @dataclasses.dataclass
    class Local:
        v: int

    class LocalEnum(enum.Enum):
        A = 1

    for value in (Local(1), LocalEnum.A):
        with pytest.raises(SerializationError, match="not importable"):
            encode_value({"x": value}, KR, allow_pickle=False)
    decoded = roundtrip([Local(1), LocalEnum.A], allow_pickle=True)
    assert decoded[0].v == 1 and decoded[1].name == "A"


def test_unsupported_tzinfo_is_refused_or_pickled() -> None:
    class Fixed(tzinfo):
        def utcoffset(self, dt: datetime | None) -> timedelta:
            return timedelta(hours=1)

        def dst(self, dt: datetime | None) -> timedelta:
            return timedelta(0)

        def tzname(self, dt: datetime | None) -> str:
            return "FIXED"

        def __reduce__(self) -> Any:
            return (Fixed, ())

    value = datetime(2024, 1, 1, tzinfo=Fixed())
    with pytest.raises(SerializationError, match=r"tzinfo \S*Fixed is neither"):
        encode_value(value, KR, allow_pickle=False)
    assert roundtrip(value, allow_pickle=True).utcoffset() == timedelta(hours=1)


def test_reference_cycle_and_excessive_depth_are_refused() -> None:
    cycle: list[Any] = [1]
    cycle.append({"again": cycle})
    with pytest.raises(SerializationError, match=r"reference cycle"):
        encode_value(cycle, KR, allow_pickle=False)
    deep: list[Any] = []
    for _ in range(2000):
        deep = [deep]
    with pytest.raises(SerializationError, match="nests too deeply"):
        encode_value(deep, KR, allow_pickle=False)


def test_lone_surrogate_is_refused_with_its_path() -> None:
    with pytest.raises(SerializationError, match=r"value\['name'\]"):
        encode_value({"name": "\ud800"}, KR, allow_pickle=False)


def test_str_subclass_is_not_silently_flattened() -> None:
    class Tagged(str):
        pass

    with pytest.raises(SerializationError, match="Tagged"):
        encode_value(Tagged("x"), KR, allow_pickle=False)


# --- decoding classes safely --------------------------------------------------------------


def test_class_that_is_not_importable_on_the_receiver_is_a_clear_error() -> None:
    body = [msgpack.ExtType(24, b""), "not_installed_anywhere.mod:Color", "red"]
    with pytest.raises(SerializationError) as info:
        decode_value(signed_value_body(body), KR, allow_pickle=False)
    assert "not_installed_anywhere.mod" in info.value.hint


@pytest.mark.parametrize(
    ("code", "path"),
    [
        (24, "serialization_helpers:NotADataclass"),  # not an Enum: never constructed
        (25, "serialization_helpers:NotADataclass"),
        (25, "os:system"),
        (24, "builtins:print"),
        (25, "serialization_helpers:Color"),
        (24, "serialization_helpers:Point"),
        (25, "os:system:extra"),
        (25, "os.path:<locals>.x"),
    ],
)
def test_decoder_only_constructs_real_enums_and_dataclasses(
    code: int, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    called: list[Any] = []
    monkeypatch.setattr(h.NotADataclass, "__init__", lambda *a: called.append(a))
    body = [msgpack.ExtType(code, b""), path, {"v": 1} if code == 25 else 1]
    with pytest.raises(SerializationError):
        decode_value(signed_value_body(body), KR, allow_pickle=False)
    assert called == []


@pytest.mark.parametrize(
    "body",
    [
        [msgpack.ExtType(16, b"x")],  # a tag with data
        [1, msgpack.ExtType(16, b"")],  # a tag not heading its array
        msgpack.ExtType(16, b""),  # a lone tag
        [msgpack.ExtType(19, b""), 2024],  # short datetime
        [msgpack.ExtType(19, b""), 2024, 13, 1, 0, 0, 0, 0, 0, None],  # month 13
        [msgpack.ExtType(23, b""), "not a number"],
        [msgpack.ExtType(17, b""), [1]],  # unhashable set member
        [msgpack.ExtType(99, b"")],  # unknown tag
        msgpack.ExtType(77, b"data"),  # unknown ext
        msgpack.ExtType(3, b"short"),  # bad UUID
        [msgpack.ExtType(24, b""), "serialization_helpers:Color", "purple"],
        [msgpack.ExtType(19, b""), 2024, 1, 1, 0, 0, 0, 0, 0, "No/Such_Zone"],
        {(1,): 2},  # a list as a dict key
    ],
)
def test_malformed_wire_forms_are_serialization_errors(body: Any) -> None:
    packed = msgpack.packb(body, use_bin_type=True, strict_types=False)
    data = h.sign(packed, PayloadKind.VALUE)
    with pytest.raises(SerializationError):
        decode_value(data, KR, allow_pickle=False)


def test_every_error_is_an_aioflow_error_with_code_and_hint() -> None:
    with pytest.raises(AioflowError) as info:
        encode_value(object(), KR, allow_pickle=False)
    assert info.value.code == "aioflow.serialization" and info.value.hint


def test_the_codec_reads_only_verified_bodies() -> None:
    from aioflow.serialization.codec import unpack

    for raw in (msgpack.packb([1]), memoryview(msgpack.packb([1]))):
        with pytest.raises(SerializationError, match="verified envelope"):
            unpack(raw, allow_pickle=True, what="value")  # type: ignore[arg-type]


def test_unpickle_verified_is_the_only_unpickling_and_only_decoders_reach_it() -> None:
    package = Path(__file__).resolve().parents[1] / "aioflow" / "serialization"
    loads: list[str] = []
    callers: list[str] = []
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef):
                continue
            where = f"{path.stem}.{function.name}"
            for node in ast.walk(function):
                name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
                if name in ("loads", "load", "Unpickler"):
                    loads.append(where)
                if name == "unpickle_verified":
                    callers.append(where)
    assert loads == ["refs.unpickle_verified"]
    # The decoder's ext hook (pickled values), the error of a result, pickled code.
    assert sorted(set(callers)) == [
        "codec.ext_hook",
        "refs.ref_from_verified_wire",
        "results._error_from_wire",
    ]


def test_package_is_a_leaf_that_never_imports_the_engine() -> None:
    code = (
        "import sys, types\n"
        "pkg = types.ModuleType('aioflow'); pkg.__path__ = ['aioflow']\n"
        "sys.modules['aioflow'] = pkg\n"  # skip aioflow/__init__.py: load the package alone
        "import aioflow.serialization\n"
        "print(sorted(m for m in sys.modules if m.startswith('aioflow')))\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    loaded = {m for m in ast.literal_eval(out) if not m.startswith("aioflow.serialization")}
    assert loaded == {"aioflow", "aioflow.errors"}
