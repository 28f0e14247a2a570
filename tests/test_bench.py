"""Benchmark: the quick CPU run (tables, JSON, ratios, peak shares), --kernels, and the helpers."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from ssfnet import precision
from train.bench.kernels import KERNEL_SHAPES
from train.bench.speed import bench, format_model_tables, format_table, lite_checks, parse_args
from train.bench.timing import TRAIN_REFERENCE, forward_flops, fp16_megabytes

MODELS = ("ssfnet_lite0", "lraspp_mobilenet_v3_large", "deeplabv3_resnet50")


def test_quick_cpu_run_writes_tables_and_json(tmp_path, capsys):
    out = tmp_path / "bench-cpu.md"
    argv = ["--quick", "--device", "cpu", "--size", "64", "--cpu-train-size", "64", "48", "--cpu-train-batch", "2"]
    # The peers' training steps are covered by the fp32-only run below: first calls dominate here.
    argv += ["--variants", *MODELS, "--skip-train", *MODELS[1:], "--out", str(out)]
    rows = bench(parse_args(argv))
    by_name = {r["variant"]: r for r in rows}
    assert list(by_name) == [*MODELS, TRAIN_REFERENCE]
    yardstick = by_name.pop(TRAIN_REFERENCE)
    rows = [r for r in rows if r is not yardstick]
    saved = json.loads(out.with_suffix(".json").read_text())
    env = saved["env"]
    fast = precision.cpu_has_fast_bf16()
    dtypes = ("fp32", "bf16") if fast else ("fp32",)
    peaks = {"fp32": env["fp32_matmul_peak_gflops"], "bf16": env["bf16_matmul_peak_gflops"]}
    assert peaks["fp32"] > 0 and (peaks["bf16"] > 0 if fast else peaks["bf16"] is None)
    reference = by_name["deeplabv3_resnet50"]["cpu_fp32_ms"]

    for row in rows:
        for key in ("params_m", "fp16_mb", "gflops", "train_gflops"):
            assert row[key] > 0, key
        assert "cuda_b1_fp32_ms" not in row  # --device cpu
        for dtype in dtypes:
            ms = row[f"cpu_{dtype}_ms"]
            assert ms > 0
            assert row[f"cpu_{dtype}_ratio"] == pytest.approx(ms / reference)
            assert row[f"cpu_{dtype}_peak_share"] == pytest.approx(row["gflops"] * 1000 / ms / peaks[dtype])
        if not fast:
            assert row["cpu_bf16_ms"] is None and row["cpu_bf16_ratio"] is None
    assert by_name["deeplabv3_resnet50"]["cpu_fp32_ratio"] == pytest.approx(1.0)

    lite = by_name["ssfnet_lite0"]
    for dtype in dtypes:
        ips = lite[f"train_{dtype}_ips"]
        assert ips > 0
        assert lite[f"train_{dtype}_peak_share"] == pytest.approx(lite["train_gflops"] * ips / peaks[dtype])
    for name in MODELS[1:]:
        assert "train_fp32_ips" not in by_name[name]  # --skip-train

    # Training FLOPs: 3 x the forward of a training step (auxiliary heads, native resolution).
    step = forward_flops("ssfnet_lite0", 20, 64, 48, aux=True, native=True)
    assert lite["train_gflops"] == pytest.approx(3 * step / 1e9)
    assert lite["fp16_mb"] < by_name["deeplabv3_resnet50"]["fp16_mb"] / 5
    assert lite["gflops"] < by_name["deeplabv3_resnet50"]["gflops"]

    text = out.read_text()
    assert text.startswith("Machine: ") and f"torch {torch.__version__}" in text
    assert "Command: python -m train.bench --quick --device cpu --size 64" in text
    assert "CPU inference:" in text and "CPU training:" in text and "bf16 vs DLv3-R50 fp32" in text
    training_table = text.split("CPU training:\n")[1]
    assert "| deeplabv3_resnet50 | " in training_table and " - |" in training_table  # skipped: "-"
    checks = [line for line in text.splitlines() if line.startswith("ssfnet_lite0 ")]
    assert checks and all(line.endswith(("PASS", "FAIL")) for line in checks)
    assert any("inference fp32" in line and "limit 0.15" in line for line in checks)
    assert any("training" in line and "target 25" in line for line in checks)
    assert saved["checks"] == checks and len(saved["rows"]) == 4 and env["size"] == 64
    # The training yardstick: a training row only, and the target as a ratio to it.
    assert yardstick["train_fp32_ips"] > 0 and yardstick["train_gflops"] > 0 and "cpu_fp32_ms" not in yardstick
    assert TRAIN_REFERENCE not in text.split("CPU training:")[0] and TRAIN_REFERENCE in training_table
    assert any(f"x {TRAIN_REFERENCE}" in line and "target 25 / 60 = 0.42" in line for line in checks)
    assert env["cpu_train_size"] == [64, 48] and saved["command"].startswith("python -m train.bench")
    assert "ssfnet_lite0" in capsys.readouterr().out


def test_without_native_bf16_the_bf16_columns_read_na(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: False)
    out = tmp_path / "b.md"
    argv = ["--quick", "--device", "cpu", "--size", "32", "--cpu-train-size", "32", "32", "--cpu-train-batch", "1"]
    rows = bench(
        parse_args([*argv, "--variants", "lraspp_mobilenet_v3_large", "--no-train-reference", "--out", str(out)])
    )
    assert len(rows) == 1
    row = rows[0]
    assert row["cpu_fp32_ms"] > 0 and row["train_fp32_ips"] > 0
    for key in ("cpu_bf16_ms", "cpu_bf16_peak_share", "train_bf16_ips", "train_bf16_peak_share"):
        assert row[key] is None
    assert "cpu_fp32_ratio" not in row  # no reference model in the run
    text = out.read_text()
    assert "no native bf16" in text and "| n/a |" in text and "bf16 n/a" in text


def test_kernels_quick_writes_its_table(tmp_path):
    out = tmp_path / "kernels.md"
    rows = bench(parse_args(["--kernels", "--quick", "--kernel-batch", "1", "--out", str(out)]))
    assert len(rows) == 2 * len(KERNEL_SHAPES)
    assert [r["kind"] for r in rows[:2]] == ["depthwise", "pointwise"]
    assert rows[0]["conv"] == "96ch 3x3 s2" and rows[0]["input"] == "1 x 96 x 128 x 96"
    for row in rows:
        assert row["fp32_ms"] > 0 and row["fp32_gflops"] > 0 and row["gflop"] > 0
        if row["bf16_ms"] is not None:
            assert row["bf16_over_fp32"] == pytest.approx(row["bf16_ms"] / row["fp32_ms"])
    text = out.read_text()
    assert text.startswith("Machine: ") and "Command: python -m train.bench --kernels" in text
    assert "| block | kind | convolution |" in text and "fp32 vs bf16 autocast" in text
    saved = json.loads(out.with_suffix(".json").read_text())
    assert len(saved["kernels"]) == len(rows) and saved["summary"]


def test_fp16_size_counts_floating_tensors_at_two_bytes():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
    # conv 8*3*3*3 + 8 bias; BN 4 x 8 floats at 2 bytes each plus an int64 step counter.
    expected = ((8 * 27 + 8) + 4 * 8) * 2 + 8
    assert fp16_megabytes(model) == pytest.approx(expected / 1e6)


def test_flops_scale_with_the_input_area():
    small = forward_flops("ssfnet_lite0", 20, 64)
    large = forward_flops("ssfnet_lite0", 20, 128)
    assert 3.5 < large / small < 4.5
    assert 0.6 < forward_flops("ssfnet_lite0", 20, 64, 48) / small < 0.9
    # A training forward adds the auxiliary heads.
    assert forward_flops("ssfnet_lite0", 20, 64, aux=True, native=True) > small


def _rows() -> list[dict]:
    return [
        {
            "variant": "ssfnet_lite0",
            "params_m": 4.4,
            "fp16_mb": 8.8,
            "gflops": 1.0,
            "cpu_fp32_ms": 40.0,
            "cpu_bf16_ms": None,
            "cpu_fp32_ratio": 0.1,
            "cpu_bf16_ratio": None,
            "train_fp32_ips": 30.0,
            "train_bf16_ips": None,
        },
        {
            "variant": "deeplabv3_resnet50",
            "params_m": 42.0,
            "fp16_mb": 84.1,
            "gflops": 2.0,
            "cpu_fp32_ms": 400.0,
            "cpu_bf16_ms": None,
            "cpu_fp32_ratio": 1.0,
            "cpu_bf16_ratio": None,
        },
    ]


def test_lite_checks_pass_and_fail():
    rows = _rows()
    checks = lite_checks(rows)
    assert len(checks) == 2  # bf16 not measured: no bf16 inference line
    assert checks[0].startswith("ssfnet_lite0 inference fp32: 0.100") and checks[0].endswith("PASS")
    assert checks[1].startswith("ssfnet_lite0 training fp32: 30.0 img/s") and checks[1].endswith("PASS")
    rows[0].update(cpu_fp32_ratio=0.2, cpu_bf16_ratio=0.12, train_bf16_ips=20.0)
    checks = lite_checks(rows)
    assert checks[0].endswith("FAIL") and checks[1].startswith("ssfnet_lite0 inference bf16")
    assert checks[1].endswith("PASS")
    assert checks[2].startswith("ssfnet_lite0 training bf16: 20.0") and checks[2].endswith("FAIL")
    assert lite_checks(rows[1:]) == []
    # With the yardstick in the run, the target also reads as a ratio to it (25 / 60 of its speed).
    rows.append({"variant": TRAIN_REFERENCE, "train_only": True, "train_bf16_ips": 40.0})
    ratio = lite_checks(rows)[-1]
    assert ratio.startswith(f"ssfnet_lite0 training bf16: 0.50 x {TRAIN_REFERENCE} (40.0 img/s)")
    assert ratio.endswith("PASS")
    rows[-1]["train_bf16_ips"] = 60.0
    assert lite_checks(rows)[-1].endswith("FAIL")


def test_table_formatting():
    rows = _rows()
    table = format_table(rows).splitlines()
    assert len(table) == 4 and table[2].startswith("| ssfnet_lite0 | 4.4 | 8.8 | 1.0 | 40 | n/a | 0.10 | n/a |")
    assert "GPU" not in table[0]  # columns appear only when measured
    # The reference was not trained: "-" (not measured), where bf16 reads "n/a" (not available).
    assert table[3].endswith("| - | - |")
    text = format_model_tables(rows)
    assert "CPU inference:" in text and "CPU training:" in text and "CUDA" not in text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_quick_cuda_columns(tmp_path):
    rows = bench(
        parse_args(
            [
                "--quick",
                "--device",
                "cuda",
                "--size",
                "64",
                "--variants",
                "ssfnet_lite0",
                "--batch",
                "2",
                "--train-batch",
                "2",
                "--out",
                str(tmp_path / "b.md"),
            ]
        )
    )
    row = rows[0]
    for key in ("cuda_b1_fp32_ms", "cuda_b1_bf16_ms", "cuda_b16_fp32_ips", "cuda_b16_bf16_ips", "cuda_train_ips"):
        assert row[key] > 0
    assert 0 < row["bf16_peak_fraction"] < 1
    assert "cpu_fp32_ms" not in row  # --device cuda
