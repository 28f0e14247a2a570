"""Two CPU processes under torchrun (gloo): DDP training, sharded validation, rank-0 outputs and resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import TINY, write_viton
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from ssfnet import get_label_set, load_checkpoint
from ssfnet.data import EvalTransform, open_source
from train.engine import evaluate
from train.train import pad_collate

ROOT = Path(__file__).resolve().parent.parent
LIP = get_label_set("lip-20")

pytestmark = pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="needs the gloo backend")


def torchrun(config: dict, path: Path) -> dict:
    path.write_text(json.dumps(config))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "train.train",
        "--config",
        str(path),
    ]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads((Path(config["out"]) / "summary.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    data = write_viton(tmp / "viton", seed=1)
    base = {
        "data": [f"viton:{data}"],
        "variant": "ssfnet_lite",
        "model_options": TINY,
        "crop_size": 64,
        "batch_size": 2,
        "epoch_size": 8,
        "epochs": 2,
        "val_fraction": 0.3,
        "workers": 0,
        "augment_grid": False,
        "print_freq": 1000,
        "copy_paste": 0.5,
        "colour_jitter": 0.5,
    }
    whole = torchrun({**base, "out": str(tmp / "whole")}, tmp / "whole.json")
    first = torchrun({**base, "out": str(tmp / "split"), "stop_after_iters": 3}, tmp / "first.json")
    second = torchrun({**base, "out": str(tmp / "split"), "resume": True}, tmp / "second.json")
    return tmp, data, whole, first, second


def test_two_process_run_logs_once_and_saves_every_rank_state(runs):
    tmp, _, whole, _, _ = runs
    assert whole["status"] == "finished" and whole["world_size"] == 2
    # 8 samples per epoch over 2 processes with 2 images each: 2 steps per epoch.
    assert whole["iteration"] == 4
    log = [json.loads(line) for line in (tmp / "whole" / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == [1, 2, 3, 4]  # rank 0 alone writes
    state = json.loads((tmp / "whole" / "last" / "training_state.json").read_text())
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    tensors = load_file(str(tmp / "whole" / "last" / "training_state.safetensors"))
    assert not torch.equal(tensors["rng.0.torch"], tensors["rng.1.torch"])  # each rank has its own stream


def test_sharded_validation_equals_a_single_process_evaluation(runs):
    tmp, _, whole, _, _ = runs
    split = json.loads((tmp / "whole" / "split.json").read_text())
    source = split["sources"][0]
    assert source["val_count"] >= 2  # both ranks score a share
    val = open_source(source["spec"], LIP, ids=source["val_ids"], transform=EvalTransform(64, LIP))
    model, _ = load_checkpoint(tmp / "whole" / "best")
    loader = DataLoader(val, batch_size=2, collate_fn=pad_collate)
    # Score as the run did: bf16 autocast and channels_last where this CPU runs bf16 natively.
    resolved = json.loads((tmp / "whole" / "config.json").read_text())["resolved"]
    metrics = evaluate(
        model,
        loader,
        torch.device("cpu"),
        LIP.num_classes,
        label_set=LIP,
        amp=resolved["amp_bf16"],
        channels_last=resolved["channels_last"],
    )
    logged = [json.loads(line) for line in (tmp / "whole" / "val.jsonl").read_text().splitlines()]
    best = max(logged, key=lambda r: r["miou"])
    assert best["miou"] == pytest.approx(metrics["miou"], abs=1e-9)
    assert best["pixel_acc"] == pytest.approx(metrics["pixel_acc"], abs=1e-9)


def test_two_process_resume_reproduces_the_uninterrupted_run(runs):
    tmp, _, whole, first, second = runs
    assert first["status"] == "stopped" and first["iteration"] == 3
    assert second["status"] == "finished" and second["iteration"] == whole["iteration"]
    losses = [
        [json.loads(line)["loss"] for line in (tmp / name / "log.jsonl").read_text().splitlines()]
        for name in ("whole", "split")
    ]
    assert losses[0] == losses[1]
