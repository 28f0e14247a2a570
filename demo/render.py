"""What the app shows and offers for download: overlays, the legend, files and a JSON summary."""

from __future__ import annotations

import html
import io
import json
import re
import shutil
import tempfile
import threading
import time
import weakref
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ssfnet.files import atomic_write_bytes
from ssfnet.io import label_png_bytes, overlay
from ssfnet.labels import IGNORE_INDEX, LabelSet, voc_palette

from .cleanup import make_temp_dir
from .editing import label_shares
from .session import Session
from .zoom import Window


def label_name(label_set: LabelSet, value: int) -> str:
    """Display name of a stored value: class, coarse label (with its members) or ignore."""
    if value == IGNORE_INDEX:
        return "ignore (unlabelled)"
    if value < label_set.num_classes:
        return label_set.names[value]
    if value < label_set.num_ids:
        members = ", ".join(label_set.names[c] for c in label_set.members(value))
        return f"{label_set.all_names[value]} (any of: {members})"
    return f"unknown value {value}"


def label_choices(label_set: LabelSet) -> list[tuple[str, int]]:
    """Dropdown choices ``(name, id)``: the classes, the coarse labels, then ignore."""
    values = [*range(label_set.num_ids), IGNORE_INDEX]
    return [(f"{v}: {label_name(label_set, v)}" if v != IGNORE_INDEX else label_name(label_set, v), v) for v in values]


def hex_colour(rgb) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in rgb))


def render_overlay(session: Session, opacity: float, hidden: set[int]) -> np.ndarray:
    """The working image with the label colours blended in; ``hidden`` values stay unpainted."""
    return overlay(session.image, session.labels, session.label_set, alpha=opacity, hidden=frozenset(hidden))


def zoomed_overlay(session: Session, window: Window, opacity: float, hidden: set[int]) -> np.ndarray:
    """The overlay of the part of the image ``window`` shows, enlarged as it says (see :mod:`demo.zoom`).

    Only the crop is blended and enlarged: the picture is about the working image's size at any zoom.
    """
    image, labels = window.crop(session.image), window.crop(session.labels)
    return window.enlarge(overlay(image, labels, session.label_set, alpha=opacity, hidden=frozenset(hidden)))


def draw_borders(picture: np.ndarray, ids: np.ndarray, window: Window) -> np.ndarray:
    """``picture`` (the shown overlay of ``window``) with the borders between superpixels lightened.

    ``ids`` are the superpixels of the whole working image (H x W); borders are found on the picture's
    own pixels, so that a zoomed overlay shows them one pixel wide.
    """
    shown = window.enlarge(window.crop(ids))
    edge = np.zeros(shown.shape, dtype=bool)
    edge[:, 1:] |= shown[:, 1:] != shown[:, :-1]
    edge[1:, :] |= shown[1:, :] != shown[:-1, :]
    out = np.ascontiguousarray(picture[..., :3]).copy()
    out[edge] = out[edge] // 2 + 128
    return out


def draw_vertices(picture: np.ndarray, vertices: list[tuple[int, int]], window: Window) -> np.ndarray:
    """``picture`` (the shown overlay of ``window``) with the polygon tool's vertices and the edges between them.

    Drawn in the picture's own pixels (vertices are working pixels), white over a dark outline so
    that they show on any colour; the first vertex is larger (closing joins the last to it).
    """
    out = np.ascontiguousarray(picture[..., :3]).copy()
    points = np.array([window.to_shown(x, y) for x, y in vertices], dtype=np.int32).reshape(-1, 1, 2)
    for colour, grow in (((0, 0, 0), 2), ((255, 255, 255), 0)):
        if len(points) > 1:
            cv2.polylines(out, [points], False, colour, 1 + grow, cv2.LINE_AA)
        for i, (x, y) in enumerate(points[:, 0]):
            cv2.circle(out, (int(x), int(y)), (5 if i == 0 else 3) + grow // 2, colour, -1, cv2.LINE_AA)
    return out


def draw_persons(
    picture: np.ndarray, persons: np.ndarray, window: Window, pick: tuple[int, int] | None = None
) -> np.ndarray:
    """``picture`` (the shown overlay of ``window``) with each person outlined in a colour of its own
    and numbered with its id; ``pick`` (a person tool's first click, working pixels) is marked.

    Args:
        picture: The shown overlay, h x w x 3 uint8.
        persons: H x W uint8 person ids of the whole working image (0 = no person).
        window: What the picture shows of the working image.
        pick: The first click of a merge or cut, if one is waiting for its second.
    """
    shown = window.enlarge(window.crop(persons))
    # Both sides of every change of id: a line two pixels wide that shows on any colour.
    edge = np.zeros(shown.shape, dtype=bool)
    across, down = shown[:, 1:] != shown[:, :-1], shown[1:, :] != shown[:-1, :]
    edge[:, 1:] |= across
    edge[:, :-1] |= across
    edge[1:, :] |= down
    edge[:-1, :] |= down
    # Each edge pixel takes the colour of the person beside it (the larger id where two meet).
    owner = cv2.dilate(shown, np.ones((3, 3), np.uint8))
    palette = np.asarray(voc_palette(256), dtype=np.uint8).reshape(-1, 3)
    palette[0] = 255
    out = np.ascontiguousarray(picture[..., :3]).copy()
    out[edge] = palette[owner[edge]]
    for person in np.unique(shown[shown > 0]).tolist():
        ys, xs = np.nonzero(shown == person)
        at = (int(np.median(xs)), int(np.median(ys)))
        for colour, width in (((0, 0, 0), 4), ((255, 255, 255), 1)):
            cv2.putText(out, str(person), at, cv2.FONT_HERSHEY_SIMPLEX, 0.7, colour, width, cv2.LINE_AA)
    if pick is not None:
        x, y = window.to_shown(*pick)
        for colour, radius in (((0, 0, 0), 8), ((255, 255, 255), 6)):
            cv2.circle(out, (int(x), int(y)), radius, colour, 2, cv2.LINE_AA)
    return out


def legend_html(session: Session | None, label_set: LabelSet, hidden: set[int] | frozenset[int] = frozenset()) -> str:
    """An HTML legend: the labels present (largest share first), then the others folded away.

    Labels in ``hidden`` are marked "hidden" (struck through): they are not painted in the
    overlay. Without a session every label of ``label_set`` is listed, so the palette can be
    read before parsing (the brush offers the same colours).
    """
    present = dict(label_shares(session.labels, session.label_set)) if session else {}
    label_set = session.label_set if session else label_set
    lut = label_set.colour_lut()

    def row(v: int) -> str:
        share = f"{100 * present[v]:.1f}%" if v in present else ""
        name = html.escape(label_name(label_set, v))
        if v in hidden:
            name = f"<s>{name}</s> <i>(hidden)</i>"
        return (
            f"<tr><td><span style='display:inline-block;width:1.2em;height:1.2em;border:1px solid #888;"
            f"background:{hex_colour(lut[v])}'></span></td><td>{v}</td><td>{name}</td>"
            f"<td style='text-align:right'>{share}</td></tr>"
        )

    head = "<thead><tr><th></th><th>id</th><th>label</th><th>share</th></tr></thead>"
    shown = sorted(present, key=lambda v: -present[v])
    others = [v for v in [*range(label_set.num_ids), IGNORE_INDEX] if v not in present]
    if not shown:
        body = "".join(map(row, others))
        return f"<table class='ssfnet-legend' style='font-size:0.9em'>{head}<tbody>{body}</tbody></table>"
    folded = (
        f"<details><summary>{len(others)} other labels (not in this photo)</summary>"
        f"<table style='font-size:0.9em'><tbody>{''.join(map(row, others))}</tbody></table></details>"
        if others
        else ""
    )
    return (
        f"<div style='font-size:0.9em'><div>{len(shown)} labels in this photo</div>"
        f"<table class='ssfnet-legend'>{head}<tbody>{''.join(map(row, shown))}</tbody></table>{folded}</div>"
    )


def summary(session: Session) -> dict:
    """A JSON-serialisable description of the current label map."""
    h, w = session.labels.shape
    classes = [
        {
            "id": v,
            "name": label_name(session.label_set, v),
            "pixels": int(round(share * h * w)),
            "share": round(share, 6),
        }
        for v, share in label_shares(session.labels, session.label_set)
    ]
    return {
        "source": session.source.name,
        "label_set": session.label_set.name,
        "size": {"width": w, "height": h},
        "original_size": {"width": session.source.size[1], "height": session.source.size[0]},
        "model": session.model,
        **session.details,
        "pixels_changed_from_proposal": session.changed_pixels,
        "classes": classes,
    }


def _stem(name: str | None) -> str:
    stem = Path(name or "image").stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)[:60] or "image"


def fast_png(rgb: np.ndarray) -> bytes:
    """Lossless PNG with light compression: 4x faster than the default and what the app re-sends on every edit."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def write_downloads(session: Session, opacity: float, hidden: set[int], folder: str | Path) -> list[Path]:
    """Write the label PNG (indexed, with palette), colour mask, overlay and JSON summary.

    Files are at the working resolution (what the app shows); saved corrections hold the
    full resolution.

    Args:
        session: The session to export.
        opacity: Overlay opacity.
        hidden: Values left unpainted in the overlay.
        folder: Where to write.

    Returns:
        The paths of the label PNG, colour PNG, overlay PNG (also what the app displays) and JSON.
    """
    folder = Path(folder)
    stem = _stem(session.source.name)
    files = {
        f"{stem}_labels.png": label_png_bytes(session.labels, session.label_set),
        f"{stem}_colour.png": fast_png(session.label_set.colourise(session.labels)),
        f"{stem}_overlay.png": fast_png(render_overlay(session, opacity, hidden)),
        f"{stem}_summary.json": json.dumps(summary(session), indent=2).encode(),
    }
    return [atomic_write_bytes(folder / name, data) for name, data in files.items()]


class Scratch:
    """Fresh temporary folders for files handed to Gradio, removed after ``max_age`` seconds.

    Gradio copies returned files into its own cache, so ours are only needed briefly;
    pruning on each request keeps a long-running server from filling the disk.
    """

    def __init__(self, max_age: float = 3600.0) -> None:
        self.root = make_temp_dir("ssfnet-app-")
        self.max_age = max_age
        self._lock = threading.Lock()
        weakref.finalize(self, shutil.rmtree, self.root, ignore_errors=True)

    def new(self) -> Path:
        with self._lock:
            cutoff = time.time() - self.max_age
            for old in self.root.iterdir():
                try:
                    if old.stat().st_mtime < cutoff:
                        shutil.rmtree(old, ignore_errors=True)
                except FileNotFoundError:
                    continue
            return Path(tempfile.mkdtemp(dir=self.root))
