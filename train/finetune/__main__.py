"""``python -m train.finetune``: see :mod:`train.finetune.run`."""

import sys

from .run import cli, clock, parse_args, process_age_s

__all__ = ["cli", "parse_args"]

if __name__ == "__main__":
    # The budget is of the whole command: the interpreter's start and the imports count too.
    sys.exit(cli(began=clock() - process_age_s()))
