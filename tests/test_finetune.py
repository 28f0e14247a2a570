"""Fine-tuning on saved corrections: a tiny model on CPU, corrections saved through the app's session code."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY
from PIL import Image

from demo.session import Session, Source
from ssfnet import build_model, get_label_set, load_checkpoint, load_predictor, save_checkpoint
from ssfnet.checkpoint import default_name, fitting_dtype, list_checkpoints
from ssfnet.data import holdout_split, mix_weights, open_source, split_ids
from ssfnet.predictor import Predictor
from train.finetune import run as finetune
from train.finetune.budget import read_timing
from train.finetune.config import FinetuneConfig
from train.finetune.defaults import CORRECTIONS_SHARE
from train.finetune.publish import lineage_entries, relative_path
from train.finetune.run import parse_args
from train.finetune.score import score, spread_items
from train.finetune.status import read_progress
from train.train import TrainSummary

LIP = get_label_set("lip-20")
FACE, UPPER, PANTS = LIP.id_of("face"), LIP.id_of("upper-clothes"), LIP.id_of("pants")


def person(rng: np.random.Generator, height: int = 64, width: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic person: flat coloured parts on a noisy backdrop, and its LIP-20 labels."""
    label = np.zeros((height, width), np.uint8)
    x0, x1 = int(rng.integers(4, 14)), width - int(rng.integers(4, 14))
    label[4:16, x0 + 3 : x1 - 3] = FACE
    label[16:40, x0:x1] = UPPER
    label[40:, x0:x1] = PANTS
    image = (rng.integers(0, 256, (height, width, 3)) // 4).astype(np.uint8)
    colours = {FACE: (230, 180, 150), UPPER: (200, 40, 40), PANTS: (40, 40, 200)}
    for value, colour in colours.items():
        image[label == value] = colour
    return image, label


def write_folder_source(root: Path, n: int, seed: int) -> Path:
    """A ``folder`` source (images/ + labels/) of synthetic people."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(n):
        image, label = person(rng)
        Image.fromarray(image).save(root / "images" / f"p{i:03d}.png")
        Image.fromarray(label).save(root / "labels" / f"p{i:03d}.png")
    return root


def write_base(folder: Path, input_size: int = 64) -> Path:
    torch.manual_seed(0)
    model = build_model("ssfnet_lite", LIP.num_classes, **TINY)
    return save_checkpoint(
        model,
        folder,
        variant="ssfnet_lite",
        label_set="lip-20",
        options=TINY,
        dtype=torch.float16,
        metadata={"input_size": input_size},
    )


def save_corrections(root: Path, base: Path, n: int, seed: int = 1) -> list[str]:
    """Corrections as the app saves them: the base's proposal, corrected to the true labels, saved by a Session."""
    predictor = load_predictor(base, device="cpu", input_size=64)
    rng = np.random.default_rng(seed)
    ids = []
    for i in range(n):
        image, truth = person(rng)
        data = _png(image)
        source = Source(name=f"person{i}.png", data=data, ext="png", size=image.shape[:2], keep_bytes=True)
        session = Session.start(image, source, predictor.predict(image), LIP, model=predictor.name)
        session.edit(truth, "corrected by hand")
        ids.append(session.save(root))
    return ids


def _png(image: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def digest_tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*")}


def agreement(checkpoint: Path, corrections: Path, ids: list[str]) -> float:
    """Share of labelled pixels where the checkpoint's prediction equals the saved correction."""
    from ssfnet.data import load_correction

    predictor = load_predictor(checkpoint, device="cpu", input_size=64)
    hits = total = 0
    for record_id in ids:
        image, labels, _ = load_correction(corrections, record_id)
        hits += int((predictor.predict(image) == labels).sum())
        total += labels.size
    return hits / total


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine, OpenMP pools that oversubscribe it stall for seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("finetune")
    base = write_base(root / "checkpoints" / "tiny")
    corrections = root / "corrections"
    save_corrections(corrections, base, n=6)
    return {
        "root": root,
        "base": base,
        "corrections": corrections,
        "original": write_folder_source(root / "original", n=12, seed=5),
    }


def tiny_config(world: dict[str, Path], out: Path, **overrides) -> FinetuneConfig:
    train = dict(
        data=[f"folder:{world['original']}"],
        crop_size=64,
        scale_range=(0.75, 1.25),
        batch_size=4,
        epoch_size=24,
        epochs=5,
        max_minutes=None,
        lr=0.05,
        val_fraction=0.25,
        workers=0,
        print_freq=1000,
        out=str(out),
    )
    train.update(overrides.pop("train", {}))
    values = dict(
        train=finetune.dataclasses.replace(finetune.FINETUNE_DEFAULTS, **train),
        base=str(world["base"]),
        corrections=[str(world["corrections"])],
        holdout=0.2,
        checkpoints_dir=str(world["base"].parent),
        blend=1.0,  # the trained weights, whatever the command line's default: these tests check the training
        publish_anyway=True,  # and the publishing, whatever the toy model scores (the verdict has tests of its own)
        corrections_share=0.5,  # the toy corrections often enough in 30 steps to be learned, whatever the default
    )
    values.update(overrides)
    return FinetuneConfig(**values)


def test_finetune_raises_agreement_records_lineage_and_keeps_the_base(world, tmp_path):
    base_files = digest_tree(world["base"])
    before_listing = {p.name for p in world["base"].parent.iterdir()}
    report = finetune.run_finetune(tiny_config(world, tmp_path / "run"))
    assert report.status == "finished"

    new = Path(report.checkpoint)
    assert new.parent == world["base"].parent.resolve()
    assert {p.name for p in world["base"].parent.iterdir()} == before_listing | {new.name}
    assert new.name.startswith("tiny-ft-") and len(new.name) == len("tiny-ft-20250101T000000Z")
    model, meta = load_checkpoint(new)  # strict: every tensor present, none unexpected
    assert meta["variant"] == "ssfnet_lite" and meta["label_set"] == "lip-20"
    assert TINY.items() <= meta["options"].items()
    # Stored as the base was (float16), unless a value does not fit float16: this toy learning rate
    # can blow a BatchNorm variance past 65,504 on some machines, and that is stored as float32.
    largest = max(float(v.abs().max()) for v in model.state_dict().values() if v.is_floating_point() and v.numel())
    assert meta["dtype"] == ("float16" if largest <= torch.finfo(torch.float16).max else "float32"), largest
    assert digest_tree(world["base"]) == base_files

    # Lineage: the base, the corrections trained on and those held out, and the scores.
    # Folders are named from the checkpoint's own folder: no absolute server path in what users see.
    lineage = meta["finetune"]
    assert lineage["base"]["path"] == "tiny" == meta["training"]["init_checkpoint"] == meta["lineage"][0]["path"]
    assert meta["lineage"][0]["name"] == "tiny"
    (used,) = lineage["corrections"]
    all_ids = {p.stem for p in (world["corrections"] / "meta").glob("*.json")}
    assert used["root"] == "../corrections" and (new.parent / used["root"]).resolve() == world["corrections"].resolve()
    assert (
        (new.parent / lineage["run"]).resolve()
        == (tmp_path / "run").resolve()
        == (new.parent / meta["training"]["run"]).resolve()
    )
    written = json.dumps({k: v for k, v in meta.items() if k != "training"} | {"run": meta["training"]["run"]})
    assert str(world["root"]) not in written and str(tmp_path) not in written and '"/' not in written
    assert set(used["ids"]) | set(used["held_out_ids"]) == all_ids
    assert used["held_out_ids"] and lineage["held_out_ids"] == sorted(used["held_out_ids"])
    assert not set(used["ids"]) & set(used["held_out_ids"])
    assert meta["training"]["data"] == [f"folder:{world['original']}"] and meta["input_size"] == 64
    for when in ("before", "after"):
        scores = lineage["metrics"][when]
        assert scores["held_out_corrections"]["images"] == len(used["held_out_ids"])
        assert scores["train_corrections"]["images"] == len(used["ids"])
        assert scores["original_val"]["images"] > 0
    assert meta["metrics"]["held_out_corrections_miou"] == lineage["metrics"]["after"]["held_out_corrections"]["miou"]

    # What the corrections are for: the new model agrees with them more than the base did.
    base_agreement = agreement(world["base"], world["corrections"], used["ids"])
    new_agreement = agreement(new, world["corrections"], used["ids"])
    assert new_agreement > base_agreement
    after = lineage["metrics"]["after"]["train_corrections"]["pixel_acc"]
    before = lineage["metrics"]["before"]["train_corrections"]["pixel_acc"]
    assert after > before

    run = tmp_path / "run"
    saved = json.loads((run / "report.json").read_text())
    assert saved["checkpoint"] == str(new) and saved["iterations"] == 5 * 24 // 4
    assert set(saved["delta_miou"]) == {"held_out_corrections", "train_corrections", "original_val"}
    # report.json is the returned report's to_dict(), key for key and in order.
    assert list(saved) == list(report.to_dict()) and saved["train_summary"] == report.train_summary.to_dict()
    assert Image.open(run / "finetune.png").size[0] > 300
    plan = json.loads((run / "finetune.json").read_text())
    assert plan["mix"]["corrections_share"] == pytest.approx(0.5)
    assert not (run / "last").exists()  # the published checkpoint holds the same weights
    progress = read_progress(run)
    assert progress["status"] == "finished" and progress["fraction"] == 1.0
    assert progress["report"]["checkpoint"] == str(new)


def test_blend_publishes_the_base_plus_a_share_of_the_change(world, tmp_path):
    report = finetune.run_finetune(tiny_config(world, tmp_path / "run", blend=0.5, keep_run_checkpoint=True))
    published, meta = load_checkpoint(report.checkpoint)
    trained, _ = load_checkpoint(tmp_path / "run" / "last")
    base, _ = load_checkpoint(world["base"])
    assert meta["finetune"]["blend"] == 0.5
    trained_state, base_state = trained.state_dict(), base.state_dict()
    moved = 0
    for key, tensor in published.state_dict().items():
        if not tensor.is_floating_point():
            assert torch.equal(tensor, trained_state[key])  # batch counters: the trained model's
            continue
        midpoint = (base_state[key] + trained_state[key]) / 2
        assert torch.allclose(tensor, midpoint, rtol=2e-3, atol=2e-3), key  # up to fp16 storage
        moved += not torch.equal(base_state[key], trained_state[key])
    assert moved > 10  # the fine-tune changed weights and BatchNorm statistics, and half of it is kept


def test_weights_beyond_float16_are_stored_in_float32_not_as_infinity():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    assert fitting_dtype(model, torch.float16) is torch.float16 and fitting_dtype(model, None) is None
    model[1].running_var[0] = 1.8e5  # a variance a few steps at a high learning rate can reach
    assert fitting_dtype(model, torch.float16) is None
    assert fitting_dtype(model, torch.bfloat16) is torch.bfloat16  # bfloat16 has float32's range


def test_blend_refuses_models_that_differ_and_shares_out_of_range(world, tmp_path):
    model = build_model("ssfnet_lite", LIP.num_classes, **TINY)
    other = build_model("ssfnet_lite", LIP.num_classes - 1, **TINY)
    with pytest.raises(ValueError, match="shape"):
        finetune.blend_weights(model, other.state_dict(), 0.5)
    state = model.state_dict()
    state.pop(next(iter(state)))
    with pytest.raises(ValueError, match="same weights"):
        finetune.blend_weights(model, state, 0.5)
    for blend in (0.0, 1.5):
        with pytest.raises(ValueError, match="blend"):
            tiny_config(world, tmp_path / "run", blend=blend)
    assert parse_args(["--blend", "0.5"]).blend == 0.5 and parse_args([]).blend == FinetuneConfig().blend


def test_cancelled_run_publishes_nothing(world, tmp_path):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    cancel = threading.Event()
    run = tmp_path / "run"

    def cancel_after_two_steps() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not cancel.is_set():
            log = run / "log.jsonl"
            if log.exists() and len(log.read_text().splitlines()) >= 2:
                cancel.set()
            time.sleep(0.02)

    watcher = threading.Thread(target=cancel_after_two_steps)
    watcher.start()
    config = tiny_config(world, run, checkpoints_dir=str(checkpoints), train={"epochs": 50})
    report = finetune.run_finetune(config, cancel=cancel)
    cancel.set()
    watcher.join()
    assert report.status == "cancelled" and report.checkpoint is None and report.phase == "train"
    assert list(checkpoints.iterdir()) == []  # not even a hidden temporary folder
    assert json.loads((run / "report.json").read_text())["status"] == "cancelled"
    assert list(json.loads((run / "report.json").read_text())) == list(report.to_dict())  # its keys, in order
    progress = read_progress(run)
    assert progress["status"] == "cancelled" and progress["fraction"] < 1.0


def test_stop_file_before_training_cancels(world, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "STOP").touch()
    checkpoints = tmp_path / "checkpoints"
    report = finetune.run_finetune(tiny_config(world, run, checkpoints_dir=str(checkpoints)))
    assert report.status == "cancelled" and report.phase == "setup"
    assert not checkpoints.exists() or list_checkpoints(checkpoints) == []


@pytest.mark.parametrize("written_by", ["trainer", "release"])
def test_original_data_default_to_the_base_training_data_and_its_validation_split(world, tmp_path, written_by):
    # A base whose metadata says what it was trained on: the trainer writes the split beside the
    # data, a release inside the recipe.
    state = load_checkpoint(world["base"])[0]
    training = {"data": [f"folder:{world['original']}"], "val_fraction": 0.5, "split_seed": 3}
    if written_by == "release":
        training = {"data": training["data"], "recipe": {"val_fraction": 0.5, "split_seed": 3}}
    base = save_checkpoint(
        state,
        tmp_path / "checkpoints" / "trained",
        variant="ssfnet_lite",
        label_set="lip-20",
        options=TINY,
        metadata={"training": training},
    )
    config = tiny_config(world, tmp_path / "run", base=str(base), checkpoints_dir=str(base.parent))
    config.train.data, config.train.epoch_size, config.train.epochs = [], 8, 1
    report = finetune.run_finetune(config)
    (original,) = json.loads((tmp_path / "run" / "finetune.json").read_text())["originals"]
    assert original["spec"] == training["data"][0] and original["split_from"] == "base"
    assert (original["val_fraction"], original["split_seed"]) == (0.5, 3)
    assert original["val_ids"] == split_ids([f"p{i:03d}" for i in range(12)], 0.5, 3)[1]
    assert report.metrics["before"]["original_val"]["images"] == len(original["val_ids"])
    _, meta = load_checkpoint(report.checkpoint)
    assert meta["training"]["splits"] == [{"spec": training["data"][0], "val_fraction": 0.5, "split_seed": 3}]


def test_the_plan_hands_the_trainer_typed_subsets_and_records_them_in_files(world, tmp_path):
    from ssfnet.checkpoint import read_metadata
    from ssfnet.data import SubsetSpec
    from train.finetune.data import make_plan

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = tiny_config(world, run_dir)
    plan = make_plan(config, world["base"], read_metadata(world["base"]), run_dir, lambda text: None)
    corrections, original = plan.data
    assert all(isinstance(d, SubsetSpec) for d in plan.data)
    assert corrections.source.kind == "corrections" and list(corrections.ids) == plan.corrections[0].train_ids
    assert original.source == plan.originals[0].spec and list(original.ids) == plan.originals[0].train_ids
    # The run's records name the files, which hold the same samples; the trainer opens them without the files.
    recorded = json.loads((run_dir / "finetune.json").read_text())["mix"]["trainer_data"]
    assert recorded == [f"subset:{d.path}:{d.weight:.6g}" for d in plan.data]
    for subset in plan.data:
        assert json.loads(subset.path.read_text())["ids"] == list(subset.ids)
        subset.path.unlink()
    assert open_source(original, LIP).ids == list(original.ids)


def test_the_new_checkpoint_inherits_the_base_input_size_and_is_scored_at_it(world, tmp_path):
    # A base that parses at 48 px, fine-tuned on 64 px crops: the crop is the training's business only.
    base = write_base(tmp_path / "checkpoints" / "small", input_size=48)
    config = tiny_config(world, tmp_path / "run", base=str(base), checkpoints_dir=str(base.parent))
    config.train.epoch_size, config.train.epochs = 8, 1
    report = finetune.run_finetune(config)
    _, meta = load_checkpoint(report.checkpoint)
    assert meta["input_size"] == 48
    assert load_predictor(report.checkpoint, device="cpu").input_size == 48
    # "Before" is the base as the app and ssfnet.predict run it (its metadata's size).
    (used,) = meta["finetune"]["corrections"]
    root = Path(report.checkpoint).parent / used["root"]
    held = spread_items([open_source(f"corrections:{root}", LIP, ids=used["held_out_ids"])], None)
    as_used = score(load_predictor(base, device="cpu"), held, LIP)
    assert report.metrics["before"]["held_out_corrections"] == as_used


def test_a_budget_under_a_minute_is_refused_before_anything_starts(world, tmp_path):
    """The one refusal a budget gets: under a minute, the start-up alone would be most of it."""
    checkpoints = tmp_path / "checkpoints"
    config = tiny_config(world, tmp_path / "run", checkpoints_dir=str(checkpoints), train={"max_minutes": 0.5})
    with pytest.raises(ValueError, match="must be at least 1 minute"):
        finetune.run_finetune(config)
    assert not (tmp_path / "run").exists() and not checkpoints.exists()


def test_a_run_of_no_iteration_publishes_nothing(world, tmp_path, monkeypatch):
    checkpoints = tmp_path / "checkpoints"
    summary = TrainSummary(
        status="finished",
        stop_reason=None,
        variant="ssfnet_lite",
        label_set="lip-20",
        epoch=0,
        iteration=0,
        elapsed_s=1.0,
        session_s=1.0,
        best_val_miou=None,
        best_iteration=-1,
        last_val_miou=None,
        data_wait_fraction=0.0,
        mean_step_s=0.0,
        images_per_s=None,
        world_size=1,
        last=str(tmp_path / "run" / "last"),
        best=None,
    )
    monkeypatch.setattr(finetune, "train_main", lambda config, cancel=None: summary)
    with pytest.raises(finetune.NothingTrained, match="no training iteration ran"):
        finetune.run_finetune(tiny_config(world, tmp_path / "run", checkpoints_dir=str(checkpoints)))
    assert not checkpoints.exists() or list(checkpoints.iterdir()) == []
    assert json.loads((tmp_path / "run" / "report.json").read_text())["status"] == "failed"


class FakeClock:
    """A time budget's clock for tests: it moves ``tick`` at each reading and when told to, never by itself."""

    def __init__(self, tick: float = 0.0) -> None:
        self.now, self.tick = 1000.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def drive_time(monkeypatch, fake: FakeClock) -> None:
    """The fine-tune's budget and the trainer's stopwatch both read ``fake``."""
    import train.train as train_module
    from train.utils import Stopwatch

    class FakeStopwatch(Stopwatch):
        def __init__(self, already: float = 0.0) -> None:
            self.already, self.start = already, fake()

        def __call__(self) -> float:
            return self.already + fake() - self.start

    monkeypatch.setattr(finetune, "clock", fake)
    monkeypatch.setattr(train_module, "Stopwatch", FakeStopwatch)


def test_the_time_budget_covers_the_whole_run(world, tmp_path, monkeypatch):
    """Loading, both evaluations and publishing fit in --max-minutes, and training gets the rest.

    On a clock of the test's own: half a second each time the run reads it (about three readings a
    training step), however slow the steps are on a busy machine.
    """
    fake = FakeClock(tick=0.5)
    drive_time(monkeypatch, fake)
    budget_s = 60.0
    config = tiny_config(world, tmp_path / "run", checkpoints_dir=str(tmp_path / "checkpoints"))
    config.train.max_minutes, config.train.epochs = budget_s / 60, 1000
    began = fake.now
    report = finetune.run_finetune(config, began=began)
    took = fake.now - began
    assert report.status == "finished" and report.iterations > 0
    assert took <= budget_s, f"{took:.1f} s for a {budget_s} s budget"
    assert report.elapsed_s == pytest.approx(took, abs=1.0)
    trained = report.train_summary.elapsed_s
    # What is left once the evaluation before (measured) and after (reserved as 1.15 times it) and
    # publishing (10 s) are set aside; the trainer keeps back up to half of it for its last save.
    assert trained >= 0.3 * budget_s, f"only {trained} s of {budget_s} s trained"


def test_the_budget_belongs_to_training_and_the_evaluations_score_what_fits(world, tmp_path, monkeypatch, capsys):
    """Scoring too slow for the budget (earlier refused: "leaves no time to train") scores fewer images, the
    held-out corrections first, and training gets at least 70 % of the budget; the log, the report,
    timing.json and the panel say how many images of each set were scored and how long training got.

    On a clock of the test's own: 5 s an image scored, 1 s each time the run reads it.
    """
    from types import SimpleNamespace

    from demo.finetune_runner import status_html

    fake = FakeClock(tick=1.0)
    drive_time(monkeypatch, fake)
    fast = Predictor.predict_batch

    def predict_batch(self, images, **kwargs):
        fake.advance(5.0 * len(images))
        return fast(self, images, **kwargs)

    monkeypatch.setattr(Predictor, "predict_batch", predict_batch)
    original = write_folder_source(tmp_path / "shop", n=40, seed=7)
    budget_s = 300.0
    config = tiny_config(
        world,
        tmp_path / "run",
        checkpoints_dir=str(tmp_path / "checkpoints"),
        train={"data": [f"folder:{original}"], "val_fraction": 0.5, "max_minutes": budget_s / 60, "epochs": 1000},
    )
    began = fake.now
    report = finetune.run_finetune(config, began=began)
    assert report.status == "finished" and report.iterations > 0
    assert fake.now - began <= budget_s

    scored, available = report.evaluation["images"], report.evaluation["available"]
    assert available["original_val"] > 15 and available["held_out_corrections"] >= 1  # half of 40, by a hash
    # Every image at 5 s: the evaluation before, the one after (1.15 times it) and publishing would
    # have taken more than the whole budget; the rule until now refused such a run.
    everything = 5.0 * sum(available.values())
    assert everything + 1.15 * everything + 10 > budget_s
    # Now a fifth of the budget for both evaluations: all held-out corrections, then what fits of the
    # original validation photos, none of the corrections trained on.
    assert scored["held_out_corrections"] == available["held_out_corrections"]
    assert 0 < scored["original_val"] < available["original_val"] and scored["train_corrections"] == 0
    for when in ("before", "after"):
        metrics = report.metrics[when]
        assert {n: (m or {}).get("images", 0) for n, m in metrics.items()} == scored
        (source,) = metrics["original_val"]["sources"]  # forgetting, per original source, named
        assert source["name"] == "folder (shop)" and source["images"] == scored["original_val"]
    assert report.train_summary.elapsed_s >= 0.7 * budget_s, report.training
    assert report.training["budget_minutes"] == 5 and report.training["minutes"] >= 0.7 * 5

    log = capsys.readouterr().out
    counts = (
        f"scored {scored['held_out_corrections']} of {available['held_out_corrections']} held-out corrections, "
        f"{scored['original_val']} of {available['original_val']} original validation photos, "
        f"0 of {available['train_corrections']} "
        "corrections trained on"
    )
    assert counts in log and f"training for {report.training['minutes']:.1f} of the 5 minutes" in log
    timing = read_timing(tmp_path / "run")
    assert timing.images == scored and timing.available == available

    progress = read_progress(tmp_path / "run")
    text = status_html(SimpleNamespace(name="finetune-x", cancel_requested=None), info={**progress, "elapsed_s": 5})
    n = scored["held_out_corrections"]
    assert f"held-out corrections (never trained on), {n} of {n} scored" in text
    val = f"{scored['original_val']} of {available['original_val']}"
    assert f"original validation photos (forgetting), {val} scored" in text
    assert f"folder (shop) ({scored['original_val']} photos)" in text
    assert "corrections trained on: none of" in text
    assert f"Training: {report.train_summary.elapsed_s / 60:.1f} minutes of the 5-minute budget" in text


def test_holdout_is_deterministic_stable_and_never_empty():
    ids = [f"record{i:02d}" for i in range(40)]
    train, held = holdout_split(ids, 0.2, seed=0)
    assert (train, held) == holdout_split(list(reversed(ids)), 0.2, seed=0)
    assert sorted(train + held) == ids and not set(train) & set(held)
    assert 2 <= len(held) <= 16
    # Adding records never moves the earlier ones between the two sets.
    more_train, more_held = holdout_split(ids + [f"new{i}" for i in range(10)], 0.2, seed=0)
    assert set(held) <= set(more_held) and set(train) <= set(more_train)
    assert holdout_split(ids, 0.2, seed=1) != (train, held)
    # Few records: one is held out, one trains; with one record or no holdout nothing is held out.
    for n in (2, 3):
        few_train, few_held = holdout_split(ids[:n], 0.2)
        assert len(few_held) >= 1 and len(few_train) >= 1
    assert holdout_split(ids[:1], 0.2) == (ids[:1], [])
    assert holdout_split(ids[:5], 0.0) == (ids[:5], [])


def test_mix_weights_give_the_corrections_their_share():
    weights = mix_weights([6, 2], [1.0, 3.0], share=0.4)
    assert sum(weights[:2]) == pytest.approx(0.4) and weights[0] == pytest.approx(3 * weights[1])
    assert weights[3] == pytest.approx(3 * weights[2]) and sum(weights) == pytest.approx(1.0)
    assert mix_weights([5], [], share=0.3) == [1.0]
    with pytest.raises(ValueError, match="no corrections"):
        mix_weights([0], [1.0], share=0.5)


def test_command_line_has_finetune_defaults_and_every_trainer_option(tmp_path, capsys):
    config = parse_args(["--base", "b", "--corrections", "c1", "--corrections", "c2", "--holdout", "0.3"])
    assert config.base == "b" and config.corrections == ["c1", "c2"] and config.holdout == 0.3
    assert config.train.lr == 1e-3 and config.train.max_minutes == 10.0
    # Neither the share nor the blend given: the fine-tune chooses them (today's defaults in the base's domain).
    assert config.corrections_share is None and config.blend is None and CORRECTIONS_SHARE == 0.05
    assert config.train.batch_size == 8 and config.train.momentum == 0.9  # the trainer's recipe otherwise
    assert config.train.out == "runs/finetune-{timestamp}" and config.holdout == 0.3
    config = parse_args(["--lr", "0.01", "--freeze-backbone", "--max-minutes", "0", "--data", "ccp:/x:0.5"])
    assert config.train.lr == 0.01 and config.train.freeze_backbone and config.train.max_minutes is None
    assert config.train.data == ["ccp:/x:0.5"] and config.corrections == ["corrections"]
    (tmp_path / "ft.yaml").write_text("lr: 0.002\ncrop_size: 129\n")
    config = parse_args(["--config", str(tmp_path / "ft.yaml"), "--crop-size", "97", "--name", "mine"])
    assert config.train.lr == 0.002 and config.train.crop_size == 97 and config.name == "mine"
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = capsys.readouterr().out
    assert "--corrections-share" in text and "--freeze-backbone" in text and "fine-tuning" in text
    with pytest.raises(SystemExit):
        parse_args(["--hold", "0.3"])  # no abbreviations: the two parsers must read options alike
    with pytest.raises(ValueError, match="corrections_share"):
        parse_args(["--corrections-share", "0"])


def test_missing_default_base_says_to_pass_base(monkeypatch, tmp_path):
    monkeypatch.setattr(finetune, "DEFAULT_BASE", tmp_path / "ssfnet_lite-lip20")
    with pytest.raises(FileNotFoundError, match="--base"):
        finetune.run_finetune(FinetuneConfig(corrections=[str(tmp_path)]))
    assert finetune.main(["--corrections", str(tmp_path), "--out", str(tmp_path / "run")]) == 2
    assert not (tmp_path / "run").exists()


def test_the_lineage_names_folders_from_the_new_checkpoints_folder(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    base = checkpoints / "finetuned" / "tiny-ft-1"
    # The base's own lineage names paths from its folder (or, written by earlier versions, absolute ones).
    base_meta = {
        "created": "2025",
        "lineage": [{"name": "tiny", "path": "../tiny"}, {"name": "old", "path": "/srv/x/old"}],
    }
    entries = lineage_entries(base, base_meta, checkpoints)
    assert [e["path"] for e in entries] == ["finetuned/tiny-ft-1", "tiny", relative_path("/srv/x/old", checkpoints)]
    assert (checkpoints / entries[2]["path"]).resolve() == Path("/srv/x/old")
    assert entries[0] == {"name": "tiny-ft-1", "path": "finetuned/tiny-ft-1", "created": "2025"}


def test_default_name_drops_an_earlier_stamp():
    assert default_name(Path("ssfnet_lite-lip20")) == "ssfnet_lite-lip20-ft"
    assert default_name(Path("ssfnet_lite-lip20-ft-20250102T030405Z")) == "ssfnet_lite-lip20-ft"


def test_a_fine_tune_goes_on_with_the_base_recipe_unless_told_otherwise(world, tmp_path):
    from train.finetune.run import given_options, inherit_recipe

    recipe = {"crop_size": 48, "optimizer": "adamw", "lr": 0.02, "head_lr_mult": 2.0, "scale_range": [0.8, 1.2]}
    meta = {"training": {"recipe": recipe}}
    # The options a user set, on the command line or in a --config file, are theirs.
    (tmp_path / "ft.yaml").write_text("optimizer: sgd\n")
    assert given_options(["--lr", "0.5", "--crop-size", "64"]) == ("crop_size", "lr")
    assert given_options(["--config", str(tmp_path / "ft.yaml"), "--wd", "0"]) == ("optimizer", "weight_decay")
    train, changed = inherit_recipe(finetune.FINETUNE_DEFAULTS, meta, ())
    assert (train.crop_size, train.optimizer, train.head_lr_mult, train.scale_range) == (48, "adamw", 2.0, (0.8, 1.2))
    assert train.lr == pytest.approx(0.02 * finetune.LR_SHARE) and set(changed) == set(recipe)
    train, changed = inherit_recipe(finetune.FINETUNE_DEFAULTS, meta, ("lr", "optimizer"))
    assert (train.lr, train.optimizer, train.crop_size) == (1e-3, "sgd", 48)
    # No recipe, or values of the wrong type or out of range: the fine-tune's defaults stay.
    for bad in ({}, {"training": []}, {"training": {"recipe": "x"}}):
        assert inherit_recipe(finetune.FINETUNE_DEFAULTS, bad, ()) == (finetune.FINETUNE_DEFAULTS, {})
    wrong = {"training": {"recipe": {"crop_size": "256", "optimizer": 5, "lr": True, "head_lr_mult": 3}}}
    train, changed = inherit_recipe(finetune.FINETUNE_DEFAULTS, wrong, ())
    assert changed == {"head_lr_mult": 3} and train.crop_size == finetune.FINETUNE_DEFAULTS.crop_size
    assert inherit_recipe(finetune.FINETUNE_DEFAULTS, {"training": {"recipe": {"optimizer": "rmsprop"}}}, ())[1] == {}

    # End to end: a base whose metadata records its recipe is fine-tuned with it.
    state = load_checkpoint(world["base"])[0]
    base = save_checkpoint(
        state, tmp_path / "checkpoints" / "recorded", variant="ssfnet_lite", label_set="lip-20", options=TINY,
        metadata={"training": {"recipe": recipe}},
    )  # fmt: skip
    config = tiny_config(world, tmp_path / "run", base=str(base), checkpoints_dir=str(base.parent), given=("lr",))
    config.train.epoch_size, config.train.epochs = 8, 1
    report = finetune.run_finetune(config)
    used = json.loads((tmp_path / "run" / "finetune.json").read_text())["config"]["train"]
    assert (used["optimizer"], used["crop_size"], used["head_lr_mult"], used["lr"]) == ("adamw", 48, 2.0, 0.05)
    assert report.checkpoint


# ---------------------------------------------------------------------------------------------
# Figures that do not mislead (issue 40, item 4)


def test_held_out_by_photo_and_only_the_latest_record_of_each_photo_counts(tmp_path):
    """A photo saved twice without a link (accepted as proposed, later corrected) counts once, as the later record."""
    from ssfnet.data import list_corrections, save_correction
    from train.finetune.data import select_corrections

    rng = np.random.default_rng(3)
    root = tmp_path / "corrections"
    later = {}
    for i in range(12):
        image, truth = person(rng)
        data = _png(image)
        proposal = np.zeros_like(truth)  # the unedited proposal, saved first as "correct"
        save_correction(root, None, proposal, "lip-20", image_bytes=data, source_name=f"p{i}.png")
        later[i] = save_correction(root, None, truth, "lip-20", image_bytes=data, source_name=f"p{i}.png")
    records = list_corrections(root)
    assert len(records) == 24
    said = []
    for seed in range(4):
        (entry,) = select_corrections([str(root)], LIP, 0.5, seed, said.append)
        used = entry["train_ids"] + entry["held_out_ids"]
        assert sorted(used) == sorted(later.values()), "each photo once, by its latest record"
        assert entry["held_out_ids"] and entry["train_ids"]
        photos = {m["id"]: m["image_sha256"] for m in records}
        assert not {photos[i] for i in entry["train_ids"]} & {photos[i] for i in entry["held_out_ids"]}
        assert sorted(s["latest"] for s in entry["superseded"]) == sorted(later.values())
    assert any("12 earlier records of the same photos left out" in line for line in said)


def _scores(miou: float) -> dict:
    return {"images": 2, "miou": miou, "pixel_acc": miou, "mean_acc": miou}


@pytest.mark.parametrize("worse_on", ["train_corrections", "held_out_corrections"])
def test_a_fine_tune_that_loses_is_not_published_unless_asked(world, tmp_path, monkeypatch, worse_on):
    from types import SimpleNamespace

    from demo.finetune_runner import status_html

    calls = []

    def scored(model, label_set, eval_sets, **kwargs):
        # Before: 78.0 everywhere; after: 65.4 on one of the corrections' sets, better elsewhere.
        calls.append(1)
        after = 65.4 if len(calls) == 2 else 80.0
        return {name: _scores(78.0 if len(calls) == 1 else after if name == worse_on else 80.0) for name in eval_sets}

    monkeypatch.setattr(finetune, "evaluate_sets", scored)
    checkpoints = tmp_path / "checkpoints"
    config = tiny_config(world, tmp_path / "run", checkpoints_dir=str(checkpoints), publish_anyway=False)
    config.train.epoch_size, config.train.epochs = 8, 1
    report = finetune.run_finetune(config)
    assert report.status == "finished" and report.checkpoint is None and not report.published
    assert [w["set"] for w in report.worse] == [worse_on]
    assert "not published" in report.note and "78.00 -> 65.40" in report.note
    assert not checkpoints.exists() or list(checkpoints.iterdir()) == []
    assert (tmp_path / "run" / "last").is_dir(), "the trained weights are kept in the run"
    progress = read_progress(tmp_path / "run")
    assert progress["status"] == "finished" and "lower than its base" in progress["message"]
    # The panel says so.
    text = status_html(SimpleNamespace(name="finetune-x", cancel_requested=None), info={**progress, "elapsed_s": 5})
    assert "Not published" in text and "lower than its base" in text and "78.0 → 65.4" in text
    assert "Publish even if worse" in text

    # Asked to publish anyway: published, with the warning in the report, the status and the panel.
    calls.clear()
    config = tiny_config(world, tmp_path / "run2", checkpoints_dir=str(checkpoints), publish_anyway=True)
    config.train.epoch_size, config.train.epochs = 8, 1
    report = finetune.run_finetune(config)
    assert report.published and Path(report.checkpoint).is_dir() and "although" in report.note
    progress = read_progress(tmp_path / "run2")
    assert "warning" in progress["message"]
    text = status_html(SimpleNamespace(name="finetune-y", cancel_requested=None), info={**progress, "elapsed_s": 5})
    assert "Done" in text and "Worse than its base" in text


def test_the_command_line_exits_4_and_publishes_nothing_when_worse(world, tmp_path, monkeypatch):
    calls = []

    def scored(model, label_set, eval_sets, **kwargs):
        calls.append(1)
        return {name: _scores(78.0 if len(calls) == 1 else 65.4) for name in eval_sets}

    monkeypatch.setattr(finetune, "evaluate_sets", scored)
    checkpoints = tmp_path / "checkpoints"
    argv = ["--base", str(world["base"]), "--corrections", str(world["corrections"]), "--data",
            f"folder:{world['original']}", "--crop-size", "64", "--batch-size", "4", "--epoch-size", "8",
            "--epochs", "1", "--max-minutes", "0", "--workers", "0", "--checkpoints-dir", str(checkpoints),
            "--out", str(tmp_path / "run"), "--no-augment-grid"]  # fmt: skip
    assert parse_args(argv).publish_anyway is False and parse_args([*argv, "--publish-anyway"]).publish_anyway
    assert finetune.main(argv) == finetune.EXIT_NOT_PUBLISHED
    assert not checkpoints.exists() or list(checkpoints.iterdir()) == []


def test_the_checkpoint_list_shows_only_comparable_figures(world, tmp_path):
    """A base's released score and its child's fine-tune score are on different images: never side by side."""
    from demo.models import Predictors, validation_score

    base_meta = {
        "label_set": "lip-20",
        "metrics": {"sources": {"viton": {"miou": 47.53, "label_set": "lip-20"}, "ccp": {"miou": 52.0}}},
    }
    assert validation_score(base_meta) == "val mIoU 47.5 on viton"
    child_meta = {
        "label_set": "lip-20",
        "metrics": {"held_out_corrections_miou": 61.0, "val_miou": 59.9},
        "finetune": {
            "base": {"name": "ssfnet_lite0-lip20"},
            "iterations": 30,
            "metrics": {
                "before": {"held_out_corrections": _scores(60.0), "original_val": _scores(45.0),
                           "train_corrections": _scores(70.0)},
                "after": {"held_out_corrections": _scores(61.0), "original_val": _scores(45.25),
                          "train_corrections": _scores(90.0)},
            },
        },
    }  # fmt: skip
    text = validation_score(child_meta)
    assert "59.9" not in text and "val mIoU" not in text, "no bare figure on other images than its base's"
    assert text == (
        "mIoU against ssfnet_lite0-lip20: held-out corrections 60.0 → 61.0, original validation 45.0 → 45.2, "
        "30 iterations"
    )
    trainer_meta = {"metrics": {"val_miou": 59.9}, "training": {"data": ["viton:/x:0.5", "ccp:/y"]}}
    assert validation_score(trainer_meta) == "val mIoU 59.9 on its own ccp+viton validation split"

    # End to end: a published child is listed with its base's figures and its own on the same images.
    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(world["base"], checkpoints / "tiny")
    config = tiny_config(world, tmp_path / "run", base=str(checkpoints / "tiny"), publish_anyway=True,
                         checkpoints_dir=str(checkpoints / "finetuned"))  # fmt: skip
    config.train.epoch_size, config.train.epochs = 8, 1
    report = finetune.run_finetune(config)
    labels = dict((name, label) for label, name in Predictors(checkpoints, checkpoint=checkpoints / "tiny").choices())
    child = f"finetuned/{Path(report.checkpoint).name}"
    assert set(labels) == {"tiny", child}
    before = report.metrics["before"]["held_out_corrections"]["miou"]
    after = report.metrics["after"]["held_out_corrections"]["miou"]
    assert f"mIoU against tiny: held-out corrections {before:.1f} → {after:.1f}" in labels[child]


# ---------------------------------------------------------------------------------------------
# Settings chosen from how the base parses the corrections


def test_settings_follow_the_domain_shift_and_the_user_wins():
    from train.finetune import defaults as d

    def chosen(miou, **kwargs):
        return d.choose_settings(miou, 50.0, corrections=40, originals=10_000, **kwargs)

    near = chosen(48.0)  # shift 0.04: the base's own kind of photo
    assert (near.corrections_share, near.blend) == (d.CORRECTIONS_SHARE, d.BLEND) == (0.05, 0.25)
    assert chosen(50.0 * (1 - d.SHIFT_IN_DOMAIN)).blend == d.BLEND
    far = chosen(10.0)  # shift 0.8
    assert (far.corrections_share, far.blend) == (d.FAR_CORRECTIONS_SHARE, d.FAR_BLEND) == (0.5, 1.0)
    assert "new kind of photo" in far.reason and "10 mIoU against the base's 50" in far.reason
    steps = [chosen(50.0 * (1 - shift / 20)) for shift in range(21)]
    shares, blends = [c.corrections_share for c in steps], [c.blend for c in steps]
    assert shares == sorted(shares) and blends == sorted(blends)
    between = chosen(50.0 * (1 - (d.SHIFT_IN_DOMAIN + d.SHIFT_FAR) / 2))
    assert 0.05 < between.corrections_share < 0.5 and 0.25 < between.blend < 1.0
    given = chosen(10.0, share=0.1, blend=0.3)
    assert (given.corrections_share, given.blend, given.share_given, given.blend_given) == (0.1, 0.3, True, True)
    assert chosen(10.0, blend=0.4).corrections_share == 0.5  # the other one is still chosen
    # Many corrections are never drawn less often than the original photos; no measure: today's defaults.
    assert d.choose_settings(48.0, 50.0, corrections=600, originals=1_400).corrections_share == pytest.approx(0.3)
    unknown = d.choose_settings(None, 50.0, corrections=5, originals=100)
    assert (unknown.shift, unknown.corrections_share, unknown.blend) == (None, 0.05, 0.25)
    assert d.domain_shift(80.0, 50.0) == 0.0 and d.domain_shift(0.0, 50.0) == 1.0


def test_reference_is_the_validation_miou_of_sources_in_the_base_label_set():
    from train.finetune.defaults import reference_miou

    sources = {
        "viton": {"label_set": "lip-20", "miou": 40.0, "main": 40.0},
        "ccp": {"label_set": "fashion-17", "miou": 50.0, "main": 50.0},
        "pascal-person-part": {"label_set": "person-head-3", "miou": 80.0, "main": 70.0},
    }
    assert reference_miou({"label_set": "lip-20", "metrics": {"sources": sources}})[0] == 40.0
    assert reference_miou({"label_set": "atr-18", "metrics": {"sources": sources}})[0] == pytest.approx(160 / 3)
    assert reference_miou({"label_set": "lip-20", "metrics": {"val_miou": 33.0}})[0] == 33.0
    assert reference_miou({"label_set": "lip-20"}) == (None, "")


def test_finetune_chooses_and_records_the_settings(world, tmp_path, capsys):
    """A base whose metadata says it parses its own photos at 99 mIoU: the toy corrections are a new kind of photo."""
    model, meta = load_checkpoint(world["base"])
    metrics = {"sources": {"viton": {"label_set": "lip-20", "miou": 99.0, "main": 99.0}}}
    base = save_checkpoint(
        model, tmp_path / "checkpoints" / "proud", variant="ssfnet_lite", label_set="lip-20", options=TINY,
        dtype=torch.float16, metadata={"input_size": 64, "metrics": metrics},
    )  # fmt: skip
    config = tiny_config(
        world, tmp_path / "run", base=str(base), checkpoints_dir=str(base.parent), corrections_share=None, blend=None,
        train={"epochs": 1, "epoch_size": 8},
    )  # fmt: skip
    report = finetune.run_finetune(config)
    settings = report.settings
    assert settings["base_miou"] == 99.0 and settings["reference"] == "viton validation mIoU"
    assert settings["shift"] > 0.6 and (settings["corrections_share"], settings["blend"]) == (0.5, 1.0)
    assert not settings["share_given"] and not settings["blend_given"]
    assert "new kind of photo" in capsys.readouterr().out
    _, meta = load_checkpoint(report.checkpoint)
    assert meta["finetune"]["settings"] == settings and meta["finetune"]["blend"] == 1.0
    assert meta["finetune"]["corrections_share"] == pytest.approx(0.5)
    plan = json.loads((tmp_path / "run" / "finetune.json").read_text())
    assert plan["settings"] == settings and plan["mix"]["corrections_share"] == pytest.approx(0.5)
    assert "new kind of photo" in read_progress(tmp_path / "run")["report"]["settings"]["reason"]

    # Given on the command line (here: in the config), the user's values stand.
    report = finetune.run_finetune(
        dataclasses_replace(config, corrections_share=0.2, blend=0.5, train_out=tmp_path / "r2")
    )
    assert (report.settings["corrections_share"], report.settings["blend"]) == (0.2, 0.5)
    assert report.settings["share_given"] and report.settings["blend_given"]
    assert load_checkpoint(report.checkpoint)[1]["finetune"]["blend"] == 0.5


def dataclasses_replace(config: FinetuneConfig, *, train_out: Path, **changes) -> FinetuneConfig:
    train = finetune.dataclasses.replace(config.train, out=str(train_out))
    return finetune.dataclasses.replace(config, train=train, **changes)
