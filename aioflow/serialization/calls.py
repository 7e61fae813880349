"""TaskCall: the one message that describes a unit of work sent to a worker (R4).

It carries names, plain values and the task's arguments, never a context, a
connection, a lock or a backend: the worker rebuilds those from its own
configuration.

Wire form: a signed ``CALL`` envelope whose body is an msgpack array (positional,
the most compact and fastest form)::

    [major, minor, call_id, run_id, task_name,
     ref,          # "module:qualname" | [name, pickled code bytes]
     args,         # bytes: a nested msgpack document, name -> value
     attempt,
     nil,          # reserved (a deadline in schema 1.0; timeouts travel in options)
     options {str: plain value}, trace {str: str}, workflow (str | nil),
     created_at (float),
     iteration (int, schema 1.1),
     ...]          # fields appended by newer minor versions: ignored

The arguments are a nested document (still inside the signed body), so a
receiver that cannot decode them still knows which call failed.

Versioning, shared with :mod:`.results`: both messages start with ``major,
minor``. A newer *minor* version only appends fields, which older receivers
ignore; a newer *major* version changes the meaning, and older receivers refuse
it with a hint to upgrade.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field, fields
from typing import Any, Final, TypeVar, final

from ..errors import SerializationError
from .codec import VerifiedBody, pack, unpack
from .envelope import PayloadKind, open_envelope, seal
from .keys import Keyring
from .refs import TaskRef, ref_from_verified_wire, ref_to_wire

__all__ = [
    "SCHEMA_VERSION",
    "TaskCall",
    "check_version",
    "decode_call",
    "encode_call",
    "expect",
    "expect_optional",
]

#: (major, minor) of the TaskCall and TaskResult wire formats.
SCHEMA_VERSION: Final = (1, 1)

_T = TypeVar("_T")
_UPGRADE_HINT = "Run the same aioflow version on the sender and the receiver (upgrade the older)."
_WHAT = "task call"
_MAJOR, _MINOR = SCHEMA_VERSION
_SIZE = 13  # fields of schema 1.0
_STR_ONLY = frozenset({str})
_NUMBER = frozenset({int, float})

# --- schema versioning ------------------------------------------------------------------------


def check_version(meta: object, what: str, size: int) -> tuple[int, int]:
    """Return the sender's ``(major, minor)`` from a positional wire array.

    Args:
        meta: the decoded body: ``[major, minor, ...fields]``.
        what: what it is, for messages (``"task call"``).
        size: the number of elements this version needs (extra ones are ignored).

    Raises:
        SerializationError: no valid version, a major version this code does not read
            (with a hint to upgrade), or too few fields.
    """
    if type(meta) is not list or len(meta) < 2:
        raise SerializationError(f"malformed {what}: no schema version", hint=_UPGRADE_HINT)
    major, minor = meta[0], meta[1]
    if type(major) is not int or type(minor) is not int:
        raise SerializationError(f"malformed {what}: no schema version", hint=_UPGRADE_HINT)
    if major != SCHEMA_VERSION[0]:
        raise SerializationError(
            f"{what} uses schema {major}.{minor}; this aioflow reads schema "
            f"{SCHEMA_VERSION[0]}.x only",
            hint=(
                "Upgrade aioflow on this side to the sender's version."
                if major > SCHEMA_VERSION[0]
                else "Upgrade aioflow on the sender; this side no longer reads that schema."
            ),
        )
    if len(meta) < size:
        raise SerializationError(
            f"malformed {what}: {len(meta)} fields, schema {major}.{minor} has at least {size}",
            hint=_UPGRADE_HINT,
        )
    return major, minor


def expect(value: Any, kind: type[_T], name: str, what: str) -> _T:
    """Return ``value`` when it is exactly of type ``kind``, else raise SerializationError."""
    if type(value) is not kind:
        raise SerializationError(
            f"malformed {what}: {name} should be {kind.__name__}, got {type(value).__name__}",
            hint=_UPGRADE_HINT,
        )
    return value


def expect_optional(value: Any, kind: type[_T], name: str, what: str) -> _T | None:
    """Like :func:`expect`, but ``None`` is accepted."""
    return None if value is None else expect(value, kind, name, what)


# --- the message ------------------------------------------------------------------------------


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
        options: plain values: timeout, retries, queue, priority, handler name...
        trace: trace-context carrier (``traceparent``, ``tracestate``...).
        call_id: unique id of this call (one per attempt); results refer to it.
        workflow: the workflow's name, for logs and metrics.
        created_at: when the call was made (epoch seconds).
        iteration: 1 for a task's first execution, 2 after one ``next_iteration()``...

    Treat ``args``, ``options`` and ``trace`` as read-only.

    Raises:
        SerializationError: a field has the wrong type (also when decoding).
    """

    run_id: str
    task_name: str
    ref: TaskRef
    args: dict[str, Any] = field(default_factory=dict)
    attempt: int = 1
    options: dict[str, Any] = field(default_factory=dict)
    trace: dict[str, str] = field(default_factory=dict)
    call_id: str = field(default_factory=_new_call_id)
    workflow: str | None = None
    created_at: float = field(default_factory=time.time)
    iteration: int = 1

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
        if type(self.iteration) is not int or self.iteration < 1:
            raise _invalid("iteration", "an int >= 1", self.iteration)
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
) -> bytes:
    """Encode and sign a :class:`TaskCall`.

    Args:
        call: the call.
        keyring: signs with its current key.
        allow_pickle: carry arguments the codec does not support as signed cloudpickle
            (default ``True``); ``False`` refuses them. Options are never pickled.

    Returns:
        The signed ``CALL`` envelope.

    Raises:
        SerializationError: an argument or option cannot be encoded (the message names
            its path, e.g. ``args['conn']``), or the task code cannot be pickled.
        PayloadTooLargeError: the payload exceeds the keyring's size limit.
    """
    meta = [
        _MAJOR,
        _MINOR,
        call.call_id,
        call.run_id,
        call.task_name,
        ref_to_wire(call.ref),
        pack(call.args, allow_pickle=allow_pickle, root="args"),
        call.attempt,
        None,  # reserved: the deadline of schema 1.0
        call.options,
        call.trace,
        call.workflow,
        float(call.created_at),
        call.iteration,
    ]
    try:
        body = pack(meta, allow_pickle=False, root="call")
    except SerializationError:
        pack(call.options, allow_pickle=False, root="options")  # raises with the exact path
        raise
    return seal(body, keyring, PayloadKind.CALL)


def decode_call(
    data: bytes | bytearray | memoryview,
    keyring: Keyring,
    *,
    allow_pickle: bool = True,
    allow_pickled_code: bool = True,
) -> TaskCall:
    """Verify and decode a payload made by :func:`encode_call`.

    Args:
        data: the signed envelope.
        keyring: accepts its current and previous keys.
        allow_pickle: accept signed pickled argument values (default ``True``).
        allow_pickled_code: accept task code sent as signed pickled code (default
            ``True``). When ``False`` such a call still decodes, and
            ``call.ref.resolve()`` raises :class:`~aioflow.errors.TaskNotFoundError`.

    Returns:
        The call.

    Raises:
        PayloadTooLargeError: ``data`` exceeds the keyring's size limit.
        PayloadSignatureError: truncated, unsigned, tampered or unknown key.
        SerializationError: malformed call, newer incompatible schema (hint: upgrade),
            or arguments that cannot be decoded here (then ``run_id``, ``task_name``
            and ``attempt`` are set on the error).
    """
    verified = open_envelope(data, keyring, PayloadKind.CALL)
    meta = unpack(verified, allow_pickle=False, what=_WHAT)
    check_version(meta, _WHAT, _SIZE)
    (call_id, run_id, task_name, raw_ref, raw_args, attempt, _reserved, options, trace,
     workflow, created_at) = meta[2:_SIZE]  # fmt: skip
    iteration = meta[_SIZE] if len(meta) > _SIZE else 1  # schema 1.1
    ref = ref_from_verified_wire(raw_ref, allow_pickled_code=allow_pickled_code)
    expect(raw_args, bytes, "args", _WHAT)
    try:
        # A nested document of the verified body: it is covered by the same signature.
        args = unpack(
            VerifiedBody(memoryview(raw_args)), allow_pickle=allow_pickle, what="task arguments"
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
    # Decoding sets the slots directly (the frozen dataclass __init__ goes through
    # object.__setattr__ once per field, about twice as slow), then validates: malformed
    # values end in __post_init__.
    call: TaskCall = object.__new__(TaskCall)
    _set_run_id(call, run_id)
    _set_task_name(call, task_name)
    _set_ref(call, ref)
    _set_args(call, args)
    _set_attempt(call, attempt)
    _set_options(call, options)
    _set_trace(call, trace)
    _set_call_id(call, call_id)
    _set_workflow(call, workflow)
    _set_created_at(call, created_at)
    _set_iteration(call, iteration)
    call.__post_init__()
    return call


(
    _set_run_id, _set_task_name, _set_ref, _set_args, _set_attempt, _set_options, _set_trace,
    _set_call_id, _set_workflow, _set_created_at, _set_iteration,
) = (TaskCall.__dict__[f.name].__set__ for f in fields(TaskCall))  # fmt: skip
assert [f.name for f in fields(TaskCall)] == [
    "run_id", "task_name", "ref", "args", "attempt", "options", "trace", "call_id",
    "workflow", "created_at", "iteration",
]  # fmt: skip
