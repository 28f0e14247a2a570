"""Handlers of the editing panel: click tools, painted strokes, undo / redo, the label, the brush and the zoom.

The overlay's zoom is a per-user :class:`demo.zoom.Zoom` (a ``gr.State``): every redraw shows
the zoomed crop, and clicks on it are mapped back to working-image pixels before any tool runs.
"""

from __future__ import annotations

import cv2
import gradio as gr
import numpy as np

from ssfnet.data import correction_persons
from ssfnet.files import atomic_write_bytes

from . import editing
from .context import AppContext
from .keys import POLYGON_TOOL
from .render import fast_png, label_name, legend_html, render_overlay, write_downloads
from .superpixels import DEFAULT_SEGMENTS, MAX_SEGMENTS, MIN_SEGMENTS
from .widgets import (
    as_int,
    brush,
    brush_choice,
    brush_size,
    brush_stepped,
    hidden_set,
    label_of,
    label_value,
    mistake,
    painting_html,
    pending_strokes,
    require,
)
from .zoom import ZOOMS, Zoom, current_zoom, display_window, step

ZOOM_TOOL = "Zoom in"
PICK_TOOL = "Pick label"
DOT_TOOL = "Paint dot (brush size)"
SUPERPIXEL_TOOL = "Superpixel"
# The person tools edit the person ids beside the labels (demo.session.Session.persons), never the labels.
PERSON_SPLIT_TOOL = "Person: new id"
PERSON_MERGE_TOOL = "Person: merge (2 clicks)"
PERSON_CUT_TOOL = "Person: cut (2 clicks)"
PERSON_TOOLS = (PERSON_SPLIT_TOOL, PERSON_MERGE_TOOL, PERSON_CUT_TOOL)
# Width in working pixels of a cut between two clicks.
CUT_WIDTH = 3


def _relabel_region(session, x: int, y: int, tolerance) -> np.ndarray:
    return editing.connected_region(session.labels, x, y)


def _flood_fill(session, x: int, y: int, tolerance) -> np.ndarray:
    # Only within the clicked label: a black skirt refilled must not take the black coat with it.
    return editing.colour_region(session.image, x, y, as_int(tolerance, "tolerance"), session.labels)


def _dot(session, x: int, y: int, tolerance) -> np.ndarray:
    return editing.disc(session.labels.shape, x, y, brush_size(session))


def segments_of(session) -> int:
    """How many superpixels the session's coarseness asks for."""
    return session.superpixel_segments or DEFAULT_SEGMENTS


def _superpixel(session, x: int, y: int, tolerance) -> np.ndarray:
    segments = segments_of(session)
    if not session.superpixels.ready(segments):
        # Said before the wait (a toast reaches the page at once): seconds on a large photo.
        h, w = session.labels.shape
        gr.Info(f"Cutting this {w}x{h} photo into about {segments} superpixels (once per photo and coarseness)...")
    ids = session.superpixels.get(session.image, segments).ids
    return ids == ids[y, x]


# The click tools that relabel pixels: the tool's name in the page -> the H x W mask of the
# pixels a click at working pixel (x, y) gives the chosen label, from the session, the point and
# the colour tolerance. A new tool of that kind is one entry here: the page, the API and undo,
# drafts and saving take it from there.
MASK_TOOLS = {
    "Relabel region": _relabel_region,
    "Flood fill (similar colour)": _flood_fill,
    DOT_TOOL: _dot,
    SUPERPIXEL_TOOL: _superpixel,
}
TOOLS = (PICK_TOOL, *MASK_TOOLS, POLYGON_TOOL, *PERSON_TOOLS, ZOOM_TOOL)
# What each tool does, under the tool list (the superpixel tool's also says what its superpixels cost).
TOOL_HINTS = {
    SUPERPIXEL_TOOL: (
        "Click a superpixel (their borders are lightened on the overlay) to give it the label. Tick "
        "**Add to the last click's edit** (or hold Shift while clicking) to add more superpixels to the "
        "same edit: one undo takes them all back."
    ),
    POLYGON_TOOL: (
        "Click the polygon's vertices on the overlay, then **Close polygon** (key Enter) to fill it with "
        "the label as one edit; **Cancel polygon** (key Esc) drops the vertices."
    ),
    PERSON_SPLIT_TOOL: (
        "Click a part of a person (say, the hair of someone drawn touching a neighbour) to make it a new "
        "person. Tick **Add to the last click's edit** (or hold Shift) and click that person's other parts "
        "to add them to the same new person: one undo takes them all back. The labels do not change."
    ),
    PERSON_MERGE_TOOL: (
        "Click a person, then click another: the second becomes part of the first (a person cut in two "
        "by a pole or a table)."
    ),
    PERSON_CUT_TOOL: (
        "Click on one side of two people drawn as one, then on the other side: the straight cut between "
        "the clicks splits that person in two (draw it across the person, edge to edge)."
    ),
}
# The zoom choices as the page names them, and the values they stand for: strings, the type the
# API documents for a choice (with int values it documented '4' and refused it).
ZOOM_CHOICES = [("Fit", "1")] + [(f"{factor}x", str(factor)) for factor in ZOOMS[1:]]
# How far the aspect ratio of the canvas's picture may differ from the photo's (a browser may
# export the canvas at another pixel density, never at another shape).
_ASPECT_TOLERANCE = 0.01


def segment_choice(value) -> int:
    """The coarseness slider's value: about how many superpixels to cut a photo into."""
    segments = as_int(value, "coarseness")
    if not MIN_SEGMENTS <= segments <= MAX_SEGMENTS:
        raise mistake(f"coarseness {segments}: choose between {MIN_SEGMENTS} and {MAX_SEGMENTS} superpixels")
    return segments


def _said(message: str) -> str:
    gr.Info(message)
    return message


def canvas_problem(editor_value, shape: tuple[int, int]) -> str | None:
    """Why the editor's canvas cannot hold strokes for a photo of ``shape`` (H x W); None when it can.

    The canvas holds strokes for the open photo only while it shows that photo's overlay: a blank
    canvas (its picture not loaded yet, or never drawn: the browser then sends no background) or
    one that shows a picture of another shape (a photo opened before) would place strokes at
    positions that mean nothing on this photo.
    """
    background = (editor_value or {}).get("background")
    if background is None:
        return "the canvas was blank (the photo had not loaded in it)"
    bh, bw = np.asarray(background).shape[:2]
    h, w = shape
    if bh == 0 or bw == 0 or abs((bh / bw) / (h / w) - 1) > _ASPECT_TOLERANCE:
        return f"the canvas showed a {bw}x{bh} picture, not this {w}x{h} photo"
    return None


class EditHandlers:
    """Edits of the current session, for the app ``app``; each returns the outputs it changes."""

    def __init__(self, app: AppContext) -> None:
        self.app = app

    def legend_for(self, session, hidden):
        """The legend with the hidden labels marked."""
        return legend_html(session, self.app.label_set_of(session), hidden_set(hidden))

    def shown(self, session, zoom: Zoom | None, opacity, hidden, full: str | None = None) -> str:
        """The overlay file to show at the user's zoom (see :meth:`AppContext.shown`)."""
        return self.app.shown(session, zoom, opacity, hidden, full)

    def views(self, session, zoom: Zoom | None, opacity, hidden) -> dict:
        """What every edit refreshes (:meth:`AppContext.views`), the overlay shown at the user's zoom."""
        return self.app.views(session, opacity, hidden, zoom)

    def rerender(self, session, zoom, opacity, hidden) -> dict:
        """Redraw the overlay (opacity / hidden labels changed); the editor keeps its strokes."""
        if session is None:
            return gr.skip()
        files = [str(p) for p in write_downloads(session, opacity, hidden_set(hidden), self.app.scratch.new())]
        ui = self.app.ui
        return {ui.view: self.shown(session, zoom, opacity, hidden, full=files[2]), ui.downloads: files}

    def record_click(self, session, zoom, evt: gr.SelectData) -> dict:
        """The clicked point in working-image pixels (a click on a zoomed overlay is mapped back)."""
        x, y = evt.index
        if session is not None:
            x, y = display_window(zoom, session).to_working(x, y)
        ui = self.app.ui
        return {ui.click_x: int(x), ui.click_y: int(y)}

    def apply_click(
        self, session, zoom, x, y, tool, label, tolerance, opacity, hidden, coarseness=None, add=False
    ) -> dict:
        """Apply a click tool at pixel (x, y) of the working image (the zoom changes nothing of that).

        ``coarseness``: about how many superpixels the superpixel tool cuts the photo into (None:
        the session's). ``add``: the click's relabelling joins the last click's edit when that is
        still the last edit and gave the same label (one undo step; see :meth:`Session.relabel`).
        The polygon tool adds a vertex; :meth:`close_polygon` fills the polygon.
        """
        session = require(session)
        if coarseness is not None:
            session.superpixel_segments = segment_choice(coarseness)
        x, y = as_int(x, "x"), as_int(y, "y")
        h, w = session.labels.shape
        if not (0 <= x < w and 0 <= y < h):
            raise mistake(f"({x}, {y}) lies outside the {w}x{h} image")
        if tool == ZOOM_TOOL:
            return self.zoom_in(session, zoom, x, y, opacity, hidden)
        if tool == POLYGON_TOOL:
            session.polygon.append((x, y))
            return {self.app.ui.view: self.shown(session, zoom, opacity, hidden)}
        if tool == PICK_TOOL:
            value = int(session.labels[y, x])
            gr.Info(f"Picked {label_name(session.label_set, value)}")
            ui = self.app.ui
            return {
                ui.editor: gr.ImageEditor(brush=brush(session.label_set, value, brush_size(session))),
                ui.label: value,
            }
        if tool in PERSON_TOOLS:
            self.person_click(session, x, y, tool, bool(add))
            return self.views(session, zoom, opacity, hidden)
        if tool not in MASK_TOOLS:
            raise mistake(f"unknown tool {tool!r}; choose one of {', '.join(TOOLS)}")
        value = label_of(session.label_set, label)
        mask = MASK_TOOLS[tool](session, x, y, tolerance)
        changed = session.relabel(mask, value, f"{tool} at ({x}, {y})", add=bool(add))
        if not changed:
            gr.Info("Nothing changed: that region already has this label.")
        return self.views(session, zoom, opacity, hidden)

    def person_click(self, session, x: int, y: int, tool: str, add: bool = False) -> str:
        """Apply a person tool at working pixel (x, y) (see :data:`TOOL_HINTS`); returns what it did, also in a toast.

        Merge and cut take two clicks: the first is kept in ``session.person_pick`` (shown on the
        overlay) until the second, with the same tool, comes.
        """
        person = session.person_at(x, y)
        pick = session.person_pick if session.person_pick and session.person_pick[0] == tool else None
        if tool == PERSON_SPLIT_TOOL:
            if not person:
                return _said(f"No person at ({x}, {y}): click a labelled part of someone.")
            region = editing.connected_region(session.labels, x, y) & (session.person_ids() == person)
            changed, given = session.split_person(region, f"new person at ({x}, {y})", add=add)
            return _said(f"Person {given} now holds that region." if changed else "Nothing changed.")
        if pick is None:
            if tool == PERSON_MERGE_TOOL and not person:
                return _said(f"No person at ({x}, {y}): click the person to merge into.")
            session.person_pick = (tool, x, y)
            if tool == PERSON_MERGE_TOOL:
                return _said(f"Person {person} chosen: click the person to merge into it.")
            return _said("Cut started: click on the other side of the people to cut them apart.")
        session.person_pick = None
        _, x0, y0 = pick
        if tool == PERSON_MERGE_TOOL:
            keep = session.person_at(x0, y0)
            if not person or not keep or person == keep:
                return _said("Nothing merged: click two different people.")
            session.edit_persons(
                correction_persons.merge_persons(session.person_ids(), keep, person),
                f"merge person {person} into {keep}",
            )
            return _said(f"Person {person} merged into person {keep}.")
        line = np.zeros(session.labels.shape, np.uint8)
        cv2.line(line, (x0, y0), (x, y), 1, CUT_WIDTH)
        ids = session.person_ids()
        crossed = np.bincount(ids[line.astype(bool)], minlength=256)[1:]
        if not crossed.any():
            return _said("The cut crosses no person: click on either side of the people to cut apart.")
        cut = int(crossed.argmax()) + 1
        new, made = correction_persons.cut_person(ids, cut, line.astype(bool))
        if not made:
            return _said(f"The cut does not divide person {cut}: draw it across the person, edge to edge.")
        session.edit_persons(new, f"cut person {cut} from ({x0}, {y0}) to ({x}, {y})")
        return _said(f"Person {cut} cut: the other side is now person {', '.join(map(str, made))}.")

    def show_persons(self, session, zoom, show, opacity, hidden) -> dict:
        """The toggle of the people's outlines on the overlay."""
        if session is None:
            return gr.skip()
        session.show_persons = bool(show)
        return {self.app.ui.view: self.shown(session, zoom, opacity, hidden)}

    def click_in_browser(
        self, session, zoom, x, y, tool, label, tolerance, opacity, hidden, coarseness, add, editor_value
    ) -> dict:
        """A click on the overlay; an edit is refused while the editor holds strokes that its redraw would drop."""
        edits = tool in MASK_TOOLS or tool in PERSON_TOOLS
        if edits and session is not None and pending_strokes(editor_value):
            gr.Warning(
                "Unapplied strokes in Paint labels: Apply strokes (or erase them) first; "
                f"the {tool.lower()} click would have discarded them, so it was not applied."
            )
            return gr.skip()
        if tool in MASK_TOOLS and session is not None:
            # A label typed that names none is said in a toast: an error would mark every output of
            # the click (the overlay, the label box, the status) as failed until they next change.
            try:
                label = label_of(session.label_set, label)
            except gr.Error as err:
                gr.Warning(f"{err.message} The click was not applied.")
                return gr.skip()
        return self.apply_click(session, zoom, x, y, tool, label, tolerance, opacity, hidden, coarseness, add)

    def close_polygon(self, session, zoom, label, opacity, hidden, editor_value=None) -> dict:
        """Fill the polygon of the clicked vertices with ``label`` as one edit (undoable) and drop the vertices.

        Refused with fewer than 3 vertices, and (the vertices kept) while the editor holds strokes
        that the redraw would drop.
        """
        session = require(session)
        vertices = session.polygon
        if len(vertices) < 3:
            raise mistake(
                f"a polygon needs at least 3 vertices to close; it has {len(vertices)}. "
                f"Click its corners on the overlay with the {POLYGON_TOOL} tool first."
            )
        if pending_strokes(editor_value):
            gr.Warning("Unapplied strokes in Paint labels: Apply strokes (or erase them) first; the polygon was kept.")
            return gr.skip()
        value = label_of(session.label_set, label)
        mask = editing.polygon_mask(session.labels.shape, vertices)
        session.polygon = []
        if not session.relabel(mask, value, f"polygon of {len(vertices)} vertices"):
            gr.Info("Nothing changed: the polygon's pixels already have this label.")
        return self.views(session, zoom, opacity, hidden)

    def cancel_polygon(self, session, zoom, opacity, hidden) -> dict:
        """Drop the polygon's vertices (the labels stay as they are)."""
        if session is None or not session.polygon:
            return gr.skip()
        session.polygon = []
        return {self.app.ui.view: self.shown(session, zoom, opacity, hidden)}

    def tool_note(self, session, tool, coarseness) -> str:
        """What the chosen tool does; for the superpixel tool the superpixels are computed here (a
        prefetch when the tool or the coarseness is chosen, or a photo opens), so a click finds them."""
        hint = TOOL_HINTS.get(tool, "")
        if session is not None:
            session.show_superpixels = tool == SUPERPIXEL_TOOL
            session.person_tool = tool in PERSON_TOOLS
        if session is not None and tool in PERSON_TOOLS:
            count = correction_persons.person_count(session.person_ids())
            return f"{hint}\n\n{count} {'person' if count == 1 else 'people'} in this photo (outlined on the overlay)."
        if tool != SUPERPIXEL_TOOL or session is None:
            return hint
        try:
            session.superpixel_segments = segment_choice(coarseness)
        except gr.Error as err:
            return f"{hint}\n\n{err.message}"
        done = session.superpixels.get(session.image, segments_of(session))
        h, w = session.labels.shape
        return f"{hint}\n\n{done.count} superpixels on this {w}x{h} photo (computed in {done.seconds:.1f} s)."

    def tool_view(self, session, zoom, opacity, hidden) -> dict:
        """The overlay redrawn after the tool or the coarseness changed: the superpixels' borders come or go."""
        if session is None:
            return gr.skip()
        return {self.app.ui.view: self.shown(session, zoom, opacity, hidden)}

    def _zoomed(self, session, zoom: Zoom, opacity, hidden) -> dict:
        ui = self.app.ui
        return {ui.zoom: zoom, ui.view: self.shown(session, zoom, opacity, hidden)}

    def zoom_to(self, session, zoom, factor, x, y, opacity, hidden) -> dict:
        """Show the overlay ``factor`` times enlarged (1: the whole image) around working pixel (x, y).

        In the page (x, y) is the last click (the typed point); without one the centre stays where it
        is. A point outside the image is taken at the nearest edge.
        """
        session = require(session)
        factor = as_int(factor, "zoom")
        if factor not in ZOOMS:
            raise mistake(f"zoom {factor}: choose one of {', '.join(map(str, ZOOMS))}")
        now = current_zoom(zoom, session)
        if x is None or y is None:
            x, y = now.x, now.y
        return self._zoomed(session, Zoom.on(session, factor, as_int(x, "x"), as_int(y, "y")), opacity, hidden)

    def zoom_in(self, session, zoom, x, y, opacity, hidden) -> dict:
        """Double the zoom around (x, y) (as :meth:`zoom_to`); at the largest zoom only centre there."""
        session = require(session)
        factor = step(current_zoom(zoom, session).factor, 1)
        return self.zoom_to(session, zoom, factor, x, y, opacity, hidden)

    def zoom_out(self, session, zoom, opacity, hidden) -> dict:
        """Halve the zoom around the same centre."""
        session = require(session)
        now = current_zoom(zoom, session)
        return self._zoomed(session, Zoom.on(session, step(now.factor, -1), now.x, now.y), opacity, hidden)

    def zoom_shown(self, session, zoom) -> str:
        """The zoom the overlay shows, for the zoom choice (after any redraw: a photo opens whole)."""
        return str(1 if session is None else current_zoom(zoom, session).factor)

    def canvas(self, session, opacity, hidden) -> dict:
        """The editor's value for ``session``: the whole overlay as its background, at the working
        size its strokes are taken at, and no strokes."""
        picture = render_overlay(session, opacity, hidden_set(hidden))
        path = atomic_write_bytes(self.app.scratch.new() / "canvas.png", fast_png(picture))
        return {"background": str(path), "layers": [], "composite": None}

    def paint_opened(self, session, editor_value, opacity, hidden) -> dict:
        """The Paint labels tab opened: a canvas that does not show the open photo is sent again.

        A canvas with strokes on the photo keeps them; strokes on a blank canvas (or on another
        photo's picture) cannot be placed, and the user is told to paint them again.
        """
        problem = None if session is None else canvas_problem(editor_value, session.labels.shape)
        if problem is None:
            return gr.skip()
        if pending_strokes(editor_value):
            gr.Warning(f"Strokes dropped: {problem}, so they could not be placed. Paint them again on the photo.")
        return {self.app.ui.editor: self.canvas(session, opacity, hidden)}

    def _strokes(self, session, zoom, editor_value, opacity, hidden, snap: bool) -> dict:
        session = require(session)
        h, w = session.labels.shape
        if problem := canvas_problem(editor_value, (h, w)):
            # Never placed by guesswork: the labels stay as they are and the canvas gets the photo again.
            if pending_strokes(editor_value):
                gr.Warning(
                    f"Nothing was applied: when the strokes were drawn, {problem}, so they cannot be placed. "
                    "The photo is sent to the canvas again: once it shows, paint the strokes again."
                )
            else:
                gr.Info(f"{problem[0].upper()}{problem[1:]}: the photo is sent to it again. Paint on it once it shows.")
            return self.views(session, zoom, opacity, hidden)
        layers = [np.asarray(layer) for layer in (editor_value or {}).get("layers") or []]
        if not layers:
            gr.Info("Paint on the image first: nothing to apply.")
            return gr.skip()
        new = session.labels
        for layer in layers:
            if layer.ndim != 3 or layer.shape[2] != 4:
                raise gr.Error(f"the editor sent a layer of shape {layer.shape}; expected RGBA")
            if layer.shape[:2] != (h, w):
                gr.Warning(
                    f"The painted layer is {layer.shape[1]}x{layer.shape[0]} but the image {w}x{h}; "
                    "it was scaled to fit."
                )
                layer = editing.resize_labels(layer, (h, w))
            if snap:
                new = editing.apply_strokes_snapped(new, session.image, layer, session.label_set)
            else:
                new = editing.apply_strokes(new, layer, session.label_set)
        changed = session.edit(new, "snapped strokes" if snap else "strokes")
        if not changed:
            gr.Info("The strokes changed no label.")
        return self.views(session, zoom, opacity, hidden)

    def apply_strokes(self, session, zoom, editor_value, opacity, hidden) -> dict:
        """Set every painted pixel to the label of its (snapped) brush colour."""
        return self._strokes(session, zoom, editor_value, opacity, hidden, snap=False)

    def snap_strokes(self, session, zoom, editor_value, opacity, hidden) -> dict:
        """Like apply_strokes, but each colour's strokes are first fitted to image edges (GrabCut)."""
        return self._strokes(session, zoom, editor_value, opacity, hidden, snap=True)

    def undo(self, session, zoom, opacity, hidden) -> dict:
        """Undo the last edit."""
        session = require(session)
        if session.undo() is None:
            gr.Info("Nothing to undo.")
        return self.views(session, zoom, opacity, hidden)

    def redo(self, session, zoom, opacity, hidden) -> dict:
        """Redo the last undone edit."""
        session = require(session)
        if session.redo() is None:
            gr.Info("Nothing to redo.")
        return self.views(session, zoom, opacity, hidden)

    def reset(self, session, zoom, opacity, hidden) -> dict:
        """Go back to the model's proposal (undoable)."""
        session = require(session)
        session.reset()
        return self.views(session, zoom, opacity, hidden)

    def label_typed(self, session, value, last) -> dict:
        """A label chosen or typed in the list: the brush takes its colour, a typed name becomes its entry.

        Text that names no label (see :func:`demo.widgets.label_of`) is refused in a toast and the
        list goes back to ``last``, the label chosen before, so the list, the brush and the click
        tools never disagree.
        """
        label_set = self.app.label_set_of(session)
        ui = self.app.ui
        try:
            chosen = label_of(label_set, value)
        except gr.Error as err:
            gr.Warning(f"{err.message} The label stays {label_name(label_set, label_value(label_set, last))}.")
            return {ui.label: label_value(label_set, last)}
        return {ui.label: chosen, ui.editor: gr.ImageEditor(brush=brush(label_set, chosen, brush_size(session)))}

    def painting_chip(self, session, value) -> dict:
        """What the brush paints, shown above the canvas (colour, id and name); the label kept as the last good one."""
        label_set = self.app.label_set_of(session)
        try:
            chosen = label_of(label_set, value)
        except gr.Error:
            return gr.skip()  # typed text that names no label: label_typed puts the list back
        ui = self.app.ui
        return {ui.painting: painting_html(label_set, chosen, brush_size(session)), ui.label_last: chosen}

    def key_label(self, session, key, current) -> dict:
        """A label picked with the number keys (see demo.keys): the dropdown, brush and chip follow."""
        label_set = self.app.label_set_of(session)
        try:
            value = int(str(key).split("#")[0])
        except ValueError:
            return gr.skip()
        if value not in editing.paint_ids(label_set)[0]:
            gr.Info(f"No label {value} in {label_set.name}")
            return gr.skip()
        ui = self.app.ui
        return {ui.label: value, ui.editor: gr.ImageEditor(brush=brush(label_set, value, brush_size(session)))}

    def _brush_shown(self, session, label) -> dict:
        """The editor's brush and the painting chip at ``session``'s brush size, in the colour of ``label``."""
        label_set = self.app.label_set_of(session)
        value = label_value(label_set, label)
        size = brush_size(session)
        ui = self.app.ui
        return {
            ui.editor: gr.ImageEditor(brush=brush(label_set, value, size)),
            ui.painting: painting_html(label_set, value, size),
        }

    def set_brush_size(self, session, size, label) -> dict:
        """The brush size chosen on the slider (working pixels; 0: proportional to the photo).

        It sets the paint brush's width and the dot tool's, for this photo and (through
        :meth:`brush_follow`) every photo opened after it.
        """
        chosen = brush_choice(size)
        if session is None:
            return gr.skip()
        session.brush_px = chosen
        ui = self.app.ui
        return {ui.session: session, ui.editor: self._brush_shown(session, label)[ui.editor]}

    def brush_follow(self, session, size, label) -> dict:
        """After a redraw: a photo just opened takes the slider's brush size, and the chip shows the width.

        The editor's brush is sent only when the size changes (a photo just opened has the
        proportional one); otherwise only the chip, whose width a new photo may change.
        """
        try:
            chosen = brush_choice(size)
        except gr.Error:
            return gr.skip()
        if session is None:
            return gr.skip()
        if session.brush_px != chosen:
            session.brush_px = chosen
            return self._brush_shown(session, label)
        try:
            value = label_of(session.label_set, label)
        except gr.Error:
            return gr.skip()  # typed text that names no label: label_typed puts the list back
        return {self.app.ui.painting: painting_html(session.label_set, value, brush_size(session))}

    def brush_step(self, session, size, steps) -> int:
        """The slider's value ``steps`` steps larger or smaller (the keys ] and [), from the width in use."""
        try:
            width = brush_choice(size) or brush_size(session) or 25  # 25: Gradio's own default width
        except gr.Error:
            width = brush_size(session) or 25
        return brush_stepped(width, as_int(steps, "steps"))
