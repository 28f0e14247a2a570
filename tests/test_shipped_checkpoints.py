"""The checkpoints shipped in ``checkpoints/``: honest metadata, a model card that matches it, and
weights that really parse held-out photos (re-scored here on a few of them, not read back)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ssfnet import load_checkpoint
from ssfnet.data import open_source, split_ids
from ssfnet.labels import eval_mapping, get_label_set
from ssfnet.predictor import DEFAULT_CHECKPOINT, load_predictor
from train.evaluate import evaluate_dataset, spread

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
SHIPPED = sorted(p.parent.name for p in CHECKPOINTS.glob("*/metadata.json"))
MAX_SHARD_BYTES = 10 * 1000 * 1000
PHOTOS = 12  # held-out photos re-scored per source


def metadata(name: str) -> dict:
    return json.loads((CHECKPOINTS / name / "metadata.json").read_text())


def held_out_score(predictor, datasets: Path, kind: str, gt_label_set: str, meta: dict) -> dict:
    """Metrics of ``predictor`` on an even spread of PHOTOS photos the checkpoint's training held out."""
    recipe = meta["training"]["recipe"]
    gt_set = get_label_set(gt_label_set)
    spec = f"{kind}:{datasets / kind}"
    everything = open_source(spec, gt_set)
    _, held_out = split_ids(everything.ids, recipe["val_fraction"], recipe["split_seed"])
    ids = [held_out[i] for i in spread(len(held_out), PHOTOS)]
    dataset = open_source(spec, gt_set, ids=ids)
    mapping = None if gt_set is predictor.label_set else eval_mapping(predictor.label_set, gt_set)
    cm = evaluate_dataset(predictor, dataset, gt_set.num_classes, mapping=mapping, label_set=gt_set, progress=False)
    return cm.compute()


def test_the_default_checkpoint_is_shipped():
    assert (DEFAULT_CHECKPOINT / "metadata.json").is_file(), f"{DEFAULT_CHECKPOINT} is missing"
    assert DEFAULT_CHECKPOINT.name in SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shards_are_small_and_the_weights_load_strictly(name):
    folder = CHECKPOINTS / name
    shards = sorted(folder.glob("*.safetensors"))
    assert shards and all(s.stat().st_size < MAX_SHARD_BYTES for s in shards)
    assert not list(folder.glob("*.pt")) and not list(folder.glob("*.pth")) and not list(folder.glob("*.bin"))
    model, meta = load_checkpoint(folder)
    assert meta["label_set"] == get_label_set(meta["label_set"]).name
    assert sum(p.numel() for p in model.parameters()) == meta["parameters"]


@pytest.mark.parametrize("name", SHIPPED)
def test_metadata_says_what_it_was_trained_on_for_how_long_and_how_it_scored(name):
    meta = metadata(name)
    training = meta["training"]
    assert training["data"] and training["data_terms"] and meta["data_terms"]
    assert training["cumulative_minutes"] > 0 and "cores" in training["hardware"]
    history = training["history"]
    assert history and history[-1]["cumulative_minutes"] == pytest.approx(training["cumulative_minutes"], abs=0.1)
    for scores in (meta["metrics"]["sources"], meta["metrics"]["sources_multiscale_flip"]):
        assert scores and all(0 < s["main"] <= 100 and s["images"] > 0 for s in scores.values())


@pytest.mark.parametrize("name", SHIPPED)
def test_the_model_card_reports_the_shipped_numbers(name):
    """The card is rewritten with every release: its section names the checkpoint, its minutes and scores."""
    card = (CHECKPOINTS / "README.md").read_text()
    meta = metadata(name)
    assert f"`{name}`" in card
    minutes = meta["training"]["cumulative_minutes"]
    assert f"{minutes:,.0f} CPU minutes" in card, f"the card does not give {name}'s {minutes:.0f} minutes"
    for source, scores in meta["metrics"]["sources"].items():
        assert f"{scores['main']:.2f}" in card, f"the card lacks {name}'s single-scale {source} score"


def test_the_default_parses_held_out_photos_of_every_source(dataset_dir):
    """Re-scored on 12 held-out photos per source: far above an untrained model, near the card's figures."""
    datasets = dataset_dir("ccp").parent
    dataset_dir("pascal-person-part")
    meta = metadata(DEFAULT_CHECKPOINT.name)
    predictor = load_predictor(None, "cpu")
    pascal = held_out_score(predictor, datasets, "pascal-person-part", "person-head-3", meta)
    assert pascal["person_iou"] > 55 and pascal["head_iou"] > 40, pascal
    ccp = held_out_score(predictor, datasets, "ccp", "fashion-17", meta)
    assert ccp["miou"] > 30 and ccp["pixel_acc"] > 80, ccp


BODY_PARTS = "ssfnet_lite0-pascal7"
# Measured on these 12 photos at release: mIoU 51.2, head 81.8, torso 52.3; person 65.5, head 81.8.
MIOU_FLOOR, HEAD_FLOOR, TORSO_FLOOR = 40, 65, 35


@pytest.mark.skipif(BODY_PARTS not in SHIPPED, reason=f"{BODY_PARTS} is not shipped")
def test_the_body_part_model_parses_held_out_photos_into_the_seven_parts(dataset_dir):
    """Re-scored on 12 held-out PASCAL photos in its own seven parts and on the default's person / head scale."""
    datasets = dataset_dir("pascal-person-part").parent
    meta = metadata(BODY_PARTS)
    assert meta["label_set"] == "pascal-person-part-7"
    predictor = load_predictor(CHECKPOINTS / BODY_PARTS, "cpu")
    assert predictor.label_set.name == "pascal-person-part-7"
    parts = held_out_score(predictor, datasets, "pascal-person-part", "pascal-person-part-7", meta)
    iou = dict(zip(predictor.label_set.names, parts["iou"]))
    assert parts["miou"] > MIOU_FLOOR and iou["head"] > HEAD_FLOOR and iou["torso"] > TORSO_FLOOR, iou
    coarse = held_out_score(predictor, datasets, "pascal-person-part", "person-head-3", meta)
    assert coarse["person_iou"] > 55 and coarse["head_iou"] > 65, coarse
