"""``python -m train.bench``: the speed tables, see :mod:`train.bench.speed`."""

import sys

from .speed import main, parse_args

__all__ = ["main", "parse_args"]

if __name__ == "__main__":
    sys.exit(main())
