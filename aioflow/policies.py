"""Group policies (how a parallel group judges its members) and retry policies."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from .errors import ConfigurationError, CycleLimitExceededError, MissingUpstreamResultError

__all__ = [
    "AtLeast",
    "BestEffort",
    "Critical",
    "GroupOutcomes",
    "GroupPolicy",
    "RetryPolicy",
    "Strict",
    "resolve_group_policy",
    "resolve_retry_policy",
]

MemberOutcome = Literal["succeeded", "failed", "cancelled", "pending"]


@dataclass(frozen=True, slots=True)
class GroupOutcomes:
    """What a group policy sees: the outcome of every member so far."""

    outcomes: Mapping[str, MemberOutcome]

    @property
    def succeeded(self) -> list[str]:
        return [name for name, o in self.outcomes.items() if o == "succeeded"]

    @property
    def failed(self) -> list[str]:
        return [name for name, o in self.outcomes.items() if o in ("failed", "cancelled")]

    @property
    def pending(self) -> list[str]:
        return [name for name, o in self.outcomes.items() if o == "pending"]

    @property
    def total(self) -> int:
        return len(self.outcomes)


class GroupPolicy(ABC):
    """Decides whether a parallel group succeeded.

    Subclass it for a custom policy: implement :meth:`evaluate`; override
    :meth:`fail_fast` to fail the group (and cancel the members still running) before
    every member has finished. Policies must be pure functions of the outcomes.

    A group without members (``parallel(*[])``) is judged at once, by :meth:`evaluate`
    over no outcomes, when its predecessors are done: ``"strict"`` and
    ``"best_effort"`` succeed (its result is ``{}``); ``AtLeast(n)`` with ``n > 0`` is
    refused by :meth:`validate` before anything runs.
    """

    @abstractmethod
    def evaluate(self, outcomes: GroupOutcomes) -> bool:
        """Called once every member has finished: True if the group succeeded."""

    def fail_fast(self, outcomes: GroupOutcomes) -> bool:
        """Called after each member failure: True fails the group now.

        The default never fails early; the group waits for all members.
        """
        return False

    def validate(self, members: Iterable[str]) -> None:  # noqa: B027 - optional hook
        """Check the policy against the group's member names; raise ConfigurationError."""

    def __repr__(self) -> str:
        return type(self).__name__ + "()"


class Strict(GroupPolicy):
    """Every member must succeed; the first failure fails the group and cancels siblings."""

    def evaluate(self, outcomes: GroupOutcomes) -> bool:
        return not outcomes.failed

    def fail_fast(self, outcomes: GroupOutcomes) -> bool:
        return bool(outcomes.failed)

    def __repr__(self) -> str:
        return '"strict"'


class BestEffort(GroupPolicy):
    """The group always succeeds; successors run with the members that succeeded."""

    def evaluate(self, outcomes: GroupOutcomes) -> bool:
        return True

    def __repr__(self) -> str:
        return '"best_effort"'


@dataclass(frozen=True, slots=True, repr=False)
class AtLeast(GroupPolicy):
    """At least ``n`` members must succeed.

    Fails early once so many members failed that ``n`` successes are impossible.
    """

    n: int

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ConfigurationError(f"AtLeast(n) needs n >= 0, got {self.n}")

    def evaluate(self, outcomes: GroupOutcomes) -> bool:
        return len(outcomes.succeeded) >= self.n

    def fail_fast(self, outcomes: GroupOutcomes) -> bool:
        return len(outcomes.succeeded) + len(outcomes.pending) < self.n

    def validate(self, members: Iterable[str]) -> None:
        count = len(list(members))
        if self.n > count:
            raise ConfigurationError(
                f"AtLeast({self.n}) can never hold for a group of {count} members",
                hint="Lower n or add members to the group.",
            )

    def __repr__(self) -> str:
        return f"AtLeast({self.n})"


@dataclass(frozen=True, slots=True, repr=False, init=False)
class Critical(GroupPolicy):
    """The named members must succeed; failures of the others are tolerated.

    A critical failure fails the group at once and cancels the members still running.
    """

    names: frozenset[str] = field(default_factory=frozenset)

    def __init__(self, names: Iterable[str] | str, *more: str) -> None:
        collected = [names] if isinstance(names, str) else list(names)
        collected.extend(more)
        object.__setattr__(self, "names", frozenset(collected))

    def evaluate(self, outcomes: GroupOutcomes) -> bool:
        return not (self.names & set(outcomes.failed))

    def fail_fast(self, outcomes: GroupOutcomes) -> bool:
        return bool(self.names & set(outcomes.failed))

    def validate(self, members: Iterable[str]) -> None:
        unknown = self.names - set(members)
        if unknown:
            raise ConfigurationError(
                f"Critical names members the group does not have: {sorted(unknown)}",
                hint="Name the critical members by their task names.",
            )

    def __repr__(self) -> str:
        return f"Critical({sorted(self.names)})"


PolicyLike = GroupPolicy | Literal["strict", "best_effort"] | str


def resolve_group_policy(policy: PolicyLike | None) -> GroupPolicy:
    """Turn ``"strict"``, ``"best_effort"`` or a :class:`GroupPolicy` into a policy."""
    if policy is None or policy == "strict":
        return Strict()
    if policy == "best_effort":
        return BestEffort()
    if isinstance(policy, GroupPolicy):
        return policy
    raise ConfigurationError(
        f"unknown group policy {policy!r}",
        hint='Use "strict", "best_effort", AtLeast(n), Critical(names) or a GroupPolicy.',
    )


# --- retries ----------------------------------------------------------------------------

# Errors that describe the workflow's control flow or definition: retrying cannot help.
_NEVER_RETRY: tuple[type[BaseException], ...] = (
    CycleLimitExceededError,
    MissingUpstreamResultError,
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a failed task is tried again.

    Args:
        retries: how many times a failed attempt is retried (``retries=3`` means up
            to 4 attempts).
        backoff: delay before the first retry, in seconds.
        factor: each further retry waits ``factor`` times longer.
        max_backoff: upper bound of a single delay.
        jitter: fraction of each delay that is randomised (0 = none, 1 = full jitter),
            so that many failing tasks do not retry in lockstep.
        retry_on: exception types worth retrying (default: any ``Exception``).
    """

    retries: int = 0
    backoff: float = 0.1
    factor: float = 2.0
    max_backoff: float = 30.0
    jitter: float = 0.5
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ConfigurationError(f"retries must be >= 0, got {self.retries}")
        if self.backoff < 0 or self.max_backoff < 0 or self.factor < 1:
            raise ConfigurationError(
                "backoff and max_backoff must be >= 0 and factor >= 1",
                hint="For example RetryPolicy(retries=3, backoff=0.5, factor=2.0).",
            )
        if not 0.0 <= self.jitter <= 1.0:
            raise ConfigurationError(f"jitter must be within [0, 1], got {self.jitter}")

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    def should_retry(self, attempt: int, exc: BaseException) -> bool:
        """True if attempt number ``attempt`` (1-based), which raised ``exc``, is retried."""
        if attempt > self.retries or isinstance(exc, _NEVER_RETRY):
            return False
        return isinstance(exc, self.retry_on)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) before the next one."""
        base = min(self.max_backoff, self.backoff * self.factor ** (attempt - 1))
        if not self.jitter:
            return base
        r = (rng or random).random()
        return base * (1.0 - self.jitter) + base * self.jitter * r


def resolve_retry_policy(retries: int | RetryPolicy | None) -> RetryPolicy:
    """Turn ``retries=N`` or a :class:`RetryPolicy` into a policy."""
    if retries is None:
        return RetryPolicy()
    if isinstance(retries, RetryPolicy):
        return retries
    if isinstance(retries, bool) or not isinstance(retries, int):
        raise ConfigurationError(
            f"retries must be an int or a RetryPolicy, got {retries!r}",
            hint="For example @task(retries=3) or @task(retries=RetryPolicy(retries=3)).",
        )
    return RetryPolicy(retries=retries)
