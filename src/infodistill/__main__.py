"""``python -m infodistill``: the command-line interface (see :mod:`infodistill.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
