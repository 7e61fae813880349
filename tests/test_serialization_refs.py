"""Task references: by import path when possible, signed pickled code otherwise."""

from __future__ import annotations

import functools
from typing import Any

import pytest
import serialization_helpers as h

from aioflow.errors import SerializationError, TaskNotFoundError
from aioflow.serialization import TaskCall, TaskRef, decode_call, encode_call, refs

KR = h.keyring()


def send(ref: TaskRef, **decode: Any) -> TaskRef:
    call = TaskCall(run_id="run-1", task_name="t", ref=ref)
    return decode_call(encode_call(call, KR), KR, **decode).ref


def test_module_level_function_travels_by_name() -> None:
    ref = TaskRef.from_callable(h.module_task)
    assert not ref.pickled and ref.path == "serialization_helpers:module_task"
    received = send(ref)
    assert received == ref and received.resolve() is h.module_task


def test_task_wrapper_counts_as_the_same_object() -> None:
    # Like @task: the module attribute is a wrapper whose .fn is the function.
    ref = TaskRef.from_callable(h._original_wrapped)
    assert not ref.pickled and ref.path == "serialization_helpers:wrapped_task"
    resolved = send(ref).resolve()
    assert resolved is h.wrapped_task and getattr(resolved, "fn", None) is h._original_wrapped


def make_closure(n: int) -> Any:
    def add(x: int) -> int:
        return x + n

    return add


@pytest.mark.parametrize(
    "func",
    [
        lambda x: x * 3,
        make_closure(5),
        h._original_shadowed,  # its module:qualname now names another function
        functools.partial(h.module_task, y=100),  # no __qualname__
    ],
    ids=["lambda", "closure", "shadowed", "partial"],
)
def test_non_importable_code_travels_as_signed_pickle(func: Any) -> None:
    ref = TaskRef.from_callable(func)
    assert ref.pickled
    resolved = send(ref).resolve()
    assert resolved(2) == func(2)


def test_function_of_main_is_pickled() -> None:
    def script_function(x: int) -> int:
        return x - 1

    script_function.__module__ = "__main__"
    script_function.__qualname__ = "script_function"
    assert TaskRef.from_callable(script_function).pickled


def test_receiver_that_refuses_pickled_code_still_decodes_the_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(data: Any) -> Any:
        raise AssertionError("unpickled although pickled code is not allowed")

    monkeypatch.setattr(refs, "unpickle_verified", refuse)
    received = send(TaskRef.from_callable(lambda: 1), allow_pickled_code=False)
    assert received.pickled
    with pytest.raises(TaskNotFoundError, match="pickled code") as info:
        received.resolve()
    assert "module level" in info.value.hint


def test_pickled_code_that_cannot_load_is_a_task_not_found_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def missing(data: Any) -> Any:
        raise ModuleNotFoundError("No module named 'pandas'")

    monkeypatch.setattr(refs, "unpickle_verified", missing)
    received = send(TaskRef.from_callable(make_closure(1)))
    with pytest.raises(TaskNotFoundError, match="pandas") as info:
        received.resolve()
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    assert "Install" in info.value.hint


def test_module_missing_on_the_worker_hints_to_install_it() -> None:
    received = send(TaskRef("company_pipelines.tasks:extract"))
    with pytest.raises(TaskNotFoundError) as info:
        received.resolve()
    assert "Install the module 'company_pipelines.tasks' on the worker" in info.value.hint
    assert "pickled code" in info.value.hint
    assert isinstance(info.value.__cause__, Exception)


def test_missing_attribute_is_a_task_not_found_error() -> None:
    with pytest.raises(TaskNotFoundError, match="no attribute"):
        TaskRef("serialization_helpers:no_such_task").resolve()


@pytest.mark.parametrize("path", ["no_colon", "a:b:c", "mod:<lambda>", "1mod:f", ":f", ""])
def test_malformed_path_is_refused(path: str) -> None:
    with pytest.raises(TaskNotFoundError, match="malformed"):
        TaskRef(path)


def test_equality_and_hash() -> None:
    assert TaskRef("a.b:c") == TaskRef("a.b:c") and hash(TaskRef("a.b:c")) == hash(TaskRef("a.b:c"))
    assert TaskRef("a.b:c") != TaskRef("a.b:d")
    first, second = (lambda: 1), (lambda: 1)
    assert TaskRef.from_callable(first) == TaskRef.from_callable(first)
    assert TaskRef.from_callable(first) != TaskRef.from_callable(second)
    assert "pickled" in repr(TaskRef.from_callable(first))


def test_non_callable_is_refused() -> None:
    with pytest.raises(SerializationError, match="callable"):
        TaskRef.from_callable(42)  # type: ignore[arg-type]
