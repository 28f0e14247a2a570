"""``python -m train.finetune``: see :mod:`train.finetune.run`."""

import sys

from .run import clock, main, parse_args, process_age_s

__all__ = ["main", "parse_args"]

if __name__ == "__main__":
    # The budget is of the whole command: the interpreter's start and the imports count too.
    sys.exit(main(began=clock() - process_age_s()))
