"""Benchmark: the quick CPU run, its table and JSON, and the size / FLOP helpers."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from train.bench import format_table, forward_flops, fp16_megabytes, lite_checks, main


def test_quick_cpu_run_writes_table_and_json(tmp_path, capsys):
    out = tmp_path / "bench.md"
    rows = main(
        [
            "--quick",
            "--device",
            "cpu",
            "--size",
            "64",
            "--variants",
            "ssfnet_lite",
            "deeplabv3_resnet50",
            "--out",
            str(out),
        ]
    )
    by_name = {r["variant"]: r for r in rows}
    assert set(by_name) == {"ssfnet_lite", "deeplabv3_resnet50"}
    for row in rows:
        assert row["cpu_b1_ms"] > 0 and row["gflops"] > 0 and row["params_m"] > 0
        assert "cuda_b1_fp32_ms" not in row  # --device cpu
    assert by_name["deeplabv3_resnet50"]["cpu_ratio"] == pytest.approx(1.0)
    lite = by_name["ssfnet_lite"]
    assert lite["cpu_ratio"] == pytest.approx(lite["cpu_b1_ms"] / by_name["deeplabv3_resnet50"]["cpu_b1_ms"])
    assert lite["fp16_mb"] <= 40.0
    assert lite["gflops"] < by_name["deeplabv3_resnet50"]["gflops"]
    text = out.read_text()
    assert "| model |" in text and "CPU ratio vs DLv3-R50" in text and "ssfnet_lite fp16 weights" in text
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["env"]["size"] == 64 and len(saved["rows"]) == 2
    assert "ssfnet_lite" in capsys.readouterr().out


def test_fp16_size_counts_floating_tensors_at_two_bytes():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
    # conv 8*3*3*3 + 8 bias; BN 4 x 8 floats at 2 bytes each plus an int64 step counter.
    expected = ((8 * 27 + 8) + 4 * 8) * 2 + 8
    assert fp16_megabytes(model) == pytest.approx(expected / 1e6)


def test_flops_scale_with_the_input_area():
    small = forward_flops("ssfnet_lite", 20, 64)
    large = forward_flops("ssfnet_lite", 20, 128)
    assert 3.5 < large / small < 4.5


def test_lite_checks_and_table_formatting():
    rows = [
        {
            "variant": "ssfnet_lite",
            "fp16_mb": 30.0,
            "cpu_b1_ms": 40.0,
            "cpu_ratio": 0.4,
            "gflops": 1.0,
            "params_m": 1.0,
        },
        {
            "variant": "deeplabv3_resnet50",
            "fp16_mb": 80.0,
            "cpu_b1_ms": 100.0,
            "cpu_ratio": 1.0,
            "gflops": 2.0,
            "params_m": 2.0,
        },
    ]
    checks = lite_checks(rows)
    assert checks[0].endswith("ok") and checks[1].endswith("ok")
    rows[0]["cpu_ratio"] = 0.7
    assert lite_checks(rows)[1].endswith("OVER")
    table = format_table(rows).splitlines()
    assert len(table) == 4 and table[2].startswith("| ssfnet_lite | 1.0 | 30.0 |")
    assert "GPU" not in table[0]  # columns appear only when measured


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_quick_cuda_columns(tmp_path):
    rows = main(
        [
            "--quick",
            "--device",
            "cuda",
            "--size",
            "64",
            "--variants",
            "ssfnet_lite",
            "--batch",
            "2",
            "--train-batch",
            "2",
            "--out",
            str(tmp_path / "b.md"),
        ]
    )
    row = rows[0]
    for key in ("cuda_b1_fp32_ms", "cuda_b1_bf16_ms", "cuda_b16_fp32_ips", "cuda_b16_bf16_ips", "cuda_train_ips"):
        assert row[key] > 0
    assert 0 < row["bf16_peak_fraction"] < 1
