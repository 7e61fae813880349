"""The workflow of the killed-coordinator tests, for the coordinator process and for
``aioflow resume ... distributed.coordinated:wf``.

``wf`` is built on access from ``$DIST_STATE`` (the directory its tasks write one
file per execution to), so each test gets its own.
"""

from __future__ import annotations

import os

import aioflow

from . import tasks

STATE_ENV = "DIST_STATE"


def __getattr__(name: str) -> aioflow.Workflow:
    if name == "wf":
        return tasks.checkpointed(os.environ[STATE_ENV])
    raise AttributeError(name)
