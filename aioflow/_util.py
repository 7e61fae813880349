"""Small internal helpers shared across modules."""

from __future__ import annotations

from abc import ABCMeta
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["NoPublicConstructor"]


class NoPublicConstructor(ABCMeta):
    """Metaclass for classes the user must not construct (like trio's).

    ``Cls(...)`` raises TypeError; the library builds instances with ``Cls._create(...)``.
    """

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"{cls.__module__}.{cls.__qualname__} has no public constructor; "
            "aioflow creates it for you"
        )

    def _create(cls: type[T], *args: Any, **kwargs: Any) -> T:
        instance: T = super().__call__(*args, **kwargs)  # type: ignore[misc]
        return instance
