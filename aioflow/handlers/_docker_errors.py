"""Turning what the Docker Engine (and aiohttp under aiodocker) raises into aioflow errors."""

from __future__ import annotations

from ..errors import (
    AioflowError,
    BackendUnavailableError,
    ContainerError,
    ContainerMemoryError,
    ImageNotFoundError,
)

__all__ = ["UNREACHABLE_HINT", "engine_error", "memory_error"]

UNREACHABLE_HINT = (
    "Start the Docker Engine, or point DOCKER_HOST (or DockerHandler(docker_host=...)) at "
    "one that runs: unix:///var/run/docker.sock, tcp://host:2376 ... "
    "`docker version` must answer with the same DOCKER_HOST."
)


def _unreachable(exc: BaseException) -> bool:
    import aiohttp

    if isinstance(exc, aiohttp.ClientConnectionError | ConnectionError | FileNotFoundError):
        return True
    return isinstance(exc, OSError) and not isinstance(exc, TimeoutError)


def engine_error(exc: BaseException, what: str, *, image: str | None) -> BaseException:
    """The aioflow error for ``exc`` raised by an Engine API call about ``what``.

    Cancellation and aioflow's own errors are returned unchanged.
    """
    from aiodocker.exceptions import DockerError

    if isinstance(exc, AioflowError) or not isinstance(exc, Exception):
        return exc
    if isinstance(exc, TimeoutError):
        return BackendUnavailableError(
            f"the Docker Engine did not answer in time about {what}", hint=UNREACHABLE_HINT
        )
    if isinstance(exc, DockerError):
        if exc.status == 404 and image is not None and "image" in str(exc.message).lower():
            return ImageNotFoundError(
                f"image {image!r} is not on the Docker Engine ({exc.message}); "
                "aioflow never pulls it by itself"
            )
        if exc.status >= 500 and "connect" in str(exc.message).lower():
            return BackendUnavailableError(
                f"the Docker Engine cannot be reached: {exc.message}", hint=UNREACHABLE_HINT
            )
        return ContainerError(f"the Docker Engine refused {what}: [{exc.status}] {exc.message}")
    if _unreachable(exc):
        return BackendUnavailableError(
            f"the Docker Engine cannot be reached ({type(exc).__name__}: {exc})",
            hint=UNREACHABLE_HINT,
        )
    return ContainerError(f"{what} failed: {type(exc).__name__}: {exc}")


def memory_error(
    what: str, exit_code: object, memory: str | None, *, oom: bool, stderr: str
) -> ContainerMemoryError:
    """Exit status 137: killed for memory (``oom``: the engine says so)."""
    limit = f"its memory limit of {memory}" if memory else "the memory available to it"
    cause = (
        f"was killed for memory: it went over {limit} (memory={memory!r})"
        if oom
        else f"was killed (SIGKILL), most likely for memory: it may have gone over {limit}"
    )
    message = f"{what} {cause}, exit status {exit_code}"
    if stderr:
        message += f"; the end of its stderr:\n{stderr}"
    return ContainerMemoryError(
        message, exit_code=exit_code if isinstance(exit_code, int) else None, stderr=stderr
    )
