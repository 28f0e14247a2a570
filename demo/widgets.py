"""Small Gradio helpers that hold no app state: errors, input checks, the brush, the label widgets' values."""

from __future__ import annotations

import html
import io
from collections.abc import Iterable

import gradio as gr
import numpy as np
from PIL import Image

from ssfnet.labels import IGNORE_INDEX, LabelSet

from . import editing
from .render import hex_colour, label_choices, label_name
from .session import Session


def mistake(message: str) -> gr.Error:
    """A ``gr.Error`` for a user's mistake: shown to the user, not logged as a server fault with a traceback."""
    return gr.Error(message, print_exception=False)


def require(session: Session | None) -> Session:
    """``session``, or the error that asks for a photo first."""
    if session is None:
        raise mistake(
            "Parse a photo (or reopen a saved correction) first. An open photo left idle for long is "
            "forgotten: its unsaved edits are kept under **Drafts**."
        )
    return session


def as_int(value, name: str) -> int:
    """``value`` (a number, or its text) rounded to an int; a user's mistake otherwise."""
    try:
        return int(round(float(value)))
    except (TypeError, ValueError):
        raise mistake(f"{name} must be a number, got {value!r}") from None


def _name_key(text: str) -> str:
    """A label name as typed, compared loosely: case, spaces, underscores and hyphens do not matter."""
    return "".join(c for c in text.lower() if c.isalnum())


def label_of(label_set: LabelSet, value) -> int:
    """The paintable id of ``label_set`` that ``value`` names: its id (a number or its text), the
    dropdown's text for it (``"13: face"``), its name (``"face"``, ``"Upper clothes"``) or the start of
    exactly one name (``"fa"``); a user's mistake otherwise, which says what was meant or what to type.
    """
    ids = [int(v) for v in editing.paint_ids(label_set)[0]]
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = int(round(value))
        if number in ids:
            return number
        raise mistake(f"{number} is not a label of {label_set.name}")
    text = str(value if value is not None else "").strip()
    if not text:
        raise mistake(f"Choose a label of {label_set.name} first.")
    try:  # "13", or the dropdown's "13: face"
        number = float(text.split(":", 1)[0])
    except ValueError:
        number = None
    if number is not None:
        return label_of(label_set, number)
    names = {_name_key(label_name(label_set, v).split(" (")[0]): v for v in ids}
    names[_name_key("ignore")] = names[_name_key("unlabelled")] = IGNORE_INDEX
    key = _name_key(text.split(" (")[0])
    if key in names:
        return names[key]
    starting = sorted({v for name, v in names.items() if key and name.startswith(key)})
    if len(starting) == 1:
        return starting[0]
    if starting:
        which = ", ".join(label_name(label_set, v).split(" (")[0] for v in starting)
        raise mistake(f"{text!r} could be any of {which}: type more of the name, or its number")
    raise mistake(
        f"No label {text!r} in {label_set.name}: pick one from the list, or type its number or name (e.g. 2 or hair)"
    )


def hidden_choices(label_set: LabelSet) -> list[tuple[str, str]]:
    """The hide-labels checkboxes: label ids as strings, the type Gradio's API documents for choices.

    (With int values the API refused the documented ``"0"``; the label dropdown takes custom
    values instead, so both ``2`` and ``"2"`` reach its handlers, which check them.)
    """
    return [(name, str(value)) for name, value in label_choices(label_set)]


def hidden_set(hidden: Iterable | None) -> set[int]:
    """The ids ticked in the hide-labels checkboxes."""
    return {int(v) for v in hidden or []}


def label_value(label_set: LabelSet, value) -> int:
    """The paintable id of ``label_set`` that ``value`` names (see :func:`label_of`); background (0) when none."""
    try:
        return label_of(label_set, value)
    except gr.Error:
        return 0


def brush(label_set: LabelSet, selected: int = 0, size: int | None = None) -> gr.Brush:
    """A brush of the one colour of label ``selected``, ``size`` pixels wide (default: Gradio's).

    Only that colour is offered: a palette of every label let the brush be switched in the
    editor (or be reset by an update) apart from the "Label to apply" list, so strokes were
    applied as a label other than the one shown. The list is the one way to change it.
    """
    ids, colours = editing.paint_ids(label_set)
    colour = hex_colour(colours[list(ids).index(label_value(label_set, selected))])
    return gr.Brush(default_size=size or "auto", colors=[colour], default_color=colour, color_mode="fixed")


# The brush-size slider's range in working pixels (0 on the slider: proportional to the photo).
BRUSH_MAX = 256
# One press of [ or ] (or the - / + buttons beside the slider) changes the width by this factor.
BRUSH_STEP = 1.25


def brush_size(session: Session | None) -> int | None:
    """The brush width of ``session``'s photo: the one chosen on the slider, else 1/40 of its longer
    side (Gradio's fixed 25 px is a hair on a 1600 px photo and a smear on a 300 px one)."""
    if session is None:
        return None
    if session.brush_px:
        return session.brush_px
    return max(3, round(max(session.labels.shape) / 40))


def brush_choice(value) -> int | None:
    """The slider's brush size as a width in pixels; None for 0 (proportional to the photo)."""
    size = as_int(value if value not in (None, "") else 0, "brush size")
    if not 0 <= size <= BRUSH_MAX:
        raise mistake(f"the brush size must be between 0 (proportional to the photo) and {BRUSH_MAX}, got {size}")
    return size or None


def brush_stepped(width: int, steps: int) -> int:
    """``width`` made :data:`BRUSH_STEP` times larger (``steps`` > 0) or smaller, by a pixel at least.

    The result stays within 1 ... :data:`BRUSH_MAX`.
    """
    if steps > 0:
        width = max(width + 1, round(width * BRUSH_STEP))
    elif steps < 0:
        width = min(width - 1, round(width / BRUSH_STEP))
    return min(BRUSH_MAX, max(1, width))


def painting_html(label_set: LabelSet, value, size: int | None) -> str:
    """What the brush paints, shown above the canvas: colour, id, name and width."""
    value = label_value(label_set, value)
    ids, colours = editing.paint_ids(label_set)
    colour = hex_colour(colours[list(ids).index(value)])
    width = f" · brush {size} px" if size else ""
    name = html.escape(label_name(label_set, value))
    return (
        f"<div>Painting: <span style='display:inline-block;width:1.1em;height:1.1em;vertical-align:middle;"
        f"border:1px solid #888;background:{colour}'></span> <b>{value}: {name}</b>{width}</div>"
    )


def label_widgets(label_set: LabelSet, hidden, label, size: int | None = None) -> tuple:
    """New choices for the label dropdown, the hidden-labels checkboxes and the brush.

    The label chosen stays chosen (background where the new label set lacks it), and the
    brush gets its colour: the dropdown and the brush always name the same label.

    Returns:
        The dropdown's update, the checkboxes' update and the brush.
    """
    keep = [str(v) for v in sorted(hidden_set(hidden)) if v < label_set.num_ids or v == IGNORE_INDEX]
    value = label_value(label_set, label)
    return (
        gr.Dropdown(choices=label_choices(label_set), value=value),
        gr.CheckboxGroup(choices=hidden_choices(label_set), value=keep),
        brush(label_set, value, size),
    )


def pending_strokes(editor_value) -> list[np.ndarray]:
    """The editor's painted layers that hold strokes not yet applied (pixels at least half opaque)."""
    layers = [np.asarray(layer) for layer in (editor_value or {}).get("layers") or []]
    return [
        layer
        for layer in layers
        if layer.ndim == 3 and layer.shape[2] == 4 and (layer[..., 3] >= editing.ALPHA_THRESHOLD).any()
    ]


def documented_as_text(dropdown: gr.Dropdown, description: str) -> gr.Dropdown:
    """Make the API document ``dropdown``'s input as free text (``str``), described by ``description``.

    Gradio documents a dropdown's input as a ``Literal`` of the choices it had when the page was
    built; for choices that are each user's own and change at run time (drafts) that list is empty
    or someone else's, while the handler takes any id and checks it. The dropdown needs
    ``allow_custom_value`` so that what is documented is accepted.

    Raises:
        ValueError: ``dropdown`` refuses values outside its choices.
    """
    if not dropdown.allow_custom_value:
        raise ValueError("documented_as_text needs a dropdown with allow_custom_value=True")
    dropdown.api_info_as_input = lambda: {"type": "string", "description": description}
    return dropdown


def selected_index(evt: gr.SelectData) -> int:
    """The index of the item selected in a gallery."""
    return evt.index if isinstance(evt.index, int) else evt.index[0]


# Pixel limits of the image editors that asked for one (bound_layers), by elem_id.
_LAYER_LIMITS: dict[str, int] = {}


def bound_layers(editor: gr.ImageEditor, max_pixels: int) -> gr.ImageEditor:
    """Make ``editor`` refuse any image (layer, background, composite) above ``max_pixels`` before decoding it.

    The browser sends its layers at the working image's size; anything far larger (a hand-made
    API call, say 13,000 x 13,000 pixels in a few hundred KB) is refused from its header alone,
    since decoding it would take gigabytes.

    The check sits on the ImageEditor class, looked up by the editor's ``elem_id``: Gradio
    rebuilds a component from its constructor arguments whenever a handler updates it (a new
    brush, a new background), so a wrapper on the instance would be lost after the first
    photo, and a subclass is a new component to Gradio (its own front end and API type).

    Raises:
        ValueError: ``editor`` has no ``elem_id`` to find its limit by.
    """
    if not editor.elem_id:
        raise ValueError("bound_layers needs an editor with an elem_id")
    _LAYER_LIMITS[editor.elem_id] = max_pixels
    if not getattr(gr.ImageEditor.convert_and_format_image, "checks_size", False):
        decode = gr.ImageEditor.convert_and_format_image

        def checked(self, file, flatten_on_white: bool = False):
            limit = _LAYER_LIMITS.get(self.elem_id or "")
            if file is not None and limit is not None:
                check_layer_size(getattr(file, "path", None) or file, limit)
            return decode(self, file, flatten_on_white)

        checked.checks_size = True
        gr.ImageEditor.convert_and_format_image = checked
    return editor


def editor_max_pixels(max_side: int) -> int:
    """The most pixels an editor layer may have: twice the working size's longer side, squared.

    The working image is at most ``max_side`` on its longer side; the margin leaves room for a
    browser that exports its canvas at a higher pixel density.
    """
    return (2 * max_side) ** 2


def check_layer_size(source, max_pixels: int) -> None:
    """A user's mistake if the image at ``source`` (path or bytes) has over ``max_pixels`` (read from its header)."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes | bytearray) else source) as im:
            w, h = im.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise mistake("The editor sent a layer that is not a readable image; nothing was applied.") from None
    if w * h > max_pixels:
        raise mistake(
            f"The editor sent a {w}x{h} layer, larger than the {max_pixels / 1e6:.1f} MP this app's editor "
            "works at; nothing was applied."
        )
