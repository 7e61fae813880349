"""The handler's side of ``ctx.channel`` / ``ctx.result`` / ``ctx.inputs`` in a container.

A request is verified with the call's own key and decoded (pickled values only
with ``allow_pickle``), performed on the handler-side context, and answered.
Only the operations of :data:`~._docker_wire.OPS` exist; an error is sent back
as ``[type, message, hint]`` and raised again in the container.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import AioflowError, ContainerError, SerializationError, UnknownTaskError
from ._docker_wire import FrameKind, decode_request, encode_answer

if TYPE_CHECKING:
    from ..context import TaskContext
    from ..serialization import Keyring
    from ._docker_box import Box

__all__ = ["serve_request"]

_MISSING: Any = object()


def _key(args: list[Any], index: int = 0) -> str:
    if len(args) <= index or type(args[index]) is not str:
        raise SerializationError("malformed request from a container: the key is not a str")
    value: str = args[index]
    return value


async def _perform(op: str, args: list[Any], ctx: TaskContext) -> Any:
    channel = ctx.channel
    if op == "get":
        value = await channel.get(_key(args), _MISSING)
        return [False, None] if value is _MISSING else [True, value]
    if op == "set":
        ttl = args[2] if len(args) > 2 else None
        if ttl is not None and not isinstance(ttl, int | float):
            raise SerializationError("malformed request from a container: ttl")
        await channel.set(_key(args), args[1] if len(args) > 1 else None, ttl=ttl)
        return None
    if op == "delete":
        return await channel.delete(_key(args))
    if op == "incr":
        amount = args[1] if len(args) > 1 else 1
        if type(amount) is not int:
            raise SerializationError("malformed request from a container: amount")
        return await channel.incr(_key(args), amount)
    if op == "append":
        return await channel.append(_key(args), args[1] if len(args) > 1 else None)
    if op == "keys":
        return await channel.keys()
    if op == "result":
        try:
            value = ctx.result(_key(args), _MISSING)
        except UnknownTaskError:
            return ["unknown", None]
        return ["pending", None] if value is _MISSING else ["done", value]
    if op == "result_names":
        return list(ctx._run.results)
    if op == "inputs":
        return dict(ctx.inputs)
    raise SerializationError(f"operation {op!r} is not served")  # pragma: no cover - OPS


async def serve_request(
    body: bytes, ctx: TaskContext, keyring: Keyring, box: Box, *, allow_pickle: bool
) -> None:
    """Answer one REQUEST frame of ``box``'s task.

    Raises:
        ContainerError: the request is not signed with the call's key, or malformed
            (the container is not speaking aioflow's protocol: the call fails).
    """
    try:
        request_id, op, args = decode_request(body, keyring, allow_pickle=allow_pickle)
    except AioflowError as exc:
        raise ContainerError(
            f"the container of task {ctx.task_name!r} sent a request that is not valid: {exc}",
            hint="Run the same aioflow version in the image as outside it.",
        ) from exc
    try:
        answer = encode_answer(keyring, request_id, True, await _perform(op, args, ctx))
    except Exception as exc:
        info = [type(exc).__name__, str(exc), exc.hint if isinstance(exc, AioflowError) else None]
        answer = encode_answer(keyring, request_id, False, info)
    await box.send(FrameKind.ANSWER, answer)
