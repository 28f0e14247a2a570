"""Training: a tiny run end to end, resume, time budget, stop/cancel, init/freeze, config and augmentation."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY, write_viton
from PIL import Image

import train.train as train_module
from ssfnet import get_label_set, load_checkpoint
from ssfnet.checkpoint import CheckpointError, load_state_dict
from ssfnet.data import SubsetSpec, open_source, parse_source
from train.augment import CopyPaste, Photometric, TrainDataset, remove_people, synthetic_texture
from train.config import TrainConfig, parse_args
from train.engine import Schedule, TrainState, poly_factor
from train.train import build, resolve_model, run_training, transferred_state
from train.utils import Stopwatch

# Narrow decoder widths: the whole model trains a step in a fraction of a second at 64 px.
LIP = get_label_set("lip-20")


@pytest.fixture(scope="module")
def viton(tmp_path_factory) -> Path:
    return write_viton(tmp_path_factory.mktemp("data") / "viton")


def tiny_config(data: Path, out: Path, **overrides) -> TrainConfig:
    values = dict(
        data=[f"viton:{data}"],
        variant="ssfnet_lite",
        model_options=dict(TINY),
        crop_size=64,
        batch_size=2,
        epoch_size=6,
        epochs=2,
        val_fraction=0.25,
        workers=0,
        print_freq=1000,
        out=str(out),
        checkpoint_minutes=60.0,
    )
    values.update(overrides)
    return TrainConfig(**values)


def losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "log.jsonl").read_text().splitlines()]


def test_tiny_run_writes_loadable_checkpoints_logs_and_plots(viton, tmp_path):
    out = tmp_path / "run"
    summary = run_training(
        tiny_config(viton, out, copy_paste=0.5, colour_jitter=0.5, blur=0.3, jpeg=0.3, class_balance=0.5)
    )
    assert summary.status == "finished"
    resolved = json.loads((out / "config.json").read_text())["resolved"]
    assert "cores" in resolved["hardware"]  # the machine it trained on, for the release's history
    balance = resolved["value_weights"]
    assert len(balance) == get_label_set("lip-20").num_ids and 0.2 <= balance["hair"]["weight"] <= 10.0
    assert sum(entry["share"] for entry in balance.values()) == pytest.approx(1.0, abs=1e-4)
    assert summary.iteration == 6  # 2 epochs x 3 steps of 2 images
    for name in ("last", "best"):
        model, meta = load_checkpoint(out / name)
        assert meta["variant"] == "ssfnet_lite" and meta["label_set"] == "lip-20"
        assert meta["input_size"] == 64
        with torch.no_grad():
            assert model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), aux=False)["out"].shape == (1, 20, 32, 32)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == list(range(1, 7))
    assert all(np.isfinite(r["loss"]) and r["loss"] > 0 for r in records)
    assert records[-1]["lr"] < records[0]["lr"]
    val = [json.loads(line) for line in (out / "val.jsonl").read_text().splitlines()]
    assert [v["iteration"] for v in val] == [3, 6]
    assert summary.best_val_miou == pytest.approx(max(v["miou"] for v in val))
    split = json.loads((out / "split.json").read_text())
    source = split["sources"][0]
    assert source["val_count"] == len(source["val_ids"]) > 0
    assert source["train_count"] + source["val_count"] == 16
    for png in ("augment_grid.png", "curves.png"):
        assert Image.open(out / png).size[0] > 100
    assert 0.0 <= summary.data_wait_fraction < 1.0
    written = json.loads((out / "summary.json").read_text())
    assert written == summary.to_dict() and list(written) == list(summary.to_dict())  # the same keys, in order


def test_typed_subset_trains_on_its_ids_and_is_recorded_as_json(viton, tmp_path):
    spec = parse_source(f"viton:{viton}")
    ids = open_source(spec, LIP).ids[:8]
    out = tmp_path / "run"
    data = [SubsetSpec(spec, ids, 0.5)]
    config = tiny_config(viton, out, val_fraction=0.0, epochs=1, augment_grid=False)
    config.data = data
    assert run_training(config).status == "finished"
    # The run's records name it in text, by the subset file the run wrote, as the fine-tune's do.
    plan = (out / "subsets" / "00.json").resolve()
    assert json.loads(plan.read_text()) == {"source": spec.to_text(), "ids": ids}
    recorded = json.loads((out / "config.json").read_text())["data"]
    assert recorded == [f"subset:{plan}:0.5"]
    assert load_checkpoint(out / "last")[1]["training"]["data"] == recorded
    (source,) = json.loads((out / "split.json").read_text())["sources"]
    assert source["kind"] == "subset" and source["train_count"] == 8 and source["spec"] == recorded[0]
    # A config file may give a subset as a record: it reads back as the same typed source.
    config_file = tmp_path / "again.json"
    config_file.write_text(json.dumps({"data": [data[0].to_record()]}))
    assert parse_args(["--config", str(config_file)]).data == data


def test_existing_run_needs_resume(viton, tmp_path):
    out = tmp_path / "run"
    run_training(tiny_config(viton, out, epochs=1, augment_grid=False))
    with pytest.raises(FileExistsError, match="--resume"):
        run_training(tiny_config(viton, out, epochs=1, augment_grid=False))


def test_resume_reproduces_the_uninterrupted_run(viton, tmp_path):
    # Batch-level photometric augmentation (as on a GPU) must replay exactly as well.
    settings = dict(epochs=2, copy_paste=0.5, colour_jitter=0.5, jpeg=0.5, gpu_augment="on", augment_grid=False)
    whole = run_training(tiny_config(viton, tmp_path / "whole", **settings))
    first = run_training(tiny_config(viton, tmp_path / "split", stop_after_iters=4, **settings))
    assert first.status == "stopped" and first.iteration == 4
    state = json.loads((tmp_path / "split" / "last" / "training_state.json").read_text())
    assert state["state"]["iteration"] == 4 and state["state"]["step_in_epoch"] == 1
    second = run_training(tiny_config(viton, tmp_path / "split", resume=True, **settings))
    assert second.status == whole.status == "finished"
    assert losses(tmp_path / "split") == losses(tmp_path / "whole")
    a, _ = load_state_dict(tmp_path / "whole" / "last")
    b, _ = load_state_dict(tmp_path / "split" / "last")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_adamw_runs_and_resumes_exactly(viton, tmp_path):
    settings = dict(epochs=2, optimizer="adamw", lr=1e-3, weight_decay=0.01, head_lr_mult=5.0, augment_grid=False)
    whole = run_training(tiny_config(viton, tmp_path / "whole", **settings))
    assert json.loads((tmp_path / "whole" / "config.json").read_text())["optimizer"] == "adamw"
    run_training(tiny_config(viton, tmp_path / "split", stop_after_iters=4, **settings))
    second = run_training(tiny_config(viton, tmp_path / "split", resume=True, **settings))
    assert second.status == whole.status == "finished"
    # The moment estimates came back with the weights: the resumed steps are the uninterrupted ones.
    assert losses(tmp_path / "split") == losses(tmp_path / "whole")
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "whole" / "log.jsonl").read_text().splitlines()]
    assert lrs[0] <= 1e-3 and lrs == sorted(lrs, reverse=True)


def test_make_optimizer_groups_and_kinds():
    from train.engine import make_optimizer

    model = torch.nn.Module()
    model.backbone = torch.nn.Conv2d(3, 4, 1)
    model.head = torch.nn.Conv2d(4, 2, 1)
    adamw = make_optimizer(model, TrainConfig(optimizer="adamw", lr=1e-3, head_lr_mult=10.0, weight_decay=0.05))
    assert isinstance(adamw, torch.optim.AdamW)
    assert [g["lr"] for g in adamw.param_groups] == pytest.approx([1e-3, 1e-2])
    assert all(g["weight_decay"] == 0.05 for g in adamw.param_groups)
    sgd = make_optimizer(model, TrainConfig())
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.9


class TickingStopwatch(Stopwatch):
    """A training clock that advances ``TICK_S`` each time it is read, however fast or busy the machine is."""

    TICK_S = 0.3

    def __init__(self, already: float = 0.0) -> None:
        super().__init__(already)
        self.ticks = 0

    def __call__(self) -> float:
        self.ticks += 1
        return self.already + self.TICK_S * self.ticks


def test_time_budget_drives_the_poly_schedule(viton, tmp_path, monkeypatch):
    # The trainer's clock is read about three times a step here (before it, in its log record, at the
    # epoch's save): some 0.9 s of this clock a step, whatever a step takes on a busy 2-core machine.
    monkeypatch.setattr(train_module, "Stopwatch", TickingStopwatch)
    budget_minutes = 0.12
    # One step per epoch and no validation: a timed run must go on past --epochs.
    config = tiny_config(
        viton,
        tmp_path / "run",
        max_minutes=budget_minutes,
        epochs=1,
        epoch_size=2,
        val_fraction=0.0,
        augment_grid=False,
    )
    summary = run_training(config)
    assert summary.status == "finished"
    assert summary.iteration >= 2 and summary.epoch >= 2
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in records]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < lrs[0]
    # Time drives the schedule: a step's rate is at most the poly rate of the time spent before it
    # (the reserve for the final save only lowers it), however slow the steps are on a busy CPU.
    for before, record in zip(records, records[1:]):
        spent = (before["elapsed_s"] - 0.01) / (budget_minutes * 60)  # logged rounded to 0.01 s
        assert record["lr"] <= config.lr * poly_factor(spent, config.lr_power) + 1e-12
    # The run ends with the budget (at most a step of the clock past it), not with --epochs.
    assert records[-1]["elapsed_s"] <= budget_minutes * 60 + 3 * TickingStopwatch.TICK_S
    assert summary.elapsed_s <= budget_minutes * 60 + 6 * TickingStopwatch.TICK_S


def test_schedule_progress_by_iterations_and_by_time():
    by_iters = Schedule(base_lr=0.01, power=0.9, total_iters=100)
    assert by_iters.lr(by_iters.progress(TrainState(iteration=0))) == pytest.approx(0.01)
    assert by_iters.lr(by_iters.progress(TrainState(iteration=50))) == pytest.approx(0.01 * 0.5**0.9)
    by_time = Schedule(base_lr=0.01, power=0.9, budget_s=100.0, reserve_s=20.0)
    assert by_time.progress(TrainState(elapsed=40.0)) == pytest.approx(0.5)
    assert poly_factor(1.2, 0.9) == 0.0


def test_stop_file_stops_cleanly_with_a_complete_checkpoint(viton, tmp_path):
    out = tmp_path / "run"
    stop_file = tmp_path / "STOP"

    def request_stop() -> None:
        log = out / "log.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if log.exists() and len(log.read_text().splitlines()) >= 2:
                stop_file.touch()
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=request_stop)
    watcher.start()
    summary = run_training(tiny_config(viton, out, epochs=50, stop_file=str(stop_file), augment_grid=False))
    watcher.join()
    assert summary.status == "stopped" and "stop file" in summary.stop_reason
    assert 2 <= summary.iteration < 150
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    _, meta = load_checkpoint(out / "last")
    assert meta["iteration"] == summary.iteration


def test_cancel_event_stops_before_the_first_step(viton, tmp_path):
    cancel = threading.Event()
    cancel.set()
    summary = run_training(tiny_config(viton, tmp_path / "run", augment_grid=False), cancel=cancel)
    assert summary.status == "stopped" and summary.iteration == 0


def test_init_checkpoint_with_frozen_backbone_trains_only_the_decoder(viton, tmp_path):
    run_training(tiny_config(viton, tmp_path / "base", epochs=1, augment_grid=False))
    base, _ = load_state_dict(tmp_path / "base" / "last")
    summary = run_training(
        tiny_config(
            viton,
            tmp_path / "tuned",
            variant=None,
            model_options={},
            epochs=1,
            lr=0.05,
            init_checkpoint=str(tmp_path / "base" / "last"),
            freeze_backbone=True,
            augment_grid=False,
        )
    )
    assert summary.variant == "ssfnet_lite"
    tuned, meta = load_state_dict(tmp_path / "tuned" / "last")
    assert meta["training"]["init_checkpoint"] == str(tmp_path / "base" / "last")
    backbone = [k for k in base if k.startswith("backbone.")]
    assert backbone and all(torch.equal(base[k], tuned[k]) for k in backbone)  # BN statistics included
    assert any(not torch.equal(base[k], tuned[k]) for k in base if k.startswith("head."))


def test_freeze_bn_keeps_every_running_statistic_and_still_trains_the_weights(viton, tmp_path):
    run_training(tiny_config(viton, tmp_path / "base", epochs=1, augment_grid=False))
    base, _ = load_state_dict(tmp_path / "base" / "last")
    run_training(tiny_config(viton, tmp_path / "tuned", variant=None, model_options={}, epochs=1, lr=0.05,
                     init_checkpoint=str(tmp_path / "base" / "last"), freeze_bn=True, augment_grid=False))  # fmt: skip
    tuned, _ = load_state_dict(tmp_path / "tuned" / "last")
    stats = [k for k in base if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(base[k], tuned[k]) for k in stats)
    assert any(not torch.equal(base[k], tuned[k]) for k in base if k.startswith("backbone.") and k not in stats)


def test_init_checkpoint_of_another_label_set_keeps_all_but_the_class_outputs(viton, tmp_path):
    run_training(tiny_config(viton, tmp_path / "base", epochs=1, augment_grid=False))
    base, _ = load_state_dict(tmp_path / "base" / "last")
    config = tiny_config(
        viton,
        tmp_path / "parts",
        variant=None,
        model_options={},
        label_set="pascal-person-part-7",
        init_checkpoint=str(tmp_path / "base" / "last"),
    )
    setup = resolve_model(config)
    assert setup.label_set.name == "pascal-person-part-7" and setup.variant == "ssfnet_lite"
    model = build(setup, config)
    state = model.state_dict()
    fresh = {k for k in state if state[k].shape != base[k].shape}
    assert fresh == set(transferred_state(model, setup)[1])
    assert {k.rsplit(".", 1)[0] for k in fresh} == {"head.3", "aux1_head.1", "aux2_head.2"}
    assert all(state[k].shape[0] == 7 and base[k].shape[0] == LIP.num_classes for k in fresh)
    assert all(torch.equal(state[k], base[k].to(state[k].dtype)) for k in state if k not in fresh)
    with torch.no_grad():
        assert model.eval()(torch.zeros(1, 3, 64, 64))["out"].shape[1] == 7


def test_init_checkpoint_of_another_label_set_still_needs_the_same_network(viton, tmp_path):
    run_training(tiny_config(viton, tmp_path / "base", epochs=1, augment_grid=False))
    wider = dict(TINY, high_channels=TINY["high_channels"] + 8)
    config = tiny_config(
        viton,
        tmp_path / "parts",
        variant=None,
        model_options=wider,
        label_set="pascal-person-part-7",
        init_checkpoint=str(tmp_path / "base" / "last"),
    )
    with pytest.raises(CheckpointError, match="shape"):
        build(resolve_model(config), config)


def test_torchvision_peer_trains_through_the_same_loop(viton, tmp_path):
    summary = run_training(
        tiny_config(
            viton,
            tmp_path / "run",
            variant="deeplabv3_resnet50",
            model_options={},
            epochs=1,
            epoch_size=2,
            augment_grid=False,
        )
    )
    assert summary.status == "finished" and summary.iteration == 1
    model, meta = load_checkpoint(tmp_path / "run" / "last")
    assert meta["variant"] == "deeplabv3_resnet50"
    assert type(model).__name__ == "TorchvisionSegmenter"


def test_config_file_and_command_line_precedence(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data: [viton:/a]\nlr: 0.02\ncrop_size: 225\nmodel_options: {high_channels: 16}\n")
    config = parse_args(["--config", str(path), "--crop-size", "129", "--model-option", "mid_channels=8"])
    assert config.data == ["viton:/a"]
    assert config.lr == 0.02  # from the file
    assert config.crop_size == 129  # the command line wins
    assert config.model_options == {"high_channels": 16, "mid_channels": 8}
    assert config.momentum == 0.9 and config.weight_decay == 5e-4 and config.batch_size == 8  # the paper's recipe
    assert parse_args(["--config", str(path), "--data", "ccp:/b"]).data == ["ccp:/b"]
    (tmp_path / "bad.json").write_text(json.dumps({"learning_rate": 1}))
    with pytest.raises(ValueError, match="unknown options"):
        parse_args(["--config", str(tmp_path / "bad.json")])


# ---------------------------------------------------------------------------------------------
# Augmentation


def person_sample(height: int = 80, width: int = 60) -> tuple[np.ndarray, np.ndarray]:
    label = np.zeros((height, width), np.uint8)
    label[10:70, 20:40] = 5
    label[10:70, 16:20] = 14
    label[10:70, 40:44] = 15
    image = np.full((height, width, 3), 200, np.uint8)
    image[label > 0] = (30, 60, 90)
    return image, label


def test_copy_paste_composes_people_with_their_labels():
    image, label = person_sample()
    rng = np.random.default_rng(3)
    paste = CopyPaste(LIP, 96)
    for _ in range(20):
        canvas, canvas_label = paste(image, label, lambda r: person_sample(), rng)
        assert canvas.shape[:2] == canvas_label.shape and max(canvas_label.shape) == 96
        assert set(np.unique(canvas_label)) <= {0, 5, 14, 15}
        # Where the labels say "upper clothes" the image shows the person's colour, not the backdrop.
        clothes = canvas_label == 5
        if clothes.sum() > 50:
            inner = clothes & np.roll(clothes, 2, 0) & np.roll(clothes, -2, 0) & np.roll(clothes, 2, 1)
            inner &= np.roll(clothes, -2, 1)
            assert np.abs(canvas[inner].astype(int) - (30, 60, 90)).max() <= 2


def test_remove_people_and_textures():
    image, label = person_sample()
    empty = remove_people(image, label)
    assert empty.shape == image.shape
    assert np.abs(empty[label > 0].astype(int) - 200).mean() < 20  # the person is painted over with the backdrop
    assert np.array_equal(empty[:5], image[:5])  # far from the person nothing changes
    texture = synthetic_texture(40, 50, np.random.default_rng(0))
    assert texture.shape == (40, 50, 3) and texture.dtype == np.uint8


def test_photometric_is_identity_when_off_and_deterministic_when_on():
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(Photometric()(images, torch.Generator().manual_seed(0)), images)
    aug = Photometric(jitter=1.0, blur=1.0, jpeg=1.0)
    a = aug(images, torch.Generator().manual_seed(5))
    b = aug(images, torch.Generator().manual_seed(5))
    assert a.dtype == torch.uint8 and a.shape == images.shape
    assert torch.equal(a, b) and not torch.equal(a, images)
    # The blur's sigma scales with the image (0.4-1.8 px at 473 px): use a large noise image.
    noise = torch.randint(0, 256, (2, 3, 473, 473), dtype=torch.uint8)
    blurred = Photometric(blur=1.0)(noise, torch.Generator().manual_seed(1))
    # A blur lowers the difference between neighbouring pixels of noise.
    assert blurred.float().diff(dim=-1).abs().mean() < 0.8 * noise.float().diff(dim=-1).abs().mean()


def test_train_dataset_samples_depend_only_on_seed_epoch_and_index():
    from ssfnet.data import TrainTransform

    class Raw(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return person_sample()

    def make():
        return TrainDataset(
            Raw(),
            TrainTransform(48, (0.5, 1.5), True, LIP),
            copy_paste=CopyPaste(LIP, 60),
            copy_paste_prob=0.5,
            photometric=Photometric(0.5, 0.5, 0.5),
            seed=7,
        )

    a, b = make(), make()
    order = [3, 1, 2]
    first = [a[i] for i in order]
    second = [b[i] for i in reversed(order)][::-1]
    for (ia, la), (ib, lb) in zip(first, second):
        assert torch.equal(ia, ib) and torch.equal(la, lb)
    a.set_epoch(1)
    assert not all(torch.equal(a[i][0], f[0]) for i, f in zip(order, first))
