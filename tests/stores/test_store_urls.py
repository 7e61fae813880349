"""Store URLs and durations: examples, and properties checked with hypothesis."""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aioflow.errors import ConfigurationError
from aioflow.stores import StoreURL, format_duration, parse_duration, parse_store_url

# --- durations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("45s", 45.0),
        ("30m", 1800.0),
        ("12h", 43200.0),
        ("7d", 604800.0),
        ("2w", 1209600.0),
        ("500ms", 0.5),
        ("1h30m", 5400.0),
        ("1d 12h", 129600.0),
        ("2.5h", 9000.0),
        ("90", 90.0),
        ("0.25", 0.25),
        ("0s", 0.0),
        (" 7D ", 604800.0),
    ],
)
def test_parse_duration_examples(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", [" ", "-5s", "7x", "d", "1.s", ".5s", "1h1h", "30m1h", "1e3s", "inf", "nan", "5 m s"]
)
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid duration") as caught:
        parse_duration(text)
    assert "7d" in caught.value.hint


def test_parse_duration_refuses_the_empty_string_and_non_strings() -> None:
    with pytest.raises(ConfigurationError):
        parse_duration("")
    with pytest.raises(ConfigurationError):
        parse_duration(7)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="too large"):
        parse_duration("9" * 60 + "w")
    assert parse_duration("36500d") == 36500 * 86400.0


UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


@given(st.dictionaries(st.sampled_from(list(UNITS)), st.integers(0, 1000), min_size=1))
def test_parts_add_up_largest_unit_first(parts: dict[str, int]) -> None:
    ordered = sorted(parts.items(), key=lambda item: -UNITS[item[0]])
    text = "".join(f"{count}{unit}" for unit, count in ordered)
    assert parse_duration(text) == sum(count * UNITS[unit] for unit, count in ordered)


@given(st.integers(0, 10**9))
def test_format_then_parse_is_exact_for_whole_seconds(seconds: int) -> None:
    text = format_duration(seconds)
    assert parse_duration(text) == seconds
    assert format_duration(parse_duration(text)) == text


@given(st.floats(0, 10**7, allow_nan=False))
def test_format_then_parse_is_within_a_millisecond(seconds: float) -> None:
    assert math.isclose(parse_duration(format_duration(seconds)), seconds, abs_tol=0.0005)


@given(st.text(max_size=20))
def test_parse_duration_fails_only_with_a_configuration_error(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except ConfigurationError:
        return
    assert math.isfinite(seconds) and seconds >= 0


def test_format_duration_examples_and_refusals() -> None:
    assert [format_duration(s) for s in (0, 45, 90, 3600, 5400, 604800, 90.25)] == [
        "0s",
        "45s",
        "1m30s",
        "1h",
        "1h30m",
        "7d",
        "1m30.25s",
    ]
    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(ConfigurationError):
            format_duration(bad)


# --- URLs ---------------------------------------------------------------------------------------


def test_url_forms() -> None:
    assert parse_store_url("memory://") == StoreURL("memory")
    assert parse_store_url("sqlite:///var/lib/app/runs.db") == StoreURL(
        "sqlite", "/var/lib/app/runs.db"
    )
    assert parse_store_url("sqlite://runs/dev.db").path == "runs/dev.db"
    assert parse_store_url("sqlite://runs.db").path == "runs.db"
    assert parse_store_url("sqlite://~/.aioflow/runs.db").path == "~/.aioflow/runs.db"
    assert parse_store_url("SQLite:///a/b%20c%3F.db").path == "/a/b c?.db"
    url = parse_store_url("sqlite:///r.db?synchronous=FULL&retention=7d&busy_timeout=30s&check=off")
    assert (url.synchronous, url.retention, url.busy_timeout, url.check) == (
        "full",
        604800.0,
        30.0,
        "off",
    )
    assert parse_store_url("sqlite:///r.db?retention=none").retention is None
    assert parse_store_url("memory://?retention=12h").retention == 43200.0
    assert str(url) == "sqlite:///r.db?synchronous=full&retention=7d&busy_timeout=30s&check=off"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgres://db/runs", "unknown scheme 'postgres://'; known: memory://, sqlite:///"),
        ("redis://", "no host"),
        ("redis://localhost:99999/0", "not a Redis URL"),
        ("redis://localhost:6379/zero", "the database must be a number"),
        ("redis://u:sekret@localhost:6379/0?prefix=", "prefix must be non-empty"),
        ("rediss://localhost/0?ssl=1", "unknown option 'ssl'; options here: prefix"),
        ("redis://localhost/0?timeout=-1s", "timeout: invalid duration"),
        ("runs.db", "did you mean sqlite://runs.db"),
        ("/var/runs.db", "no scheme"),
        ("sqlite://", "no database path"),
        ("sqlite:///", "names a directory"),
        ("sqlite:///var/lib/", "names a directory"),
        ("sqlite://:memory:", "not durable"),
        ("sqlite:///r.db#frag", "fragment"),
        ("sqlite:///r%00.db", "NUL"),
        ("sqlite:///r%FF.db", "not UTF-8"),
        ("sqlite:///r.db?synchronous=off", "synchronous must be one of normal, full"),
        ("sqlite:///r.db?retention=forever", "retention: invalid duration"),
        ("sqlite:///r.db?busy_timeout=-1s", "busy_timeout: invalid duration"),
        ("sqlite:///r.db?check=maybe", "check must be one of"),
        ("sqlite:///r.db?wal=1", "unknown option 'wal'; options here: synchronous"),
        ("sqlite:///r.db?check=off&check=quick", "given twice"),
        ("sqlite:///r.db?check", "malformed query"),
        ("memory://somewhere", "takes no path"),
        ("memory://?synchronous=full", "unknown option 'synchronous'"),
    ],
)
def test_bad_urls_are_a_configuration_error_that_says_why(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_store_url(url)
    assert message in str(caught.value)
    assert caught.value.hint


def test_the_sqlite_store_is_imported_on_first_use() -> None:
    code = (
        "import sys, aioflow.stores as s; s.open_run_store('memory://'); "
        "print('sqlite3' in sys.modules, 'aioflow.stores.sqlite' in sys.modules); "
        "s.open_run_store('sqlite://x.db'); print('aioflow.stores.sqlite' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "True"]


def test_a_url_must_be_a_str() -> None:
    with pytest.raises(ConfigurationError, match="is a str"):
        parse_store_url(b"memory://")  # type: ignore[arg-type]


paths = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1
).filter(lambda p: not p.endswith("/") and os.path.basename(p) not in ("", ".", "..", "~"))
durations = st.none() | st.integers(0, 10**8).map(float)
store_urls = st.builds(
    StoreURL,
    scheme=st.just("sqlite"),
    path=paths,
    synchronous=st.sampled_from(["normal", "full"]),
    retention=durations,
    busy_timeout=st.integers(0, 3600).map(float),
    check=st.sampled_from(["quick", "full", "off"]),
) | st.builds(StoreURL, scheme=st.just("memory"), retention=durations)


@given(store_urls)
def test_a_url_parses_back_from_its_canonical_form(url: StoreURL) -> None:
    if os.name == "nt" and url.path and url.path[1:3] == ":/":
        return  # drive letters are rewritten on Windows
    text = str(url)
    assert parse_store_url(text) == url
    assert str(parse_store_url(text)) == text


@given(st.text(max_size=60))
def test_parse_store_url_fails_only_with_a_configuration_error(text: str) -> None:
    try:
        url = parse_store_url(text)
    except ConfigurationError:
        return
    assert url.scheme in ("memory", "sqlite", "redis", "rediss")


@given(st.text(max_size=40))
def test_parse_store_url_fails_only_with_a_configuration_error_after_a_scheme(text: str) -> None:
    for scheme in ("sqlite://", "memory://", "sqlite:///"):
        with contextlib.suppress(ConfigurationError):
            parse_store_url(scheme + text)
