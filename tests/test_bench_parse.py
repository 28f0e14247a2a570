"""Parse-time benchmark: one row per input size and precision, the JSON copy, and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import TINY
from PIL import Image

from ssfnet import build_model, save_checkpoint
from train.bench.parse import main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("ssfnet_lite", 20, **TINY)
    path = tmp_path_factory.mktemp("ck") / "tiny"
    meta = {"input_size": 48}  # the fixture's own inference size, not the library default
    return save_checkpoint(model, path, variant="ssfnet_lite", label_set="lip-20", options=TINY, metadata=meta)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "person.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (60, 40, 3), dtype=np.uint8)).save(path)
    return path


def test_times_every_input_size_and_precision_and_writes_the_table(checkpoint, photo, tmp_path, capsys):
    out = tmp_path / "bench-parse.md"
    argv = ["--checkpoint", str(checkpoint), "--photo", str(photo), "--input-sizes", "32", "48"]
    assert main([*argv, "--precisions", "fp32", "bf16", "--iters", "2", "--warmup", "0", "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [(r["input_size"], r["precision"]) for r in rows] == [(32, "fp32"), (32, "bf16"), (48, "fp32"), (48, "bf16")]
    assert rows[0]["single_rel"] == rows[0]["multiscale_rel"] == 1.0
    for row in rows:
        assert row["single_ms"] > 0 and row["multiscale_ms"] > 0
        assert row["single_rel"] == pytest.approx(row["single_ms"] / rows[0]["single_ms"])
    table = out.read_text()
    assert "40x60 photo" in table and table.count("\n| ") == 1 + len(rows)  # header and one line per row
    assert table in capsys.readouterr().out


def test_defaults_to_the_checkpoints_input_size(checkpoint, photo, tmp_path):
    out = tmp_path / "bench-parse.md"
    assert main(["--checkpoint", str(checkpoint), "--photo", str(photo), "--iters", "1", "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert {r["input_size"] for r in rows} == {48}


def test_a_missing_photo_or_checkpoint_is_a_message(checkpoint, photo, tmp_path, capsys):
    out = tmp_path / "bench-parse.md"
    assert main(["--checkpoint", str(checkpoint), "--photo", str(tmp_path / "none.jpg"), "--out", str(out)]) == 1
    assert "error:" in capsys.readouterr().err
    assert main(["--checkpoint", str(tmp_path / "nothing"), "--photo", str(photo), "--out", str(out)]) == 1
    assert "error:" in capsys.readouterr().err
    assert not out.exists()


def test_times_onnxruntime_beside_torch_and_names_the_machine(checkpoint, photo, tmp_path):
    out = tmp_path / "bench-parse.md"
    argv = ["--checkpoint", str(checkpoint), "--photo", str(photo), "--input-sizes", "32", "--out", str(out)]
    assert main([*argv, "--precisions", "fp32", "onnx-fp32", "--iters", "1"]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert [r["precision"] for r in record["rows"]] == ["fp32", "onnx-fp32"]
    assert all(r["first_ms"] > 0 for r in record["rows"])
    assert "onnxruntime" in record["machine"] and f"Machine: {record['machine']}" in out.read_text()


def test_int8_without_its_file_is_a_message(checkpoint, photo, tmp_path, capsys):
    out = tmp_path / "bench-parse.md"
    argv = ["--checkpoint", str(checkpoint), "--photo", str(photo), "--precisions", "onnx-int8", "--out", str(out)]
    assert main(argv) == 1
    assert "--int8-model" in capsys.readouterr().err and not out.exists()


def test_photos_of_several_sizes_give_a_table_each(checkpoint, photo, tmp_path):
    wide = tmp_path / "wide.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (30, 90, 3), dtype=np.uint8)).save(wide)
    out = tmp_path / "bench-parse.md"
    argv = ["--checkpoint", str(checkpoint), "--photo", str(photo), str(wide), "--precisions", "fp32"]
    assert main([*argv, "--iters", "1", "--warmup", "0", "--out", str(out)]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert [p["shape"] for p in record["photos"]] == [[60, 40], [30, 90]]
    table = out.read_text()
    assert "40x60 photo" in table and "90x30 photo" in table and table.count("Machine: ") == 2
