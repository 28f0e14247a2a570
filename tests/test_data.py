"""Dataset layouts, splits, mixing and source specs: on real shared files and on tiny fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from ssfnet.data import (
    ATRDataset,
    CCPDataset,
    CIHPDataset,
    FolderDataset,
    LIPDataset,
    MixedDataset,
    PascalPersonPartDataset,
    SourceSpec,
    VitonDataset,
    flip_sample,
    nearest_colour_ids,
    open_source,
    parse_source,
    register_source,
    split_ids,
)
from ssfnet.data.sources import SOURCE_KINDS, SubsetSpec, as_source, source_record
from ssfnet.labels import (
    CCP_59,
    FASHION_17,
    FASHION_GROUPS,
    IGNORE_INDEX,
    LIP_20,
    PASCAL_PERSON_PART_7,
    conversion_lut,
    get_label_set,
)


def _image(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _labels(h: int, w: int, high: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, high, (h, w), dtype=np.uint8)


def _write_folder(root: Path, image_dir: str, label_dir: str, ids: list[str], shape=(12, 9)) -> dict:
    """Write lossless PNG images and grey id PNGs; return id -> (image, label)."""
    (root / image_dir).mkdir(parents=True)
    (root / label_dir).mkdir(parents=True)
    written = {}
    for k, sample_id in enumerate(ids):
        image, label = _image(*shape, k), _labels(*shape, 20, k)
        Image.fromarray(image).save(root / image_dir / f"{sample_id}.png")
        Image.fromarray(label).save(root / label_dir / f"{sample_id}.png")
        written[sample_id] = (image, label)
    return written


# --- LIP / CIHP / ATR style folders -------------------------------------------------------------


def test_folder_dataset_reads_exact_pairs_and_applies_transform(tmp_path):
    written = _write_folder(tmp_path, "images", "labels", ["b", "a", "c"])
    # An image without a label is not a sample.
    Image.fromarray(_image(12, 9, 7)).save(tmp_path / "images" / "unlabelled.png")
    ds = FolderDataset(tmp_path)
    assert ds.ids == ["a", "b", "c"]
    assert ds.label_set is LIP_20
    for i, sample_id in enumerate(ds.ids):
        image, label = ds.load(i)
        assert image.dtype == np.uint8 and label.dtype == np.uint8
        np.testing.assert_array_equal(image, written[sample_id][0])
        np.testing.assert_array_equal(label, written[sample_id][1])
    ds.transform = lambda image, label: (image.shape, int(label.max()))
    assert ds[1] == ((12, 9, 3), int(written["b"][1].max()))


def test_folder_dataset_id_file_subset_and_errors(tmp_path):
    _write_folder(tmp_path, "imgs", "segs", ["x1", "x2", "x3"])
    (tmp_path / "train_id.txt").write_text("x3\n\nx1.jpg\n")
    ds = FolderDataset(tmp_path, image_dir="imgs", label_dir="segs", id_file="train_id.txt")
    assert ds.ids == ["x1", "x3"]
    assert FolderDataset(tmp_path, image_dir="imgs", label_dir="segs", ids=["x2"]).ids == ["x2"]
    with pytest.raises(ValueError, match="nope"):
        FolderDataset(tmp_path, image_dir="imgs", label_dir="segs", ids=["nope"])
    (tmp_path / "bad_id.txt").write_text("x1\nmissing\n")
    with pytest.raises(FileNotFoundError, match="missing"):
        FolderDataset(tmp_path, image_dir="imgs", label_dir="segs", id_file="bad_id.txt")
    with pytest.raises(FileNotFoundError, match="absent.txt"):
        FolderDataset(tmp_path, image_dir="imgs", label_dir="segs", id_file="absent.txt")
    with pytest.raises(FileNotFoundError, match="labels"):
        FolderDataset(tmp_path, image_dir="imgs")


def test_folder_dataset_values_outside_set_become_ignore(tmp_path):
    _write_folder(tmp_path, "images", "labels", ["a"], shape=(4, 4))
    past_last = LIP_20.num_ids
    label = np.array([[0, 19, 23, past_last], [200, 255, 5, 5], [5, 5, 5, 5], [5, 5, 5, 5]], dtype=np.uint8)
    Image.fromarray(label).save(tmp_path / "labels" / "a.png")
    _, loaded = FolderDataset(tmp_path).load(0)
    # 23 is LIP-20's coarse 'legs'; past_last and 200 are no LIP-20 value.
    assert loaded[0].tolist() == [0, 19, 23, IGNORE_INDEX]
    assert loaded[1, :2].tolist() == [IGNORE_INDEX, IGNORE_INDEX]


def test_folder_dataset_rejects_size_mismatch(tmp_path):
    _write_folder(tmp_path, "images", "labels", ["a"])
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "labels" / "a.png")
    with pytest.raises(ValueError, match="5x5 label map for a 9x12 image"):
        FolderDataset(tmp_path).load(0)


def test_lip_and_cihp_layouts(tmp_path):
    lip = tmp_path / "LIP"
    written = _write_folder(lip, "val_images", "val_segmentations", ["1_a", "2_b"])
    (lip / "val_id.txt").write_text("2_b\n")
    ds = LIPDataset(lip, split="val")
    assert ds.ids == ["2_b"]
    np.testing.assert_array_equal(ds.load(0)[1], written["2_b"][1])
    with pytest.raises(FileNotFoundError, match="train_images"):
        LIPDataset(lip)

    cihp = tmp_path / "CIHP"
    _write_folder(cihp, "Training/Images", "Training/Category_ids", ["0001", "0002"])
    ds = CIHPDataset(cihp)
    assert ds.ids == ["0001", "0002"] and ds.label_set is LIP_20
    (cihp / "Training" / "train_id.txt").write_text("0002\n")
    assert CIHPDataset(cihp).ids == ["0002"]


def test_cihp_torso_skin_is_ignore_in_lip_20_and_kept_in_cihp_20(tmp_path):
    written = _write_folder(tmp_path, "Training/Images", "Training/Category_ids", ["0001"], shape=(4, 5))
    stored = np.arange(20, dtype=np.uint8).reshape(4, 5)  # every CIHP class, torso-skin (10) among them
    Image.fromarray(stored).save(tmp_path / "Training" / "Category_ids" / "0001.png")
    image, lip = CIHPDataset(tmp_path).load(0)
    np.testing.assert_array_equal(image, written["0001"][0])
    np.testing.assert_array_equal(lip, np.where(stored == 10, IGNORE_INDEX, stored))
    cihp = CIHPDataset(tmp_path, "cihp-20")
    assert cihp.label_set.names[10] == "torso-skin"
    np.testing.assert_array_equal(cihp.load(0)[1], stored)


def test_atr_sample(dataset_dir):
    ds = ATRDataset(dataset_dir("samples", "atr"))
    assert ds.ids == ["2500_1899"]
    assert ds.label_set.name == "atr-18"
    image, label = ds.load(0)
    assert image.shape == (600, 384, 3) and image.dtype == np.uint8
    assert label.shape == (600, 384)
    values = set(np.unique(label).tolist())
    assert values <= set(range(18)) and len(values) > 5
    with pytest.raises(ValueError, match="atr-18 cannot be converted to lip-20"):
        ATRDataset(dataset_dir("samples", "atr"), label_set="lip-20")


# --- PASCAL-Person-Part colour PNGs -------------------------------------------------------------


def test_nearest_colour_ids_tolerates_small_offsets():
    palette = PASCAL_PERSON_PART_7.palette
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 7, (20, 30)).astype(np.uint8)
    colours = np.asarray(palette, dtype=np.int16)[ids] + rng.integers(-3, 4, (20, 30, 3))
    colours = np.clip(colours, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(nearest_colour_ids(colours, palette), ids)


def test_nearest_colour_ids_far_colours_are_ignored_with_tolerance():
    palette = PASCAL_PERSON_PART_7.palette
    colours = np.array([[[126, 1, 128], [224, 224, 192], [0, 0, 0]]], dtype=np.uint8)
    assert nearest_colour_ids(colours, palette, max_error=32).tolist() == [[5, IGNORE_INDEX, 0]]
    assert nearest_colour_ids(colours, palette)[0, 1] != IGNORE_INDEX


def test_pascal_person_part_fixture_rgba(tmp_path):
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "SegmentationPart").mkdir()
    Image.fromarray(_image(2, 3, 0)).save(tmp_path / "JPEGImages" / "p.png")
    rgba = np.array(
        [
            [[127, 0, 0, 255], [0, 129, 0, 255], [0, 0, 0, 0]],
            [[2, 126, 127, 255], [0, 0, 0, 255], [128, 128, 3, 255]],
        ],
        dtype=np.uint8,
    )
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "SegmentationPart" / "p.png")
    _, label = PascalPersonPartDataset(tmp_path).load(0)
    # head, torso, transparent -> ignore; lower-leg, background, upper-arm
    assert label.tolist() == [[1, 2, IGNORE_INDEX], [6, 0, 3]]


def _write_palette_png(path: Path, ids: np.ndarray, palette: list[int]) -> None:
    im = Image.fromarray(ids)
    im.putpalette(palette)  # an L image becomes P with its values as the indices
    im.save(path)


def test_pascal_person_part_palette_pngs_are_read_by_index(tmp_path):
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "SegmentationPart").mkdir()
    ids = np.array([[0, 1, 2, 3], [4, 5, 6, IGNORE_INDEX]], dtype=np.uint8)
    for name in ("a", "b"):
        Image.fromarray(_image(2, 4, 0)).save(tmp_path / "JPEGImages" / f"{name}.png")
    # Colours that are nowhere near the VOC palette: only the index may decide the id.
    _write_palette_png(tmp_path / "SegmentationPart" / "a.png", ids, [(37 * i) % 256 for i in range(768)])
    bad = ids.copy()
    bad[0, 0] = 7
    _write_palette_png(tmp_path / "SegmentationPart" / "b.png", bad, [0] * 768)
    ds = PascalPersonPartDataset(tmp_path)
    np.testing.assert_array_equal(ds.load(0)[1], ids)
    with pytest.raises(ValueError, match=r"b\.png: palette indices 7 are no pascal-person-part-7 id"):
        ds.load(1)
    # Parts as LIP-20's coarse part labels, ignore kept.
    _, lip = PascalPersonPartDataset(tmp_path, label_set="lip-20", ids=["a"]).load(0)
    assert lip.tolist() == [[0, 24, 25, 26], [27, 28, 29, IGNORE_INDEX]]
    assert [LIP_20.all_names[v] for v in lip.ravel()[1:7]] == list(PASCAL_PERSON_PART_7.names[1:])


def test_pascal_person_part_grey_pngs_are_ids(tmp_path):
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "SegmentationPart").mkdir()
    Image.fromarray(_image(1, 3, 0)).save(tmp_path / "JPEGImages" / "g.png")
    Image.fromarray(np.array([[0, 6, 9]], np.uint8)).save(tmp_path / "SegmentationPart" / "g.png")
    _, label = PascalPersonPartDataset(tmp_path).load(0)
    assert label.tolist() == [[0, 6, IGNORE_INDEX]]  # 9 is no part: ignored as in the other layouts


def test_pascal_person_part_shared_layout(dataset_dir):
    root = dataset_dir("pascal-person-part")
    ds = PascalPersonPartDataset(root)
    assert len(ds) == 1716 and ds.ids[0].startswith("20")
    lip = open_source(parse_source(f"pascal-person-part:{root}"), "lip-20", ids=ds.ids[::400])
    person_head = open_source(f"pascal-person-part:{root}", "person-head-3", ids=ds.ids[::400])
    parts = {LIP_20.id_of(n) for n in PASCAL_PERSON_PART_7.names[1:]}
    seen = set()
    for i, sample_id in enumerate(lip.ids):
        with Image.open(ds.label_path(sample_id)) as im:
            assert im.mode == "P"
            raw = np.array(im)
        image, label = ds.load(ds.ids.index(sample_id))
        np.testing.assert_array_equal(label, raw)
        assert label.shape == image.shape[:2] and set(np.unique(label).tolist()) <= {*range(7), IGNORE_INDEX}
        _, converted = lip.load(i)
        # No ignore appears but where the source had it, and every part became its coarse label.
        np.testing.assert_array_equal(converted == IGNORE_INDEX, raw == IGNORE_INDEX)
        assert set(np.unique(converted[raw != IGNORE_INDEX]).tolist()) <= {0} | parts
        np.testing.assert_array_equal(converted == 0, raw == 0)
        seen |= set(np.unique(converted).tolist())
        _, coarse = person_head.load(i)
        np.testing.assert_array_equal(coarse == 1, raw == 1)
        np.testing.assert_array_equal(coarse == 2, (raw >= 2) & (raw <= 6))
        # A mirrored LIP-20 map is the LIP-20 map of the mirrored PASCAL map (parts have no side).
        _, flipped = flip_sample(image, converted, LIP_20)
        np.testing.assert_array_equal(flipped, conversion_lut(PASCAL_PERSON_PART_7, LIP_20)[raw[:, ::-1]])
    assert len(seen & parts) >= 4


def test_pascal_person_part_samples(dataset_dir):
    ds = PascalPersonPartDataset(dataset_dir("samples", "pascal-person-part"))
    assert len(ds) == 8 and ds.label_set is PASCAL_PERSON_PART_7
    head_pixels = 0
    for i in range(len(ds)):
        image, label = ds.load(i)
        assert label.shape == image.shape[:2]
        assert set(np.unique(label).tolist()) <= set(range(7))
        head_pixels += int((label == PASCAL_PERSON_PART_7.id_of("head")).sum())
    assert head_pixels > 1000
    # 2008_000008 has every part, coded with off-palette colours such as (126, 1, 128).
    _, label = ds.load(ds.ids.index("2008_000008"))
    assert np.unique(label).tolist() == list(range(7))
    _, lip = PascalPersonPartDataset(ds.root, label_set="lip-20", ids=["2008_000008"]).load(0)
    np.testing.assert_array_equal(lip, conversion_lut(PASCAL_PERSON_PART_7, LIP_20)[label])
    assert np.unique(lip).tolist() == [0, *range(24, 30)]


# --- CCP ----------------------------------------------------------------------------------------


def _write_ccp(root: Path, entries: dict[str, tuple[tuple[int, int], tuple[int, int] | None]]) -> None:
    """entries: id -> (photo HxW, annotation HxW or None for an unlabelled photo)."""
    (root / "photos").mkdir(parents=True)
    (root / "annotations" / "pixel-level").mkdir(parents=True)
    for k, (sample_id, (photo_shape, label_shape)) in enumerate(entries.items()):
        Image.fromarray(_image(*photo_shape, k)).save(root / "photos" / f"{sample_id}.jpg")
        if label_shape is not None:
            label = np.full(label_shape, CCP_59.id_of("skin"), np.uint8)
            label[0, 0] = CCP_59.id_of("sneakers")
            scipy.io.savemat(root / "annotations" / "pixel-level" / f"{sample_id}.mat", {"groundtruth": label})


def test_ccp_fixture_ids_conversion_and_size_tolerance(tmp_path):
    photo = (10, 8)
    _write_ccp(
        tmp_path, {"0001": (photo, (10, 8)), "0002": (photo, (11, 8)), "0003": (photo, (30, 8)), "2000": (photo, None)}
    )
    ds = CCPDataset(tmp_path)
    assert ds.ids == ["0001", "0002", "0003"]  # the unlabelled photo is no sample
    _, label = ds.load(0)
    assert label[0, 0] == LIP_20.id_of("shoes") and (label.ravel()[1:] == LIP_20.id_of("skin")).all()
    _, label = ds.load(1)  # one row too many: nearest-resized to the photo
    assert label.shape == (10, 8)
    with pytest.raises(ValueError, match="8x30 but photo"):
        ds.load(2)


def test_ccp_real_labels_and_conversions(dataset_dir):
    root = dataset_dir("ccp")
    ccp = CCPDataset(root, label_set="ccp-59", ids=["0002", "0003"])
    lip = CCPDataset(root, ids=["0002", "0003"])
    fashion = CCPDataset(root, label_set="fashion-17", ids=["0002", "0003"])
    assert lip.label_set is LIP_20
    shoe_tags = [CCP_59.id_of(n) for n in dict(FASHION_GROUPS)["shoes"]]
    for i in range(2):
        image, raw = ccp.load(i)
        assert image.shape[:2] == raw.shape and image.shape[1] == 550
        assert raw.max() < 59
        _, converted = lip.load(i)
        skin = raw == CCP_59.id_of("skin")
        shoes = np.isin(raw, shoe_tags)
        assert skin.any() and shoes.any()
        assert (converted[skin] == LIP_20.id_of("skin")).all() and LIP_20.id_of("skin") == 20
        assert (converted[shoes] == LIP_20.id_of("shoes")).all() and LIP_20.id_of("shoes") == 21
        _, coarse = fashion.load(i)
        assert coarse.max() < FASHION_17.num_classes
        assert (coarse[skin] == FASHION_17.id_of("skin")).all()


def test_ccp_uses_only_annotated_photos(dataset_dir):
    root = dataset_dir("ccp")
    ds = CCPDataset(root)
    annotated = {p.stem for p in (root / "annotations" / "pixel-level").glob("*.mat")}
    assert set(ds.ids) == annotated & {p.stem for p in (root / "photos").glob("*.jpg")}
    assert len(ds.ids) < len(list((root / "photos").glob("*.jpg")))


# --- VITON --------------------------------------------------------------------------------------


def test_viton_real_files(dataset_dir):
    ds = VitonDataset(dataset_dir("viton"))
    assert len(ds) > 1000 and ds.ids == sorted(ds.ids)
    for i in (0, len(ds) // 2, len(ds) - 1):
        image, label = ds.load(i)
        assert image.shape == (256, 192, 3)
        assert label.shape == (256, 192)
        assert label.max() <= 19


def test_viton_reads_palette_indices_not_colours(tmp_path):
    (tmp_path / "image").mkdir()
    (tmp_path / "image-parse").mkdir()
    Image.fromarray(_image(4, 3, 0)).save(tmp_path / "image" / "000001_0.jpg")
    parse = Image.fromarray(np.full((4, 3), 14, np.uint8))
    parse.putpalette(LIP_20.palette_bytes())
    parse.save(tmp_path / "image-parse" / "000001_0.png")
    _, label = VitonDataset(tmp_path).load(0)
    assert (label == 14).all()


@pytest.mark.parametrize(
    "dataset_class, expected",
    [
        (FolderDataset, "images"),
        (ATRDataset, "JPEGImages"),
        (PascalPersonPartDataset, "JPEGImages"),
        (CCPDataset, "photos"),
        (VitonDataset, "image"),
    ],
)
def test_missing_folders_raise_clear_errors(tmp_path, dataset_class, expected):
    with pytest.raises(FileNotFoundError, match="not found: expected"):
        dataset_class(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=expected):
        dataset_class(tmp_path)


# --- splits -------------------------------------------------------------------------------------


def test_split_ids_deterministic_disjoint_and_stable():
    ids = [f"{i:05d}" for i in range(5000)]
    train, val = split_ids(ids, 0.2, seed=3)
    assert (train, val) == split_ids(list(reversed(ids)), 0.2, seed=3)
    assert not set(train) & set(val) and sorted(train + val) == ids
    assert 0.17 < len(val) / len(ids) < 0.23
    # New files do not move existing ids.
    train2, val2 = split_ids(ids + [f"new{i}" for i in range(500)], 0.2, seed=3)
    assert set(val2) & set(ids) == set(val) and set(train2) & set(ids) == set(train)
    assert split_ids(ids, 0.2, seed=4)[1] != val
    assert split_ids(ids, 0.0)[1] == [] and split_ids(ids, 1.0)[0] == []
    with pytest.raises(ValueError):
        split_ids(ids, 1.5)


# --- mixing -------------------------------------------------------------------------------------


class _Constant(torch.utils.data.Dataset):
    """n samples whose label is filled with ``tag``; item k's image holds k."""

    def __init__(self, n: int, tag: int, label_set: str = "lip-20") -> None:
        self.n, self.tag, self.label_set = n, tag, get_label_set(label_set)

    def __len__(self) -> int:
        return self.n

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return np.full((2, 2, 3), i, np.uint8), np.full((2, 2), self.tag, np.uint8)

    def __getitem__(self, i: int):
        return self.load(i)


def test_mixed_dataset_respects_weights_and_is_deterministic():
    a, b = _Constant(50, 1), _Constant(7, 2)
    mixed = MixedDataset([(a, 3.0), (b, 1.0)], length=400, seed=5)
    tags = [int(mixed[i][1][0, 0]) for i in range(len(mixed))]
    assert len(mixed) == 400 and tags.count(1) == 300 and tags.count(2) == 100
    assert mixed.counts() == [300, 100]
    # Small source b is cycled: each item appears 14 or 15 times.
    b_items = np.bincount([mixed.locate(i)[1] for i in range(400) if mixed.locate(i)[0] == 1])
    assert b_items.min() >= 14 and b_items.max() <= 15
    plan = [mixed.locate(i) for i in range(400)]
    assert plan == [MixedDataset([(a, 3.0), (b, 1.0)], length=400, seed=5).locate(i) for i in range(400)]
    mixed.set_epoch(1)
    epoch1 = [mixed.locate(i) for i in range(400)]
    assert epoch1 != plan
    mixed.set_epoch(0)
    assert [mixed.locate(i) for i in range(400)] == plan


def test_mixed_dataset_default_length_transform_and_errors():
    a, b = _Constant(10, 1), _Constant(5, 2)
    mixed = MixedDataset([(a, 1.0), (b, 0.0)], transform=lambda image, label: int(label[0, 0]) * 10)
    assert len(mixed) == 15
    assert {mixed[i] for i in range(15)} == {10}
    assert mixed.counts() == [15, 0]
    # 15 draws from 10 items: every item once, then five repeats.
    assert sorted(np.bincount([mixed.locate(i)[1] for i in range(15)]).tolist()) == [1] * 5 + [2] * 5
    with pytest.raises(ValueError, match="share one label set"):
        MixedDataset([(a, 1.0), (_Constant(3, 1, "atr-18"), 1.0)])
    with pytest.raises(ValueError, match="weights"):
        MixedDataset([(a, 0.0)])
    with pytest.raises(ValueError, match="empty"):
        MixedDataset([(a, 1.0), (_Constant(0, 1), 1.0)])


def test_mixed_dataset_covers_each_source_once_per_epoch_when_weights_match_sizes():
    a, b = _Constant(30, 1), _Constant(10, 2)
    mixed = MixedDataset([(a, 3.0), (b, 1.0)], seed=1)
    seen = sorted((s, i) for s, i in (mixed.locate(k) for k in range(len(mixed))))
    assert seen == [(0, i) for i in range(30)] + [(1, i) for i in range(10)]


# --- source specs -------------------------------------------------------------------------------


def test_parse_source():
    assert parse_source("ccp:../shared/datasets/ccp:0.5") == SourceSpec("ccp", Path("../shared/datasets/ccp"), 0.5)
    assert parse_source("viton:/data/viton") == SourceSpec("viton", Path("/data/viton"), 1.0)
    assert parse_source("lip@val:/data/LIP:2") == SourceSpec("lip", Path("/data/LIP"), 2.0, "val")
    # A non-numeric last part belongs to the path.
    assert parse_source("folder:/mnt/a:b").path == Path("/mnt/a:b")
    for bad in ("nokind:/x", "ccp", "ccp:", "ccp:/x:-1", "ccp::1"):
        with pytest.raises(ValueError):
            parse_source(bad)


def test_open_source_real_and_registered_kinds(dataset_dir, tmp_path):
    atr = open_source(f"atr:{dataset_dir('samples', 'atr')}", "atr-18")
    assert isinstance(atr, ATRDataset) and len(atr) == 1
    ccp = open_source(parse_source(f"ccp:{dataset_dir('ccp')}:0.5"), "fashion-17", ids=["0002"])
    assert isinstance(ccp, CCPDataset) and ccp.ids == ["0002"] and ccp.label_set is FASHION_17
    with pytest.raises(ValueError, match="no splits"):
        open_source(f"ccp@val:{dataset_dir('ccp')}", "lip-20")

    calls = []

    def factory(spec, label_set, ids, transform):
        calls.append((spec.kind, spec.path, get_label_set(label_set).name, ids))
        return _Constant(3, 0, label_set)

    register_source("test-kind", factory)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_source("test-kind", factory)
        ds = open_source("test-kind:/somewhere:3", "lip-20", ids=["a"])
        assert len(ds) == 3 and calls == [("test-kind", Path("/somewhere"), "lip-20", ["a"])]
    finally:
        del SOURCE_KINDS["test-kind"]


def test_source_text_and_subset_records_round_trip(dataset_dir, tmp_path):
    for text in ("lip@val:/data/LIP:2", "viton:/data/viton", "folder:/mnt/a:b"):
        assert parse_source(parse_source(text).to_text()) == parse_source(text)
    ccp = parse_source(f"ccp:{dataset_dir('ccp')}")
    subset = SubsetSpec(ccp, ["0002", "0003"], 0.25)
    # Held in memory: a JSON record that reads back as the same subset, opened without any file.
    assert as_source(source_record(subset)) == subset and subset.kind == "subset"
    dataset = open_source(subset, "fashion-17")
    assert isinstance(dataset, CCPDataset) and dataset.ids == ["0002", "0003"]
    assert open_source(subset, "fashion-17", ids=["0003"]).ids == ["0003"]
    with pytest.raises(ValueError, match="not in the subset"):
        open_source(subset, "fashion-17", ids=["0004"])
    # Recorded in a file: its text names the file, and the file opens as the same samples.
    plan = tmp_path / "00.json"
    plan.write_text(f'{{"source": "{ccp.to_text()}", "ids": ["0002", "0003"]}}')
    recorded = SubsetSpec(ccp, ("0002", "0003"), 0.25, plan)
    assert source_record(recorded) == f"subset:{plan}:0.25"
    assert open_source(source_record(recorded), "fashion-17").ids == dataset.ids


def test_open_source_folder_split(tmp_path):
    _write_folder(tmp_path / "train", "images", "labels", ["a", "b"])
    ds = open_source(f"folder@train:{tmp_path}", "lip-20")
    assert isinstance(ds, FolderDataset) and ds.ids == ["a", "b"]
