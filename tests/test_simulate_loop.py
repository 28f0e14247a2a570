"""The simulated-annotator loop on real CCP and VITON files, with a tiny model and a tiny budget."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY

from experiments import pool_loops, simulate_loop, simulate_shift
from ssfnet import build_model, load_checkpoint, save_checkpoint
from ssfnet.data import open_source, split_ids
from train.evaluate import evaluate_checkpoint
from train.finetune import run as finetune
from train.finetune.report import FinetuneReport


def released_base(folder, data, val_fraction):
    """A tiny LIP-20 checkpoint whose metadata records its training data and split as a release does."""
    torch.manual_seed(0)
    training = {"data": data, "recipe": {"val_fraction": val_fraction, "split_seed": 0}}
    return save_checkpoint(build_model("ssfnet_lite", 20, **TINY), folder, variant="ssfnet_lite", label_set="lip-20",
                           options=TINY, metadata={"input_size": 64, "training": training})  # fmt: skip


def write_split(path, sources, val_fraction, seed=0):
    """The base run's split.json: the ids ``split_ids`` holds out of each (kind, folder)."""
    entries = []
    for kind, folder in sources:
        val = split_ids(open_source(f"{kind}:{folder}", "lip-20").ids, val_fraction, seed)[1]
        entries.append({"kind": kind, "path": str(folder.resolve()), "split": None, "val_ids": val})
    path.write_text(json.dumps({"sources": entries}))
    return path


def test_loop_writes_corrections_fine_tunes_on_the_base_data_and_scores(dataset_dir, tmp_path):
    ccp, viton = dataset_dir("ccp"), dataset_dir("viton")
    fraction = 0.005  # 5 CCP and 58 VITON photos held out
    base = released_base(tmp_path / "base", [f"ccp:{ccp}", f"viton:{viton}:0.5"], fraction)
    split = write_split(tmp_path / "split.json", [("ccp", ccp), ("viton", viton)], fraction)
    out = tmp_path / "loop"
    report = simulate_loop.simulate(simulate_loop.parse_args([
        "--base", str(base), "--split", str(split), "--ccp", str(ccp), "--viton", str(viton),
        "--corrections", "2", "--viton-limit", "2", "--max-minutes", "1", "--val-max-images", "4",
        "--crop-size", "64", "--device", "cpu", "--out", str(out), "--also-blend", "0.5",
    ]))  # fmt: skip
    assert len(report["corrections"]) == 2
    assert len(list((out / "corrections" / "meta").glob("*.json"))) == 2
    # The fine-tune mixed in the base's own training data, and none of the photos the loop holds out.
    assert report["original_data"] == [f"ccp:{ccp}", f"viton:{viton}:0.5"]
    held = {s["kind"]: set(s["val_ids"]) for s in json.loads(split.read_text())["sources"]}
    for plan_file in (out / "finetune-run" / "sources").glob("*.json"):
        plan = json.loads(plan_file.read_text())
        kind = plan["source"].split(":")[0]
        assert not held.get(kind, set()) & set(plan["ids"]), plan["source"]
    for when in ("before", "after"):
        ccp_scores = report[when]["ccp_other_val (lip-20 -> ccp-coarse)"]
        assert ccp_scores["images"] == len(held["ccp"]) - 2 and 0 <= ccp_scores["miou"] <= 100
        viton_scores = report[when]["viton_val (lip-20)"]
        assert viton_scores["images"] == 2 and viton_scores["miou"] <= viton_scores["miou_present"] <= 100
    # The held-out CCP change, paired over the same photos, agrees with the two scores.
    change, key = report["ccp_change"], "ccp_other_val (lip-20 -> ccp-coarse)"
    assert change["images"] == len(held["ccp"]) - 2 and change["low"] <= change["delta"] <= change["high"]
    assert change["delta"] == pytest.approx(report["after"][key]["miou"] - report["before"][key]["miou"], abs=0.02)
    assert "paired bootstrap" in (out / "report.md").read_text()
    model, meta = load_checkpoint(report["fine_tuned"])
    assert meta["label_set"] == "lip-20"
    assert (out / "report.md").read_text().startswith("| validation set")
    # One fine-tune scored at another blend: halfway between the base's weights and the fine-tune's.
    half = report["blends"]["0.5"]
    blended, blended_meta = load_checkpoint(half["checkpoint"])
    assert blended_meta["finetune"]["blend"] == 0.5 and blended_meta["input_size"] == meta["input_size"]
    # The published fine-tune keeps its own share of the change (no --blend: the fine-tune's choice).
    published = meta["finetune"]["blend"]
    assert published == report["blend"] == report["settings"]["blend"] and report["settings"]["reason"]
    base_state, tuned_state = load_checkpoint(base)[0].state_dict(), model.state_dict()
    for name, tensor in blended.state_dict().items():
        if tensor.is_floating_point():
            expected = base_state[name] + 0.5 / published * (tuned_state[name] - base_state[name])
            torch.testing.assert_close(tensor, expected, rtol=2e-3, atol=2e-3)
    assert not (out / "finetune-run" / "last").exists()  # the trained weights were kept for the blends only
    assert half["ccp_change"]["images"] == change["images"] and half["after"][key]["images"] == change["images"]
    text = (out / "report.md").read_text()
    assert f"| {published:g} |" in text and "| 0.5 |" in text  # the published share and the other blend

    # Pooling: the loop's own changes, from its saved per-photo matrices or scored again without them.
    argv = [str(out), str(out), "--out", str(tmp_path / "pooled"), "--draws", "50"]
    pooled = pool_loops.pool_loops(pool_loops.parse_args(argv))
    rows = {row["share"]: row for row in pooled["rows"]}
    assert sorted(rows) == sorted({published, 0.5})
    full, halfway = rows[published], rows[0.5]
    assert full["changes"] == [pytest.approx(change["delta"], abs=0.011)] * 2
    assert full["pooled"]["delta"] == pytest.approx(change["delta"], abs=0.011) and full["pooled"]["runs"] == 2
    assert halfway["changes"][0] == pytest.approx(half["ccp_change"]["delta"], abs=0.011)
    assert "| 0.5 |" in (tmp_path / "pooled" / "pooled.md").read_text()
    saved = np.load(out / simulate_loop.PER_IMAGE_FILE)
    (out / simulate_loop.PER_IMAGE_FILE).unlink()
    again = pool_loops.pool_loops(pool_loops.parse_args([str(out), "--draws", "50", "--device", "cpu"]))
    assert {row["share"]: row["changes"] for row in again["rows"]}[published] == [full["changes"][0]]
    with np.load(out / simulate_loop.PER_IMAGE_FILE) as rescored:
        for tag in ("before", "after", "blend-0.5"):
            np.testing.assert_array_equal(rescored[tag], saved[tag])
    # Pooling pairs each matrix with its photo: a loop whose held-out photos do not match its
    # matrices is refused.
    assert pool_loops.held_out_photos(out) == sorted(
        json.loads((out / "eval_split.json").read_text())["sources"][0]["val_ids"]
    )
    odd = tmp_path / "odd-loop"
    odd.mkdir()
    for name in ("report.json", simulate_loop.PER_IMAGE_FILE):
        (odd / name).write_bytes((out / name).read_bytes())
    split_data = json.loads((out / "eval_split.json").read_text())
    split_data["sources"][0]["val_ids"] = split_data["sources"][0]["val_ids"][1:]
    (odd / "eval_split.json").write_text(json.dumps(split_data))
    with pytest.raises(SystemExit, match="per-photo matrices for"):
        pool_loops.pool_loops(pool_loops.parse_args([str(out), str(odd), "--draws", "10"]))
    # Against a control loop: the loop minus itself is nothing, from its own matrices, or, for a
    # control that held out other photos, from the control's models scored again on the loop's.
    versus = pool_loops.pool_loops(pool_loops.parse_args([str(out), "--against", str(out), "--draws", "10"]))
    assert {row["share"] for row in versus["against"]["rows"]} == {published, 0.5}
    assert all(c == 0 for row in versus["against"]["rows"] for c in row["changes"])
    argv = [str(out), "--against", str(odd), "--draws", "10", "--device", "cpu"]
    versus = pool_loops.pool_loops(pool_loops.parse_args(argv))
    assert all(c == 0 for row in versus["against"]["rows"] for c in row["changes"])
    assert (out / "against-odd-loop.npz").is_file()
    with pytest.raises(SystemExit, match="one per loop"):
        pool_loops.pool_loops(pool_loops.parse_args([str(out), "--against", str(out), str(out)]))


def test_the_loop_refuses_a_fine_tune_that_would_train_on_the_photos_it_scores(dataset_dir, tmp_path):
    ccp, viton = dataset_dir("ccp"), dataset_dir("viton")
    # The base records no split: the fine-tune would split the sources its own way (seed 0), not as
    # the base run did (seed 5).
    torch.manual_seed(0)
    base = save_checkpoint(build_model("ssfnet_lite", 20, **TINY), tmp_path / "base", variant="ssfnet_lite",
                           label_set="lip-20", options=TINY, metadata={"input_size": 64})  # fmt: skip
    split = write_split(tmp_path / "split.json", [("ccp", ccp), ("viton", viton)], 0.005, seed=5)
    args = ["--base", str(base), "--split", str(split), "--ccp", str(ccp), "--viton", str(viton), "--corrections",
            "2", "--max-minutes", "0.5", "--device", "cpu", "--out", str(tmp_path / "loop")]  # fmt: skip
    with pytest.raises(ValueError, match="would train on photos the loop scores"):
        simulate_loop.simulate(simulate_loop.parse_args(args))
    assert not (tmp_path / "loop" / "corrections").exists()
    # Sources that leave the held-out photos out are accepted, a subset of the training ids among them.
    held = {s["kind"]: s["val_ids"] for s in json.loads(split.read_text())["sources"]}
    keep = sorted(set(open_source(f"ccp:{ccp}", "lip-20").ids) - set(held["ccp"]))
    subset = tmp_path / "ccp-train.json"
    subset.write_text(json.dumps({"source": f"ccp:{ccp}", "ids": keep}))
    parsed = simulate_loop.parse_args([*args, "--data", f"subset:{subset}"])
    scored = {str(ccp.resolve()): set(held["ccp"]), str(viton.resolve()): set(held["viton"])}
    assert simulate_loop.original_data(parsed, scored) == [f"subset:{subset}"]
    leaky = simulate_loop.parse_args([*args, "--data", f"subset:{subset}", "--data", f"viton:{viton}"])
    with pytest.raises(ValueError, match=r"viton:\S+: \d+"):
        simulate_loop.original_data(leaky, scored)


def test_the_loop_fine_tunes_as_told_and_otherwise_with_the_base_recipe(tmp_path):
    from experiments.simulate_loop import finetune_config, parse_args

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


def test_pooling_finds_the_relative_paths_a_loop_recorded_from_anywhere(tmp_path, monkeypatch):
    # A loop run in tmp_path with --out runs/loop-s0 and --base checkpoints/base recorded both relative.
    (tmp_path / "checkpoints" / "base").mkdir(parents=True)
    loop = tmp_path / "runs" / "loop-s0"
    (loop / "blend-0.5").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert pool_loops.recorded_path("checkpoints/base", loop) == tmp_path / "checkpoints" / "base"
    assert pool_loops.recorded_path("runs/loop-s0/blend-0.5", loop) == loop / "blend-0.5"
    assert pool_loops.recorded_path(str(loop), loop) == loop
    assert pool_loops.recorded_path("nowhere/x", loop) == Path("nowhere/x")  # left for the caller to report


def test_worst_pick_corrects_one_of_each_pair_of_the_worst_images():
    ids = [f"im{i}" for i in range(9)]
    scores = [50.0, 10.0, 80.0, 20.0, 30.0, 70.0, 40.0, 60.0, 90.0]  # worst first: im1 im3 im4 im6 im0 im7 ...
    pairs = [{"im1", "im3"}, {"im4", "im6"}, {"im0", "im7"}]
    for seed in range(6):
        picked = simulate_loop.worst_pick(ids, scores, 3, seed)
        assert [p in pair for p, pair in zip(picked, pairs)] == [True] * 3
    # The seed decides which of a pair is corrected, the other staying held out.
    assert len({tuple(simulate_loop.worst_pick(ids, scores, 3, seed)) for seed in range(6)}) > 1
    with pytest.raises(ValueError, match="two validation images per correction"):
        simulate_loop.worst_pick(ids, scores, 5, 0)
    with pytest.raises(ValueError, match="8 scores for 9"):
        simulate_loop.worst_pick(ids, scores[:-1], 3, 0)


def test_the_loop_can_correct_the_images_the_base_parses_worst(dataset_dir, tmp_path, monkeypatch):
    ccp, viton = dataset_dir("ccp"), dataset_dir("viton")
    fraction = 0.005  # 5 CCP photos held out
    base = released_base(tmp_path / "base", [f"ccp:{ccp}", f"viton:{viton}:0.5"], fraction)
    split = write_split(tmp_path / "split.json", [("ccp", ccp), ("viton", viton)], fraction)
    out = tmp_path / "loop"

    def stop(config):  # the loop up to its fine-tune: what it corrects and what it holds out
        return FinetuneReport(status="failed", checkpoint=None, base=config.base, run=config.train.out, elapsed_s=0.0)

    monkeypatch.setattr(finetune, "run_finetune", stop)
    with pytest.raises(RuntimeError, match="status failed"):
        simulate_loop.simulate(simulate_loop.parse_args([
            "--base", str(base), "--split", str(split), "--ccp", str(ccp), "--viton", str(viton), "--corrections",
            "2", "--pick", "worst", "--viton-limit", "1", "--device", "cpu", "--out", str(out),
        ]))  # fmt: skip
    # The corrections are one of each of the two worst pairs of the base's ranking; the rest is scored.
    held = sorted([s["val_ids"] for s in json.loads(split.read_text())["sources"] if s["kind"] == "ccp"][0])
    args = simulate_loop.parse_args(["--base", str(base), "--split", str(split), "--ccp", str(ccp), "--device", "cpu"])
    scores = simulate_loop.rank_images(args, f"ccp:{ccp}", held, tmp_path / "rank")
    assert list(scores) == held and all(0 <= v <= 100 for v in scores.values())
    expected = sorted(simulate_loop.worst_pick(held, list(scores.values()), 2, 0))
    saved = sorted(json.loads(f.read_text())["source_name"] for f in (out / "corrections" / "meta").glob("*.json"))
    assert saved == [f"ccp/{i}.jpg" for i in expected]
    eval_split = json.loads((out / "eval_split.json").read_text())["sources"]
    assert [s["val_ids"] for s in eval_split if s["kind"] == "ccp"][0] == sorted(set(held) - set(expected))


def no_training(seen: list):
    """``run_finetune`` without training: the loop's fine-tuned model is its base (every change is 0)."""

    def run(config):
        seen.append(config)
        settings = {"reason": "as told", "shift": 0.5, "corrections_share": 0.3, "blend": 0.6}
        return FinetuneReport(
            status="finished",
            checkpoint=config.base,
            base=config.base,
            run=config.train.out,
            iterations=0,
            elapsed_s=0.0,
            settings=settings,
        )

    return run


def test_a_base_that_never_saw_ccp_corrects_any_ccp_photo_and_forgetting_covers_pascal(
    dataset_dir, tmp_path, monkeypatch
):
    ccp, viton, pascal = dataset_dir("ccp"), dataset_dir("viton"), dataset_dir("pascal-person-part")
    fraction = 0.005
    base = released_base(tmp_path / "base", [f"viton:{viton}:0.5", f"pascal-person-part:{pascal}:0.5"], fraction)
    split = write_split(tmp_path / "split.json", [("viton", viton), ("pascal-person-part", pascal)], fraction)
    seen: list = []
    monkeypatch.setattr(finetune, "run_finetune", no_training(seen))
    out = tmp_path / "loop"
    report = simulate_loop.simulate(simulate_loop.parse_args([
        "--base", str(base), "--split", str(split), "--ccp", str(ccp), "--viton", str(viton), "--pascal", str(pascal),
        "--corrections", "2", "--ccp-limit", "3", "--viton-limit", "2", "--pascal-limit", "2", "--device", "cpu",
        "--out", str(out),
    ]))  # fmt: skip
    # Every CCP photo is in the pool: two corrected, three others (spread evenly) scored, none of both.
    assert report["base_trained_on_ccp"] is False and len(report["corrections"]) == 2
    all_ccp = set(open_source(f"ccp:{ccp}", "lip-20").ids)
    held = json.loads(split.read_text())["sources"]
    assert set(report["corrections"]) <= all_ccp and not any(
        set(report["corrections"]) & set(s["val_ids"]) for s in held
    )
    eval_split = {s["kind"]: s["val_ids"] for s in json.loads((out / "eval_split.json").read_text())["sources"]}
    assert len(eval_split["ccp"]) == 3 and not set(eval_split["ccp"]) & set(report["corrections"])
    assert report["ccp_change"]["images"] == 3 and report["ccp_change"]["delta"] == 0
    # The fine-tune mixes the base's own sources (no CCP), with the fine-tune's own choice of share and blend.
    (config,) = seen
    assert config.train.data == [f"viton:{viton}:0.5", f"pascal-person-part:{pascal}:0.5"]
    assert config.corrections_share is None and config.blend is None and report["blend"] == 0.6
    # PASCAL forgetting: person and head IoU through person-head-3, as train.evaluate scores them.
    key = simulate_loop.PASCAL_KEY
    assert eval_split["pascal-person-part"] == [s["val_ids"] for s in held if s["kind"] == "pascal-person-part"][0]
    expected = evaluate_checkpoint(base, [f"pascal-person-part:{pascal}"], gt_label_set="person-head-3",
                                   split=out / "eval_split.json", limit=2, device="cpu", progress=False)  # fmt: skip
    for when in ("before", "after"):
        assert report[when][key]["images"] == 2
        assert report[when][key]["person_iou"] == round(expected["person_iou"], 2)
        assert report[when][key]["head_iou"] == round(expected["head_iou"], 2)
    text = (out / "report.md").read_text()
    assert "PASCAL-Person-Part: person IoU" in text and "the base never saw CCP" in text


def test_shift_grid_runs_each_count_and_seed_of_both_cases_and_pools_them(dataset_dir, tmp_path, monkeypatch):
    ccp, viton, pascal = dataset_dir("ccp"), dataset_dir("viton"), dataset_dir("pascal-person-part")
    fraction = 0.005
    base = released_base(tmp_path / "noccp", [f"viton:{viton}:0.5", f"pascal-person-part:{pascal}:0.5"], fraction)
    write_split(tmp_path / "split.json", [("viton", viton), ("pascal-person-part", pascal)], fraction)
    default = released_base(tmp_path / "default", [f"ccp:{ccp}", f"viton:{viton}:0.5"], fraction)
    default_split = write_split(tmp_path / "default-split.json", [("ccp", ccp), ("viton", viton)], fraction)
    monkeypatch.setattr(finetune, "run_finetune", no_training([]))
    argv = [
        "--base", str(base), "--in-domain-base", str(default), "--in-domain-split", str(default_split),
        "--corrections", "1", "2", "--seeds", "0", "1", "--ccp-limit", "3", "--viton-limit", "1",
        "--pascal-limit", "1", "--draws", "20", "--device", "cpu", "--ccp", str(ccp), "--viton", str(viton),
        "--pascal", str(pascal), "--out", str(tmp_path / "shift"),
    ]  # fmt: skip
    result = simulate_shift.simulate_shift(simulate_shift.parse_args(argv))
    assert list(result["cases"]) == ["shift", "in-domain"]
    shift, in_domain = result["cases"]["shift"], result["cases"]["in-domain"]
    assert shift["split"] == str((tmp_path / "split.json").resolve())  # the split beside the base by default
    for name, case in (("shift", shift), ("in-domain", in_domain)):
        assert list(case["counts"]) == [1, 2]
        for count, row in case["counts"].items():
            assert row["loops"] == [str(tmp_path / "shift" / name / f"c{count}-s{seed}") for seed in (0, 1)]
            assert row["ccp_pooled"]["delta"] == 0 and row["ccp_pooled"]["runs"] == 2 and row["viton_change"] == 0
            assert row["blend"] == [0.6, 0.6] and row["shift"] == [0.5, 0.5]
    assert shift["counts"][2]["pascal_person_change"] == 0 and in_domain["counts"][2]["pascal_person_change"] is None
    saved = json.loads((tmp_path / "shift" / "report.json").read_text())
    assert set(saved["cases"]) == {"shift", "in-domain"} and saved["cases"]["shift"]["counts"]["2"]["viton_change"] == 0
    text = (tmp_path / "shift" / "report.md").read_text()
    assert (
        text.count("| corrections | held-out CCP mIoU change") == 2 and "| 2 | +0.00 (+0.00 to +0.00; 0 of 2) |" in text
    )

    # Loops already done are not run again: the grid goes on where it stopped.
    monkeypatch.setattr(simulate_loop, "simulate", lambda args: pytest.fail(f"ran {args.out} again"))
    again = simulate_shift.simulate_shift(simulate_shift.parse_args(argv))
    assert json.loads(json.dumps(again["cases"])) == saved["cases"]
    with pytest.raises(SystemExit):
        simulate_shift.parse_args(["--base", str(base), "--in-domain-base", str(default)])
