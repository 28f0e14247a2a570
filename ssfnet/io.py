"""Reading images safely and writing label maps, colour masks and overlays."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .geometry import long_side_size
from .labels import LabelSet

# Above this many pixels an upload is refused as a likely decompression bomb.
MAX_IMAGE_PIXELS = 64_000_000
# ISO base-media brands of HEIC/HEIF stills (iPhone photos), which Pillow cannot read by itself.
# EXIF orientations 5-8 turn the picture a quarter, swapping its width and height.
_EXIF_ORIENTATION = 0x0112
_TRANSPOSED_ORIENTATIONS = {5, 6, 7, 8}
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}


class ImageError(ValueError):
    """An input is not a readable image (the message says why, for the user)."""


def to_rgb_array(img: Image.Image) -> np.ndarray:
    """Any PIL image -> H x W x 3 uint8 RGB (EXIF orientation applied).

    Handles palette, grayscale, 16-bit and 32-bit grayscale, RGBA/LA (alpha
    composited on white), CMYK and YCbCr.
    """
    return _rgb_array(_upright_rgb(img))


def _upright_rgb(img: Image.Image) -> Image.Image:
    """``img`` turned upright by its EXIF orientation and converted to 8-bit RGB (or L for 16/32-bit grey).

    Each step that changes nothing returns ``img`` itself, so no full-size copy is made for
    an upright RGB photo.
    """
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block should not lose the picture
        pass
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit (and 32-bit) grayscale: bring 0-65535 down to 0-255.
        arr = np.asarray(img, dtype=np.float32)
        peak = float(arr.max()) if arr.size else 0.0
        if peak > 65535:
            arr = arr * (255.0 / peak)
        elif img.mode.startswith("I;16") or peak > 255:
            arr = arr / 257.0
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img if img.mode in ("RGB", "L") else img.convert("RGB")


def _rgb_array(img: Image.Image) -> np.ndarray:
    """An RGB or L image as a writeable H x W x 3 uint8 array, holding one extra copy of the pixels at most."""
    w, h = img.size
    channels = 1 if img.mode == "L" else 3
    # Strip by strip: np.asarray(img).copy() holds the image, a bytes copy and the array at once,
    # three times the pixels of a 60-megapixel upload.
    arr = np.empty((h, w, channels), dtype=np.uint8)
    rows = max(1, (4 << 20) // (w * channels))
    for top in range(0, h, rows):
        strip = img.crop((0, top, w, min(h, top + rows)))
        arr[top : top + strip.height] = np.asarray(strip).reshape(strip.height, w, channels)
    return np.repeat(arr, 3, axis=2) if channels == 1 else arr


def oriented_size(img: Image.Image) -> tuple[int, int]:
    """``(height, width)`` of an opened image once its EXIF orientation is applied.

    Reads what the header holds and decodes nothing: a PNG keeps its EXIF in an ``eXIf`` chunk
    that may follow the pixels, and Pillow's ``getexif`` decodes the whole picture to find it, so
    an undecoded PNG whose header holds no EXIF counts as upright. Once the image is decoded the
    answer is exact (:func:`read_image_and_size` asks then).
    """
    w, h = img.size
    return (w, h) if _turned(img) else (h, w)


def _turned(img: Image.Image) -> bool:
    """True when the EXIF orientation the image holds so far turns it a quarter (see :func:`oriented_size`)."""
    return exif_orientation(img) in _TRANSPOSED_ORIENTATIONS


def exif_orientation(img: Image.Image) -> int:
    """The EXIF orientation (1-8, 1 = as stored) an opened image holds so far, decoding nothing.

    An undecoded PNG whose EXIF follows its pixels reads 1 (see :func:`oriented_size`); a broken
    EXIF block reads 1, as :func:`read_image` then keeps the stored orientation too.
    """
    if img.format == "PNG" and "exif" not in img.info:
        return 1
    try:
        return int(img.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:
        return 1


def image_size(source: str | Path | bytes) -> tuple[int, int]:
    """``(height, width)`` of an image file (or bytes) once upright, read from its header alone.

    Raises:
        ImageError: not an image that can be read.
    """
    what = "the upload" if isinstance(source, bytes) else str(source)
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            return oriented_size(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageError(f"{what} is not an image that can be read: {err}") from None


def _reduced(img: Image.Image, max_side: int) -> Image.Image:
    """``img`` decoded at a fraction of its size whose longer side is still at least ``max_side``.

    JPEGs are decoded at 1/2, 1/4 or 1/8 scale (``draft``); other formats are decoded whole and
    reduced by an integer factor (box average) before anything else is done with them.
    """
    w, h = img.size
    factor = max(w, h) // max_side
    if factor < 2:
        return img
    if img.format == "JPEG" and img.mode in ("RGB", "L", "CMYK", "YCbCr"):
        img.draft(img.mode, (-(-w // factor), -(-h // factor)))
    img.load()
    factor = max(img.size) // max_side
    if factor >= 2 and img.mode not in ("P", "1", "I;16", "I;16B", "I;16L"):
        return img.reduce(factor)
    return img


def _unsupported_format(source: str | Path | bytes) -> str | None:
    """The name of a known image format that cannot be read here (HEIC/HEIF), from the file's first bytes."""
    try:
        if isinstance(source, bytes):
            head = source[:32]
        else:
            with open(source, "rb") as f:
                head = f.read(32)
    except OSError:
        return None
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return "HEIC/HEIF"
    return None


def frame_count(source: str | Path | bytes) -> int:
    """How many frames an image file holds (an animated GIF, WebP or PNG: more than 1); 1 when unreadable."""
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with Image.open(stream) as img:
            return int(getattr(img, "n_frames", 1))
    except Exception:  # read_image reports unreadable files; this only adds a note
        return 1


def read_image(
    source: str | Path | bytes, *, max_pixels: int = MAX_IMAGE_PIXELS, max_side: int | None = None
) -> np.ndarray:
    """Open an image file (or bytes) as H x W x 3 uint8 RGB.

    An animated image gives its first frame (see :func:`frame_count`).

    Args:
        source: A path or the encoded bytes.
        max_pixels: Larger images are refused (checked from the header, before decoding).
        max_side: If given, the image is scaled down (area average, never up) to
            :func:`ssfnet.geometry.long_side_size` ``(h, w, max_side, enlarge=False)`` of its
            upright size, and decoded reduced on the way (JPEG at 1/2 to 1/8 scale, other formats
            box-averaged by an integer factor first), so memory follows the result's size rather
            than the file's.

    Raises:
        ImageError: not an image, a format that cannot be read here (HEIC), corrupt, truncated,
            or larger than ``max_pixels``.
    """
    return read_image_and_size(source, max_pixels=max_pixels, max_side=max_side)[0]


def read_image_and_size(
    source: str | Path | bytes, *, max_pixels: int = MAX_IMAGE_PIXELS, max_side: int | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`read_image` and the image's full upright ``(height, width)``, from one decode.

    The full size is taken once the pixels are decoded, so it always agrees with the picture
    (a PNG's EXIF orientation may sit after its pixels, where a header read cannot see it).
    """
    what = "the upload" if isinstance(source, bytes) else str(source)
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with Image.open(stream) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise ImageError(
                    f"{what} is {w}x{h} pixels ({w * h / 1e6:.0f} MP); the limit is {max_pixels / 1e6:.0f} MP"
                )
            if w < 1 or h < 1:
                raise ImageError(f"{what} has no pixels")
            if max_side is None:
                img.load()
                array = to_rgb_array(img)
                return array, array.shape[:2]
            picture = _upright_rgb(_reduced(img, max_side))
            img.load()  # decoded already (a no-op): the EXIF has been read wherever the file keeps it
            full = (w, h) if _turned(img) else (h, w)
            target = long_side_size(*full, max_side, enlarge=False)
            if (picture.height, picture.width) != target:
                picture = picture.resize((target[1], target[0]), Image.Resampling.BOX)
            return _rgb_array(picture), full
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{what} does not exist") from None
    except Image.DecompressionBombError:
        # Pillow refuses headers far above its own limit before our size check can run.
        raise ImageError(f"{what} has far too many pixels; the limit is {max_pixels / 1e6:.0f} MP") from None
    except UnidentifiedImageError:
        unsupported = _unsupported_format(source)
        if unsupported:
            raise ImageError(
                f"{what} is a {unsupported} image, a format that is not supported here: convert it to JPEG or PNG first"
            ) from None
        raise ImageError(f"{what} is not an image that can be read") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{what} is corrupt or truncated: {err}") from None


def label_png_bytes(labels: np.ndarray, label_set: LabelSet) -> bytes:
    """An indexed PNG of ``labels`` (H x W uint8) with the label set's palette."""
    img = Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8), mode="P")
    img.putpalette(label_set.palette_bytes())
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def png_bytes(rgb: np.ndarray) -> bytes:
    """Lossless PNG of an H x W x 3 (or H x W x 4) uint8 array."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def overlay(
    image: np.ndarray,
    labels: np.ndarray,
    label_set: LabelSet,
    *,
    alpha: float = 0.5,
    hidden: set[int] | frozenset[int] = frozenset({0}),
) -> np.ndarray:
    """Blend the label colours over ``image`` (both H x W); ``hidden`` ids stay unpainted.

    In 8-bit arithmetic (each value rounded once): no float copy of the picture is made, which
    matters for a 60-megapixel photo, and the app redraws it after every edit.

    Returns:
        H x W x 3 uint8.
    """
    if image.shape[:2] != labels.shape:
        raise ValueError(f"image {image.shape[:2]} and labels {labels.shape} differ in size")
    a = float(np.clip(alpha, 0.0, 1.0))
    image = np.ascontiguousarray(image, dtype=np.uint8)
    blended = cv2.addWeighted(image, 1.0 - a, label_set.colourise(labels), a, 0.0)
    if not hidden:
        return blended
    painted = np.ones(256, dtype=bool)
    painted[[int(v) for v in hidden if 0 <= int(v) < 256]] = False
    return np.where(painted[labels][..., None], blended, image)
