"""Every error has a stable code and a hint, keeps its context, and pickles."""

from __future__ import annotations

import inspect
import pickle

import pytest

import aioflow
from aioflow import errors


def error_classes() -> list[type[errors.AioflowError]]:
    return [
        obj
        for _, obj in inspect.getmembers(errors, inspect.isclass)
        if issubclass(obj, errors.AioflowError)
    ]


def test_every_error_has_a_unique_code_a_hint_and_a_docstring() -> None:
    classes = error_classes()
    assert len(classes) >= 15
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes)), "codes must be unique"
    for cls in classes:
        assert cls.code.startswith("aioflow."), cls
        assert (cls.default_hint and cls.default_hint.endswith(".")) or ")" in cls.default_hint
        assert cls.__doc__ and cls.__doc__.strip(), cls
        assert cls.__name__ in errors.__all__, cls


def test_every_error_is_exported_from_the_package() -> None:
    for cls in error_classes():
        assert getattr(aioflow, cls.__name__) is cls


def test_context_attributes_and_describe() -> None:
    err = errors.TaskTimeoutError("fetch", 2.5, run_id="r", attempt=2)
    assert (err.run_id, err.task_name, err.attempt, err.timeout) == ("r", "fetch", 2, 2.5)
    text = err.describe()
    assert text.startswith("[aioflow.task_timeout]")
    assert "hint:" in text


@pytest.mark.parametrize(
    "err",
    [
        errors.WorkflowDefinitionError("bad", hint="fix it", task_name="t"),
        errors.TaskTimeoutError("t", 1.0, run_id="r", attempt=1),
        errors.GroupFailedError("g", "strict", {"a": "failed"}, {"a": ValueError("x")}),
        errors.MissingDependencyError("Redis backend", "redis", module="redis"),
        errors.CycleLimitExceededError("t", 3, run_id="r"),
        errors.WorkflowCancelledError("why", run_id="r"),
    ],
)
def test_errors_survive_pickling(err: errors.AioflowError) -> None:
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err)
    assert str(back) == str(err)
    assert back.hint == err.hint
    assert back.__dict__.keys() == err.__dict__.keys()


def test_missing_dependency_names_the_install_command() -> None:
    err = errors.MissingDependencyError("Redis backend", "redis")
    assert err.hint == 'pip install "aioflow[redis]"'
    assert isinstance(err, ImportError)


def test_cancelled_is_not_failed() -> None:
    assert not issubclass(errors.WorkflowCancelledError, errors.WorkflowFailedError)
    for cls in (
        errors.GroupFailedError,
        errors.MaxStepsExceededError,
        errors.CycleLimitExceededError,
    ):
        assert issubclass(cls, errors.WorkflowFailedError)
