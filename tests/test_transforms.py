"""Training / evaluation transforms: shapes, nearest-only labels, padding, flips, reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from ssfnet.data import EvalTransform, TrainTransform, flip_sample, resize_long_side, to_tensors
from ssfnet.data.transforms import MEAN_COLOUR
from ssfnet.labels import IGNORE_INDEX, LIP_20


def _pair(h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    # Blocky labels with all LIP-20 classes and coarse values, like real maps.
    blocks = rng.integers(0, LIP_20.num_ids, (max(1, h // 4), max(1, w // 4)), dtype=np.uint8)
    label = np.kron(blocks, np.ones((4, 4), np.uint8))[:h, :w]
    label = np.pad(label, ((0, h - label.shape[0]), (0, w - label.shape[1])), mode="edge")
    return image, label


def test_flip_sample_swaps_sides_and_keeps_unsided_values():
    label = np.array([[14, 16, 18, 13, 20, 21, 22, 23, 255, 5]], dtype=np.uint8)
    image = np.arange(30, dtype=np.uint8).reshape(1, 10, 3)
    flipped_image, flipped = flip_sample(image, label, "lip-20")
    np.testing.assert_array_equal(flipped_image, image[:, ::-1])
    # Mirrored positions; left/right swapped; face, skin, shoes, arms, legs, ignore unchanged.
    assert flipped[0].tolist() == [5, 255, 23, 22, 21, 20, 13, 19, 17, 15]
    _, back = flip_sample(flipped_image, flipped, LIP_20)
    np.testing.assert_array_equal(back, label)


def test_resize_long_side_keeps_aspect_and_values():
    image, label = _pair(60, 30)
    small = resize_long_side(image, 40)
    assert small.shape == (40, 20, 3) and small.dtype == np.uint8
    big_label = resize_long_side(label, 97, nearest=True)
    assert big_label.shape == (97, 48)
    assert set(np.unique(big_label)) <= set(np.unique(label))
    assert resize_long_side(image, 60) is image


def test_to_tensors_layout():
    image, label = _pair(5, 7)
    t_image, t_label = to_tensors(image, label)
    assert t_image.shape == (3, 5, 7) and t_image.dtype == torch.uint8
    assert t_label.shape == (5, 7) and t_label.dtype == torch.int64
    assert torch.equal(t_image[:, 2, 3], torch.from_numpy(image[2, 3]))


@pytest.mark.parametrize("crop", [64, (48, 80)])
def test_train_transform_shapes_and_label_values(crop):
    image, label = _pair(90, 50, seed=1)
    transform = TrainTransform(crop_size=crop, scale_range=(0.3, 2.0), label_set="lip-20", seed=0)
    allowed = set(np.unique(label).tolist()) | set(LIP_20.flip_lut[np.unique(label)].tolist()) | {IGNORE_INDEX}
    crop_h, crop_w = (crop, crop) if isinstance(crop, int) else crop
    for _ in range(20):
        out_image, out_label = transform(image, label)
        assert out_image.shape == (3, crop_h, crop_w) and out_image.dtype == torch.uint8
        assert out_label.shape == (crop_h, crop_w) and out_label.dtype == torch.int64
        assert set(out_label.unique().tolist()) <= allowed


def test_train_transform_pads_with_ignore_and_mean_colour():
    # No 255 in the input; scale 0.5 of a fit-to-crop base leaves at least half the crop as padding.
    image, label = _pair(40, 40, seed=2)
    transform = TrainTransform(crop_size=64, scale_range=(0.5, 0.5), flip=False, seed=0)
    out_image, out_label = transform(image, label)
    padding = out_label == IGNORE_INDEX
    assert padding.float().mean().item() == pytest.approx(0.75, abs=0.01)
    assert (out_image.permute(1, 2, 0)[padding] == torch.tensor(MEAN_COLOUR, dtype=torch.uint8)).all()
    # The 32 x 32 resized content sits in one block somewhere in the crop.
    rows = (~padding).any(dim=1).nonzero().flatten()
    cols = (~padding).any(dim=0).nonzero().flatten()
    assert (rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) == (32, 32)


def test_train_transform_base_scale_fits_longer_side():
    # Scale 1 of a 100 x 50 image with crop 60 -> 60 x 30: all rows kept, columns padded.
    image, label = _pair(100, 50, seed=3)
    out_image, out_label = TrainTransform(crop_size=60, scale_range=(1.0, 1.0), flip=False, seed=0)(image, label)
    content = out_label != IGNORE_INDEX
    assert content.any(dim=1).all() and content.any(dim=0).sum().item() == 30


def test_train_transform_flip_swaps_left_right_ids():
    # Left half left-arm (14), right half skin (20); at scale 1 with an equal-size crop nothing but the flip changes.
    image = np.zeros((32, 32, 3), np.uint8)
    image[:, :16] = 200
    label = np.full((32, 32), 20, np.uint8)
    label[:, :16] = 14
    transform = TrainTransform(crop_size=32, scale_range=(1.0, 1.0), label_set="lip-20", seed=0)
    flips = 0
    for _ in range(40):
        out_image, out_label = transform(image, label)
        if out_label[0, 0].item() == 20:
            flips += 1
            assert (out_label[:, 16:] == 15).all() and (out_label[:, :16] == 20).all()
            assert (out_image[:, :, 16:] == 200).all() and (out_image[:, :, :16] == 0).all()
        else:
            assert torch.equal(out_label, torch.from_numpy(label.astype(np.int64)))
    assert 5 < flips < 35


def test_train_transform_reproducible_with_seed_or_generator():
    image, label = _pair(70, 45, seed=4)

    def run(transform, rng=None):
        return [transform(image, label, rng) for _ in range(5)]

    a = run(TrainTransform(crop_size=48, label_set="lip-20", seed=7))
    b = run(TrainTransform(crop_size=48, label_set="lip-20", seed=7))
    c = run(TrainTransform(crop_size=48, label_set="lip-20", seed=8))
    for (ia, la), (ib, lb) in zip(a, b):
        assert torch.equal(ia, ib) and torch.equal(la, lb)
    assert any(not torch.equal(la, lc) for (_, la), (_, lc) in zip(a, c))
    shared = TrainTransform(crop_size=48, label_set="lip-20")
    d = run(shared, np.random.default_rng(1))
    e = run(shared, np.random.default_rng(1))
    assert all(torch.equal(x[1], y[1]) for x, y in zip(d, e))


def test_train_transform_needs_label_set_to_flip():
    with pytest.raises(ValueError, match="label_set"):
        TrainTransform(crop_size=32)
    with pytest.raises(ValueError, match="scale_range"):
        TrainTransform(crop_size=32, scale_range=(1.5, 0.5), flip=False)


class _Repeated(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n
        self.transform = TrainTransform(crop_size=24, scale_range=(0.5, 1.5), label_set="lip-20", seed=0)
        self.image, self.label = _pair(40, 30, seed=5)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.transform(self.image, self.label)


def test_train_transform_workers_draw_different_streams_reproducibly():
    def batches():
        loader = DataLoader(_Repeated(8), batch_size=4, num_workers=2, generator=torch.Generator().manual_seed(0))
        return [labels for _, labels in loader]

    first, second = batches(), batches()
    # One batch per worker: with copied generators both workers would produce identical batches.
    assert not torch.equal(first[0], first[1])
    assert all(torch.equal(x, y) for x, y in zip(first, second))


def test_eval_transform_resizes_long_side_and_cleans_labels():
    image, label = _pair(100, 40, seed=6)
    label[0, 0] = 99  # no LIP-20 value
    out_image, out_label = EvalTransform(size=64, label_set="lip-20")(image, label)
    assert out_image.shape == (3, 64, 26) and out_label.shape == (64, 26)
    assert out_label[0, 0].item() == IGNORE_INDEX
    assert set(out_label.unique().tolist()) <= set(np.unique(label).tolist()) - {99} | {IGNORE_INDEX}
    same_image, same_label = EvalTransform(size=None)(image, label)
    assert torch.equal(same_label, torch.from_numpy(label.astype(np.int64)))
    assert torch.equal(same_image, torch.from_numpy(image).permute(2, 0, 1))
