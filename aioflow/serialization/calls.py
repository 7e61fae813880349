"""TaskCall: the one message that describes a unit of work sent to a worker (R4).

It carries names, plain values and the task's arguments, never a context, a
connection, a lock or a backend: the worker rebuilds those from its own
configuration.

Wire form: a signed ``CALL`` envelope whose body is an msgpack array (positional,
the most compact and fastest form; see :mod:`.schema` for versioning)::

    [major, minor, call_id, run_id, task_name,
     ref,          # "module:qualname" | [name, pickled code bytes]
     args,         # bytes: a nested msgpack document, name -> value
     attempt, deadline (float | nil), options {str: plain value},
     trace {str: str}, workflow (str | nil), created_at (float),
     ...]          # fields appended by newer minor versions: ignored

The arguments are a nested document (still inside the signed body), so a
receiver that cannot decode them still knows which call failed.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field, fields
from typing import Any, final

from ..errors import SerializationError
from .codec import pack, unpack
from .envelope import PayloadKind, VerifiedBody, open_envelope, resolve_limit, seal
from .keys import Keyring
from .refs import TaskRef, ref_from_verified_wire, ref_to_wire
from .schema import SCHEMA_VERSION, check_version, expect

__all__ = ["TaskCall", "decode_call", "encode_call"]

_WHAT = "task call"
_MAJOR, _MINOR = SCHEMA_VERSION
_SIZE = 13  # fields of schema 1.0
_STR_ONLY = frozenset({str})
_NUMBER = frozenset({int, float})


def _new_call_id() -> str:
    return uuid.uuid4().hex


def _invalid(name: str, expected: str, value: object) -> SerializationError:
    return SerializationError(
        f"TaskCall.{name} must be {expected}, got {type(value).__name__} {value!r:.80}",
        hint="Build TaskCall with the documented field types.",
    )


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class TaskCall:
    """The description of one task attempt to execute, as sent to a worker.

    Attributes:
        run_id: the run this call belongs to.
        task_name: the task's name in its workflow.
        ref: the task's code (:class:`TaskRef`).
        args: bound arguments, parameter name -> value.
        attempt: 1 for the first attempt, then 2, 3...
        deadline: absolute deadline (epoch seconds), or ``None``.
        options: plain values: timeout, retries, queue, priority, handler name...
        trace: trace-context carrier (``traceparent``, ``tracestate``...).
        call_id: unique id of this call (one per attempt); results refer to it.
        workflow: the workflow's name, for logs and metrics.
        created_at: when the call was made (epoch seconds).
        schema_version: the sender's schema version (set when decoded).

    Treat ``args``, ``options`` and ``trace`` as read-only.

    Raises:
        SerializationError: a field has the wrong type (also when decoding).
    """

    run_id: str
    task_name: str
    ref: TaskRef
    args: dict[str, Any] = field(default_factory=dict)
    attempt: int = 1
    deadline: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    trace: dict[str, str] = field(default_factory=dict)
    call_id: str = field(default_factory=_new_call_id)
    workflow: str | None = None
    created_at: float = field(default_factory=time.time)
    schema_version: tuple[int, int] = SCHEMA_VERSION

    def __post_init__(self) -> None:
        # Runs on every decode too, so it is the wire validation: keep it cheap.
        if type(self.run_id) is not str or not self.run_id:
            raise _invalid("run_id", "a non-empty str", self.run_id)
        if type(self.task_name) is not str or not self.task_name:
            raise _invalid("task_name", "a non-empty str", self.task_name)
        if type(self.call_id) is not str or not self.call_id:
            raise _invalid("call_id", "a non-empty str", self.call_id)
        if not isinstance(self.ref, TaskRef):
            raise _invalid("ref", "a TaskRef", self.ref)
        if type(self.attempt) is not int or self.attempt < 1:
            raise _invalid("attempt", "an int >= 1", self.attempt)
        if self.deadline is not None and type(self.deadline) not in _NUMBER:
            raise _invalid("deadline", "epoch seconds (float) or None", self.deadline)
        if type(self.created_at) not in _NUMBER:
            raise _invalid("created_at", "epoch seconds (float)", self.created_at)
        if self.workflow is not None and type(self.workflow) is not str:
            raise _invalid("workflow", "a str or None", self.workflow)
        if type(self.args) is not dict or not _STR_ONLY.issuperset(map(type, self.args)):
            raise _invalid("args", "a dict with str keys", self.args)
        if type(self.options) is not dict or not _STR_ONLY.issuperset(map(type, self.options)):
            raise _invalid("options", "a dict with str keys", self.options)
        trace = self.trace
        if (
            type(trace) is not dict
            or not _STR_ONLY.issuperset(map(type, trace))
            or not _STR_ONLY.issuperset(map(type, trace.values()))
        ):
            raise _invalid("trace", "a dict[str, str]", trace)


def encode_call(
    call: TaskCall,
    keyring: Keyring,
    *,
    allow_pickle: bool = True,
    max_payload_bytes: int | None = None,
) -> bytes:
    """Encode and sign a :class:`TaskCall`.

    Args:
        call: the call.
        keyring: signs with its current key.
        allow_pickle: carry arguments the codec does not support as signed cloudpickle
            (default ``True``); ``False`` refuses them. Options are never pickled.
        max_payload_bytes: size limit (default: the keyring's).

    Returns:
        The signed ``CALL`` envelope.

    Raises:
        SerializationError: an argument or option cannot be encoded (the message names
            its path, e.g. ``args['conn']``), or the task code cannot be pickled.
        PayloadTooLargeError: the payload exceeds the size limit.
    """
    limit = resolve_limit(keyring, max_payload_bytes)
    meta = [
        _MAJOR,
        _MINOR,
        call.call_id,
        call.run_id,
        call.task_name,
        ref_to_wire(call.ref),
        pack(call.args, allow_pickle=allow_pickle, root="args"),
        call.attempt,
        None if call.deadline is None else float(call.deadline),
        call.options,
        call.trace,
        call.workflow,
        float(call.created_at),
    ]
    try:
        body = pack(meta, allow_pickle=False, root="call")
    except SerializationError:
        pack(call.options, allow_pickle=False, root="options")  # raises with the exact path
        raise
    return seal(body, keyring, PayloadKind.CALL, limit)


def decode_call(
    data: bytes | bytearray | memoryview,
    keyring: Keyring,
    *,
    allow_pickle: bool = True,
    allow_pickled_code: bool = True,
    max_payload_bytes: int | None = None,
) -> TaskCall:
    """Verify and decode a payload made by :func:`encode_call`.

    Args:
        data: the signed envelope.
        keyring: accepts its current and previous keys.
        allow_pickle: accept signed pickled argument values (default ``True``).
        allow_pickled_code: accept task code sent as signed pickled code (default
            ``True``). When ``False`` such a call still decodes, and
            ``call.ref.resolve()`` raises :class:`~aioflow.errors.TaskNotFoundError`.
        max_payload_bytes: size limit (default: the keyring's).

    Returns:
        The call.

    Raises:
        PayloadTooLargeError: ``data`` exceeds the size limit.
        PayloadSignatureError: truncated, unsigned, tampered or unknown key.
        SerializationError: malformed call, newer incompatible schema (hint: upgrade),
            or arguments that cannot be decoded here (then ``run_id``, ``task_name``
            and ``attempt`` are set on the error).
    """
    limit = resolve_limit(keyring, max_payload_bytes)
    verified = open_envelope(data, keyring, PayloadKind.CALL, limit)
    meta = unpack(verified, allow_pickle=False, what=_WHAT)
    version = check_version(meta, _WHAT, _SIZE)
    (call_id, run_id, task_name, raw_ref, raw_args, attempt, deadline, options, trace,
     workflow, created_at) = meta[2:_SIZE]  # fmt: skip
    ref = ref_from_verified_wire(raw_ref, allow_pickled_code=allow_pickled_code)
    expect(raw_args, bytes, "args", _WHAT)
    try:
        # A nested document of the verified body: it is covered by the same signature.
        args = unpack(
            VerifiedBody(memoryview(raw_args), PayloadKind.CALL),
            allow_pickle=allow_pickle,
            what="task arguments",
        )
    except SerializationError as exc:
        raise SerializationError(
            f"cannot decode the arguments of task {task_name!r} (run {run_id}, attempt "
            f"{attempt}): {exc}",
            hint=exc.hint,
            run_id=run_id if type(run_id) is str else None,
            task_name=task_name if type(task_name) is str else None,
            attempt=attempt if type(attempt) is int else None,
        ) from exc
    # In field order; __post_init__ then checks every field: malformed values end there.
    return _build(
        (run_id, task_name, ref, args, attempt, deadline, options, trace, call_id, workflow,
         created_at, version)
    )  # fmt: skip


# Decoding sets the slots directly (the frozen dataclass __init__ goes through
# object.__setattr__ once per field, about twice as slow), then validates.
_FIELDS = tuple(f.name for f in fields(TaskCall))
_SETTERS = tuple(TaskCall.__dict__[name].__set__ for name in _FIELDS)
assert _FIELDS == (
    "run_id", "task_name", "ref", "args", "attempt", "deadline", "options", "trace",
    "call_id", "workflow", "created_at", "schema_version",
)  # fmt: skip


(
    _set_run_id, _set_task_name, _set_ref, _set_args, _set_attempt, _set_deadline,
    _set_options, _set_trace, _set_call_id, _set_workflow, _set_created_at,
    _set_schema_version,
) = _SETTERS  # fmt: skip


def _build(values: tuple[Any, ...]) -> TaskCall:
    # Unrolled: a loop over the setters costs more than the twelve stores themselves.
    (run_id, task_name, ref, args, attempt, deadline, options, trace, call_id, workflow,
     created_at, schema_version) = values  # fmt: skip
    call: TaskCall = object.__new__(TaskCall)
    _set_run_id(call, run_id)
    _set_task_name(call, task_name)
    _set_ref(call, ref)
    _set_args(call, args)
    _set_attempt(call, attempt)
    _set_deadline(call, deadline)
    _set_options(call, options)
    _set_trace(call, trace)
    _set_call_id(call, call_id)
    _set_workflow(call, workflow)
    _set_created_at(call, created_at)
    _set_schema_version(call, schema_version)
    call.__post_init__()
    return call
