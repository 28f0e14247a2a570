"""Uploads the app must cope with: clear messages for bad files, correct pixels for odd ones."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demo.session import MIN_SIDE, read_upload
from ssfnet.io import ImageError

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "examples"


def png_claiming_size(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` but holds almost no data (a decompression bomb's shape)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    header = struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF)
    data = zlib.compress(b"\0" * 64)
    idat = b"IDAT" + data
    body = struct.pack(">I", len(data)) + idat + struct.pack(">I", zlib.crc32(idat) & 0xFFFFFFFF)
    end = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND") & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + header + body + end


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("notes.jpg", lambda: b"this is not an image", "not an image"),
        ("empty.png", lambda: b"", "empty file"),
        ("truncated.jpg", lambda: (ASSETS / "ccp_0046.jpg").read_bytes()[:5000], "corrupt or truncated"),
        ("big.png", lambda: png_claiming_size(10000, 8000), "the limit is 64 MP"),
        ("bomb.png", lambda: png_claiming_size(50000, 50000), "too many pixels"),
    ],
)
def test_unreadable_uploads_raise_a_message_naming_the_file(tmp_path, name, make, message):
    with pytest.raises(ImageError, match=message) as err:
        read_upload(write(tmp_path, name, make()))
    assert name in str(err.value)


@pytest.mark.parametrize("size", [(1, 1), (MIN_SIDE - 1, 300)])
def test_tiny_images_are_refused(tmp_path, size):
    path = tmp_path / "tiny.png"
    Image.new("RGB", size, (10, 20, 30)).save(path)
    with pytest.raises(ImageError, match="at least 16 pixels"):
        read_upload(path)


def rgb_array(h=40, w=30) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 8, yy * 6, (xx + yy) * 3], -1).astype(np.uint8)


def test_grayscale_16_bit_rgba_and_cmyk_become_rgb_with_notes(tmp_path):
    grey = tmp_path / "grey.png"
    Image.fromarray(rgb_array()[..., 0]).save(grey)
    image, source = read_upload(grey)
    assert image.shape == (40, 30, 3) and (image[..., 0] == image[..., 2]).all()
    assert source.keep_bytes and any("grayscale" in n for n in source.notes)

    deep = tmp_path / "deep.png"
    Image.fromarray(rgb_array()[..., 1].astype(np.uint16) * 257).save(deep)
    image, source = read_upload(deep)
    np.testing.assert_array_equal(image[..., 0], rgb_array()[..., 1])
    assert not source.keep_bytes and any("16-bit" in n for n in source.notes)

    rgba = np.dstack([rgb_array(), np.zeros((40, 30), np.uint8)])
    rgba[:20, :, 3] = 255
    clear = tmp_path / "clear.png"
    Image.fromarray(rgba).save(clear)
    image, source = read_upload(clear)
    assert (image[20:] == 255).all() and (image[:20] == rgb_array()[:20]).all()
    assert not source.keep_bytes and any("white" in n for n in source.notes)

    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(rgb_array()).convert("CMYK").save(cmyk, quality=95)
    image, source = read_upload(cmyk)
    assert image.shape == (40, 30, 3) and not source.keep_bytes and any("CMYK" in n for n in source.notes)


def test_exif_rotated_photos_are_turned_upright(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(rgb_array(40, 30)).save(path, exif=exif, quality=95)
    image, source = read_upload(path)
    assert image.shape[:2] == (30, 40) and source.size == (30, 40)
    assert source.keep_bytes and any("EXIF" in n for n in source.notes)
