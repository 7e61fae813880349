"""Tasks the container tests run in containers: this module is copied into the test image."""

from __future__ import annotations

import os
import socket
import time

import anyio

from aioflow import TaskContext, task


@task(handler="box")
def add(x: int, y: int) -> int:
    print(f"adding {x} and {y}")  # goes to the run's log
    return x + y


@task(handler="box")
async def noop() -> None:
    return None


@task(handler="box")
async def where() -> str:
    return socket.gethostname()


@task(handler="box")
async def where_after(seconds: float = 0.1) -> str:
    """The container's hostname, after a pause (calls slow enough for a successor)."""
    await anyio.sleep(seconds)
    return socket.gethostname()


@task(handler="box")
async def boom(ctx: TaskContext) -> None:
    raise ValueError(f"boom in the box (attempt {ctx.attempt})")


@task(handler="box")
def crash() -> None:
    os._exit(7)


@task(handler="box")
async def sleeper(seconds: float = 60.0) -> str:
    await anyio.sleep(seconds)
    return "woke up"


@task(handler="box")
def hog() -> int:
    chunks = []
    for _ in range(64):  # 640 MB, far over the test's 64m limit
        chunks.append(bytearray(10 * 1024 * 1024))
        time.sleep(0.001)
    return len(chunks)


@task(handler="box")
async def inspect_box() -> dict[str, object]:
    """What the task sees of its container's hardening."""
    with open("/proc/self/status") as fh:
        status = dict(line.split(":\t", 1) for line in fh.read().splitlines() if ":\t" in line)
    try:
        open("/etc/written", "w").close()
        root_writable = True
    except OSError:
        root_writable = False
    with open("/tmp/scratch", "w") as fh:
        fh.write("tmp is writable")
    return {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "cap_eff": status.get("CapEff", "").strip(),
        "no_new_privs": status.get("NoNewPrivs", "").strip(),
        "root_writable": root_writable,
        "interfaces": sorted(os.listdir("/sys/class/net")),
        "env": sorted(os.environ),
        "mode": os.environ.get("MODE"),
    }


@task
def produce() -> int:
    return 21


@task(handler="box")
async def consume(produce: int, ctx: TaskContext) -> dict[str, object]:
    doubled = ctx.result("produce") * 2
    await ctx.channel.set("doubled", doubled)
    await ctx.channel.incr("hits")
    await ctx.channel.incr("hits", 2)
    await ctx.channel.append("seen", ctx.task_name)
    missing = await ctx.channel.get("missing", "default")
    try:
        ctx.result("nope")
        unknown = "no error"
    except Exception as exc:
        unknown = type(exc).__name__
    return {
        "doubled": doubled,
        "arg": produce,
        "hits": await ctx.channel.get("hits"),
        "missing": missing,
        "unknown": unknown,
        "inputs": dict(ctx.inputs),
        "run_id": ctx.run_id,
        "task_name": ctx.task_name,
        "keys": sorted(await ctx.channel.keys()),
    }


@task
async def check(consume: dict[str, object], ctx: TaskContext) -> list[object]:
    return [await ctx.channel.get("doubled"), await ctx.channel.get("seen"), consume["hits"]]


@task(handler="box", max_cycles=10)
async def count(ctx: TaskContext, data: int = 0) -> int:
    ctx.log.info("iteration", data=data)
    if data < 4:
        ctx.next_iteration(data + 1)
    return data


@task
def after(count: int) -> int:
    return count * 10


@task(handler="box")
def stop_here(ctx: TaskContext) -> str:
    ctx.terminate_workflow("enough")
    return "stopped"


@task
def never() -> str:
    return "ran"


def handlers() -> dict[str, object]:
    """The handlers of a Redis worker that runs these tasks (``aioflow worker ...
    --handlers box_tasks:handlers``): the box is the test image."""
    from aioflow.handlers import DockerHandler

    return {"box": DockerHandler(os.environ["AIOFLOW_TEST_IMAGE"])}


# --- traced in a container (tests/containers/test_container_trace.py) ---------------


@task(handler="box")
def traced_work(ctx: TaskContext, x: int = 1) -> dict[str, object]:
    """Makes its own span with the OpenTelemetry API, inside the container."""
    from opentelemetry import trace

    tracer = trace.get_tracer("box_tasks")
    with tracer.start_as_current_span("box work", attributes={"box.x": x}) as span:
        span.add_event("halfway", {"box.step": 1})
        print("working in the box")  # forwarded to the handler's log
        ctx.log.info("box step", step=1)  # a JSON line, forwarded with its fields
        context, recording = span.get_span_context(), span.is_recording()
    return {"trace_id": f"{context.trace_id:032x}", "recording": recording}


@task(handler="box")
def otel_modules() -> list[str]:
    """The OpenTelemetry modules imported in the container when the task runs."""
    import sys

    return sorted(name for name in sys.modules if name.split(".")[0] == "opentelemetry")


@task
async def spread(ctx: TaskContext) -> str | None:
    """An inline task that takes long enough for a fan-out to need two workers."""
    await anyio.sleep(0.3)
    return ctx.worker_id


@task(handler="box")
def chatty(lines: int = 20_000) -> int:
    """Writes ``lines`` numbered lines on stdout (stderr, in the container), then
    returns: Docker copies stderr apart from the result, which may overtake it."""
    for i in range(lines):
        print(f"chatty line {i}")
    return lines
