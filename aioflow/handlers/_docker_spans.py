"""Spans finished in a container, on their way back to the handler's tracer.

A traced call (a non-empty ``TaskCall.trace``) runs in the container under an
OpenTelemetry SDK that collects the spans finished meanwhile (:mod:`aioflow.container`).
The container has no network: they travel back in one ``SPANS`` frame, sent before
the ``RESULT``, as a list of plain records, msgpack-encoded and signed with the
call's own key (never pickled)::

    {"name": str, "kind": "INTERNAL" | "SERVER" | "CLIENT" | "PRODUCER" | "CONSUMER",
     "trace_id": 32 hex digits, "span_id": 16, "parent_span_id": 16 | None,
     "start": ns, "end": ns, "attributes": {str: value},
     "events": [{"name": str, "time": ns, "attributes": {...}}],
     "status": "UNSET" | "OK" | "ERROR", "status_description": str | None}

An attribute value is a str, bool, int or float, or a list of one of those. The
handler verifies the frame, keeps only valid records of the call's own trace (at
most :data:`MAX_SPANS`, names and values within the limits below), logs what it
dropped, and hands them to the tracing instrument
(:func:`aioflow.observability.propagation.relay_spans`), which re-creates them as
children of the attempt's span. Nothing here imports OpenTelemetry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import AioflowError, SerializationError
from ..observability.propagation import relay_spans
from ..serialization import Keyring, PayloadKind, decode_value, encode_value

if TYPE_CHECKING:
    import structlog

__all__ = [
    "MAX_ATTRIBUTES",
    "MAX_EVENTS",
    "MAX_NAME",
    "MAX_SPANS",
    "MAX_VALUE",
    "carrier_trace_id",
    "decode_spans",
    "encode_spans",
    "relay_container_spans",
    "span_record",
]

MAX_SPANS = 512  # per call
MAX_NAME = 256  # characters of a span, event or attribute name
MAX_VALUE = 8192  # characters of a string value (an exception's stack trace...)
MAX_ATTRIBUTES = 128  # per span or event
MAX_EVENTS = 128  # per span
MAX_LIST = 128  # items of a list value
_BUDGET = 4 * 1024 * 1024  # bytes of a SPANS frame body, at most
_KINDS = frozenset({"INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"})
_STATUSES = frozenset({"UNSET", "OK", "ERROR"})
_SPAN_ID = re.compile(r"^[0-9a-f]{16}$")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
_INT64 = (-(2**63), 2**63 - 1)
_SCALARS = (str, bool, int, float)

# --- the container's side ------------------------------------------------------------


def _clean_value(value: Any) -> Any:
    """``value`` within the limits (strings cut), or None when it is not a valid one."""
    kind = type(value)
    if kind is str:
        return value[:MAX_VALUE]
    if kind in (bool, float) or (kind is int and _INT64[0] <= value <= _INT64[1]):
        return value
    if kind in (list, tuple) and value and len(value) <= MAX_LIST:
        first = type(value[0])
        items = [_clean_value(v) for v in value if type(v) is first]
        return items if len(items) == len(value) and first in _SCALARS else None
    return None


def _clean_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in (attributes or {}).items():
        if len(found) >= MAX_ATTRIBUTES:
            break
        if type(key) is not str or not 0 < len(key) <= MAX_NAME:
            continue
        clean = _clean_value(value)
        if clean is not None:
            found[key] = clean
    return found


def span_record(span: Any) -> dict[str, Any]:
    """A finished SDK span (``ReadableSpan``) as a plain record (see the module doc)."""
    ctx = span.get_span_context()
    parent = span.parent
    status = span.status
    return {
        "name": str(span.name)[:MAX_NAME] or "?",
        "kind": span.kind.name,
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{ctx.span_id:016x}",
        "parent_span_id": f"{parent.span_id:016x}" if parent is not None else None,
        "start": int(span.start_time),
        "end": int(span.end_time),
        "attributes": _clean_attributes(span.attributes),
        "events": [
            {
                "name": str(event.name)[:MAX_NAME] or "?",
                "time": int(event.timestamp),
                "attributes": _clean_attributes(event.attributes),
            }
            for event in list(span.events)[:MAX_EVENTS]
        ],
        "status": status.status_code.name,
        "status_description": (status.description or "")[:MAX_VALUE] or None,
    }


def encode_spans(records: Iterable[dict[str, Any]], keyring: Keyring) -> bytes:
    """The body of a SPANS frame: the first :data:`MAX_SPANS` records to start (the
    attempt's own span first), fewer when they would not fit in a few MB; signed."""
    kept = sorted(records, key=lambda r: r["start"])[:MAX_SPANS]
    budget = min(_BUDGET, keyring.max_payload_bytes // 2)
    while True:
        body = encode_value(
            kept, keyring, allow_pickle=False, kind=PayloadKind.CONTROL, root="spans"
        )
        if len(body) <= budget or not kept:
            return body
        kept = kept[: len(kept) // 2]


# --- the handler's side ----------------------------------------------------------------


def carrier_trace_id(carrier: Mapping[str, str]) -> str | None:
    """The trace id (32 hex digits) of a W3C ``traceparent`` carrier, or None."""
    match = _TRACEPARENT.match(carrier.get("traceparent", ""))
    return match.group(1) if match else None


def _valid_value(value: Any) -> bool:
    kind = type(value)
    if kind is str:
        return len(value) <= MAX_VALUE
    if kind is int:
        return bool(_INT64[0] <= value <= _INT64[1])
    if kind in (bool, float):
        return True
    if kind is list and 0 < len(value) <= MAX_LIST:
        first = type(value[0])
        return first in _SCALARS and all(type(v) is first and _valid_value(v) for v in value)
    return False


def _valid_attributes(attributes: Any) -> bool:
    return (
        type(attributes) is dict
        and len(attributes) <= MAX_ATTRIBUTES
        and all(
            type(k) is str and 0 < len(k) <= MAX_NAME and _valid_value(v)
            for k, v in attributes.items()
        )
    )


def _valid_name(name: Any) -> bool:
    return type(name) is str and 0 < len(name) <= MAX_NAME


def _time(value: Any) -> bool:
    return type(value) is int and 0 <= value <= _INT64[1]


def _valid_event(event: Any) -> bool:
    return (
        type(event) is dict
        and _valid_name(event.get("name"))
        and _time(event.get("time"))
        and _valid_attributes(event.get("attributes"))
    )


def _valid_record(record: Any, trace_id: str) -> bool:
    if type(record) is not dict:
        return False
    parent = record.get("parent_span_id")
    events = record.get("events")
    description = record.get("status_description")
    span_id = record.get("span_id")
    return (
        _valid_name(record.get("name"))
        and record.get("kind") in _KINDS
        and record.get("trace_id") == trace_id
        and type(span_id) is str
        and _SPAN_ID.match(span_id) is not None
        and span_id != "0" * 16
        and (parent is None or (type(parent) is str and _SPAN_ID.match(parent) is not None))
        and _time(record.get("start"))
        and _time(record.get("end"))
        and record["end"] >= record["start"]
        and _valid_attributes(record.get("attributes"))
        and type(events) is list
        and len(events) <= MAX_EVENTS
        and all(_valid_event(e) for e in events)
        and record.get("status") in _STATUSES
        and (description is None or (type(description) is str and len(description) <= MAX_VALUE))
    )


def decode_spans(body: bytes, keyring: Keyring, trace_id: str) -> tuple[list[dict[str, Any]], int]:
    """Verify a SPANS frame body; return its valid records of ``trace_id`` (the first
    :data:`MAX_SPANS`, without duplicated span ids) and how many were dropped.

    Raises:
        PayloadSignatureError: not signed with the call's key.
        SerializationError: not a list of plain data (a pickle is refused).
    """
    value = decode_value(body, keyring, allow_pickle=False, kind=PayloadKind.CONTROL)
    if type(value) is not list:
        raise SerializationError("malformed spans from a container: not a list")
    kept: list[dict[str, Any]] = []
    seen: set[str] = set()
    for record in value:
        if len(kept) >= MAX_SPANS:
            break
        if _valid_record(record, trace_id) and record["span_id"] not in seen:
            seen.add(record["span_id"])
            kept.append(record)
    return kept, len(value) - len(kept)


def relay_container_spans(
    body: bytes,
    keyring: Keyring,
    carrier: Mapping[str, str],
    root_attributes: Mapping[str, Any],
    log: structlog.stdlib.BoundLogger,
) -> int:
    """Verify, validate and relay the spans of one call (see the module documentation);
    the number relayed. Never raises: what cannot be relayed is dropped and logged."""
    trace_id = carrier_trace_id(carrier)
    if trace_id is None:
        log.warning("container spans dropped: the call's carrier has no traceparent")
        return 0
    try:
        records, dropped = decode_spans(body, keyring, trace_id)
    except AioflowError as exc:
        log.warning("container spans dropped: the frame is not valid", error=str(exc))
        return 0
    if dropped:
        log.warning(
            "container spans dropped: not valid, of another trace, or over the limit",
            dropped=dropped,
            kept=len(records),
            limit=MAX_SPANS,
        )
    try:
        return relay_spans(records, carrier, root_attributes)
    except Exception as exc:  # a tracer's failure never fails the task
        log.warning("container spans not relayed", error=f"{type(exc).__name__}: {exc}")
        return 0
