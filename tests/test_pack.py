"""Training packs: exact label round trip, resizing, size limits and the ``pack:`` source kind."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssfnet import get_label_set
from ssfnet.data import MixedDataset, PackDataset, VitonDataset, open_source, resize_long_side
from train.pack import main, write_packs

LIP = get_label_set("lip-20")


def write_viton(root: Path, n: int, height: int, width: int, seed: int = 0) -> Path:
    """VITON layout with random label maps that use every LIP-20 value, coarse ids and ignore included."""
    rng = np.random.default_rng(seed)
    (root / "image").mkdir(parents=True)
    (root / "image-parse").mkdir()
    values = np.array(list(range(LIP.num_ids)) + [255], np.uint8)
    for i in range(n):
        # Blocks of 4 x 4 pixels, so labels survive nothing but exact storage.
        blocks = rng.choice(values, (height // 4 + 1, width // 4 + 1))
        label = np.kron(blocks, np.ones((4, 4), np.uint8))[:height, :width]
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(image).save(root / "image" / f"{i:06d}_0.jpg", quality=95)
        Image.fromarray(label).save(root / "image-parse" / f"{i:06d}_0.png")
    return root


@pytest.fixture(scope="module")
def viton(tmp_path_factory) -> Path:
    return write_viton(tmp_path_factory.mktemp("data") / "viton", n=10, height=64, width=48)


def test_labels_round_trip_exactly(viton, tmp_path):
    manifest = write_packs([f"viton:{viton}"], tmp_path / "packs", max_side=None, progress=False)
    assert manifest["sources"][0]["samples"] == 10
    original = VitonDataset(viton)
    packed = PackDataset(tmp_path / "packs" / "viton")
    assert packed.ids == original.ids and packed.pack_label_set is LIP
    for i in range(len(original)):
        image, label = original.load(i)
        p_image, p_label = packed.load(i)
        assert p_label.dtype == np.uint8 and np.array_equal(p_label, label)
        assert p_image.shape == image.shape
        assert np.abs(p_image.astype(int) - image).mean() < 12  # JPEG at quality 90


def test_resized_labels_are_nearest_neighbour_copies(tmp_path):
    data = write_viton(tmp_path / "big", n=3, height=120, width=90, seed=1)
    write_packs([f"viton:{data}"], tmp_path / "packs", max_side=60, progress=False)
    original, packed = VitonDataset(data), PackDataset(tmp_path / "packs")
    for i in range(3):
        image, label = original.load(i)
        p_image, p_label = packed.load(i)
        assert p_label.shape == (60, 45) and p_image.shape == (60, 45, 3)
        assert np.array_equal(p_label, resize_long_side(label, 60, nearest=True))


def test_packs_split_under_the_size_limit(viton, tmp_path):
    limit = 40_000
    manifest = write_packs([f"viton:{viton}"], tmp_path / "packs", max_side=None, pack_bytes=limit, progress=False)
    packs = manifest["sources"][0]["packs"]
    assert len(packs) > 1
    ids = []
    for pack in packs:
        path = Path(pack["file"])
        assert path.stat().st_size <= limit and path.stat().st_size == pack["bytes"]
        with zipfile.ZipFile(path) as zf:
            index = json.loads(zf.read("index.json"))
            assert index["label_set"] == "lip-20"
            ids += [s["id"] for s in index["samples"]]
            assert len(zf.namelist()) == 2 * len(index["samples"]) + 1
    assert sorted(ids) == VitonDataset(viton).ids
    assert json.loads((tmp_path / "packs" / "packs.json").read_text())["total_bytes"] == sum(p["bytes"] for p in packs)


def test_total_size_limit_takes_a_subset(viton, tmp_path):
    manifest = write_packs(
        [f"viton:{viton}"], tmp_path / "packs", max_side=None, max_total_bytes=25_000, progress=False
    )
    assert 0 < manifest["sources"][0]["samples"] < 10
    assert manifest["total_bytes"] <= 25_000


def test_pack_source_kind_feeds_the_training_mix(viton, tmp_path):
    main(["--data", f"viton:{viton}", "--out", str(tmp_path / "packs"), "--max-side", "0"])
    dataset = open_source(f"pack:{tmp_path / 'packs' / 'viton'}", "lip-20", ids=["000003_0", "000005_0"])
    assert dataset.ids == ["000003_0", "000005_0"]
    mixed = MixedDataset([(dataset, 1.0), (VitonDataset(viton), 1.0)], length=8)
    image, label = mixed[0]
    assert image.ndim == 3 and label.shape == image.shape[:2]
    with pytest.raises(ValueError, match="not in the packs"):
        PackDataset(tmp_path / "packs", ids=["nope"])
    with pytest.raises(FileNotFoundError):
        PackDataset(tmp_path / "empty")
