"""Label sets: names, palettes, left/right pairs and coarse labels, and the registry of sets.

A label set is data. Stored label maps use these values:

- ``0 .. K-1``: the set's K classes;
- ``K .. K+m-1``: its m *coarse* labels, each standing for a set of classes
  (e.g. LIP-20's ``skin`` = face or an arm or a leg), which the partial-label
  loss trains on and annotators may paint without choosing a side;
- ``255``: ignore.

How one set's maps convert to another's is :mod:`ssfnet.labels`, which re-exports everything here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

IGNORE_INDEX = 255


def voc_palette(n: int) -> list[tuple[int, int, int]]:
    """The PASCAL VOC colour map (bit-interleaved), first ``n`` colours."""
    colours = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours.append((r, g, b))
    return colours


@dataclass(frozen=True)
class LabelSet:
    """A named set of classes with colours, flip pairs and coarse labels.

    Args:
        name: Registry key, e.g. ``"lip-20"``.
        names: Class names; index = label id.
        palette: One RGB colour per class.
        flip_pairs: Pairs of ids swapped by a horizontal flip (left/right).
        coarse: Coarse label name -> the class ids it stands for, in id order
            ``K, K+1, ...``.
        coarse_palette: One RGB colour per coarse label.
    """

    name: str
    names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    flip_pairs: tuple[tuple[int, int], ...] = ()
    coarse: tuple[tuple[str, tuple[int, ...]], ...] = ()
    coarse_palette: tuple[tuple[int, int, int], ...] = field(default=())

    def __post_init__(self) -> None:
        if len(self.palette) != len(self.names):
            raise ValueError(f"{self.name}: {len(self.names)} names but {len(self.palette)} colours")
        if len(self.coarse_palette) != len(self.coarse):
            raise ValueError(f"{self.name}: {len(self.coarse)} coarse labels but {len(self.coarse_palette)} colours")
        if self.num_ids >= IGNORE_INDEX:
            raise ValueError(f"{self.name}: too many labels for uint8 maps")
        # Flipping must map every coarse label to a coarse label.
        flipped = self.flip_lut
        for i in range(self.num_classes, self.num_ids):
            if int(flipped[i]) >= self.num_ids:
                raise ValueError(f"{self.name}: coarse label {i} has no mirrored counterpart")

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def num_ids(self) -> int:
        """Classes plus coarse labels: the valid non-ignore values of a label map."""
        return len(self.names) + len(self.coarse)

    @property
    def all_names(self) -> tuple[str, ...]:
        return self.names + tuple(n for n, _ in self.coarse)

    @property
    def all_colours(self) -> tuple[tuple[int, int, int], ...]:
        return self.palette + self.coarse_palette

    def id_of(self, name: str) -> int:
        """Label id (class or coarse) of ``name``."""
        try:
            return self.all_names.index(name)
        except ValueError:
            raise KeyError(f"{self.name} has no label {name!r}") from None

    def members(self, label_id: int) -> tuple[int, ...]:
        """The classes a stored value stands for: itself, or a coarse label's set."""
        if 0 <= label_id < self.num_classes:
            return (label_id,)
        if self.num_classes <= label_id < self.num_ids:
            return self.coarse[label_id - self.num_classes][1]
        raise ValueError(f"{self.name}: {label_id} is not a label id")

    @cached_property
    def membership(self) -> np.ndarray:
        """``num_ids x num_classes`` bool matrix: row v marks the classes value v allows."""
        table = np.zeros((self.num_ids, self.num_classes), dtype=bool)
        for v in range(self.num_ids):
            table[v, list(self.members(v))] = True
        return table

    @cached_property
    def flip_lut(self) -> np.ndarray:
        """256-entry uint8 table mapping each value to its mirror image's value."""
        lut = np.arange(256, dtype=np.uint8)
        for a, b in self.flip_pairs:
            lut[a], lut[b] = b, a
        by_members = {frozenset(self.members(v)): v for v in range(self.num_classes, self.num_ids)}
        for v in range(self.num_classes, self.num_ids):
            mirrored = frozenset(int(lut[c]) for c in self.members(v))
            lut[v] = by_members.get(mirrored, IGNORE_INDEX)
        return lut

    def palette_bytes(self) -> list[int]:
        """A 768-entry flat palette for indexed PNGs (ignore = white)."""
        flat = [0] * 768
        for i, colour in enumerate(self.all_colours):
            flat[3 * i : 3 * i + 3] = colour
        flat[3 * IGNORE_INDEX : 3 * IGNORE_INDEX + 3] = (255, 255, 255)
        return flat

    def colour_lut(self) -> np.ndarray:
        """256 x 3 uint8 colours for every value (unknown values black, ignore white)."""
        return np.asarray(self.palette_bytes(), dtype=np.uint8).reshape(256, 3)

    def colourise(self, label_map: np.ndarray) -> np.ndarray:
        """H x W label ids -> H x W x 3 uint8 colours."""
        return self.colour_lut()[label_map]

    def validate(self, label_map: np.ndarray) -> None:
        """Raise ValueError if a value is neither a label id nor ignore."""
        values = np.unique(label_map)
        bad = [int(v) for v in values if v >= self.num_ids and v != IGNORE_INDEX]
        if bad:
            raise ValueError(f"label map has values {bad} outside {self.name} (0-{self.num_ids - 1} and 255)")


# LIP's visualisation palette, as used by LIP, CIHP and the VITON parses.
LIP_PALETTE = (
    (0, 0, 0), (128, 0, 0), (255, 0, 0), (0, 85, 0), (170, 0, 51),
    (255, 85, 0), (0, 0, 85), (0, 119, 221), (85, 85, 0), (0, 85, 85),
    (85, 51, 0), (52, 86, 128), (0, 128, 0), (0, 0, 255), (51, 170, 221),
    (0, 255, 255), (85, 255, 170), (170, 255, 85), (255, 255, 0), (255, 170, 0),
)  # fmt: skip

# PASCAL-Person-Part's six parts as sets of LIP-20 classes (LIP-20 ids). The PASCAL parts cover the
# body region whatever is worn on it: the head includes the neck and the hands and feet belong to
# the lower arms and legs. A set must hold every class LIP would paint there, or the partial-label
# loss would push a right answer away; each takes both sides, as PASCAL has no left/right.
PART_MEMBERS: tuple[tuple[str, tuple[int, ...]], ...] = (
    # hat, hair, sunglasses, face: the head of PERSON_HEAD_3, so that training and scoring agree. A
    # scarf at the neck is left out on purpose: with it, the loss let a model paint faces as scarf
    # (a quarter of the head pixels of the 476-minute default) at no cost, a mistake the scoring sees.
    ("head", (1, 2, 4, 13)),
    # upper-clothes, dress, coat, pants, jumpsuits, scarf, skirt, face: clothes down to the hips
    # (waistbands and skirts start inside the torso), face for the bare neckline LIP paints as face.
    ("torso", (5, 6, 7, 9, 10, 11, 12, 13)),
    # upper-clothes, dress, coat, jumpsuits, scarf, both arms: sleeves, bare arms and draped scarves.
    ("upper-arm", (5, 6, 7, 10, 11, 14, 15)),
    # glove, upper-clothes, dress, coat, jumpsuits, both arms: the hand is part of the lower arm.
    ("lower-arm", (3, 5, 6, 7, 10, 14, 15)),
    # upper-clothes, dress, coat, socks, pants, jumpsuits, skirt, both legs: long tops cover the
    # hips, which PASCAL counts as upper leg; socks stand for tights and stockings.
    ("upper-leg", (5, 6, 7, 8, 9, 10, 12, 16, 17)),
    # dress, coat, socks, pants, jumpsuits, skirt, both legs, both shoes: the foot is lower leg.
    ("lower-leg", (6, 7, 8, 9, 10, 12, 16, 17, 18, 19)),
)

LIP_20 = LabelSet(
    name="lip-20",
    names=(
        "background",
        "hat",
        "hair",
        "glove",
        "sunglasses",
        "upper-clothes",
        "dress",
        "coat",
        "socks",
        "pants",
        "jumpsuits",
        "scarf",
        "skirt",
        "face",
        "left-arm",
        "right-arm",
        "left-leg",
        "right-leg",
        "left-shoe",
        "right-shoe",
    ),  # fmt: skip
    palette=LIP_PALETTE,
    flip_pairs=((14, 15), (16, 17), (18, 19)),
    coarse=(
        ("skin", (13, 14, 15, 16, 17)),
        ("shoes", (18, 19)),
        ("arms", (14, 15)),
        ("legs", (16, 17)),
        # PASCAL-Person-Part's parts (ids 24-29) are body regions whatever covers them, so each
        # stands for every LIP-20 class that can occupy that region (see PART_MEMBERS).
        *PART_MEMBERS,
    ),
    coarse_palette=(
        (255, 200, 170),
        (220, 140, 60),
        (90, 200, 230),
        (130, 230, 130),
        (200, 70, 170),
        (150, 120, 230),
        (235, 225, 130),
        (110, 70, 150),
        (40, 160, 110),
        (180, 180, 120),
    ),
)

# CIHP's 20 classes: LIP's, but for id 10, which CIHP names torso-skin where LIP has jumpsuits. Its
# ground truth holds classes only, so no coarse labels; how it scores a LIP-20 model is in ssfnet.labels.
CIHP_20 = LabelSet(
    name="cihp-20",
    names=(*LIP_20.names[:10], "torso-skin", *LIP_20.names[11:]),
    palette=LIP_PALETTE,
    flip_pairs=LIP_20.flip_pairs,
)

ATR_18 = LabelSet(
    name="atr-18",
    names=(
        "background",
        "hat",
        "hair",
        "sunglasses",
        "upper-clothes",
        "skirt",
        "pants",
        "dress",
        "belt",
        "left-shoe",
        "right-shoe",
        "face",
        "left-leg",
        "right-leg",
        "left-arm",
        "right-arm",
        "bag",
        "scarf",
    ),  # fmt: skip
    palette=(
        LIP_PALETTE[0],
        LIP_PALETTE[1],
        LIP_PALETTE[2],
        LIP_PALETTE[4],
        LIP_PALETTE[5],
        LIP_PALETTE[12],
        LIP_PALETTE[9],
        LIP_PALETTE[6],
        (128, 128, 128),
        LIP_PALETTE[18],
        LIP_PALETTE[19],
        LIP_PALETTE[13],
        LIP_PALETTE[16],
        LIP_PALETTE[17],
        LIP_PALETTE[14],
        LIP_PALETTE[15],
        (128, 64, 128),
        LIP_PALETTE[11],
    ),  # fmt: skip
    flip_pairs=((9, 10), (12, 13), (14, 15)),
    coarse=(("skin", (11, 12, 13, 14, 15)), ("shoes", (9, 10))),
    coarse_palette=((255, 200, 170), (220, 140, 60)),
)

PASCAL_PERSON_PART_7 = LabelSet(
    name="pascal-person-part-7",
    names=("background", "head", "torso", "upper-arm", "lower-arm", "upper-leg", "lower-leg"),
    palette=tuple(voc_palette(7)),
)

PPSS_8 = LabelSet(
    name="ppss-8",
    names=("background", "hair", "face", "upper-clothes", "arms", "lower-clothes", "legs", "shoes"),
    palette=tuple(voc_palette(8)),
)

CCP_NAMES = (
    "null", "accessories", "bag", "belt", "blazer", "blouse", "bodysuit", "boots", "bra", "bracelet",
    "cape", "cardigan", "clogs", "coat", "dress", "earrings", "flats", "glasses", "gloves", "hair",
    "hat", "heels", "hoodie", "intimate", "jacket", "jeans", "jumper", "leggings", "loafers", "necklace",
    "panties", "pants", "pumps", "purse", "ring", "romper", "sandals", "scarf", "shirt", "shoes",
    "shorts", "skin", "skirt", "sneakers", "socks", "stockings", "suit", "sunglasses", "sweater",
    "sweatshirt", "swimwear", "t-shirt", "tie", "tights", "top", "vest", "wallet", "watch", "wedges",
)  # fmt: skip

CCP_59 = LabelSet(name="ccp-59", names=CCP_NAMES, palette=tuple(voc_palette(59)))

# CCP's 59 tags merged into 17 fashion classes (ids 0-16 in this order).
FASHION_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("background", ("null",)),
    ("hat", ("hat",)),
    ("hair", ("hair",)),
    ("sunglasses", ("sunglasses", "glasses")),
    ("upper-clothes", (
        "blouse", "bodysuit", "bra", "hoodie", "intimate", "jumper", "shirt", "sweater",
        "sweatshirt", "swimwear", "t-shirt", "top", "vest",
    )),
    ("coat", ("blazer", "cape", "cardigan", "coat", "jacket", "suit")),
    ("dress", ("dress",)),
    ("jumpsuit", ("romper",)),
    ("pants", ("jeans", "leggings", "panties", "pants", "shorts")),
    ("skirt", ("skirt",)),
    ("legwear", ("socks", "stockings", "tights")),
    ("shoes", ("boots", "clogs", "flats", "heels", "loafers", "pumps", "sandals", "shoes", "sneakers", "wedges")),
    ("scarf", ("scarf", "tie")),
    ("bag", ("bag", "purse", "wallet")),
    ("belt", ("belt",)),
    ("accessories", ("accessories", "bracelet", "earrings", "gloves", "necklace", "ring", "watch")),
    ("skin", ("skin",)),
)  # fmt: skip

FASHION_17 = LabelSet(
    name="fashion-17",
    names=tuple(name for name, _ in FASHION_GROUPS),
    # LIP's colours where a class has a LIP counterpart, so both sets read alike.
    palette=(
        LIP_PALETTE[0],
        LIP_PALETTE[1],
        LIP_PALETTE[2],
        LIP_PALETTE[4],
        LIP_PALETTE[5],
        LIP_PALETTE[7],
        LIP_PALETTE[6],
        LIP_PALETTE[10],
        LIP_PALETTE[9],
        LIP_PALETTE[12],
        LIP_PALETTE[8],
        LIP_PALETTE[18],
        LIP_PALETTE[11],
        (128, 64, 128),
        (128, 128, 128),
        (64, 192, 192),
        (255, 200, 170),
    ),  # fmt: skip
)

# For scoring on ground truth coarser than the model: PASCAL-Person-Part's parts say where the head
# and the person are, but not which clothes, so a LIP-20 model is scored on person and head only.
PERSON_HEAD_3 = LabelSet(
    name="person-head-3",
    names=("background", "head", "body"),
    palette=(LIP_PALETTE[0], LIP_PALETTE[2], LIP_PALETTE[5]),
)

LABEL_SETS: dict[str, LabelSet] = {
    s.name: s for s in (LIP_20, CIHP_20, ATR_18, PASCAL_PERSON_PART_7, PPSS_8, CCP_59, FASHION_17, PERSON_HEAD_3)
}


def get_label_set(name: str | LabelSet) -> LabelSet:
    """Look a label set up by name (``lip-20``, ``cihp-20``, ``atr-18``, ...)."""
    if isinstance(name, LabelSet):
        return name
    try:
        return LABEL_SETS[name]
    except KeyError:
        raise KeyError(f"unknown label set {name!r}; choose one of {sorted(LABEL_SETS)}") from None
