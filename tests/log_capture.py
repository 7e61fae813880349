"""aioflow's JSON log lines, captured for a test (and the logger put back after)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aioflow


@contextmanager
def json_log_capture(level: str) -> Iterator[io.StringIO]:
    """``with json_log_capture("INFO") as stream:``: aioflow logs JSON lines into it."""
    stream = io.StringIO()
    handler = aioflow.configure_logging(level, json=True, stream=stream)
    try:
        yield stream
    finally:
        logger = logging.getLogger("aioflow")
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """The lines written so far, decoded."""
    return [json.loads(line) for line in stream.getvalue().splitlines()]
