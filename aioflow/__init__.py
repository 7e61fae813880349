"""aioflow: an asyncio-native workflow runtime.

Public names only; see the documentation for each.
"""

from typing import TYPE_CHECKING, Any

from . import events as events
from .backends import Backend as Backend
from .backends import MemoryBackend as MemoryBackend
from .backends import open_backend as open_backend
from .channels import Channel as Channel
from .channels import MemoryChannel as MemoryChannel
from .channels import TypedChannel as TypedChannel
from .context import TaskContext as TaskContext
from .context import current_context as current_context
from .errors import AioflowError as AioflowError
from .errors import BackendUnavailableError as BackendUnavailableError
from .errors import ChannelError as ChannelError
from .errors import ChannelValidationError as ChannelValidationError
from .errors import CheckpointError as CheckpointError
from .errors import ConfigurationError as ConfigurationError
from .errors import ContainerError as ContainerError
from .errors import ContainerMemoryError as ContainerMemoryError
from .errors import CycleLimitExceededError as CycleLimitExceededError
from .errors import DeadLetteredError as DeadLetteredError
from .errors import GroupFailedError as GroupFailedError
from .errors import ImageNotFoundError as ImageNotFoundError
from .errors import MaxStepsExceededError as MaxStepsExceededError
from .errors import MissingDependencyError as MissingDependencyError
from .errors import MissingUpstreamResultError as MissingUpstreamResultError
from .errors import PayloadSignatureError as PayloadSignatureError
from .errors import PayloadTooLargeError as PayloadTooLargeError
from .errors import QueueFullError as QueueFullError
from .errors import RemoteTaskError as RemoteTaskError
from .errors import RunStateError as RunStateError
from .errors import SerializationError as SerializationError
from .errors import TaskCancelledError as TaskCancelledError
from .errors import TaskNotFoundError as TaskNotFoundError
from .errors import TaskTimeoutError as TaskTimeoutError
from .errors import UnknownTaskError as UnknownTaskError
from .errors import WorkflowCancelledError as WorkflowCancelledError
from .errors import WorkflowDefinitionError as WorkflowDefinitionError
from .errors import WorkflowFailedError as WorkflowFailedError
from .graph import ParallelGroup as ParallelGroup
from .graph import chain as chain
from .graph import parallel as parallel
from .handlers import Handler as Handler
from .handlers import InlineHandler as InlineHandler
from .instruments import Instrument as Instrument
from .observability.logging import configure_logging as configure_logging
from .policies import AtLeast as AtLeast
from .policies import BestEffort as BestEffort
from .policies import Critical as Critical
from .policies import GroupOutcomes as GroupOutcomes
from .policies import GroupPolicy as GroupPolicy
from .policies import RetryPolicy as RetryPolicy
from .policies import Strict as Strict
from .results import RunResult as RunResult
from .results import RunStatistics as RunStatistics
from .results import RunStatus as RunStatus
from .results import TaskRecord as TaskRecord
from .results import TaskStatus as TaskStatus
from .runs import RunHandle as RunHandle
from .runs import RunOptions as RunOptions
from .runs import resume as resume
from .runs import run as run
from .runs import run_sync as run_sync
from .runs import start as start
from .task import Task as Task
from .task import TaskOptions as TaskOptions
from .task import task as task
from .worker import Worker as Worker
from .workflow import Workflow as Workflow
from .workflow import workflow as workflow

__version__ = "0.1.0.dev0"

if TYPE_CHECKING:
    from .backends.redis import RedisBackend as RedisBackend
    from .handlers.docker import DockerHandler as DockerHandler

__all__ = [
    "AioflowError",
    "BackendUnavailableError",
    "AtLeast",
    "Backend",
    "BestEffort",
    "Channel",
    "ChannelError",
    "ChannelValidationError",
    "CheckpointError",
    "ConfigurationError",
    "ContainerError",
    "ContainerMemoryError",
    "Critical",
    "DockerHandler",
    "CycleLimitExceededError",
    "DeadLetteredError",
    "GroupFailedError",
    "ImageNotFoundError",
    "GroupOutcomes",
    "GroupPolicy",
    "Handler",
    "InlineHandler",
    "Instrument",
    "MaxStepsExceededError",
    "MemoryBackend",
    "MemoryChannel",
    "MissingDependencyError",
    "MissingUpstreamResultError",
    "ParallelGroup",
    "PayloadSignatureError",
    "PayloadTooLargeError",
    "QueueFullError",
    "RedisBackend",
    "RemoteTaskError",
    "RetryPolicy",
    "RunHandle",
    "RunOptions",
    "RunResult",
    "RunStateError",
    "RunStatistics",
    "RunStatus",
    "SerializationError",
    "Strict",
    "Task",
    "TaskCancelledError",
    "TaskContext",
    "TaskNotFoundError",
    "TaskOptions",
    "TaskRecord",
    "TaskStatus",
    "TaskTimeoutError",
    "TypedChannel",
    "UnknownTaskError",
    "Worker",
    "Workflow",
    "WorkflowCancelledError",
    "WorkflowDefinitionError",
    "WorkflowFailedError",
    "chain",
    "configure_logging",
    "current_context",
    "events",
    "open_backend",
    "parallel",
    "resume",
    "run",
    "run_sync",
    "start",
    "task",
    "workflow",
]


def __getattr__(name: str) -> Any:
    # Imported on first use: importing aioflow imports neither redis nor aiodocker.
    if name == "RedisBackend":
        from .backends.redis import RedisBackend

        return RedisBackend
    if name == "DockerHandler":
        from .handlers.docker import DockerHandler

        return DockerHandler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
