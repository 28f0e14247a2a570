"""The simulated-annotator loop on real CCP and VITON files, with a tiny model and a tiny budget."""

import json

import pytest
import torch
from helpers import TINY

from ssfnet import build_model, load_checkpoint, save_checkpoint
from train import simulate_loop


def test_loop_writes_corrections_fine_tunes_and_scores(dataset_dir, tmp_path):
    ccp, viton = dataset_dir("ccp"), dataset_dir("viton")
    torch.manual_seed(0)
    base = save_checkpoint(build_model("ssfnet_lite", 20, **TINY), tmp_path / "base", variant="ssfnet_lite",
                           label_set="lip-20", options=TINY, metadata={"input_size": 64})  # fmt: skip
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"sources": [
        {"kind": "ccp", "path": str(ccp.resolve()), "split": None, "val_ids": ["0002", "0003", "0004"]},
        {"kind": "viton", "path": str(viton.resolve()), "split": None, "val_ids": ["000003_0", "000004_0"]},
    ]}))  # fmt: skip
    out = tmp_path / "loop"
    report = simulate_loop.main([
        "--base", str(base), "--split", str(split), "--ccp", str(ccp), "--viton", str(viton),
        "--corrections", "2", "--max-minutes", "1", "--val-max-images", "4", "--crop-size", "64",
        "--device", "cpu", "--out", str(out),
    ])  # fmt: skip
    assert len(report["corrections"]) == 2
    assert len(list((out / "corrections" / "meta").glob("*.json"))) == 2
    for when in ("before", "after"):
        ccp_scores = report[when]["ccp_other_val (lip-20 -> ccp-coarse)"]
        assert ccp_scores["images"] == 1 and 0 <= ccp_scores["miou"] <= 100
        assert report[when]["viton_val (lip-20)"]["images"] == 2
    # The held-out CCP change, paired over the same photo(s), agrees with the two scores.
    change, key = report["ccp_change"], "ccp_other_val (lip-20 -> ccp-coarse)"
    assert change["images"] == 1 and change["low"] <= change["delta"] <= change["high"]
    assert change["delta"] == pytest.approx(report["after"][key]["miou"] - report["before"][key]["miou"], abs=0.02)
    assert "paired bootstrap" in (out / "report.md").read_text()
    model, meta = load_checkpoint(report["fine_tuned"])
    assert meta["label_set"] == "lip-20"
    assert (out / "report.md").read_text().startswith("| validation set")


def test_the_loop_fine_tunes_as_told_and_otherwise_with_the_base_recipe(tmp_path):
    from train.simulate_loop import finetune_config, parse_args

    args = parse_args(["--base", "b", "--split", "s.json", "--corrections-share", "0.2", "--lr", "3e-5"])
    config = finetune_config(args, ["viton:v", "ccp:c"], tmp_path / "corrections", tmp_path)
    assert config.corrections_share == 0.2 and config.train.lr == 3e-5 and config.given == ("lr",)
    assert config.train.data == ["viton:v", "ccp:c"] and config.holdout == 0.0
    # Left to the base's recipe: the crop size (and optimizer, ...) are not among the given options.
    assert "crop_size" not in config.given
    frozen = parse_args(["--base", "b", "--split", "s.json", "--freeze-backbone", "--batch-size", "16"])
    config = finetune_config(frozen, ["ccp:c"], tmp_path / "corrections", tmp_path)
    assert config.train.freeze_backbone and config.train.batch_size == 16
    assert set(config.given) == {"freeze_backbone", "batch_size"}
