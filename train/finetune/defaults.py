"""The fine-tune's defaults that the app's panel offers too (no torch here: the app imports it).

Measured with ``python -m experiments.simulate_loop`` on the embedded default checkpoint
(docs/results/correction-loop.md, "The loop, measured with simulated annotators"): ten minutes of
fine-tuning on 50 corrections, eight repeats. With the corrections a twentieth of every batch
(:data:`CORRECTIONS_SHARE`) and a quarter of the change published (:data:`BLEND`), held-out CCP
mIoU rose in each of them (+0.36 on average, 95 % interval +0.08 to +0.64), and VITON's scores on
the classes its photos show stayed as they were. With the corrections half of every batch it rose
by +0.24 (-0.32 to +0.72), and by -0.72 published as trained.
"""

import os
from pathlib import Path

# Share of every fine-tuning batch drawn from the corrections. Fifty corrections among the default
# checkpoint's 10,861 training photos are oversampled elevenfold: about 150 draws, three passes over
# them, in a ten-minute fine-tune on a 2-core CPU (about 390 batches of 8). A half (thirty passes)
# learnt those photos by heart and parsed other photos of their kind worse. Where the corrections
# are more than a twentieth of all the photos (some 570 with the default's sources), 0.05 would
# draw them less often than the original photos: raise it to at least their share of the photos.
CORRECTIONS_SHARE = 0.05
# Expected share of each corrections folder held out to score before and after.
HOLDOUT = 0.2
# Share of the fine-tune's change the published weights keep: base + BLEND x (trained - base).
BLEND = 0.25
# Where a fine-tune publishes by default: this folder inside the checkpoints folder, which git
# ignores (the shipped checkpoints beside it are tracked) and the app lists with the others.
FINETUNED_DIR = "finetuned"


# How much nicer than the app a fine-tune started beside it runs: parses go first when both want the CPU.
BACKGROUND_NICE = 10


def lower_priority(pid: int, nice: int = BACKGROUND_NICE) -> None:
    """Give process ``pid`` a lower CPU priority than this one (``nice`` more, at most 19).

    Both its nice value and, on Linux with autogroup scheduling, its group's: a process in a
    session of its own gets a group of its own, which shares the CPU with the app's group
    whatever the nice values inside. Best effort: where the system allows neither, the
    fine-tune runs as before, with one core fewer than the machine has.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, pid, min(19, os.getpriority(os.PRIO_PROCESS, 0) + nice))
    except (AttributeError, OSError):
        pass
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(min(19, nice)))
    except OSError:
        pass
