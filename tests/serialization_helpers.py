"""Importable helpers for the serialization tests: enums, dataclasses, tasks, strategies.

They live in a module (not in a test function) because the codec sends enum and
dataclass classes, and tasks, by ``"module:qualname"``.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from aioflow.serialization import Keyring, PayloadKind
from aioflow.serialization.envelope import open_envelope, seal

KEY = "test-key-0123456789-abcdefghijklmnopqrstuvwxyz"
OLD_KEY = "old-test-key-0123456789-abcdefghijklmnopqrstuv"
OTHER_KEY = "other-key-0123456789-abcdefghijklmnopqrstuvwxyz"


def keyring(**kwargs: Any) -> Keyring:
    """The keyring most tests use."""
    return Keyring(KEY, **kwargs)


KR = keyring()

# The envelope alone, around bytes the tests craft (hostile bodies, other wire forms):
# the package has no public function for that, on purpose.


def sign(body: bytes, kind: PayloadKind, ring: Keyring | None = None) -> bytes:
    """``body`` signed as a payload of ``kind`` (with the tests' keyring by default)."""
    return seal(body, ring or KR, kind)


def body_of(data: bytes, kind: PayloadKind, ring: Keyring | None = None) -> bytes:
    """The verified body of a payload of ``kind``."""
    return bytes(open_envelope(data, ring or KR, kind).body)


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"
    BLUE = (0, 0, 255)


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mode(enum.StrEnum):
    READ = "r"
    WRITE = "w"


class Perm(enum.Flag):
    R = 4
    W = 2
    X = 1


@dataclasses.dataclass
class Point:
    x: Any
    y: Any = 0


@dataclasses.dataclass(frozen=True)
class Pair:
    left: Any
    right: Any


@dataclasses.dataclass(frozen=True, slots=True)
class Slotted:
    name: str
    tags: tuple[str, ...] = ()


@dataclasses.dataclass
class WithDerived:
    value: int
    doubled: int = dataclasses.field(init=False, default=0)

    def __post_init__(self) -> None:
        self.doubled = self.value * 2


@dataclasses.dataclass
class Evolving:
    """Stands for a class whose newer version has more fields (see test_codec)."""

    a: int
    b: int = 7
    c: list[int] = dataclasses.field(default_factory=list)


class Outer:
    @dataclasses.dataclass
    class Inner:
        v: int


class NotADataclass:
    def __init__(self, v: int) -> None:
        self.v = v


def module_task(x: int, y: int = 1) -> int:
    """An importable task function."""
    return x + y


class FakeTask:
    """Mimics aioflow's Task: the module attribute is the wrapper, ``.fn`` the function."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


def wrapped_task(x: int) -> int:
    return x * 10


_original_wrapped = wrapped_task
wrapped_task = FakeTask(wrapped_task)


def shadowed(x: int) -> int:
    return x


_original_shadowed = shadowed


def shadowed(x: int) -> int:  # type: ignore[no-redef]  # the name now means another function
    return -x


class CustomError(Exception):
    """An importable exception with extra state."""

    def __init__(self, message: str, detail: int = 0) -> None:
        super().__init__(message, detail)
        self.detail = detail


class AwkwardError(Exception):
    """Pickles, but cannot be rebuilt: its __init__ needs two arguments, args holds one."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a}/{b}")


# --- comparison ------------------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Deep equality that also compares types, tz, fold, NaN and -0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, Decimal):
        return str(a) == str(b)
    if isinstance(a, datetime | time):
        return (
            a.replace(tzinfo=None) == b.replace(tzinfo=None)
            and a.fold == b.fold
            and same_tz(a.tzinfo, b.tzinfo)
        )
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            any(same(k, k2) for k2 in b) and same(v, b[k]) for k, v in a.items()
        )
    if isinstance(a, set | frozenset):
        return len(a) == len(b) and all(any(same(x, y) for y in b) for x in a)
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    return bool(a == b)


def same_tz(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    if type(a) is not type(b):
        return False
    if isinstance(a, ZoneInfo):
        return bool(a.key == b.key)
    return bool(a == b and a.tzname(None) == b.tzname(None))


# --- strategies ------------------------------------------------------------------------

_ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]

timezones = st.one_of(
    st.none(),
    st.just(UTC),
    st.builds(
        timezone,
        st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23)),
    ),
    st.builds(
        timezone,
        st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23)),
        st.text(min_size=1, max_size=5),
    ),
    st.sampled_from(_ZONES).map(ZoneInfo),
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.binary(),
    st.datetimes(timezones=timezones, allow_imaginary=True),
    st.dates(),
    st.times(timezones=timezones),
    st.timedeltas(),
    st.uuids(),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.sampled_from(list(Color) + list(Level) + list(Mode) + list(Perm)),
    st.just(Perm.R | Perm.W),
)

# Hashable values for dict keys, sets and frozensets: no NaN (never equal to itself),
# no signaling-NaN decimals (cannot be hashed).
hashable_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**100), max_value=2**100),
    st.floats(allow_nan=False),
    st.text(max_size=10),
    st.binary(max_size=10),
    st.datetimes(timezones=timezones),
    st.dates(),
    st.timedeltas(),
    st.uuids(),
    st.decimals(allow_nan=False),
    st.sampled_from(list(Color) + list(Level) + list(Mode)),
)

hashables = st.recursive(
    hashable_scalars,
    lambda inner: st.one_of(
        st.tuples(inner, inner),
        st.frozensets(inner, max_size=3),
        st.builds(Pair, inner, inner),
    ),
    max_leaves=6,
)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
        st.dictionaries(hashables, inner, max_size=3),
        st.sets(hashables, max_size=3),
        st.frozensets(hashables, max_size=3),
        st.builds(Point, inner, inner),
        st.builds(Pair, inner, inner),
        st.builds(Slotted, st.text(max_size=5), st.lists(st.text(max_size=3)).map(tuple)),
        st.builds(Outer.Inner, st.integers()),
    )


values = st.recursive(scalars, _containers, max_leaves=20)


def sample_value() -> dict[Any, Any]:
    """One value holding every supported type."""
    return {
        "none": None,
        "flags": [True, False],
        "ints": [0, -1, 2**63 - 1, -(2**63), 2**64, -(2**64) - 1, 10**40],
        "floats": [0.0, -0.0, 1.5, float("inf"), float("-inf"), float("nan")],
        "text": "héllo ✓",
        "bytes": b"\x00\xff",
        "tuple": (1, (2, 3), ()),
        "set": {1, "a", (2, 3)},
        "frozenset": frozenset({1, 2}),
        (1, "tuple key"): "tuple keys work",
        7: "int keys work",
        frozenset({"k"}): "frozenset keys work",
        "naive": datetime(2024, 5, 6, 7, 8, 9, 123456),
        "utc": datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
        "offset": datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        "zone": datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=ZoneInfo("Europe/Paris")),
        "date": date(1999, 12, 31),
        "time": time(23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-3), "BRT")),
        "timedelta": timedelta(days=-3, seconds=5, microseconds=7),
        "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "decimal": [
            Decimal("3.14159265358979323846264338327950288"),
            Decimal("-0"),
            Decimal("NaN"),
            Decimal("sNaN"),
            Decimal("-Infinity"),
        ],
        "enums": [Color.RED, Color.BLUE, Level.HIGH, Mode.WRITE, Perm.R | Perm.X],
        "dataclasses": [
            Point(1, Point(2, (3,))),
            Pair("a", {"b": 1}),
            Slotted("s", ("t",)),
            Outer.Inner(5),
        ],
    }
