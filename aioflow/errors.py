"""The aioflow error hierarchy.

Every error aioflow raises is an :class:`AioflowError`. Each class has a stable
``code`` (for logs, metrics, CLI exit output and programmatic handling) and a
``hint`` that says what to do about it. Messages are built from arguments;
context attributes (``run_id``, ``task_name``, ``attempt``) are set where they
apply. Causes are chained with ``raise ... from exc`` so tracebacks survive.

Cancelled is not failed: a cancelled run raises :class:`WorkflowCancelledError`,
which is *not* a :class:`WorkflowFailedError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .runs import RunResult

__all__ = [
    "AioflowError",
    "ChannelError",
    "ChannelValidationError",
    "CheckpointError",
    "ConfigurationError",
    "CycleLimitExceededError",
    "GroupFailedError",
    "MaxStepsExceededError",
    "MissingDependencyError",
    "MissingUpstreamResultError",
    "PayloadSignatureError",
    "PayloadTooLargeError",
    "RunStateError",
    "SerializationError",
    "TaskCancelledError",
    "TaskNotFoundError",
    "TaskTimeoutError",
    "UnknownTaskError",
    "WorkflowCancelledError",
    "WorkflowDefinitionError",
    "WorkflowFailedError",
]


class AioflowError(Exception):
    """Root of every error aioflow raises.

    Attributes:
        code: stable machine-readable identifier (``"aioflow.definition"`` ...).
        hint: what the user should do about it.
        run_id, task_name, attempt: context, when the error concerns a run or task.
    """

    code: ClassVar[str] = "aioflow.error"
    default_hint: ClassVar[str] = "See the aioflow documentation for this error code."

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        run_id: str | None = None,
        task_name: str | None = None,
        attempt: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        self.run_id = run_id
        self.task_name = task_name
        self.attempt = attempt

    def __str__(self) -> str:
        return self.message

    def describe(self) -> str:
        """One human-readable block: ``[code] message`` then ``hint: ...``."""
        return f"[{self.code}] {self.message}\n  hint: {self.hint}"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep keyword-only context when errors cross process boundaries. The state is
        # applied after the error exists, so a run's error may refer to its result,
        # which refers back to the error.
        return (_rebuild_error, (type(self), self.message), self.__dict__.copy())


def _rebuild_error(cls: type[AioflowError], message: str) -> AioflowError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    return err


# --- definition and configuration -------------------------------------------------


class WorkflowDefinitionError(AioflowError):
    """Raised before anything runs when a workflow is not well formed.

    Duplicate or unknown task names, static cycles, parameters that nothing can
    fill, unknown handlers, misuse of the ``>>`` / ``|`` operators.
    """

    code = "aioflow.definition"
    default_hint = "Fix the workflow definition; nothing has run yet."


class UnknownTaskError(WorkflowDefinitionError):
    """A task or group name was referred to that the workflow does not contain."""

    code = "aioflow.unknown_task"
    default_hint = "Check the spelling, or add the task to the workflow with wf.add(task)."


class ConfigurationError(AioflowError):
    """An option, URL or environment setting is invalid or missing."""

    code = "aioflow.configuration"
    default_hint = "Check the arguments and environment variables named in the message."


class MissingDependencyError(AioflowError, ImportError):
    """An optional dependency (an ``aioflow[...]`` extra) is not installed."""

    code = "aioflow.missing_dependency"
    default_hint = 'Install the extra named in the message, e.g. pip install "aioflow[redis]".'

    def __init__(self, feature: str, extra: str, *, module: str | None = None) -> None:
        what = f" (module {module!r} is not importable)" if module else ""
        super().__init__(
            f"{feature} needs the optional dependency aioflow[{extra}]{what}",
            hint=f'pip install "aioflow[{extra}]"',
        )
        self.feature = feature
        self.extra = extra


# --- task execution ------------------------------------------------------------------


class TaskTimeoutError(AioflowError):
    """A task attempt ran longer than its ``timeout`` and was cancelled."""

    code = "aioflow.task_timeout"
    default_hint = "Raise the task's timeout=, or make the task faster; retries apply."

    def __init__(
        self,
        task_name: str,
        timeout: float,
        *,
        run_id: str | None = None,
        attempt: int | None = None,
    ) -> None:
        super().__init__(
            f"task {task_name!r} timed out after {timeout:g}s (attempt {attempt})",
            run_id=run_id,
            task_name=task_name,
            attempt=attempt,
        )
        self.timeout = timeout


class TaskCancelledError(AioflowError):
    """A task was cancelled (its run was cancelled or a sibling failed)."""

    code = "aioflow.task_cancelled"
    default_hint = "The task was cancelled by its run; see the run's status and reason."


class MissingUpstreamResultError(AioflowError):
    """A parameter was to be filled by an upstream task that produced no result.

    This happens when the upstream task failed inside a group whose policy tolerated
    the failure (``best_effort``, ``AtLeast``...), or was skipped.
    """

    code = "aioflow.missing_upstream_result"
    default_hint = (
        "Give the parameter a default, or read optional results with ctx.result(name, default)."
    )


# --- runs -------------------------------------------------------------------------------


class WorkflowFailedError(AioflowError):
    """A run failed.

    ``result`` is the partial :class:`~aioflow.RunResult`; ``__cause__`` is the
    failing task's own exception with its traceback.
    """

    code = "aioflow.workflow_failed"
    default_hint = "See the chained exception (__cause__) for the task's own error."

    def __init__(
        self,
        message: str,
        *,
        result: RunResult | None = None,
        hint: str | None = None,
        run_id: str | None = None,
        task_name: str | None = None,
        attempt: int | None = None,
    ) -> None:
        super().__init__(message, hint=hint, run_id=run_id, task_name=task_name, attempt=attempt)
        self.result = result


class GroupFailedError(WorkflowFailedError):
    """A parallel group's policy judged the group failed.

    ``outcomes`` maps each member's name to ``"succeeded"``, ``"failed"``,
    ``"cancelled"`` or ``"pending"``; ``errors`` maps failed members to their
    exceptions. ``__cause__`` is the first member failure.
    """

    code = "aioflow.group_failed"
    default_hint = (
        "Look at each member's outcome; use a tolerant policy "
        '("best_effort", AtLeast(n), Critical(...)) if partial success is acceptable.'
    )

    def __init__(
        self,
        group: str,
        policy: str,
        outcomes: Mapping[str, str],
        errors: Mapping[str, BaseException] | None = None,
        *,
        run_id: str | None = None,
    ) -> None:
        listing = ", ".join(f"{name}={outcome}" for name, outcome in outcomes.items())
        super().__init__(
            f"group {group!r} failed under policy {policy}: {listing}",
            run_id=run_id,
            task_name=group,
        )
        self.group = group
        self.policy = policy
        self.outcomes = dict(outcomes)
        self.errors = dict(errors or {})


class CycleLimitExceededError(WorkflowFailedError):
    """A task called ``ctx.next_iteration()`` more than its ``max_cycles`` allows.

    Raised inside the task by ``next_iteration()``; the run then fails with a
    ``CycleLimitExceededError`` of its own (a :class:`WorkflowFailedError` carrying
    ``.result``) whose ``__cause__`` is the one raised in the task.
    """

    code = "aioflow.cycle_limit"
    default_hint = "Raise the task's max_cycles=, or make the loop end sooner."

    def __init__(self, task_name: str, max_cycles: int, *, run_id: str | None = None) -> None:
        super().__init__(
            f"task {task_name!r} asked for iteration {max_cycles + 1} "
            f"but max_cycles is {max_cycles}",
            run_id=run_id,
            task_name=task_name,
        )
        self.max_cycles = max_cycles


class MaxStepsExceededError(WorkflowFailedError):
    """A run executed more task steps than its ``max_steps`` allows."""

    code = "aioflow.max_steps"
    default_hint = "Raise max_steps=, or check for a loop that never ends."

    def __init__(self, max_steps: int, *, run_id: str | None = None) -> None:
        super().__init__(
            f"run exceeded max_steps={max_steps}; it was stopped and counts as failed",
            run_id=run_id,
        )
        self.max_steps = max_steps


class WorkflowCancelledError(AioflowError):
    """A run was cancelled (``handle.cancel()`` or ``ctx.cancel_workflow()``).

    Not a failure: ``result`` is the partial :class:`~aioflow.RunResult` with status
    ``"cancelled"``; ``reason`` says why.
    """

    code = "aioflow.workflow_cancelled"
    default_hint = "The run was cancelled on purpose; see .reason and .result."

    def __init__(
        self,
        reason: str | None,
        *,
        result: RunResult | None = None,
        run_id: str | None = None,
        task_name: str | None = None,
    ) -> None:
        text = f"run {run_id} was cancelled" if run_id else "run was cancelled"
        if task_name:
            text += f" by task {task_name!r}"
        if reason:
            text += f": {reason}"
        super().__init__(text, run_id=run_id, task_name=task_name)
        self.reason = reason
        self.result = result


class RunStateError(AioflowError):
    """A run handle was used in a way its state does not allow."""

    code = "aioflow.run_state"
    default_hint = "Use the handle inside its `async with aioflow.start(...)` block."


# --- channels ----------------------------------------------------------------------------


class ChannelError(AioflowError):
    """A channel operation failed (wrong value type for incr/append, closed channel...)."""

    code = "aioflow.channel"
    default_hint = "Check the key and the type of the value stored under it."


class ChannelValidationError(ChannelError, TypeError):
    """A value read from or written to a typed channel does not match its schema."""

    code = "aioflow.channel_validation"
    default_hint = "Write values that match the channel's TypedDict schema."


# --- payloads ------------------------------------------------------------------------------


class SerializationError(AioflowError):
    """A value cannot be encoded, or bytes cannot be decoded into a value."""

    code = "aioflow.serialization"
    default_hint = (
        "Return msgpack-friendly data (dicts, lists, str, numbers, dataclasses...), "
        "or allow signed pickled values for this payload."
    )


class PayloadSignatureError(SerializationError):
    """A payload's HMAC signature is missing, wrong, or made with an unknown key.

    Raised before a single byte of the payload is unpickled.
    """

    code = "aioflow.payload_signature"
    default_hint = (
        "Give every process the same AIOFLOW_SECRET_KEY (keep old keys in "
        "AIOFLOW_SECRET_KEYS_OLD while rotating); never accept payloads from untrusted writers."
    )


class PayloadTooLargeError(SerializationError):
    """A payload is larger than the configured size limit. It is refused, never truncated."""

    code = "aioflow.payload_too_large"
    default_hint = (
        "Pass a reference (a path, a URL, a key) instead of the data, or raise the "
        "payload size limit."
    )


class TaskNotFoundError(AioflowError):
    """A task reference cannot be resolved on this side (module not importable)."""

    code = "aioflow.task_not_found"
    default_hint = (
        "Install the module that defines the task on the worker (same version), "
        "or allow pickled code for this task."
    )


class CheckpointError(AioflowError):
    """A checkpoint cannot be written, read, verified or resumed."""

    code = "aioflow.checkpoint"
    default_hint = (
        "Check the checkpoint path and that it was written by this workflow with the same key."
    )


# --- appended by the serialization package ------------------------------------------------


class RemoteTaskError(AioflowError):
    """A task failed in another process (a worker or a container).

    Raised in the receiving process when the task's own exception cannot be rebuilt
    there (its class is not importable, it could not be pickled, or pickled values
    are not accepted). When it can be rebuilt, the rebuilt exception is raised and
    this error is its ``__cause__``, carrying the remote traceback text.

    Attributes:
        remote_type: ``module.QualName`` of the original exception.
        remote_message: its message.
        remote_code: its ``code`` when it was an :class:`AioflowError`, else ``None``.
        remote_traceback: the formatted traceback from the remote process.
    """

    code = "aioflow.remote_task"
    default_hint = "The task failed in another process; read the remote traceback."

    def __init__(
        self,
        remote_type: str,
        remote_message: str,
        *,
        remote_traceback: str = "",
        remote_code: str | None = None,
        hint: str | None = None,
        run_id: str | None = None,
        task_name: str | None = None,
        attempt: int | None = None,
    ) -> None:
        super().__init__(
            f"{remote_type}: {remote_message}" if remote_message else remote_type,
            hint=hint,
            run_id=run_id,
            task_name=task_name,
            attempt=attempt,
        )
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_code = remote_code
        self.remote_traceback = remote_traceback

    def __str__(self) -> str:
        if not self.remote_traceback:
            return self.message
        return f"{self.message}\n\nRemote traceback:\n{self.remote_traceback.rstrip()}"


__all__ += ["RemoteTaskError"]


# --- distributed execution ---------------------------------------------------------


class BackendUnavailableError(AioflowError):
    """A backend's server (Redis, the Docker Engine) cannot be reached or refused us."""

    code = "aioflow.backend_unavailable"
    default_hint = "Check that the server runs and that its URL (or DOCKER_HOST) is right."


class QueueFullError(AioflowError):
    """A queue holds ``max_queue_length`` entries and the run asked not to wait for room."""

    code = "aioflow.queue_full"
    default_hint = (
        "Start more workers, raise max_queue_length, or let the run wait for room "
        '(queue_full="wait", the default).'
    )


class DeadLetteredError(AioflowError):
    """A task's queue entry was moved to the dead-letter stream.

    It was delivered more than ``max_deliveries`` times (its workers died or were
    killed while running it), or it could not be verified or decoded (tampered,
    garbage, signed with another key). ``aioflow dlq list`` shows it with its last
    error; ``aioflow dlq retry`` puts it back on its queue.
    """

    code = "aioflow.dead_lettered"
    default_hint = "Inspect it with `aioflow dlq list --backend URL`; see docs/distributed.md."


__all__ += ["BackendUnavailableError", "DeadLetteredError", "QueueFullError"]


# --- containers ----------------------------------------------------------------------


class ContainerError(AioflowError):
    """A task's container failed: it exited before sending its result, or the Docker
    Engine refused an operation. The message ends with the tail of its stderr.

    Attributes:
        exit_code: the container's exit status, when it exited.
        stderr: the last lines it wrote on stderr.
    """

    code = "aioflow.container"
    default_hint = (
        "Read the container's stderr above; run the image by hand with "
        "`docker run -i IMAGE python -m aioflow.container` to reproduce. See docs/containers.md."
    )

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        exit_code: int | None = None,
        stderr: str = "",
        run_id: str | None = None,
        task_name: str | None = None,
        attempt: int | None = None,
    ) -> None:
        super().__init__(message, hint=hint, run_id=run_id, task_name=task_name, attempt=attempt)
        self.exit_code = exit_code
        self.stderr = stderr


class ContainerMemoryError(ContainerError):
    """A task's container was killed for memory (exit status 137): it hit its limit."""

    code = "aioflow.container_memory"
    default_hint = "Raise the limit (DockerHandler(memory='1g')) or make the task use less memory."


class ImageNotFoundError(ContainerError):
    """The image a ``DockerHandler`` names is not on its Docker Engine."""

    code = "aioflow.image_not_found"
    default_hint = (
        "Build it (docker build -t IMAGE . with the Dockerfile of docs/containers.md), "
        "or pack this environment with `aioflow containers build-image IMAGE "
        "--module yourpackage`; check DOCKER_HOST names the engine that has it."
    )


__all__ += ["ContainerError", "ContainerMemoryError", "ImageNotFoundError"]
