"""The fine-tune's defaults that the app's panel offers too (no torch here: the app imports it).

Measured with ``python -m experiments.simulate_loop`` on the embedded default checkpoint
(docs/results/correction-loop.md, "The loop, measured with simulated annotators"): ten minutes of
fine-tuning on 50 corrections, eight repeats. With the corrections a twentieth of every batch
(:data:`CORRECTIONS_SHARE`) and a quarter of the change published (:data:`BLEND`), held-out CCP
mIoU rose in each of them (+0.36 on average, 95 % interval +0.08 to +0.64), and VITON's scores on
the classes its photos show stayed as they were. With the corrections half of every batch it rose
by +0.24 (-0.32 to +0.72), and by -0.72 published as trained.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
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
# Settings for corrections of a new kind of photo, which the base parses far worse than its own
# validation photos. Measured by hand (issue 37): 23 everyday photos that the default checkpoint
# parses at 13.9 mIoU (against about 48-59 on its validation photos: a shift of some 0.7), with the
# corrections half of every batch and the whole change published, raised other photos of that kind
# from 13.9 to 24.1 mIoU and an unrelated set of everyday photos from 14.3 to 23.8, while the base's
# own validation photos went from 59.2 to 57.1; today's defaults raised them to 15.6 at best.
FAR_CORRECTIONS_SHARE = 0.5
FAR_BLEND = 1.0
# The domain shift (1 - corrections' mIoU / the base's validation mIoU, clipped to [0, 1]) up to
# which a fine-tune keeps CORRECTIONS_SHARE and BLEND, and from which it takes the far settings;
# between the two it moves smoothly from one to the other. CCP corrections of the default checkpoint
# (a source it trained on) parse at or above its own validation figure (12 CCP photos saved as
# corrections: 56.4 mIoU against run 12's VITON 47.75, a shift of 0): they keep the settings measured
# there (+0.36). The everyday photos above had a shift of about 0.7. Both
# thresholds rest on these two cases alone: ``python -m experiments.simulate_shift`` (a base that
# never saw CCP, 10 / 25 / 50 corrections) is the measurement that calibrates them.
SHIFT_IN_DOMAIN = 0.2
SHIFT_FAR = 0.6


def reference_miou(base_meta: dict) -> tuple[float | None, str]:
    """The base's own validation mIoU that corrections are compared with, and where it comes from.

    The mean mIoU of the validation sources of the base's metadata (``metrics.sources``) that are
    labelled in the base's own label set: corrections are saved in that label set and scored as
    those sources were. Without such a source, the mean of every source's main score; without
    per-source figures, ``metrics.val_miou`` (a fine-tuned checkpoint's). None: the metadata has
    no figure (the fine-tune then falls back on its own score of the original validation photos).
    """
    metrics = base_meta.get("metrics") if isinstance(base_meta.get("metrics"), dict) else {}
    sources = metrics.get("sources") if isinstance(metrics.get("sources"), dict) else {}
    own = base_meta.get("label_set")
    same = [(n, s.get("miou")) for n, s in sources.items() if isinstance(s, dict) and s.get("label_set") == own]
    same = [(n, float(v)) for n, v in same if _number(v)]
    if same:
        return sum(v for _, v in same) / len(same), f"{' and '.join(n for n, _ in same)} validation mIoU"
    main = [(n, float(s["main"])) for n, s in sources.items() if isinstance(s, dict) and _number(s.get("main"))]
    if main:
        return sum(v for _, v in main) / len(main), "mean of its sources' validation scores"
    if _number(metrics.get("val_miou")):
        return float(metrics["val_miou"]), "validation mIoU"
    return None, ""


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def domain_shift(corrections_miou: float, base_miou: float) -> float:
    """How far the corrections lie from the base's domain: ``1 - corrections / base`` mIoU, clipped to [0, 1]."""
    if base_miou <= 0:
        return 0.0
    return min(1.0, max(0.0, 1.0 - corrections_miou / base_miou))


def far_weight(shift: float) -> float:
    """0 up to :data:`SHIFT_IN_DOMAIN`, 1 from :data:`SHIFT_FAR`, a smoothstep between (monotone)."""
    t = min(1.0, max(0.0, (shift - SHIFT_IN_DOMAIN) / (SHIFT_FAR - SHIFT_IN_DOMAIN)))
    return t * t * (3.0 - 2.0 * t)


@dataclass(frozen=True)
class Choice:
    """A fine-tune's corrections' share and blend, and why (recorded in the checkpoint's metadata).

    ``shift`` is None where it could not be measured (then today's defaults stand); ``natural_share``
    is the corrections' share of all the training photos, the least share they get.
    """

    corrections_share: float
    blend: float
    shift: float | None
    corrections_miou: float | None
    base_miou: float | None
    reference: str
    corrections: int
    natural_share: float
    share_given: bool
    blend_given: bool
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def choose_settings(
    corrections_miou: float | None,
    base_miou: float | None,
    *,
    corrections: int,
    originals: int,
    reference: str = "validation mIoU",
    share: float | None = None,
    blend: float | None = None,
) -> Choice:
    """The corrections' share and blend for a fine-tune, from how the base parses its corrections.

    In the base's domain (shift up to :data:`SHIFT_IN_DOMAIN`) :data:`CORRECTIONS_SHARE` and
    :data:`BLEND`; far from it (from :data:`SHIFT_FAR`) :data:`FAR_CORRECTIONS_SHARE` and
    :data:`FAR_BLEND`; between, a smooth interpolation (:func:`far_weight`). The number of
    corrections counts through the share: never less than their share of all the training photos
    (``corrections / (corrections + originals)``), so that many corrections are not drawn less often
    than the original photos. ``share`` and ``blend`` given by the user always win.

    Args:
        corrections_miou: The base's mIoU on the corrections (None: not measured).
        base_miou: The base's own validation mIoU (None: unknown).
        corrections: Corrections trained on.
        originals: Original training photos beside them.
        reference: What ``base_miou`` is, for the message.
        share: The user's corrections' share, if given.
        blend: The user's blend, if given.
    """
    natural = corrections / max(1, corrections + originals)
    shift = None
    if corrections_miou is not None and base_miou is not None and base_miou > 0:
        shift = domain_shift(corrections_miou, base_miou)
    weight = far_weight(shift) if shift is not None else 0.0
    chosen_share = CORRECTIONS_SHARE + weight * (FAR_CORRECTIONS_SHARE - CORRECTIONS_SHARE)
    chosen_share = round(min(1.0, max(chosen_share, natural)), 4)
    chosen_blend = round(BLEND + weight * (FAR_BLEND - BLEND), 4)
    final_share = share if share is not None else chosen_share
    final_blend = blend if blend is not None else chosen_blend
    if shift is None:
        told = "the base's parse of the corrections could not be compared with its validation figure"
        kind = "today's defaults"
    else:
        told = f"corrections parse at {corrections_miou:.0f} mIoU against the base's {base_miou:.0f} ({reference})"
        kind = (
            "the base's kind of photo"
            if weight == 0
            else "new kind of photo"
            if weight == 1
            else "a related kind of photo"
        )
    settings = f"corrections {final_share:.0%} of each batch, {final_blend:.0%} of the change published"
    given = [name for name, value in (("share", share), ("blend", blend)) if value is not None]
    reason = f"{told}: {kind} -> {settings}" + (f" ({' and '.join(given)} as given)" if given else "")
    return Choice(
        corrections_share=final_share,
        blend=final_blend,
        shift=None if shift is None else round(shift, 4),
        corrections_miou=corrections_miou,
        base_miou=None if base_miou is None else round(base_miou, 3),
        reference=reference,
        corrections=corrections,
        natural_share=round(natural, 6),
        share_given=share is not None,
        blend_given=blend is not None,
        reason=reason,
    )


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
