"""train.bench.beside: a parse beside a fine-tune, measured as the app launches one (issue 38)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from helpers import TINY, write_viton
from PIL import Image

from ssfnet import build_model, save_checkpoint
from train.bench.beside import format_table, last_elapsed, launch_env, main, step_times


def test_step_times_are_read_by_window_and_a_half_written_line_is_skipped(tmp_path):
    log = tmp_path / "log.jsonl"
    records = [{"iteration": i, "step_s": 1.0 + i, "elapsed_s": 10.0 * i} for i in range(1, 6)]
    log.write_text("\n".join(json.dumps(r) for r in records) + '\n{"iteration": 6, "step')
    assert step_times(log, 15, 40) == [3.0, 4.0, 5.0]
    assert last_elapsed(log) == 50.0
    assert step_times(tmp_path / "absent.jsonl", 0, 99) == [] and last_elapsed(tmp_path / "absent.jsonl") is None


def test_the_app_launch_leaves_a_core_and_the_plain_one_takes_all():
    assert launch_env("app", 2)["OMP_NUM_THREADS"] == "1" and launch_env("plain", 2)["OMP_NUM_THREADS"] == "2"
    assert launch_env("app", 1)["OMP_NUM_THREADS"] == "1"


def test_the_table_gives_both_slowdowns_and_names_the_machine():
    rows = [
        {"launch": "app", "threads": 1, "parse_beside_ms": 150.0, "step_alone_s": 2.0, "step_beside_s": 3.0},
        {"launch": "plain", "threads": 2, "parse_beside_ms": 900.0, "step_alone_s": 1.5, "step_beside_s": None},
    ]
    table = format_table(100.0, rows, photos=3)
    assert table.startswith("Machine: ") and "torch" in table.splitlines()[0]
    assert "| 1 | 100 | 150 | 1.50 | 2.00 | 3.00 | 1.50 |" in table
    assert "| 2 | 100 | 900 | 9.00 | 1.50 | None | n/a |" in table


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs process groups")
def test_a_short_run_measures_the_app_launch_and_writes_the_table(tmp_path):
    torch_model = build_model("ssfnet_lite", 20, **TINY)
    checkpoint = save_checkpoint(
        torch_model, tmp_path / "tiny", variant="ssfnet_lite", label_set="lip-20", options=TINY,
        metadata={"input_size": 48},
    )  # fmt: skip
    data = write_viton(tmp_path / "viton", n=8)
    photo = tmp_path / "person.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 40, 3), dtype=np.uint8)).save(photo)
    out = tmp_path / "beside.md"
    argv = ["--checkpoint", str(checkpoint), "--data", f"viton:{data}", "--photos", str(photo), "--seconds", "2"]
    assert main([*argv, "--crop-size", "48", "--batch", "2", "--launches", "app", "--out", str(out)]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert [row["launch"] for row in record["rows"]] == ["app"]
    for row in record["rows"]:
        assert row["parse_beside_ms"] > 0 and row["parses_beside"] >= 3
        assert row["step_alone_s"] is None or row["step_alone_s"] > 0
    assert "as the app does" in out.read_text() and record["machine"]


def test_a_missing_checkpoint_is_an_error_message(tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "none"), "--data", "viton:x", "--out", str(tmp_path / "b.md")]) == 1
    assert "error:" in capsys.readouterr().err
