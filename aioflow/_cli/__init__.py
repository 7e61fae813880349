"""Internals of the ``aioflow`` command line (:mod:`aioflow.cli`); not public API.

* :mod:`.checkpoints`: the ``aioflow resume`` command that continues a journaled run.
* :mod:`.history`: what a run store holds, as data (``runs``, ``inspect``, ``--json``).
* :mod:`.history_view`: the same for humans (tables, timeline, error snapshots).
* :mod:`.loading`: find the workflow named on the command line, parse ``--input``.
* :mod:`.progress`: follow a run's events; the live progress display.
* :mod:`.report`: results, JSON documents and error reports.
* :mod:`.stores`: the run store a command names (``--checkpoint``, ``--store``), and
  the run history in ``$AIOFLOW_HOME/runs.db``.
"""
