"""Publishing a run: per-source scores, fp16 shards, cumulative minutes over warm-started runs."""

import json
import shutil

import pytest
import torch
from helpers import TINY

from ssfnet import build_model, load_checkpoint, save_checkpoint
from ssfnet.checkpoint import read_metadata
from train.plots import history_series, plot_history
from train.release import MAIN_FIGURE, better, main, release, resize_shipped
from train.utils import hardware


def fake_run(folder, data, *, elapsed_s=120.0, init=None, seed=0, resolved=None, lr=2e-4, part_classes=0):
    """A run folder as the trainer leaves it: config, split (two held-out photos per source), summary, best/."""
    torch.manual_seed(seed)
    options = {**TINY, **({"part_classes": part_classes} if part_classes else {})}
    model = build_model("ssfnet_lite", 20, **options)
    save_checkpoint(
        model, folder / "best", variant="ssfnet_lite", label_set="lip-20", options=options, metadata={"iteration": 7}
    )
    config = {
        "data": [f"{k}:{p}" for k, p in data],
        "crop_size": 64,
        "init_checkpoint": init,
        "split_seed": 0,
        "lr": lr,
    }
    if resolved is not None:
        config["resolved"] = resolved
    (folder / "config.json").write_text(json.dumps(config))
    sources = []
    for kind, path in data:
        ids = sorted(p.stem for p in (path / {"viton": "image", "pascal-person-part": "JPEGImages"}[kind]).iterdir())
        sources.append({"kind": kind, "path": str(path.resolve()), "split": None, "val_ids": ids[:2]})
    (folder / "split.json").write_text(json.dumps({"sources": sources}))
    (folder / "summary.json").write_text(json.dumps({"elapsed_s": elapsed_s}))
    return folder


@pytest.fixture
def sources(dataset_dir):
    return [("viton", dataset_dir("viton")), ("pascal-person-part", dataset_dir("pascal-person-part"))]


def test_release_scores_every_source_and_writes_fp16(tmp_path, sources):
    run = fake_run(tmp_path / "run1", sources)
    out = tmp_path / "checkpoints" / "lite-lip20"
    result = release(run, out, plot=tmp_path / "curve.png")
    assert result.published
    scores = result.scores
    assert scores["viton"]["label_set"] == "lip-20" and scores["viton"]["images"] == 2
    assert scores["pascal-person-part"]["label_set"] == "person-head-3"
    assert {"person_iou", "head_iou"} <= set(scores["pascal-person-part"])
    meta = read_metadata(out)
    assert meta["dtype"] == "float16"
    assert all(shard["bytes"] < 10_000_000 for shard in meta["shards"])
    assert meta["training"]["cumulative_minutes"] == pytest.approx(2.0)
    assert "research use" in meta["data_terms"]
    assert meta["metrics"]["sources"]["viton"]["miou"] == scores["viton"]["miou"]
    model, _ = load_checkpoint(out)  # strict load of the fp16 shards
    assert (tmp_path / "curve.png").stat().st_size > 0


def test_warm_started_run_adds_minutes_and_keeps_history(tmp_path, sources):
    first = tmp_path / "checkpoints" / "lite-lip20"
    release(fake_run(tmp_path / "run1", sources, elapsed_s=600), first)
    second = fake_run(tmp_path / "run2", sources, elapsed_s=300, init=str(first), seed=1, lr=1e-4)
    result = release(second, tmp_path / "next", force=True, input_size=80)
    training = result.metadata["training"]
    assert training["cumulative_minutes"] == pytest.approx(15.0)
    # Each entry says at which inference size its scores were taken; the second ships at another.
    assert [h["input_size"] for h in training["history"]] == [read_metadata(first)["input_size"], 80]
    assert read_metadata(tmp_path / "next")["input_size"] == 80
    assert [h["run"] for h in training["history"]] == ["run1", "run2"]
    # A warm-started run with another learning rate: each run keeps its own recipe.
    assert [h["recipe"]["lr"] for h in training["history"]] == [2e-4, 1e-4]
    assert training["recipe"]["lr"] == 1e-4


def test_each_run_keeps_the_machine_it_trained_on(tmp_path, sources):
    first = tmp_path / "checkpoints" / "lite-lip20"
    zen4 = {"hardware": "EPYC with AVX-512-BF16, 2 cores", "amp_bf16": True}
    release(fake_run(tmp_path / "run1", sources, elapsed_s=600, resolved=zen4), first)
    training = read_metadata(first)["training"]
    assert training["hardware"] == zen4["hardware"] and training["precision"] == "bf16 autocast"
    # A checkpoint released before runs recorded their machine: its runs ran on the checkpoint's.
    meta = json.loads((first / "metadata.json").read_text())
    for entry in meta["training"]["history"]:
        del entry["hardware"], entry["precision"]
    (first / "metadata.json").write_text(json.dumps(meta))
    zen3 = {"hardware": "EPYC with AVX2 (no AVX-512), 2 cores", "amp_bf16": False}
    second = fake_run(tmp_path / "run2", sources, elapsed_s=300, init=str(first), seed=1, resolved=zen3)
    training = release(second, first, force=True).metadata["training"]
    assert [(h["hardware"], h["precision"]) for h in training["history"]] == [
        (zen4["hardware"], "bf16 autocast"),
        (zen3["hardware"], "fp32"),
    ]
    assert training["hardware"] == f"{zen4['hardware']} (run1); {zen3['hardware']} (run2)"
    assert training["precision"] == "bf16 autocast (run1); fp32 (run2)"
    # A run folder from before the trainer recorded it: the releasing machine is named.
    third = fake_run(tmp_path / "run3", sources, elapsed_s=60, init=str(first), seed=2)
    entry = release(third, tmp_path / "other", force=True).metadata["training"]["history"][-1]
    assert entry["hardware"] == hardware() and entry["precision"] == "fp32"


def test_run_resumed_from_another_runs_last_counts_both_runs(tmp_path, sources):
    work = tmp_path / "worktree"
    out = tmp_path / "checkpoints" / "lite-lip20"
    first = fake_run(work / "runs" / "run1", sources, elapsed_s=600)
    shutil.copytree(first / "best", first / "last")
    release(first, out)
    # Started in the worktree with a path relative to it, released from elsewhere.
    second = fake_run(work / "runs" / "run2", sources, elapsed_s=300, init="runs/run1/last", seed=1)
    training = release(second, out, force=True).metadata["training"]
    assert training["cumulative_minutes"] == pytest.approx(15.0)
    assert [h["run"] for h in training["history"]] == ["run1", "run2"]
    assert training["init_checkpoint"] == "runs/run1/last"
    # A run continued from an unreleased run's last weights: that run has its entry too, unscored.
    race = fake_run(work / "runs" / "race", sources, elapsed_s=120, init=str(out), seed=3)
    shutil.copytree(race / "best", race / "last")
    onward = fake_run(work / "runs" / "onward", sources, elapsed_s=180, init="runs/race/last", seed=4)
    training = release(onward, out, force=True).metadata["training"]
    assert [h["run"] for h in training["history"]] == ["run1", "run2", "race", "onward"]
    assert training["cumulative_minutes"] == pytest.approx(20.0)
    race_entry = training["history"][2]
    assert race_entry["released"] is False and race_entry["scores"] == {}
    assert race_entry["minutes"] == pytest.approx(2.0) and race_entry["cumulative_minutes"] == pytest.approx(17.0)
    third = fake_run(work / "runs" / "run3", sources, elapsed_s=60, init="runs/missing/last", seed=2)
    with pytest.raises(FileNotFoundError, match="runs/missing/last"):
        release(third, out, force=True)


def test_not_replaced_when_worse_unless_forced(tmp_path, sources, capsys):
    out = tmp_path / "ck"
    release(fake_run(tmp_path / "run1", sources), out)
    before = (out / "metadata.json").read_text()
    meta = json.loads(before)
    # Pretend the shipped checkpoint scores perfectly: an ordinary run must not replace it.
    for row in meta["metrics"]["sources"].values():
        row["main"] = 100.0
    (out / "metadata.json").write_text(json.dumps(meta))
    assert main(["--run", str(tmp_path / "run1"), "--out", str(out)]) == 0
    assert "not published" in capsys.readouterr().out
    assert main(["--run", str(tmp_path / "run1"), "--out", str(out), "--force"]) == 0
    assert read_metadata(out)["metrics"]["sources"]["viton"]["main"] < 100.0


def test_run_that_loses_is_recorded_without_touching_the_weights(tmp_path, sources, capsys):
    out = tmp_path / "ck"
    release(fake_run(tmp_path / "run1", sources, elapsed_s=600), out)
    meta = json.loads((out / "metadata.json").read_text())
    for row in meta["metrics"]["sources"].values():
        row["main"] = 100.0
    (out / "metadata.json").write_text(json.dumps(meta))
    shards = {s["file"]: s["sha256"] for s in meta["shards"]}
    second = fake_run(tmp_path / "run2", sources, elapsed_s=300, init=str(out), seed=1)
    argv = ["--run", str(second), "--out", str(out), "--plot", str(tmp_path / "curve.png")]
    assert main(argv) == 0
    assert "recorded there under training.unreleased" in capsys.readouterr().out
    after = read_metadata(out)
    # Same weights, bytes and all; scores, history and minutes of the shipped weights unchanged.
    assert {s["file"]: s["sha256"] for s in after["shards"]} == shards
    assert after["created"] == meta["created"] and after["metrics"] == meta["metrics"]
    assert after["training"]["history"] == meta["training"]["history"]
    assert after["training"]["cumulative_minutes"] == pytest.approx(10.0)
    (lost,) = after["training"]["unreleased"]
    assert lost["run"] == "run2" and lost["published"] is False
    assert lost["minutes"] == pytest.approx(5.0) and lost["cumulative_minutes"] == pytest.approx(15.0)
    assert lost["scores"]["viton"]["main"] < 100.0 and lost["scored_against"]["viton"] == 100.0
    load_checkpoint(out)  # still loads strictly
    assert (tmp_path / "curve.png").stat().st_size > 0
    # Scoring the same run again replaces its record; a later winner keeps the record of the loser.
    assert main(argv) == 0
    assert [u["run"] for u in read_metadata(out)["training"]["unreleased"]] == ["run2"]
    third = fake_run(tmp_path / "run3", sources, elapsed_s=60, init=str(out), seed=2)
    training = release(third, out, force=True).metadata["training"]
    assert [h["run"] for h in training["history"]] == ["run1", "run3"]
    assert [u["run"] for u in read_metadata(out)["training"]["unreleased"]] == ["run2"]


def test_a_run_released_at_another_size_is_compared_with_the_shipped_weights_at_that_size(tmp_path, sources):
    out = tmp_path / "ck"
    run1 = fake_run(tmp_path / "run1", sources, elapsed_s=600)
    release(run1, out, input_size=64)
    # What the shipped weights score at 48, and their stored scores (at 64) made unbeatable.
    shutil.copytree(out, tmp_path / "copy")
    expected = resize_shipped(run1, tmp_path / "copy", 48, force=True)["scores"]
    meta = json.loads((out / "metadata.json").read_text())
    for row in meta["metrics"]["sources"].values():
        row["main"] = 100.0
    (out / "metadata.json").write_text(json.dumps(meta))
    second = fake_run(tmp_path / "run2", sources, elapsed_s=300, init=str(out), seed=1)
    result = release(second, out, input_size=48)
    assert result.rescored_shipped
    assert {k: v["main"] for k, v in result.compared_with.items()} == {k: v["main"] for k, v in expected.items()}
    assert result.published == better(result.scores, expected)  # not against the 100s taken at 64
    if not result.published:
        (lost,) = read_metadata(out)["training"]["unreleased"]
        assert lost["scored_against_input_size"] == 48
        assert lost["scored_against"] == {k: v["main"] for k, v in expected.items()}


def test_resize_shipped_keeps_the_weights_and_history_and_records_the_change(tmp_path, sources, capsys):
    out = tmp_path / "ck"
    run1 = fake_run(tmp_path / "run1", sources)
    release(run1, out, input_size=64, multiscale=True)
    meta = read_metadata(out)
    result = resize_shipped(run1, out, 48, force=True)
    assert result["changed"]
    after = read_metadata(out)
    assert after["input_size"] == 48 and after["shards"] == meta["shards"] and after["created"] == meta["created"]
    assert after["training"]["history"] == meta["training"]["history"]
    assert after["metrics"]["sources"] == result["scores"]
    assert "sources_multiscale_flip" not in after["metrics"]  # taken at 64: dropped, not kept as if at 48
    (change,) = after["training"]["input_size_changes"]
    assert change["from"] == 64 and change["to"] == 48
    assert change["before"] == {k: v["main"] for k, v in meta["metrics"]["sources"].items()}
    assert change["after"] == {k: v["main"] for k, v in result["scores"].items()}
    # Without --force the size changes only when the scores rise; the command line says which.
    assert main(["--run", str(run1), "--out", str(out), "--resize-shipped", "--input-size", "64"]) == 0
    text = capsys.readouterr().out
    assert ("now parses at input size 64" in text) == (read_metadata(out)["input_size"] == 64)
    assert main(["--run", str(run1), "--out", str(out), "--resize-shipped"]) == 2
    assert "needs --input-size" in capsys.readouterr().err


def test_plot_history_draws_unreleased_runs(tmp_path):
    def entry(minutes, score):
        return {"cumulative_minutes": minutes, "scores": {"viton": {"label_set": "lip-20", "main": score}}}

    path = plot_history([entry(30, 40.0)], tmp_path / "h.png", MAIN_FIGURE, unreleased=[entry(90, 39.0)])
    assert path.stat().st_size > 0


def test_missing_run_is_a_clear_error(tmp_path, capsys):
    assert main(["--run", str(tmp_path / "nope"), "--out", str(tmp_path / "ck")]) == 2
    assert "error:" in capsys.readouterr().err


def test_better_compares_common_sources():
    new = {"a": {"main": 50.0}, "b": {"main": 40.0}}
    assert better(new, {"a": {"main": 45.0}, "b": {"main": 44.0}})
    assert not better(new, {"a": {"main": 60.0}})
    assert better(new, {})


def test_plot_history(tmp_path):
    history = [
        {"cumulative_minutes": m, "scores": {"viton": {"label_set": "lip-20", "main": s}}}
        for m, s in ((30, 40.0), (120, 55.0))
    ]
    assert plot_history(history, tmp_path / "h.png", MAIN_FIGURE).stat().st_size > 0


def test_history_keeps_scores_of_another_label_set_on_their_own_line():
    # A body-part model started from the LIP-20 default: PASCAL was first scored as person IoU.
    def entry(minutes, label_set, main):
        return {"cumulative_minutes": minutes, "scores": {"pascal-person-part": {"label_set": label_set, "main": main}}}

    history = [entry(100, "person-head-3", 70.0), entry(130, "pascal-person-part-7", 50.0)]
    history.append(entry(160, "pascal-person-part-7", 55.0))
    assert history_series(history, MAIN_FIGURE) == {
        "pascal-person-part (person-head-3 person IoU)": ([100], [70.0]),
        "pascal-person-part (pascal-person-part-7 mIoU)": ([130, 160], [50.0, 55.0]),
    }


def test_showcase_grid_keeps_aspect_and_label_values(tmp_path):
    import numpy as np
    from PIL import Image

    from ssfnet import get_label_set
    from train.showcase import _fit, render_grid

    labels = np.zeros((90, 60), np.uint8)
    labels[10:40, 20:40] = 13
    tile = _fit(labels, 45)
    assert tile.shape == (45, 30) and set(np.unique(tile)) == {0, 13}
    assert _fit(np.zeros((90, 60, 3), np.uint8), 45).shape == (45, 30, 3)
    photo = np.full((90, 60, 3), 128, np.uint8)
    path = render_grid([("a", photo, labels), ("b", photo, labels)], get_label_set("lip-20"), tmp_path / "g.jpg")
    assert Image.open(path).size[0] > 100


def test_release_of_a_part_head_model_scores_its_parts_and_the_everyday_figures(tmp_path, sources, datasets_root):
    run = fake_run(tmp_path / "run", sources, part_classes=7)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "region_sets": "limbs", "set_loss_weight": 1.0}))
    result = release(run, tmp_path / "out", data_root=datasets_root, limit=3, part_gate=True)
    assert result.extra["parts"]["label_set"] == "pascal-person-part-7"
    assert result.extra["parts"]["images"] == 2
    meta = read_metadata(tmp_path / "out")
    assert meta["metrics"]["parts"] == result.extra["parts"]
    assert meta["training"]["recipe"]["region_sets"] == "limbs"
    # Parsed as released: steered by the part head.
    assert meta["part_gate"] is True
    from ssfnet.predictor import load_predictor

    assert load_predictor(tmp_path / "out", "cpu").part_gate is True
    if (datasets_root / "lip-val74").is_dir():
        assert meta["metrics"]["everyday"]["images"] == 74
        assert "pascal_proxies" in meta["metrics"]


def test_before_after_grid(tmp_path, sources):
    from PIL import Image

    from train.showcase import before_after

    first = fake_run(tmp_path / "a", sources, seed=0) / "best"
    second = fake_run(tmp_path / "b", sources, seed=1) / "best"
    pascal = dict(sources)["pascal-person-part"]
    ids = sorted(p.stem for p in (pascal / "JPEGImages").iterdir())[:2]
    path = before_after(first, second, tmp_path / "ba.jpg", data=f"pascal-person-part:{pascal}", ids=ids, count=2)
    assert Image.open(path).size[0] > 100
