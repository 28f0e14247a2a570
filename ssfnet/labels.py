"""Label sets and the conversions between them.

The sets (names, palettes, left/right pairs, coarse labels, and what each stored value means)
are defined in :mod:`ssfnet.label_sets` and importable from here. This module holds the lookup
tables that convert label maps of one set to another (:func:`conversion_lut`) and the mappings
that score a model of one set on ground truth of another (:func:`eval_mapping`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ssfnet.label_sets import (
    ATR_18,
    CCP_59,
    CCP_NAMES,
    CIHP_20,
    FASHION_17,
    FASHION_GROUPS,
    IGNORE_INDEX,
    LABEL_SETS,
    LIP_20,
    LIP_PALETTE,
    PART_MEMBERS,
    PASCAL_PERSON_PART_7,
    PERSON_HEAD_3,
    PPSS_8,
    LabelSet,
    get_label_set,
    voc_palette,
)

__all__ = [
    "ATR_18",
    "CCP_59",
    "CCP_NAMES",
    "CIHP_20",
    "FASHION_17",
    "FASHION_GROUPS",
    "IGNORE_INDEX",
    "LABEL_SETS",
    "LIP_20",
    "LIP_PALETTE",
    "PART_MEMBERS",
    "PASCAL_PERSON_PART_7",
    "PERSON_HEAD_3",
    "PERSON_HEAD_MEMBERS",
    "PPSS_8",
    "EvalMapping",
    "LabelSet",
    "conversion_lut",
    "eval_mapping",
    "get_label_set",
    "voc_palette",
]


def _lut(source: LabelSet, mapping: dict[str, str | None]) -> np.ndarray:
    """256-entry LUT from source names to target ids (None -> ignore)."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for src_name, dst in mapping.items():
        lut[source.id_of(src_name)] = IGNORE_INDEX if dst is None else dst
    return lut


def _ccp_to_fashion() -> dict[str, int]:
    return {ccp: i for i, (_, members) in enumerate(FASHION_GROUPS) for ccp in members}


def _ccp_to_lip() -> dict[str, int | None]:
    lip = LIP_20.id_of
    by_group = {
        "background": lip("background"), "hat": lip("hat"), "hair": lip("hair"),
        "sunglasses": lip("sunglasses"), "upper-clothes": lip("upper-clothes"), "coat": lip("coat"),
        "dress": lip("dress"), "jumpsuit": lip("jumpsuits"), "pants": lip("pants"), "skirt": lip("skirt"),
        "legwear": lip("socks"), "shoes": lip("shoes"), "scarf": lip("scarf"),
        "bag": lip("background"), "belt": None, "accessories": None, "skin": lip("skin"),
    }  # fmt: skip
    mapping = {ccp: by_group[group] for group, members in FASHION_GROUPS for ccp in members}
    mapping["gloves"] = lip("glove")
    return mapping


def _lip_to_fashion() -> dict[str, int]:
    # The PASCAL part labels (head, torso, ...) span several fashion classes: left out, so ignored.
    f = FASHION_17.id_of
    return {
        "background": f("background"), "hat": f("hat"), "hair": f("hair"), "glove": f("accessories"),
        "sunglasses": f("sunglasses"), "upper-clothes": f("upper-clothes"), "dress": f("dress"),
        "coat": f("coat"), "socks": f("legwear"), "pants": f("pants"), "jumpsuits": f("jumpsuit"),
        "scarf": f("scarf"), "skirt": f("skirt"), "face": f("skin"), "left-arm": f("skin"),
        "right-arm": f("skin"), "left-leg": f("skin"), "right-leg": f("skin"),
        "left-shoe": f("shoes"), "right-shoe": f("shoes"),
        "skin": f("skin"), "shoes": f("shoes"), "arms": f("skin"), "legs": f("skin"),
    }  # fmt: skip


def _cihp_to_lip() -> dict[str, int | None]:
    # Same ids but torso-skin, which no LIP-20 class (nor coarse label) covers: ignored, so neither
    # trained on nor scored. LIP-20's jumpsuits never occurs in CIHP's ground truth.
    mapping: dict[str, int | None] = {name: LIP_20.id_of(name) for name in CIHP_20.names if name in LIP_20.names}
    mapping["torso-skin"] = None
    return mapping


def _pascal_to_lip() -> dict[str, int]:
    # Each part becomes LIP-20's coarse label of the same name (PART_MEMBERS).
    return {name: LIP_20.id_of(name) for name in PASCAL_PERSON_PART_7.names}


# LIP-20 classes that are PERSON_HEAD_3's head; every other class on a person is body.
PERSON_HEAD_MEMBERS = ("hat", "hair", "sunglasses", "face")


def _pascal_to_person_head() -> dict[str, int]:
    p = PERSON_HEAD_3.id_of
    parts = PASCAL_PERSON_PART_7.names[2:]
    return {"background": p("background"), "head": p("head"), **dict.fromkeys(parts, p("body"))}


def _lip_to_person_head() -> dict[str, int | None]:
    head, body = PERSON_HEAD_3.id_of("head"), PERSON_HEAD_3.id_of("body")
    mapping: dict[str, int | None] = {name: body for name in LIP_20.all_names}
    mapping["background"] = PERSON_HEAD_3.id_of("background")
    mapping.update(dict.fromkeys(PERSON_HEAD_MEMBERS, head))
    # The part labels are regions: PASCAL's head is head even where a scarf covers the neck.
    mapping.update(_pascal_to_person_head())
    # "skin" is face or a limb, head or body: not placeable.
    mapping["skin"] = None
    return mapping


_CONVERSIONS = {
    ("ccp-59", "fashion-17"): lambda: _lut(CCP_59, _ccp_to_fashion()),
    ("ccp-59", "lip-20"): lambda: _lut(CCP_59, _ccp_to_lip()),
    ("cihp-20", "lip-20"): lambda: _lut(CIHP_20, _cihp_to_lip()),
    ("lip-20", "fashion-17"): lambda: _lut(LIP_20, _lip_to_fashion()),
    ("lip-20", "person-head-3"): lambda: _lut(LIP_20, _lip_to_person_head()),
    ("pascal-person-part-7", "lip-20"): lambda: _lut(PASCAL_PERSON_PART_7, _pascal_to_lip()),
    ("pascal-person-part-7", "person-head-3"): lambda: _lut(PASCAL_PERSON_PART_7, _pascal_to_person_head()),
}


def conversion_lut(source: str | LabelSet, target: str | LabelSet) -> np.ndarray:
    """256-entry uint8 LUT converting ``source`` label maps to ``target`` values.

    The identity (source == target) keeps every value. CCP -> LIP-20 produces
    coarse LIP values (``skin``, ``shoes``) where CCP has no finer label, and
    PASCAL-Person-Part -> LIP-20 the coarse part labels (``head``, ``torso``, ...).
    CIHP -> LIP-20 keeps every id but CIHP's ``torso-skin`` (10), which becomes ignore.
    ``person-head-3`` is reachable from PASCAL-Person-Part and from LIP-20.
    """
    src, dst = get_label_set(source), get_label_set(target)
    if src is dst:
        lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
        lut[: src.num_ids] = np.arange(src.num_ids)
        return lut
    try:
        return _CONVERSIONS[(src.name, dst.name)]()
    except KeyError:
        known = ", ".join(f"{a} -> {b}" for a, b in _CONVERSIONS)
        raise KeyError(f"no conversion {src.name} -> {dst.name}; known: {known}") from None


@dataclass(frozen=True)
class EvalMapping:
    """How to score a model of one label set against ground truth of another.

    Args:
        prediction: Label set the model predicts.
        target: Label set the confusion matrix is kept in.
        pred_lut: Maps predicted ids to ``target`` ids.
        ignored: ``target`` classes whose ground-truth pixels are not scored
            (no counterpart in the prediction set).
    """

    prediction: LabelSet
    target: LabelSet
    pred_lut: np.ndarray
    ignored: tuple[int, ...] = ()

    @property
    def gt_lut(self) -> np.ndarray:
        """256-entry LUT applied to ground truth in ``target`` ids."""
        lut = conversion_lut(self.target, self.target)
        lut[list(self.ignored)] = IGNORE_INDEX
        return lut

    @property
    def scored_classes(self) -> tuple[int, ...]:
        return tuple(c for c in range(self.target.num_classes) if c not in self.ignored)


def eval_mapping(prediction: str | LabelSet, target: str | LabelSet) -> EvalMapping:
    """The mapping to score ``prediction``-set output on ``target``-set ground truth.

    Known: identity for any set; LIP-20 -> fashion-17 ("CCP-coarse": face,
    arms and legs -> skin, shoes -> shoes, glove -> accessories; bag, belt and
    accessories are not scored); LIP-20 -> person-head-3 (hat, hair, sunglasses
    and face -> head, every other class but background -> body), to score a
    LIP-20 model on PASCAL-Person-Part; pascal-person-part-7 -> person-head-3
    (torso and limbs -> body), to score a body-part model on the same scale;
    LIP-20 -> cihp-20 (the same ids; CIHP's torso-skin, which LIP-20 has no class for, is not
    scored, and a predicted jumpsuits, which CIHP has no class for, lands on it and so is always
    wrong). Loading CIHP in LIP-20 (:func:`conversion_lut`) ignores torso-skin the same way.
    """
    pred, tgt = get_label_set(prediction), get_label_set(target)
    if pred is tgt:
        return EvalMapping(pred, tgt, conversion_lut(pred, pred))
    if (pred.name, tgt.name) == ("lip-20", "fashion-17"):
        f = FASHION_17.id_of
        return EvalMapping(pred, tgt, conversion_lut(pred, tgt), (f("bag"), f("belt"), f("accessories")))
    if (pred.name, tgt.name) == ("lip-20", "cihp-20"):
        # Same ids: predicted jumpsuits (10) counts as torso-skin, which is not scored.
        return EvalMapping(pred, tgt, conversion_lut(pred, pred), (tgt.id_of("torso-skin"),))
    if (pred.name, tgt.name) in (("lip-20", "person-head-3"), ("pascal-person-part-7", "person-head-3")):
        return EvalMapping(pred, tgt, conversion_lut(pred, tgt))
    raise KeyError(f"no evaluation mapping {pred.name} -> {tgt.name}")
