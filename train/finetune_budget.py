"""A fine-tune's time budget: what it sets aside besides training, and the least budget that trains.

``--max-minutes`` covers the whole command: the start-up (interpreter, imports, reading the
corrections and sources), the evaluation before training, training, the evaluation after (planned
as :data:`EVAL_AFTER_FACTOR` times the first) and publishing. ``train.finetune`` refuses to train
when less than :data:`MIN_TRAIN_S` would be left and names the least budget (:func:`least_minutes`).
Each run records what its start-up and first evaluation took in ``timing.json``
(:func:`write_timing`), so that the app can work out that same least budget for the next run
before starting it (:mod:`demo.finetune_budget`); like ``train.finetune_status`` it loads no torch.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ssfnet.io import atomic_write_bytes, json_bytes

# Reserved in a time budget, besides the second evaluation, for publishing (checkpoint, report,
# plot) and for the trainer's start and exit; and the least training time worth starting for.
PUBLISH_RESERVE_S = 10.0
MIN_TRAIN_S = 5.0
# The evaluation after training scores the same images as the one before: planned as long, with a margin.
EVAL_AFTER_FACTOR = 1.15
# The training time the least budget named in a refusal leaves.
LEAST_TRAIN_S = 60.0
TIMING_FILE = "timing.json"


def reserve_s(eval_s: float) -> float:
    """Seconds set aside after training: the evaluation after (``eval_s`` took the one before) and publishing."""
    return EVAL_AFTER_FACTOR * eval_s + PUBLISH_RESERVE_S


def least_minutes(spent_s: float, eval_s: float, train_s: float = LEAST_TRAIN_S) -> float:
    """The least budget, in minutes rounded up to a tenth, that leaves ``train_s`` seconds of training.

    With :data:`MIN_TRAIN_S` it is the least budget the fine-tune does not refuse; its refusal
    names the one with :data:`LEAST_TRAIN_S`, a minute of training.

    Args:
        spent_s: Seconds from the command's start to the end of the evaluation before training.
        eval_s: Seconds that evaluation took (loading the model included).
        train_s: Seconds of training the budget must leave.
    """
    return math.ceil((spent_s + reserve_s(eval_s) + train_s) / 6 - 1e-9) / 10


@dataclass(frozen=True)
class Timing:
    """What a run's start-up and first evaluation took (``timing.json``).

    Args:
        base: The base checkpoint's folder name (the model scored).
        setup_s: Seconds from the command's start to the evaluation's.
        load_s: Seconds the evaluation spent loading the model.
        eval_s: Seconds the whole evaluation took (projected from its first images when it was
            stopped for leaving no time to train: ``projected``).
        images: Images scored per evaluation set (``held_out_corrections``, ``train_corrections``,
            ``original_val``).
        val_max_images: The cap on scored images per set that the run had (None: none).
        projected: Whether ``eval_s`` is a projection.
    """

    base: str
    setup_s: float
    load_s: float
    eval_s: float
    images: dict[str, int] = field(default_factory=dict)
    val_max_images: int | None = None
    projected: bool = False

    @property
    def scored(self) -> int:
        return sum(self.images.values())


def write_timing(run_dir: Path, timing: Timing) -> None:
    atomic_write_bytes(Path(run_dir) / TIMING_FILE, json_bytes(dataclasses.asdict(timing)))


def read_timing(run_dir: Path) -> Timing | None:
    """The run's recorded timing; None when it has none or it is unreadable."""
    try:
        data = json.loads((Path(run_dir) / TIMING_FILE).read_text())
        timing = Timing(**data)
        images = {str(k): int(v) for k, v in dict(timing.images).items()}
        numbers = [float(timing.setup_s), float(timing.load_s), float(timing.eval_s)]
    except (OSError, UnicodeDecodeError, ValueError, TypeError):
        return None
    if not all(math.isfinite(n) and n >= 0 for n in numbers) or min(images.values(), default=0) < 0:
        return None
    return dataclasses.replace(timing, setup_s=numbers[0], load_s=numbers[1], eval_s=numbers[2], images=images)
