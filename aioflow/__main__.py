"""``python -m aioflow``: the ``aioflow`` command line (see :mod:`aioflow.cli`)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
