"""Label Studio's brush masks: the run-length code of its ``brushlabels`` results.

Label Studio stores a brush region as ``value.rle``, the bytes of a binary run-length code
(the format of the ``@thi.ng/rle-pack`` package) of the region's RGBA pixels, row by row, each
pixel's mask value (0 or 255) repeated in its four channels. The code, read as a bit stream with
the most significant bit of each byte first:

- 32 bits: the number of words (height x width x 4);
- 5 bits: the word size minus one (8 bits here);
- 4 x 4 bits: the four run-length field sizes minus one (3, 4, 8 and 16 bits);
- then groups until every word is produced: 1 bit, set for a run (2 bits choosing the field
  size, that many bits holding the run's length minus one, then the word) and clear for a
  literal chunk (2 bits choosing the field size, that many bits holding the chunk's length minus
  one, then its words).

Written from that description; :func:`encode` writes runs only, :func:`decode` reads both kinds.
"""

from __future__ import annotations

import numpy as np

__all__ = ["decode", "encode"]

WORD_BITS = 8
FIELD_BITS = (3, 4, 8, 16)
CHANNELS = 4


def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(value, length) of each run of equal neighbours in 1-D ``values``."""
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    lengths = np.diff(np.r_[starts, values.size])
    return values[starts], lengths


def encode(mask: np.ndarray) -> list[int]:
    """An H x W mask (true where the region is) as Label Studio's brush ``rle`` (a list of bytes)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2 or mask.size == 0:
        raise ValueError(f"a brush mask is a non-empty H x W array, got shape {mask.shape}")
    words = mask.size * CHANNELS
    bits = [format(words, "032b"), format(WORD_BITS - 1, "05b"), *(format(n - 1, "04b") for n in FIELD_BITS)]
    values, lengths = _runs(mask.ravel())
    longest = 1 << FIELD_BITS[-1]
    for value, pixels in zip(values.tolist(), (lengths * CHANNELS).tolist(), strict=True):
        word = format(255 if value else 0, f"0{WORD_BITS}b")
        while pixels:
            run = min(pixels, longest)
            pixels -= run
            size = next(i for i, n in enumerate(FIELD_BITS) if run - 1 < (1 << n))
            bits.append(f"1{size:02b}{run - 1:0{FIELD_BITS[size]}b}{word}")
    stream = "".join(bits)
    stream += "0" * (-len(stream) % 8)
    return list(int(stream, 2).to_bytes(len(stream) // 8, "big"))


def decode(rle, height: int, width: int) -> np.ndarray:
    """Label Studio's brush ``rle`` as an H x W bool mask (a pixel is in the region where its alpha is >= 128).

    Raises:
        ValueError: the code is corrupt, or holds another number of pixels than ``height`` x ``width``.
    """
    try:
        data = bytes(int(b) for b in rle)
    except (TypeError, ValueError):
        raise ValueError("a brush rle is a list of byte values (0-255)") from None
    stream = "".join(format(b, "08b") for b in data)
    position = 0

    def read(n: int) -> int:
        nonlocal position
        if position + n > len(stream):
            raise ValueError("the brush rle ends too early (truncated or corrupt)")
        position += n
        return int(stream[position - n : position], 2)

    words = read(32)
    word_bits = read(5) + 1
    fields = [read(4) + 1 for _ in range(4)]
    if words != height * width * CHANNELS:
        raise ValueError(
            f"the brush rle holds {words} values but a {width}x{height} RGBA image has {height * width * CHANNELS}"
        )
    out = np.empty(words, dtype=np.uint32)
    filled = 0
    while filled < words:
        repeated = read(1)
        count = read(fields[read(2)]) + 1
        if filled + count > words:
            raise ValueError("the brush rle holds more values than its header says (corrupt)")
        if repeated:
            out[filled : filled + count] = read(word_bits)
        else:
            out[filled : filled + count] = [read(word_bits) for _ in range(count)]
        filled += count
    alpha = out.reshape(height, width, CHANNELS)[..., 3]
    return alpha >= (1 << (word_bits - 1))
