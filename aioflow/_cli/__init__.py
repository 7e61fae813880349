"""Internals of the ``aioflow`` command line (:mod:`aioflow.cli`); not public API.

* :mod:`.loading`: find the workflow named on the command line, parse ``--input``.
* :mod:`.progress`: follow a run's events; the live progress display.
* :mod:`.report`: results, JSON documents and error reports.
"""
