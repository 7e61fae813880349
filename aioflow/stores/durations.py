"""Durations written as text: ``"7d"``, ``"12h"``, ``"1h30m"``, ``"500ms"``.

Used by store URLs (``?retention=7d``) and by the CLI
(``aioflow purge --older-than 7d``).
"""

from __future__ import annotations

import math
import re
from typing import Final

from ..errors import ConfigurationError

__all__ = ["format_duration", "parse_duration"]

_UNITS: Final = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_ORDER: Final = tuple(_UNITS)  # largest first
_NUMBER: Final = r"\d+(?:\.\d+)?"
_PART: Final = re.compile(rf"({_NUMBER})\s*(ms|[wdhms])\s*")
_WHOLE: Final = re.compile(rf"\s*(?:{_NUMBER}\s*(?:ms|[wdhms])\s*)+")
_BARE: Final = re.compile(rf"\s*({_NUMBER})\s*")
_MAX_TEXT: Final = 64
_MAX_SECONDS: Final = 100 * 365.25 * 86400.0  # a century: anything longer is a typo


def _bad(text: object, why: str) -> ConfigurationError:
    return ConfigurationError(
        f"invalid duration {text!r}: {why}",
        hint='Write a duration like "45s", "30m", "12h", "7d", "2w", "1h30m" or "500ms" '
        "(a bare number is seconds).",
    )


def parse_duration(text: str) -> float:
    """Seconds in a duration written as text.

    Accepted: a number of seconds (``"90"``, ``"1.5"``), or one or more
    ``<number><unit>`` parts, largest unit first, each unit at most once
    (``"7d"``, ``"1h30m"``, ``"2.5h"``, ``"1d 12h"``); units ``w`` (weeks), ``d``,
    ``h``, ``m`` (minutes), ``s``, ``ms``. Case and surrounding spaces are ignored.

    Raises:
        ConfigurationError: anything else (negative, empty, unknown unit, units out
            of order or repeated, more than 100 years).
    """
    if not isinstance(text, str):
        raise _bad(text, f"expected a str, got {type(text).__name__}")
    if len(text) > _MAX_TEXT:
        raise _bad(text, f"longer than {_MAX_TEXT} characters")
    lowered = text.lower()
    if bare := _BARE.fullmatch(lowered):
        seconds = float(bare.group(1))
    elif _WHOLE.fullmatch(lowered):
        seconds = 0.0
        previous = -1
        for match in _PART.finditer(lowered):
            number, unit = match.groups()
            rank = _ORDER.index(unit)
            if rank <= previous:
                raise _bad(text, "each unit at most once, largest first (like 1d12h30m)")
            previous = rank
            seconds += float(number) * _UNITS[unit]
    else:
        raise _bad(text, "not a number followed by a unit among w, d, h, m, s, ms")
    if seconds > _MAX_SECONDS:
        raise _bad(text, "too large (more than 100 years)")
    return seconds


def format_duration(seconds: float) -> str:
    """``seconds`` written as :func:`parse_duration` reads it: ``"7d"``, ``"1h30m"``, ``"0s"``.

    Whole seconds are written exactly in days, hours, minutes and seconds; a
    fraction is written to the millisecond (``"1m30.25s"``).

    Raises:
        ConfigurationError: ``seconds`` is negative or not finite.
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise _bad(seconds, "a duration is a finite number of seconds >= 0")
    millis = round(seconds * 1000)
    whole, fraction = divmod(millis, 1000)
    parts: list[str] = []
    for unit in ("d", "h", "m"):
        count, whole = divmod(whole, int(_UNITS[unit]))
        if count:
            parts.append(f"{count}{unit}")
    if fraction:
        parts.append(f"{whole}.{fraction:03d}".rstrip("0") + "s")
    elif whole or not parts:
        parts.append(f"{whole}s")
    return "".join(parts)
