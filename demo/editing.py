"""Pure label-map editing: snapping painted strokes to labels, click tools and edge snapping.

Everything here takes and returns numpy arrays, so it is tested without Gradio.
Label maps are H x W uint8 holding ids of a :class:`ssfnet.labels.LabelSet`
(classes, then coarse labels) or ``IGNORE_INDEX`` (255).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# resize_image and resize_labels are used from here by the app and the session too: one set of
# resizing rules (ssfnet.geometry) for the app, the predictor and the trainer.
from ssfnet.geometry import long_side_size, resize_image, resize_labels
from ssfnet.labels import IGNORE_INDEX, LabelSet

# A stroke pixel counts as painted from half opacity up; fainter pixels are the
# antialiased fringe the annotator did not mean to paint.
ALPHA_THRESHOLD = 128


def paint_ids(label_set: LabelSet) -> tuple[np.ndarray, np.ndarray]:
    """The label ids an annotator may paint and their colours.

    Returns:
        ``(ids, colours)``: N uint8 ids (classes, coarse labels, then ignore) and
        N x 3 uint8 colours (ignore is white, as in the label PNG palette).
    """
    ids = np.array([*range(label_set.num_ids), IGNORE_INDEX], dtype=np.uint8)
    colours = label_set.colour_lut()[ids]
    if len({tuple(c) for c in colours.tolist()}) != len(ids):
        raise ValueError(f"{label_set.name}: two paintable labels share a colour, strokes would be ambiguous")
    return ids, colours


def _pack(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _interior(keys: np.ndarray) -> np.ndarray:
    """Pixels whose 8 neighbours all have the same key (a stroke's inside, not its fringe)."""
    h, w = keys.shape
    padded = np.pad(keys, 1, constant_values=-1)
    same = np.ones((h, w), dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                same &= padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] == keys
    return same


def snap_strokes(
    layer: np.ndarray, label_set: LabelSet, *, alpha_threshold: int = ALPHA_THRESHOLD
) -> tuple[np.ndarray, np.ndarray]:
    """Turn a painted RGBA layer into label ids, never reading a blended colour as a label.

    A browser canvas antialiases stroke edges (partial alpha) and blends one
    stroke's colour into another where they meet. So: pixels below
    ``alpha_threshold`` are not painted; a painted pixel takes the nearest colour
    among the palette colours the annotator actually used. A colour counts as
    used where it fills a whole 3 x 3 neighbourhood exactly (the inside of a
    stroke); a one-pixel blend seam cannot do that, so a red/black seam that
    happens to equal another class's dark red still snaps to red or black. Only
    when no stroke has an inside (strokes 1-2 px wide) do exact colours anywhere,
    and failing those the whole palette, become the candidates.

    Args:
        layer: H x W x 4 uint8 RGBA (straight, not premultiplied, alpha).
        label_set: The label set whose palette the brush used.
        alpha_threshold: Lowest alpha (0-255) that counts as painted.

    Returns:
        ``(painted, ids)``: H x W bool mask and H x W uint8 label ids (valid where painted).
    """
    layer = np.asarray(layer)
    if layer.ndim != 3 or layer.shape[2] != 4 or layer.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 4 uint8 RGBA layer, got {layer.shape} {layer.dtype}")
    ids, colours = paint_ids(label_set)
    painted = layer[..., 3] >= alpha_threshold
    out = np.zeros(painted.shape, dtype=np.uint8)
    if not painted.any():
        return painted, out
    palette_keys = _pack(colours)
    keys = np.where(painted & (layer[..., 3] == 255), _pack(layer[..., :3]), -1)
    exact = np.isin(keys, palette_keys)
    keys = np.where(exact, keys, -1)
    used = np.unique(keys[_interior(keys) & exact])
    if used.size == 0:
        used = np.unique(keys[exact])
    candidates = np.isin(palette_keys, used) if used.size else np.ones(len(ids), dtype=bool)
    cand_ids, cand_colours = ids[candidates], colours[candidates].astype(np.int32)
    # Distances are computed once per distinct colour: a stroke has few of them.
    unique, inverse = np.unique(_pack(layer[..., :3][painted]), return_inverse=True)
    rgb = np.stack([(unique >> 16) & 255, (unique >> 8) & 255, unique & 255], axis=1)
    dist = ((rgb[:, None, :] - cand_colours[None, :, :]) ** 2).sum(-1)
    out[painted] = cand_ids[dist.argmin(1)][inverse.reshape(-1)]
    return painted, out


def apply_strokes(labels: np.ndarray, layer: np.ndarray, label_set: LabelSet) -> np.ndarray:
    """``labels`` with every painted pixel of ``layer`` set to its snapped label (see :func:`snap_strokes`)."""
    check_same_size(labels, layer)
    painted, ids = snap_strokes(layer, label_set)
    out = labels.copy()
    out[painted] = ids[painted]
    return out


def check_same_size(labels: np.ndarray, other: np.ndarray) -> None:
    if labels.shape[:2] != other.shape[:2]:
        raise ValueError(f"sizes differ: labels {labels.shape[:2]}, other {other.shape[:2]}")


def _check_point(shape: tuple[int, ...], x: int, y: int) -> None:
    h, w = shape[:2]
    if not (0 <= x < w and 0 <= y < h):
        raise ValueError(f"point ({x}, {y}) lies outside the {w} x {h} image")


def connected_region(labels: np.ndarray, x: int, y: int) -> np.ndarray:
    """H x W bool mask of the 4-connected region of ``labels`` holding the clicked pixel's label."""
    _check_point(labels.shape, x, y)
    mask = np.zeros((labels.shape[0] + 2, labels.shape[1] + 2), dtype=np.uint8)
    flags = 4 | cv2.FLOODFILL_MASK_ONLY | (1 << 8)
    cv2.floodFill(np.ascontiguousarray(labels), mask, (int(x), int(y)), 0, 0, 0, flags)
    return mask[1:-1, 1:-1].astype(bool)


def disc(shape: tuple[int, ...], x: int, y: int, diameter: int) -> np.ndarray:
    """H x W bool mask of the pixels whose centres lie within ``diameter / 2`` of pixel ``(x, y)``'s centre.

    The footprint of one brush dab of width ``diameter`` (at least the clicked pixel itself).
    """
    _check_point(shape, x, y)
    h, w = shape[:2]
    radius = max(0.5, diameter / 2)
    yy, xx = np.ogrid[:h, :w]
    return (xx - x) ** 2 + (yy - y) ** 2 <= radius * radius


def polygon_mask(shape: tuple[int, ...], vertices) -> np.ndarray:
    """H x W bool mask of the polygon through ``vertices`` ((x, y) pixels, in order; closed back to the first).

    Filled as ``cv2.fillPoly`` fills (edges included); a polygon that crosses itself is filled where
    its even-odd rule says, and vertices outside the image are clipped by the fill.
    """
    points = np.asarray(vertices, dtype=np.int32).reshape(-1, 1, 2)
    mask = np.zeros(shape[:2], dtype=np.uint8)
    cv2.fillPoly(mask, [points], 1)
    return mask.astype(bool)


def colour_region(image: np.ndarray, x: int, y: int, tolerance: int, labels: np.ndarray | None = None) -> np.ndarray:
    """H x W bool mask flood-filled from ``(x, y)`` over pixels within ``tolerance`` of the seed colour.

    Each channel may differ from the clicked pixel's by at most ``tolerance``
    (0-255); the range is fixed to the seed so that a fill cannot creep along a
    gradient into a distant colour. With ``labels`` (H x W) the fill stays
    within the clicked pixel's label: a black skirt is refilled without the black
    coat that touches it.
    """
    _check_point(image.shape, x, y)
    t = int(np.clip(tolerance, 0, 255))
    mask = np.zeros((image.shape[0] + 2, image.shape[1] + 2), dtype=np.uint8)
    if labels is not None:
        check_same_size(labels, image)
        # Non-zero mask pixels are walls for cv2.floodFill; the fill itself is marked 2.
        mask[1:-1, 1:-1] = labels != labels[y, x]
    flags = 4 | cv2.FLOODFILL_MASK_ONLY | cv2.FLOODFILL_FIXED_RANGE | (2 << 8)
    cv2.floodFill(np.ascontiguousarray(image[..., :3]), mask, (int(x), int(y)), 0, (t, t, t), (t, t, t), flags)
    return mask[1:-1, 1:-1] == 2


# GrabCut's time grows with the pixels of its box: 1.2 s for a stroke across a 550 x 817 photo and
# 7.9 s at 1600 px on a busy 2-core CPU. The box is fitted at most this many pixels on a side and the
# result enlarged; the stroke's core and the band's outer limit are kept at full resolution.
GRABCUT_MAX_SIDE = 160


def snap_to_edges(
    image: np.ndarray, stroke: np.ndarray, *, iterations: int = 4, max_side: int = GRABCUT_MAX_SIDE
) -> np.ndarray:
    """Fit a rough stroke to the image edges with GrabCut.

    The stroke is taken as probably-inside, a band around it (as wide as the
    stroke, at least 5 px) as probably-outside, and everything beyond the band
    as outside; the stroke's core (eroded) stays inside for sure so that the
    result never vanishes. GrabCut then moves the boundary within the band
    to where the colours change.

    Args:
        image: H x W x 3 uint8 RGB.
        stroke: H x W bool, the annotator's rough stroke.
        iterations: GrabCut iterations.
        max_side: Longer side of the box GrabCut works in (larger boxes are shrunk for it).

    Returns:
        H x W bool mask: the snapped region (the stroke itself when GrabCut
        cannot run, e.g. the stroke covers the whole image).
    """
    check_same_size(stroke, image)
    stroke = np.asarray(stroke, dtype=bool)
    if not stroke.any():
        return stroke.copy()
    # Everything happens in a box around the stroke, its band and a margin of sure background
    # (GrabCut needs both sides' colours): the whole photo is never touched.
    ys, xs = np.nonzero(stroke)
    h, w = stroke.shape
    tight = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    inside = cv2.distanceTransform(np.pad(stroke[tight].astype(np.uint8), 1), cv2.DIST_L2, 3)
    band = max(5, int(round(float(inside.max()) * 2)))
    y0, y1 = max(0, ys.min() - 2 * band), min(h, ys.max() + 2 * band + 1)
    x0, x1 = max(0, xs.min() - 2 * band), min(w, xs.max() + 2 * band + 1)
    crop = (slice(y0, y1), slice(x0, x1))
    sub = stroke[crop]
    # Distances instead of dilating and eroding by ellipses as wide as the band (slow for thick strokes).
    outside = cv2.distanceTransform((~sub).astype(np.uint8), cv2.DIST_L2, 3)
    grown = outside <= band
    inner = cv2.distanceTransform(np.pad(sub.astype(np.uint8), 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
    core = inner > max(1, band // 2)
    if not core.any():
        core = sub
    mask = np.full(sub.shape, cv2.GC_BGD, dtype=np.uint8)
    mask[grown] = cv2.GC_PR_BGD
    mask[sub] = cv2.GC_PR_FGD
    mask[core] = cv2.GC_FGD
    if not (mask == cv2.GC_BGD).any() and not (mask == cv2.GC_PR_BGD).any():
        return stroke.copy()
    box = np.ascontiguousarray(image[crop][..., :3])
    ch, cw = mask.shape
    small = long_side_size(ch, cw, max_side, enlarge=False)
    shrunk = small != (ch, cw)
    if shrunk:
        box = resize_image(box, small)
        mask = resize_labels(mask, small)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(box, mask, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return stroke.copy()
    fitted = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    if shrunk:
        # Enlarged smoothly and cut at half, so the boundary is not a staircase of enlarged pixels.
        fitted = resize_image(fitted * 255, (ch, cw)) >= 128
    out = np.zeros_like(stroke)
    out[crop] = (fitted.astype(bool) & grown) | core
    return out


def apply_strokes_snapped(labels: np.ndarray, image: np.ndarray, layer: np.ndarray, label_set: LabelSet) -> np.ndarray:
    """Like :func:`apply_strokes`, but each label's strokes are first snapped to image edges."""
    check_same_size(labels, layer)
    check_same_size(labels, image)
    painted, ids = snap_strokes(layer, label_set)
    out = labels.copy()
    values, counts = np.unique(ids[painted], return_counts=True)
    # Larger strokes first, so that a small precise stroke drawn inside a big
    # one is not swallowed by the big one's snapped region.
    for value in values[np.argsort(-counts, kind="stable")]:
        out[snap_to_edges(image, painted & (ids == value))] = value
    return out


def label_shares(labels: np.ndarray, label_set: LabelSet) -> list[tuple[int, float]]:
    """``(id, share of the pixels)`` for every value present, in id order (ignore last)."""
    counts = np.bincount(labels.reshape(-1), minlength=256)
    total = max(1, labels.size)
    return [(int(v), counts[v] / total) for v in np.flatnonzero(counts)]


def working_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """``(h, w)`` scaled down (never up) so that the longer side is at most ``max_side``."""
    return long_side_size(height, width, max_side, enlarge=False)


# The maps an edit can change: the label map, or the person ids beside it (demo.session.Session.persons).
LABELS, PERSONS = "labels", "persons"


@dataclass(frozen=True)
class Edit:
    """One reversible change of a map: the flat indices that changed, their old and new values.

    ``layer`` says which map: :data:`LABELS` (the label map) or :data:`PERSONS` (the person ids).
    """

    indices: np.ndarray
    old: np.ndarray
    new: np.ndarray
    what: str = ""
    layer: str = LABELS

    @classmethod
    def between(cls, before: np.ndarray, after: np.ndarray, what: str = "", layer: str = LABELS) -> Edit:
        check_same_size(before, after)
        idx = np.flatnonzero(before != after)
        # int32 halves the memory of a history; label maps stay far below 2**31 pixels.
        idx = idx.astype(np.int32) if before.size < 2**31 else idx
        return cls(idx, before.reshape(-1)[idx], after.reshape(-1)[idx], what, layer)

    @property
    def nbytes(self) -> int:
        return self.indices.nbytes + self.old.nbytes + self.new.nbytes

    def __len__(self) -> int:
        return int(self.indices.size)

    def redo(self, labels: np.ndarray) -> np.ndarray:
        out = labels.copy()
        out.reshape(-1)[self.indices] = self.new
        return out

    def undo(self, labels: np.ndarray) -> np.ndarray:
        out = labels.copy()
        out.reshape(-1)[self.indices] = self.old
        return out


class History:
    """Undo and redo over :class:`Edit` records, bounded in count and memory.

    Args:
        max_edits: Oldest edits are forgotten beyond this many.
        max_bytes: ... or beyond this much memory (the newest edit is always kept).
    """

    def __init__(self, max_edits: int = 200, max_bytes: int = 256 * 2**20) -> None:
        self.max_edits = max_edits
        self.max_bytes = max_bytes
        self._undo: list[Edit] = []
        self._redo: list[Edit] = []

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def __len__(self) -> int:
        return len(self._undo)

    @property
    def last(self) -> Edit | None:
        """The edit the next undo takes back, if any."""
        return self._undo[-1] if self._undo else None

    @property
    def next_redo(self) -> Edit | None:
        """The edit the next redo applies again, if any."""
        return self._redo[-1] if self._redo else None

    def has_layer(self, layer: str) -> bool:
        """Whether an edit that undo can still take back changed ``layer``."""
        return any(e.layer == layer for e in self._undo)

    def record(self, before: np.ndarray, after: np.ndarray, what: str = "", layer: str = LABELS) -> Edit | None:
        """Remember the change ``before -> after`` of ``layer``; ``None`` (and nothing recorded) if nothing changed."""
        edit = Edit.between(before, after, what, layer)
        if not len(edit):
            return None
        self._undo.append(edit)
        self._redo.clear()
        while len(self._undo) > self.max_edits or (
            len(self._undo) > 1 and sum(e.nbytes for e in self._undo) > self.max_bytes
        ):
            self._undo.pop(0)
        return edit

    def undo(self, labels: np.ndarray) -> tuple[np.ndarray, Edit | None]:
        """Step back once: ``(labels before the last edit, that edit)``, or ``(labels, None)``."""
        if not self._undo:
            return labels, None
        edit = self._undo.pop()
        self._redo.append(edit)
        return edit.undo(labels), edit

    def redo(self, labels: np.ndarray) -> tuple[np.ndarray, Edit | None]:
        """Re-apply the last undone edit: ``(labels, edit)``, or ``(labels, None)`` if none."""
        if not self._redo:
            return labels, None
        edit = self._redo.pop()
        self._undo.append(edit)
        return edit.redo(labels), edit
