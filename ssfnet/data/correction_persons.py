"""Person ids of a correction: which person each labelled pixel belongs to, in multi-person photos.

A person id map is H x W uint8 beside the part labels: 0 where no person is (background and
unlabelled pixels), 1, 2, ... one id per person. It is derived from the label map
(:func:`derive_persons`): the connected pieces of the non-background labels, pieces much smaller
than the largest one and close to a larger piece (a hand cut off by a bag strap, a shoe behind a
chair leg) joined to the nearest larger piece. People drawn touching come out as one person; the app's
person tools split and merge them.

Kept as an 8-bit PNG (``persons/<id>.png`` of a corrections folder, grey values = ids), written with
the record's other files (:mod:`ssfnet.data.correction_files`).
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image
from scipy import ndimage

from ssfnet.labels import IGNORE_INDEX

BACKGROUND = 0
MAX_PERSONS = 255
# A piece is a fragment of a nearby person when its area is under this share of the largest piece ...
FRAGMENT_SHARE = 0.1
# ... and it lies within this many times the square root of that person's area from it.
FRAGMENT_REACH = 0.5


def person_mask(labels: np.ndarray) -> np.ndarray:
    """H x W bool: the pixels of a person (every label but background and unlabelled)."""
    return (labels != BACKGROUND) & (labels != IGNORE_INDEX)


def _nearest(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distance to the nearest pixel with an id, that pixel's id) of every pixel; ``ids`` has some.

    OpenCV's 5 x 5 distance (within a few per cent of Euclidean; 4x faster than SciPy's exact one on
    a 1600 px map), so where two people are about equally near a pixel may go to either.
    """
    known = ids > 0
    distance, pixel = cv2.distanceTransformWithLabels(
        (~known).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    # With DIST_LABEL_PIXEL the pixels with an id are numbered 1, 2, ... in row-major order.
    return distance, np.concatenate([[0], ids[known]]).astype(np.uint8)[pixel]


def _nearest_ids(ids: np.ndarray, where: np.ndarray) -> np.ndarray:
    """``ids`` with the pixels of ``where`` given the id of the nearest pixel that has one (ids > 0)."""
    if not (ids > 0).any() or not where.any():
        return ids
    out = ids.copy()
    out[where] = _nearest(ids)[1][where]
    return out


def _components(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """(count, H x W int32 component ids 1.., areas by id) of the 8-connected pieces of ``mask``."""
    count, comp, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return count - 1, comp, stats[:, cv2.CC_STAT_AREA]


def fit_persons(labels: np.ndarray, persons: np.ndarray | None = None) -> np.ndarray:
    """The person ids of ``labels``, keeping those of ``persons`` where they still fit.

    Pixels that are no longer a person lose their id; person pixels without one (all of them when
    ``persons`` is None) are given ids piece by piece: a piece that touches a person, or is a small
    fragment near one (see the module docstring), takes the nearest person's id; any other piece
    becomes a new person (the largest first, numbered from the lowest free id).

    Args:
        labels: H x W uint8 label map.
        persons: H x W uint8 person ids of the same size, or None.

    Returns:
        H x W uint8 person ids (0 = no person).

    Raises:
        ValueError: sizes differ, or more than :data:`MAX_PERSONS` people.
    """
    mask = person_mask(labels)
    if persons is None:
        ids = np.zeros(labels.shape, np.uint8)
    else:
        if persons.shape != labels.shape:
            raise ValueError(f"person ids are {persons.shape}, the labels {labels.shape}")
        ids = np.where(mask, persons, 0).astype(np.uint8)
    missing = mask & (ids == 0)
    if not missing.any():
        return ids
    count, comp, areas = _components(missing)
    known = ids > 0
    touching = np.zeros(count + 1, bool)
    if known.any():
        grown = cv2.dilate(known.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        touching[np.unique(comp[grown & missing])] = True
    loose = sorted((c for c in range(1, count + 1) if not touching[c]), key=lambda c: -int(areas[c]))
    sizes = np.bincount(ids.reshape(-1), minlength=256)
    largest = max([int(areas[c]) for c in loose] + [int(sizes[1:].max())])
    taken = set(np.flatnonzero(sizes[1:]) + 1)
    free = [i for i in range(1, MAX_PERSONS + 1) if i not in taken]
    # Pieces that become people (the largest loose one always does when nobody has an id yet).
    new_id = np.zeros(count + 1, np.uint8)
    fragments = []
    for c in loose:
        if areas[c] < FRAGMENT_SHARE * largest and (known.any() or new_id.any()):
            fragments.append(c)
            continue
        if not free:
            raise ValueError(f"more than {MAX_PERSONS} people in one photo")
        new_id[c] = free.pop(0)
    ids = np.where(missing, new_id[comp], ids).astype(np.uint8)
    if fragments:
        ids = _join_fragments(ids, comp, fragments, free)
    return _nearest_ids(ids, mask & (ids == 0))


def _join_fragments(ids: np.ndarray, comp: np.ndarray, fragments: list[int], free: list[int]) -> np.ndarray:
    """Fragments near a person join it (later, by nearest id); those far from everyone become people."""
    distance, nearest = _nearest(ids)
    sizes = np.bincount(ids.reshape(-1), minlength=256)
    gaps = ndimage.minimum(distance, comp, fragments)
    where = ndimage.minimum_position(distance, comp, fragments)
    new_id = np.zeros(int(comp.max()) + 1, np.uint8)
    for c, gap, (y, x) in zip(fragments, np.atleast_1d(gaps), where):
        neighbour = nearest[y, x]
        if gap > FRAGMENT_REACH * np.sqrt(sizes[neighbour]) and free:
            new_id[c] = free.pop(0)
    return np.where(new_id[comp] > 0, new_id[comp], ids).astype(np.uint8)


def derive_persons(labels: np.ndarray) -> np.ndarray:
    """H x W uint8 person ids derived from the label map alone (see :func:`fit_persons`)."""
    return fit_persons(labels, None)


def free_id(persons: np.ndarray) -> int:
    """The lowest person id that ``persons`` does not use.

    Raises:
        ValueError: all :data:`MAX_PERSONS` ids are in use.
    """
    used = np.bincount(persons.reshape(-1), minlength=256)
    free = np.flatnonzero(used[1 : MAX_PERSONS + 1] == 0)
    if not free.size:
        raise ValueError(f"all {MAX_PERSONS} person ids are in use")
    return int(free[0]) + 1


def merge_persons(persons: np.ndarray, keep: int, other: int) -> np.ndarray:
    """``persons`` with every pixel of person ``other`` given to person ``keep``."""
    return np.where(persons == other, np.uint8(keep), persons).astype(np.uint8)


def new_person(persons: np.ndarray, mask: np.ndarray, person: int | None = None) -> tuple[np.ndarray, int]:
    """``persons`` with the person pixels of ``mask`` (H x W bool) given to ``person`` (default: a new id).

    Returns:
        The new map and the id given.
    """
    person = free_id(persons) if person is None else person
    out = persons.copy()
    out[mask & (persons > 0)] = person
    return out, person


def cut_person(persons: np.ndarray, person: int, line: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Cut person ``person`` along ``line`` (H x W bool, e.g. a drawn stroke) into people of their own.

    The person's pixels off the line fall into 8-connected pieces: the largest keeps the id, every
    other piece of at least 1 % of the person becomes a new person, and crumbs and the line's own
    pixels join the nearest piece.

    Returns:
        The new map and the new ids (empty when the line does not divide the person).
    """
    body = persons == person
    count, comp, areas = _components(body & ~line)
    if count < 2:
        return persons.copy(), []
    order = sorted(range(1, count + 1), key=lambda c: -int(areas[c]))
    big = [c for c in order if areas[c] >= 0.01 * body.sum()]
    if len(big) < 2:
        return persons.copy(), []
    out = persons.copy()
    out[body] = 0
    new_ids = []
    for k, c in enumerate(big):
        pid = person if k == 0 else free_id(out)
        out[comp == c] = pid
        if k:
            new_ids.append(pid)
    rest = body & (out == 0)
    # Nearest among this person's pieces only: the crumbs of a cut never go to a bystander.
    pieces = np.where(body, out, 0)
    out[rest] = _nearest_ids(pieces, rest)[rest]
    return out, new_ids


def person_count(persons: np.ndarray) -> int:
    """How many people a person id map holds."""
    return int(np.count_nonzero(np.bincount(persons.reshape(-1), minlength=256)[1:]))


def encode_persons(persons: np.ndarray) -> bytes:
    """H x W uint8 person ids -> 8-bit greyscale PNG bytes."""
    if persons.ndim != 2 or persons.dtype != np.uint8:
        raise ValueError(f"person ids must be an H x W uint8 map, got shape {persons.shape} dtype {persons.dtype}")
    buffer = io.BytesIO()
    Image.fromarray(persons, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def decode_persons(data: bytes | io.IOBase) -> np.ndarray:
    """The H x W uint8 person ids of a PNG written by :func:`encode_persons` (or any 8-bit one)."""
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    with Image.open(source) as im:
        if im.mode not in ("L", "P"):
            raise ValueError(f"person ids must be an 8-bit PNG, got mode {im.mode}")
        return np.array(im)
