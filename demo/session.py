"""One user's work: the photo, its label map, the model's proposal and the edit history.

A :class:`Session` lives in a ``gr.State`` (one per browser tab). It also knows
how to come from an upload or a saved correction and how to be saved.

Large images: parsing and editing happen at a *working resolution* whose longer
side is at most ``max_side`` (1600 px by default). Saving stores the image at
its full resolution (the uploaded bytes themselves when they are an 8-bit RGB or
grayscale JPEG or PNG, EXIF orientation included since readers apply it; else a
lossless PNG of the decoded, upright RGB pixels) and the label map enlarged to
that resolution with pixel-centre nearest neighbour, so image and labels always
match in size and reopening shrinks the labels back exactly; the metadata
records both sizes.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image

from ssfnet.data import correction_persons
from ssfnet.data.corrections import load_correction, load_persons, save_correction
from ssfnet.io import MAX_IMAGE_PIXELS, ImageError, exif_orientation, frame_count, read_image, read_image_and_size
from ssfnet.labels import LabelSet, get_label_set

from .editing import PERSONS, Edit, History, resize_image, resize_labels
from .superpixels import SuperpixelCache

# Below this many pixels on a side a photo cannot hold a person worth labelling.
MIN_SIDE = 16
# Formats and modes whose bytes decode to the same RGB pixels in any reader (Pillow's
# plain conversion as well as ssfnet.io.read_image), so the upload is stored as it is;
# other uploads (alpha, CMYK, 16-bit) are stored as a PNG of the pixels the annotator saw.
_KEEP_FORMATS = {"JPEG": "jpg", "PNG": "png"}
_KEEP_MODES = {"RGB", "L"}


@dataclass(frozen=True)
class Source:
    """Where the session's image came from, enough to save it at full resolution.

    Args:
        name: Original file name (without folders), if known.
        data: The encoded bytes as uploaded (or as stored in a correction).
        ext: Extension to store ``data`` under.
        size: ``(height, width)`` of the full image (after EXIF orientation).
        keep_bytes: Whether ``data`` can be stored as is (see the module docstring).
        notes: What was done to the image on reading, for the user.
    """

    name: str | None
    data: bytes
    ext: str
    size: tuple[int, int]
    keep_bytes: bool
    notes: tuple[str, ...] = ()

    def full_image(self) -> np.ndarray:
        """The full-resolution RGB image (decoded again: sessions keep only the working copy)."""
        return read_image(self.data)

    @cached_property
    def sha256(self) -> str:
        """Hex SHA-256 of ``data``: names the photo for drafts and the queue's status."""
        return hashlib.sha256(self.data).hexdigest()


def describe_upload(data: bytes) -> tuple[str | None, str | None, bool, bool]:
    """``(format, mode, rotated, transparent)`` of encoded image bytes, read from the header only."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            rotated = exif_orientation(im) != 1
            transparent = "A" in im.getbands() or "transparency" in im.info
            return im.format, im.mode, rotated, transparent
    except Exception:  # read_image gives the user-facing error; this only informs the notes
        return None, None, False, False


def read_upload(
    path: str | os.PathLike, *, name: str | None = None, max_pixels: int = MAX_IMAGE_PIXELS, max_side: int | None = None
) -> tuple[np.ndarray, Source]:
    """Read an uploaded file as an RGB image and its :class:`Source`.

    Args:
        path: The uploaded file.
        name: The name to speak of it by (default: the file's).
        max_pixels: Larger images are refused.
        max_side: If given, the image is returned at the working size (longer side at most
            ``max_side``) and decoded reduced, so that memory follows the working size and
            not the upload's; :attr:`Source.size` is always the full size.

    Raises:
        ImageError: not an image, corrupt, too large, or too small, with a message for the user.
    """
    path = Path(path)
    name = name or path.name
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ImageError(f"{name} could not be read: {err.strerror or err}") from None
    if not data:
        raise ImageError(f"{name} is an empty file")
    try:
        image, full_size = read_image_and_size(data, max_pixels=max_pixels, max_side=max_side)
    except ImageError as err:
        raise ImageError(str(err).replace("the upload", name, 1)) from None
    h, w = full_size
    if min(h, w) < MIN_SIDE:
        raise ImageError(f"{name} is only {w}x{h} pixels; a photo needs at least {MIN_SIDE} pixels on each side")
    fmt, mode, rotated, transparent = describe_upload(data)
    notes = []
    if rotated:
        notes.append("turned upright as its EXIF orientation says")
    if mode in ("L", "LA", "I", "I;16", "I;16B", "I;16L", "F", "1"):
        notes.append("grayscale: shown and parsed as RGB")
    if mode and mode.startswith("I;16"):
        notes.append("16-bit: scaled to 8 bits")
    if transparent:
        notes.append("transparent parts put on white")
    if mode == "CMYK":
        notes.append("CMYK: converted to RGB")
    frames = frame_count(data)
    if frames > 1:
        notes.append(f"animated ({frames} frames): only its first frame is parsed and saved")
    keep = fmt in _KEEP_FORMATS and mode in _KEEP_MODES
    ext = _KEEP_FORMATS[fmt] if keep else "png"
    return image, Source(name=name, data=data, ext=ext, size=(h, w), keep_bytes=keep, notes=tuple(notes))


@dataclass
class Session:
    """A photo being labelled.

    Args:
        image: H x W x 3 uint8, the working-resolution image.
        labels: H x W uint8, the current label map.
        proposal: H x W uint8, what the model (or the reopened record) proposed.
        label_set: Label set of the maps.
        source: The full-resolution original.
        model: Name of the checkpoint that proposed the labels ("" for none).
        details: Parsing options etc., stored in the saved metadata.
        parent: Id of the correction this session continues, if any.
        proposal_record: Id of the saved correction whose labels are the proposal (a reopened
            record: the model's output is not stored); None when the proposal is the model's.
        owner: Whose drafts keep the unsaved work (:meth:`demo.access.Access.draft_owner`); None: the
            drafts every user of a local-only app shares.
        brush_px: Brush width in working pixels chosen for this photo (paint brush and the
            dot tool); None: proportional to the photo (:func:`demo.widgets.brush_size`).
        superpixel_segments: About how many superpixels the superpixel tool cuts the photo into
            (the coarseness); None: :data:`demo.superpixels.DEFAULT_SEGMENTS`.
        superpixels: The photo's superpixels at the last coarseness used (computed on first use).
        polygon: The polygon tool's vertices so far, (x, y) working pixels; closing fills them.
        show_superpixels: Whether the overlay shows the superpixels' borders (the tool is chosen).
        persons: H x W uint8 person ids beside the labels as last edited (0 = none); None until a
            person is edited or the reopened record has them. What they mean is
            :meth:`person_ids` (fitted to the current labels); edits of them undo like label edits.
        show_persons: Whether the overlay outlines the people (the page's toggle or a person tool).
        person_tool: Whether a person tool is chosen (the overlay then outlines the people too).
        person_pick: The person tools' first click, ``(tool, x, y)`` in working pixels: the person to
            merge into, or where a cut starts.
    """

    image: np.ndarray
    labels: np.ndarray
    proposal: np.ndarray
    label_set: LabelSet
    source: Source
    model: str = ""
    details: dict = field(default_factory=dict)
    parent: str | None = None
    proposal_record: str | None = None
    owner: str | None = None
    history: History = field(default_factory=History)
    saved_digest: str | None = None
    brush_px: int | None = None
    superpixel_segments: int | None = None
    superpixels: SuperpixelCache = field(default_factory=SuperpixelCache, repr=False, compare=False)
    polygon: list[tuple[int, int]] = field(default_factory=list)
    show_superpixels: bool = False
    persons: np.ndarray | None = None
    show_persons: bool = False
    person_tool: bool = False
    person_pick: tuple[str, int, int] | None = None
    _last_person: _Relabel | None = field(default=None, repr=False, compare=False)
    # (labels, persons, their fitted person ids): every redraw with the people shown asks for them,
    # and edits replace the arrays (never change them in place), so the same two arrays give the same ids.
    _fitted: tuple | None = field(default=None, repr=False, compare=False)
    _last_relabel: _Relabel | None = field(default=None, repr=False, compare=False)

    @classmethod
    def start(
        cls,
        full_image: np.ndarray,
        source: Source,
        proposal: np.ndarray,
        label_set: LabelSet | str,
        *,
        model: str = "",
        details: dict | None = None,
        parent: str | None = None,
    ) -> Session:
        """A session on ``full_image`` scaled to ``proposal``'s size, starting from ``proposal``."""
        image = resize_image(full_image, proposal.shape)
        return cls(
            image=image,
            labels=proposal.copy(),
            proposal=proposal,
            label_set=get_label_set(label_set),
            source=source,
            model=model,
            details=dict(details or {}),
            parent=parent,
        )

    @property
    def changed_pixels(self) -> int:
        """Pixels whose label differs from the proposal (see :attr:`changed_from`)."""
        return int(np.count_nonzero(self.labels != self.proposal))

    @property
    def changed_from(self) -> str:
        """What :attr:`changed_pixels` counts from, in words: the model's proposal or a reopened record."""
        if self.proposal_record is not None:
            return f"the reopened record {self.proposal_record}"
        return "the model's proposal" if self.model else "the blank start"

    def continue_saved(self, labels: np.ndarray, record_id: str, persons: np.ndarray | None = None) -> None:
        """Start from the labels saved as ``record_id`` (same size), the model's proposal kept as the proposal.

        The session then continues that record: saving writes a record whose parent it is, and
        :attr:`changed_pixels` counts from the model's proposal, not from the record. ``persons``:
        the record's person ids at the same size, if it has them.
        """
        if labels.shape != self.labels.shape:
            raise ValueError(f"saved labels of size {labels.shape} on a photo of size {self.labels.shape}")
        self.label_set.validate(labels)
        self.labels = labels.copy()
        self.persons = None if persons is None or persons.shape != labels.shape else persons.copy()
        self.parent = record_id
        self.saved_digest = self.digest()

    def digest(self) -> str:
        """A digest of the labels and the person ids as edited (what saving keeps)."""
        persons = self.persons if self.persons_edited else None
        return _digest(self.labels) + ("" if persons is None else _digest(persons))

    @property
    def unsaved(self) -> bool:
        """Whether the labels (or edited person ids) differ from what was last saved (always, before a save)."""
        return self.saved_digest != self.digest()

    @property
    def persons_edited(self) -> bool:
        """Whether an edit that undo can still take back changed the person ids."""
        return self.history.has_layer(PERSONS)

    @property
    def has_work(self) -> bool:
        """Whether there are unsaved edits that a draft should keep (labels off the proposal, or people edited)."""
        return self.unsaved and (self.changed_pixels > 0 or self.persons_edited)

    @property
    def unreviewed(self) -> bool:
        """Whether the labels are still exactly the model's proposal, never saved or accepted, no person edited."""
        return self.parent is None and self.changed_pixels == 0 and not self.persons_edited

    def person_ids(self) -> np.ndarray:
        """H x W uint8 person ids of the current labels: :attr:`persons` where they still fit, the rest
        derived (:func:`ssfnet.data.correction_persons.fit_persons`); read-only, computed once per edit."""
        fitted = self._fitted
        if fitted is not None and fitted[0] is self.labels and fitted[1] is self.persons:
            return fitted[2]
        ids = correction_persons.fit_persons(self.labels, self.persons)
        ids.flags.writeable = False
        self._fitted = (self.labels, self.persons, ids)
        return ids

    def person_at(self, x: int, y: int) -> int:
        """The person id at working pixel (x, y); 0 where no person is."""
        return int(self.person_ids()[y, x])

    def edit_persons(self, new_persons: np.ndarray, what: str = "") -> int:
        """Make ``new_persons`` (H x W uint8) the person ids (undoable); returns how many pixels changed."""
        if new_persons.shape != self.labels.shape or new_persons.dtype != np.uint8:
            raise ValueError(
                f"person ids of size {new_persons.shape} {new_persons.dtype} on labels {self.labels.shape}"
            )
        before = self.person_ids() if self.persons is None else self.persons
        edit = self.history.record(before, new_persons, what, layer=PERSONS)
        if edit is None:
            return 0
        self.persons = new_persons
        self._last_relabel = None
        return len(edit)

    def split_person(self, mask: np.ndarray, what: str = "", *, add: bool = False) -> tuple[int, int]:
        """Give the person pixels of ``mask`` (H x W bool) a new person id as one edit.

        With ``add`` the last split, if it is still the last edit, takes this one in (one undo step,
        one new person), as :meth:`relabel` does.

        Returns:
            How many pixels changed and the id given (0 when nothing changed).
        """
        last = self._last_person
        person = None
        if add and last is not None and self.history.last is last.edit:
            self.undo()
            mask = mask | last.mask
            person, what = last.value, f"{last.what} + {what}"
        new, person = correction_persons.new_person(self.person_ids(), mask, person)
        changed = self.edit_persons(new, what)
        self._last_person = _Relabel(self.history.last, mask, person, what) if changed else None
        return changed, person if changed else 0

    @property
    def downscaled(self) -> bool:
        return self.image.shape[:2] != self.source.size

    def edit(self, new_labels: np.ndarray, what: str = "") -> int:
        """Make ``new_labels`` current (undoable); returns how many pixels changed."""
        if new_labels.shape != self.labels.shape:
            raise ValueError(f"edit of size {new_labels.shape} on labels of size {self.labels.shape}")
        self.label_set.validate(new_labels)
        edit = self.history.record(self.labels, new_labels, what)
        if edit is None:
            return 0
        self.labels = new_labels
        return len(edit)

    def relabel(self, mask: np.ndarray, value: int, what: str = "", *, add: bool = False) -> int:
        """Give the pixels of ``mask`` (H x W bool) the label ``value`` as one edit; returns how many changed.

        With ``add`` the last relabelling, if it is still the last edit and gave the same label, takes
        this one in: it is undone and done again over both masks, so the two stay one undo step (the
        superpixel tool's "add to the selection").
        """
        last = self._last_relabel
        if add and last is not None and last.value == value and self.history.last is last.edit:
            self.undo()
            mask = mask | last.mask
            what = f"{last.what} + {what}"
        new = self.labels.copy()
        new[mask] = value
        changed = self.edit(new, what)
        self._last_relabel = _Relabel(self.history.last, mask, value, what) if changed else None
        return changed

    def undo(self) -> str | None:
        """Undo the last edit (of the labels or of the person ids); returns its description, ``None`` if none."""
        last = self.history.last
        if last is not None and last.layer == PERSONS:
            self.persons, edit = self.history.undo(self.persons)
        else:
            self.labels, edit = self.history.undo(self.labels)
        return None if edit is None else edit.what

    def redo(self) -> str | None:
        """Redo the last undone edit; returns its description, ``None`` if there was nothing to redo."""
        following = self.history.next_redo
        if following is not None and following.layer == PERSONS:
            self.persons, edit = self.history.redo(self.persons)
        else:
            self.labels, edit = self.history.redo(self.labels)
        return None if edit is None else edit.what

    def reset(self) -> int:
        """Go back to the proposal (undoable); returns how many pixels changed."""
        return self.edit(self.proposal.copy(), "reset to the proposal")

    def full_labels(self) -> np.ndarray:
        """The label map at the full resolution of the original image."""
        return resize_labels(self.labels, self.source.size)

    def full_persons(self) -> np.ndarray:
        """The person ids (:meth:`person_ids`) at the full resolution of the original image."""
        return resize_labels(self.person_ids(), self.source.size)

    def save(self, root: str | os.PathLike, *, accept_proposal: bool = False) -> str:
        """Write the image, the labels and the metadata as a new correction record.

        Args:
            root: The corrections folder.
            accept_proposal: Save the model's proposal unedited, as reviewed and correct; without
                it an unedited proposal is refused, so machine output never passes for a correction.

        Returns:
            The new record's id; the session then continues from it (its ``parent``).

        Raises:
            ValueError: an unedited proposal without ``accept_proposal``, or a label value
                outside the label set (nothing is written).
            OSError: the folder cannot be written.
        """
        if self.unreviewed and not accept_proposal:
            raise ValueError(
                "these are the model's labels, unedited: correct them first, or accept the proposal as correct"
            )
        edited = self.changed_pixels or self.persons_edited
        review = "accepted proposal" if self.unreviewed else ("corrected" if edited else "re-saved")
        full_labels = self.full_labels()
        # Kept bytes are stored as uploaded: the full-resolution pixels are decoded only to
        # encode an upload that cannot be kept (alpha, CMYK, 16-bit).
        if not self.downscaled:
            image = self.image
        else:
            image = None if self.source.keep_bytes else self.source.full_image()
        extra = {
            **self.details,
            "working_size": list(self.image.shape[:2]),
            "saved_size": list(full_labels.shape),
            "labels_upscaled": self.downscaled,
            "pixels_changed_from_proposal": self.changed_pixels,
            # What edited_pixels counts from: "proposal" (the model's) or the record reopened.
            "edited_from": "proposal" if self.proposal_record is None else f"record {self.proposal_record}",
            "review": review,
            "source_sha256": self.source.sha256,
            # Whether a person checked the person ids (split or merged them) or they are derived.
            "persons_edited": self.persons_edited or self.details.get("persons_edited", False),
        }
        record_id = save_correction(
            root,
            image,
            full_labels,
            self.label_set,
            model=self.model,
            edited_pixels=self.changed_pixels,
            source_name=self.source.name,
            image_bytes=self.source.data if self.source.keep_bytes else None,
            image_ext=self.source.ext if self.source.keep_bytes else "png",
            parent=self.parent,
            extra=extra,
            # Ids a person split, merged or reopened are stored; ids nobody touched are derived
            # again from the labels wherever they are needed (exports, reopening), so a large
            # photo costs no second full-size map and its temporaries on every save.
            persons=None if self.persons is None else self.full_persons(),
        )
        self.parent = record_id
        self.saved_digest = self.digest()
        return record_id


@dataclass(frozen=True)
class _Relabel:
    """The last :meth:`Session.relabel`: its edit, its mask and label, which an added one joins."""

    edit: Edit | None
    mask: np.ndarray
    value: int
    what: str


def _digest(labels: np.ndarray) -> str:
    return hashlib.sha1(labels.tobytes() + repr(labels.shape).encode()).hexdigest()


def open_correction(root: str | os.PathLike, record_id: str, *, max_side: int) -> Session:
    """Continue editing a saved correction; saving it again writes a new record whose parent is ``record_id``.

    Raises:
        FileNotFoundError: no such record.
        ValueError: the record is inconsistent (e.g. a label map of the wrong size) or unknown label set.
    """
    image, proposal, meta = load_correction(root, record_id, max_side=max_side)
    try:
        label_set = get_label_set(meta.get("label_set", ""))
    except KeyError as err:
        raise ValueError(f"correction {record_id}: {err.args[0]}") from None
    label_set.validate(proposal)
    ext = str(meta.get("image_ext", "png"))
    image_path = Path(root) / "images" / f"{record_id}.{ext}"
    try:
        data, keep = image_path.read_bytes(), True
        # load_correction checked that the stored label map has the photo's full upright size (the
        # proposal it returned is at the working size); its PNG header gives that size undecoded.
        with Image.open(Path(root) / "labels" / f"{record_id}.png") as stored:
            size = (stored.height, stored.width)
    except OSError:
        # The pixels were readable a moment ago; keep those of the working copy losslessly rather than fail.
        data, keep, ext, size = _png(image), False, "png", image.shape[:2]
    source = Source(name=meta.get("source_name") or None, data=data, ext=ext, size=size, keep_bytes=keep)
    extra = meta.get("extra") if isinstance(meta.get("extra"), dict) else {}
    details = {k: v for k, v in extra.items() if k in ("checkpoint", "multiscale", "flip", "device", "persons_edited")}
    session = Session.start(
        image, source, proposal, label_set, model=str(meta.get("model", "")), details=details, parent=record_id
    )
    session.proposal_record = record_id
    # Records saved before person ids were kept have none: they are derived from the labels when needed.
    session.persons = load_persons(root, record_id, proposal.shape)
    session.saved_digest = session.digest()
    return session


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()
