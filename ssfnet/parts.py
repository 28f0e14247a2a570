"""The body-part head: which stored label values teach it, and how it steers the class output.

A model built with ``part_classes=7`` has a second classifier, ``parts``, that names the body
region of each pixel in PASCAL-Person-Part's terms (background, head, torso, upper arm, lower arm,
upper leg, lower leg). It exists because of a shortcut: PASCAL-Person-Part labels a region, not
what covers it, and when those regions train the LIP-20 output as sets of classes
(:data:`ssfnet.label_sets.PART_MEMBERS`), any member of the set is a right answer. Coat belongs to
every body part's set and face to the head's, so a model learns "coat" for every body pixel and
"face" for every head pixel of in-the-wild photos at no cost, and the partial-label loss, which
raises each member's logit in proportion to its probability, entrenches whichever member leads.

With the part head, PASCAL's regions train ``parts`` exactly and need not train the class output
at all (``--set-loss-weight 0``): the class output learns only from fine labels, the shared
features still see in-the-wild people, and at inference :func:`combine` takes the person/background
decision from ``parts`` and each person pixel's class from ``out``, among the classes its region
admits.
"""

from __future__ import annotations

import numpy as np
import torch

from .label_sets import IGNORE_INDEX, LIP_20, PART_MEMBERS, LabelSet

PART_NAMES = ("background", "head", "torso", "upper-arm", "lower-arm", "upper-leg", "lower-leg")

# LIP-20 classes whose body region is certain whatever the photo: they teach the part head on
# fine-labelled photos too. Clothes and limbs span several regions (a sleeve, an arm, trousers)
# and teach it nothing.
_LIP_CLASS_PARTS = {
    "background": "background",
    "hat": "head",
    "hair": "head",
    "sunglasses": "head",
    "face": "head",
    "glove": "lower-arm",
    "left-shoe": "lower-leg",
    "right-shoe": "lower-leg",
}


def part_targets(label_set: LabelSet) -> np.ndarray | None:
    """The 256-entry table from a stored label value to its part id (255 where it says none).

    PASCAL-Person-Part's regions (LIP-20's coarse labels ``head`` ... ``lower-leg``) map to their
    parts; a few classes map to the one region they always lie in (:data:`_LIP_CLASS_PARTS`).
    ``None`` for label sets other than LIP-20, which have no part regions.
    """
    if label_set.name != LIP_20.name:
        return None
    table = np.full(256, IGNORE_INDEX, dtype=np.int64)
    for name, part in _LIP_CLASS_PARTS.items():
        table[label_set.id_of(name)] = PART_NAMES.index(part)
    table[label_set.id_of("shoes")] = PART_NAMES.index("lower-leg")
    for name, _ in PART_MEMBERS:
        table[label_set.id_of(name)] = PART_NAMES.index(name)
    return table


def region_values(label_set: LabelSet) -> list[int]:
    """The stored values that are PASCAL-Person-Part regions (empty for other label sets)."""
    if label_set.name != LIP_20.name:
        return []
    return [label_set.id_of(name) for name, _ in PART_MEMBERS]


# Sets for the limbs with no class that every body part admits: no coat, dress or jumpsuits
# (which :data:`PART_MEMBERS` must admit for the odd long coat or dress), so that no single answer
# satisfies every region. Upper-clothes still covers the arms (sleeves) and the hips (long tops),
# trousers and skirts both leg regions, and the limbs themselves theirs.
EXCLUSIVE_LIMBS: dict[str, tuple[str, ...]] = {
    "upper-arm": ("upper-clothes", "scarf", "left-arm", "right-arm"),
    "lower-arm": ("glove", "upper-clothes", "left-arm", "right-arm"),
    "upper-leg": ("upper-clothes", "dress", "socks", "pants", "skirt", "left-leg", "right-leg"),
    "lower-leg": ("socks", "pants", "skirt", "left-leg", "right-leg", "left-shoe", "right-shoe"),
}

REGION_SETS = ("full", "limbs", "person")


def region_membership(label_set: LabelSet, sets: str) -> tuple[np.ndarray, list[int]]:
    """The membership table the class output's loss uses for PASCAL-Person-Part's regions.

    Args:
        label_set: LIP-20 (other sets have no regions: their own table, nothing silenced).
        sets: ``"full"``: every region as :data:`PART_MEMBERS` (the label set's own table);
            ``"limbs"``: only the limbs train the class output, through :data:`EXCLUSIVE_LIMBS`;
            the head and torso regions teach the part head alone;
            ``"person"``: every region admits every person class, so the class output learns from
            the regions only where the person is (its background) and no class is favoured
            inside; which region is which is the part head's to learn.

    Returns:
        ``(membership, silenced)``: the V x K table and the region values the class output
        must not learn from (weight 0).
    """
    if sets not in REGION_SETS:
        raise ValueError(f"region sets must be one of {REGION_SETS}, got {sets!r}")
    table = label_set.membership.copy()
    if sets == "full" or label_set.name != LIP_20.name:
        return table, []
    if sets == "person":
        for value in region_values(label_set):
            table[value] = False
            table[value, 1:] = True
        return table, []
    for name, members in EXCLUSIVE_LIMBS.items():
        row = label_set.id_of(name)
        table[row] = False
        table[row, [label_set.id_of(m) for m in members]] = True
    return table, [label_set.id_of("head"), label_set.id_of("torso")]


def admission(label_set: LabelSet) -> np.ndarray:
    """``len(PART_NAMES) x K`` float matrix: 1 where a part admits a class.

    Background admits only background; each body part admits the classes of its set in
    :data:`ssfnet.label_sets.PART_MEMBERS`.
    """
    if label_set.name != LIP_20.name:
        raise ValueError(f"part admission is defined for {LIP_20.name}, not {label_set.name}")
    table = np.zeros((len(PART_NAMES), label_set.num_classes), dtype=np.float32)
    table[0, 0] = 1.0
    for name, members in PART_MEMBERS:
        table[PART_NAMES.index(name), list(members)] = 1.0
    return table


def combine(class_prob: torch.Tensor, part_prob: torch.Tensor, admits: torch.Tensor) -> torch.Tensor:
    """Class probabilities steered by the part head.

    Background's probability is the part head's; a person class c gets the rest in proportion to
    ``p_out(c) * sum_k p_parts(k) * admits[k, c]`` over the body parts k. So the part head says
    where the person is and which region a pixel is, and the class output picks among the
    classes that region admits.

    Args:
        class_prob: B x K x H x W softmax of ``out`` (class 0 = background).
        part_prob: B x P x H x W softmax of ``parts`` (part 0 = background), same H x W.
        admits: P x K matrix of :func:`admission`.

    Returns:
        B x K x H x W probabilities (each pixel sums to 1).
    """
    admits = admits.to(class_prob.device, class_prob.dtype)
    gate = torch.einsum("bphw,pk->bkhw", part_prob[:, 1:], admits[1:])
    person = class_prob[:, 1:] * gate[:, 1:]
    person = person / person.sum(1, keepdim=True).clamp_min(1e-12)
    background = part_prob[:, :1]
    return torch.cat([background, (1.0 - background) * person], dim=1)


def part_admission(model: torch.nn.Module, label_set: LabelSet | None) -> torch.Tensor | None:
    """:func:`admission` as a tensor for a model with a part head and a LIP-20 label set, else ``None``."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    if getattr(model, "part_head", None) is None or label_set is None or label_set.name != LIP_20.name:
        return None
    return torch.from_numpy(admission(label_set))


def class_probabilities(outputs: dict[str, torch.Tensor], admits: torch.Tensor | None) -> torch.Tensor:
    """Softmax of ``out``, steered by ``parts`` (:func:`combine`) when the model has that head."""
    prob = outputs["out"].float().softmax(1)
    if admits is None or "parts" not in outputs:
        return prob
    return combine(prob, outputs["parts"].float().softmax(1), admits)
