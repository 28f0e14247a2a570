"""Hardening (issue 15): checkpoints that trust nothing, crash debris cleaned, and the smaller items.

Each test reproduces one failure of the issue. Tiny models and files, CPU only; the slower kill -9
loops are in ``experiments/probe_hardening.py``.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY, wait_for_page
from PIL import Image
from safetensors import SafetensorError

import ssfnet.checkpoint.store as ckpt
from ssfnet import CheckpointError, build_model, list_checkpoints, load_checkpoint, save_checkpoint
from ssfnet.checkpoint import load_state_dict, read_metadata, recover_checkpoint, scan_checkpoints, validate_metadata
from ssfnet.data.corrections import _check_id, list_corrections, save_correction, sweep_corrections
from ssfnet.files import writer_alive
from ssfnet.predictor import CHECKPOINTS_DIR

REPO = Path(__file__).resolve().parents[1]


def _strict_json(text: str):
    """json.loads that refuses NaN / Infinity, as browsers and jq do."""
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} written into JSON"))


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def _tiny(num_classes: int = 20, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("ssfnet_lite", num_classes, **TINY)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """One tiny fp16 checkpoint with a split tensor (a shard limit below the largest tensor)."""
    folder = tmp_path_factory.mktemp("saved") / "tiny"
    return save_checkpoint(_tiny(), folder, variant="ssfnet_lite", label_set="lip-20", options=TINY,
                           dtype=torch.float16, max_shard_bytes=2_000_000)  # fmt: skip


@pytest.fixture
def copy(saved, tmp_path):
    """A fresh copy of the saved checkpoint and a function that rewrites its metadata."""
    folder = tmp_path / "ck"
    shutil.copytree(saved, folder)

    def edit(change) -> dict:
        meta = json.loads((folder / "metadata.json").read_text())
        meta = change(meta) or meta
        (folder / "metadata.json").write_text(json.dumps(meta))
        return meta

    return folder, edit


def _meta(saved: Path) -> dict:
    return json.loads((saved / "metadata.json").read_text())


# ---------------------------------------------------------------------------------------------
# 2. Checkpoints: trust nothing in metadata.json


def _set(key, value):
    def change(meta):
        meta[key] = value

    return change


def _drop(key):
    def change(meta):
        del meta[key]

    return change


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda meta: [], "JSON object"),
        (_set("shards", {"file": "x"}), "'shards'"),
        (_set("shards", []), "'shards'"),
        (_set("num_classes", "20"), "'num_classes'"),
        (_set("num_classes", True), "'num_classes'"),
        (_set("num_classes", 100000), "'num_classes'"),
        (_set("num_classes", 18), "'num_classes'"),  # lip-20 has 20 classes
        (_set("variant", "resnet9000"), "'variant'"),
        (_set("variant", ["ssfnet_lite"]), "'variant'"),
        (_set("label_set", "klingon-12"), "'label_set'"),
        (_set("created", 5), "'created'"),
        (_set("created", "yesterday"), "'created'"),
        (_set("dtype", "int8"), "'dtype'"),
        (_set("dtype", ["float16"]), "'dtype'"),  # found by experiments/probe_hardening.py
        (_set("format_version", 99), "'format_version'"),
        (_set("options", ["fusion"]), "'options'"),
        (_set("options", {**TINY, "ppm_channels": 10**9}), "'options'"),
        (_set("options", {**TINY, "fusion": "magic"}), "'options'"),
        (_set("options", {**TINY, "warp_drive": 1}), "'options'"),
        (_set("input_size", -3), "'input_size'"),
        (_set("split_tensors", []), "'split_tensors'"),
        (_set("training", ["viton"]), "'training'"),
        (_set("training", {"data": "viton:x"}), "'training.data'"),
        (_set("lineage", "base"), "'lineage'"),
        (_set("lineage", ["base"]), "'lineage'"),
        (_set("metrics", 5), "'metrics'"),
        (_drop("variant"), "'variant' is missing"),
        (_drop("num_classes"), "'num_classes' is missing"),
        (_drop("label_set"), "'label_set' is missing"),
        (_drop("shards"), "'shards' is missing"),
    ],
)
def test_malformed_metadata_raises_checkpoint_error_naming_the_field(saved, change, field):
    meta = _meta(saved)
    changed = change(meta)
    meta = meta if changed is None else changed
    with pytest.raises(CheckpointError, match=field):
        validate_metadata(meta, "metadata.json")


def test_malformed_metadata_on_disk_is_a_checkpoint_error_on_every_path(copy):
    folder, edit = copy
    edit(_set("num_classes", "20"))
    for call in (read_metadata, load_checkpoint, load_state_dict):
        with pytest.raises(CheckpointError, match="'num_classes'"):
            call(folder)
    (folder / "metadata.json").write_text("[]")
    with pytest.raises(CheckpointError, match="JSON object"):
        load_checkpoint(folder)


def test_hashes_are_mandatory_and_a_flipped_byte_is_caught(copy):
    folder, edit = copy
    shard = folder / _meta(folder)["shards"][0]["file"]
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(folder)

    def unhash(meta):
        for s in meta["shards"]:
            del s["sha256"]

    edit(unhash)  # removing the hashes must not turn verification off
    with pytest.raises(CheckpointError, match="sha256.*missing"):
        load_checkpoint(folder)


def test_every_shipped_checkpoint_has_hashes_and_verifies():
    found = list_checkpoints(CHECKPOINTS_DIR)
    assert found, f"no checkpoint in {CHECKPOINTS_DIR}"
    for folder, meta in found:
        assert all(len(s["sha256"]) == 64 for s in meta["shards"]), folder
        load_state_dict(folder)  # hashes, headers, dtypes


@pytest.mark.parametrize("name", ["/etc/passwd", "../../outside.safetensors", "sub/x.safetensors", "..", ".hidden",
                                  "a\\b.safetensors", "metadata.json"])  # fmt: skip
def test_shard_names_must_be_plain_names_inside_the_folder(copy, tmp_path, name):
    folder, edit = copy
    outside = tmp_path / "outside.safetensors"
    shutil.copy(next(folder.glob("*.safetensors")), outside)

    def point(meta):
        meta["shards"][0]["file"] = name

    edit(point)
    with pytest.raises(CheckpointError, match=r"shards\[0\]\.file"):
        load_checkpoint(folder)


def test_a_shard_linked_to_a_file_outside_is_refused(copy, tmp_path):
    folder, _ = copy
    shard = next(folder.glob("*.safetensors"))
    outside = tmp_path / "outside.safetensors"
    shutil.move(shard, outside)
    shard.symlink_to(outside)
    with pytest.raises(CheckpointError, match="link"):
        load_checkpoint(folder)


def test_split_tensor_parts_checked_against_headers_before_allocating(copy):
    folder, edit = copy
    name = next(iter(_meta(folder)["split_tensors"]))

    def parts(meta):
        meta["split_tensors"][name]["parts"] = 10**10

    edit(parts)

    def no_weights(*args, **kwargs):
        raise AssertionError("the part count must be checked against the headers before any tensor is read")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ckpt, "load_file", no_weights)
        with pytest.raises(CheckpointError, match="parts"):
            load_state_dict(folder)

    def shape(meta):
        meta["split_tensors"][name]["parts"] = 2 if meta["split_tensors"][name]["parts"] != 2 else 3
        meta["split_tensors"][name]["shape"] = [10**6, 10**6]

    edit(shape)
    with pytest.raises(CheckpointError, match="parts|shape"):
        load_state_dict(folder)


def test_split_tensor_shape_must_match_its_parts(copy):
    folder, edit = copy
    name = next(iter(_meta(folder)["split_tensors"]))

    def shape(meta):
        meta["split_tensors"][name]["shape"] = [10**7, 10**7]

    edit(shape)
    with pytest.raises(CheckpointError, match="shape"):
        load_state_dict(folder)


def test_stored_dtype_must_match_the_metadata(copy):
    folder, edit = copy
    edit(_set("dtype", "float32"))  # the shards hold float16
    with pytest.raises(CheckpointError, match="'dtype'"):
        load_state_dict(folder)


def test_label_set_of_another_size_than_the_model_is_refused(tmp_path, copy):
    with pytest.raises(ValueError, match="num_classes"):
        save_checkpoint(_tiny(18), tmp_path / "mismatch", variant="ssfnet_lite", label_set="lip-20", options=TINY)
    assert not (tmp_path / "mismatch").exists()
    folder, edit = copy
    edit(lambda meta: meta.update(label_set="atr-18", num_classes=18))  # consistent metadata, 20-class weights
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(folder)


def test_one_bad_folder_does_not_break_the_listing(saved, tmp_path):
    from demo.models import Predictors

    root = tmp_path / "checkpoints"
    shutil.copytree(saved, root / "good")
    for name, text in [("list", "[]"), ("created", None), ("torn", "{")]:
        shutil.copytree(saved, root / name)
        if text is None:
            meta = _meta(saved)
            meta["created"] = 5
            text = json.dumps(meta)
        (root / name / "metadata.json").write_text(text)
    (root / "not-a-checkpoint").mkdir()
    usable, unusable = scan_checkpoints(root)
    assert [p.name for p, _ in usable] == ["good"]
    reasons = dict((p.name, r) for p, r in unusable)
    assert sorted(reasons) == ["created", "list", "torn"]
    assert "'created'" in reasons["created"] and "JSON object" in reasons["list"] and "corrupt" in reasons["torn"]
    assert str(root) not in " ".join(reasons.values()), "reasons name the folder, not server paths"

    predictors = Predictors(root, checkpoint=root / "list", device="cpu")
    assert [Path(folder).name for _, folder in predictors.choices()] == ["good"]
    note = predictors.unusable_note()
    assert "`list`" in note and "`created`" in note and "\n" not in note
    assert predictors.get(None).name == "good"


def _unreadable_metadata(folder: Path, how: str) -> None:
    """Make ``folder``'s metadata.json undecodable or unreadable in one of several ways."""
    path = folder / "metadata.json"
    path.unlink()
    if how == "not-utf8":
        path.write_bytes(b"\xff\xfe\x00garbage")
    elif how == "utf8-inside-json":
        path.write_bytes(b'{"format": "\xc3\x28"}')
    elif how == "directory":
        path.mkdir()
    elif how == "fifo":
        os.mkfifo(path)  # reading it would wait for a writer for ever
    elif how == "device":
        path.symlink_to("/dev/zero")  # reading it would never end
    elif how == "dangling":
        path.symlink_to(folder / "gone.json")


@pytest.mark.parametrize("how", ["not-utf8", "utf8-inside-json", "directory", "fifo", "device", "dangling"])
def test_undecodable_or_unreadable_metadata_is_not_offered_and_never_stops_the_app(saved, tmp_path, how):
    from demo.models import Predictors

    root = tmp_path / "checkpoints"
    shutil.copytree(saved, root / "good")
    shutil.copytree(saved, root / "bad")
    _unreadable_metadata(root / "bad", how)
    with pytest.raises(CheckpointError, match="metadata.json"):
        read_metadata(root / "bad")
    usable, unusable = scan_checkpoints(root)
    assert [p.name for p, _ in usable] == ["good"]
    assert [p.name for p, _ in unusable] == ["bad"] and str(root) not in unusable[0][1]
    # The app at start-up (its warm-up lists the checkpoints) and afterwards: the good one is offered.
    predictors = Predictors(root, checkpoint=root / "bad", device="cpu")
    problems = predictors.warm_up()
    assert len(problems) == 1 and problems[0].startswith("checkpoint not usable"), problems
    assert [Path(predictors.resolve(folder)).name for _, folder in predictors.choices()] == ["good"]
    assert "`bad`" in predictors.unusable_note() and predictors.get(None).name == "good"


def test_a_folder_whose_shard_headers_cannot_be_honoured_is_not_offered(copy, tmp_path):
    from demo.models import Predictors

    folder, edit = copy
    name = next(iter(_meta(folder)["split_tensors"]))

    def parts(meta):
        meta["split_tensors"][name]["parts"] = 10**10

    edit(parts)
    usable, unusable = scan_checkpoints(folder.parent)
    assert usable == [] and [p.name for p, _ in unusable] == ["ck"] and "parts" in unusable[0][1]
    predictors = Predictors(folder.parent, checkpoint=folder, device="cpu")
    assert predictors.choices() == [] and "`ck`" in predictors.unusable_note()
    with pytest.raises(FileNotFoundError):
        predictors.resolve(str(folder))


def test_bad_checkpoint_at_start_up_is_one_line_each(saved, tmp_path):
    from demo.models import Predictors

    root = tmp_path / "checkpoints"
    shutil.copytree(saved, root / "bad")
    (root / "bad" / "metadata.json").write_text(json.dumps({**_meta(saved), "num_classes": "20"}))
    problems = Predictors(root, checkpoint=root / "bad", device="cpu").warm_up()
    assert problems and all("\n" not in p for p in problems)
    assert "'num_classes'" in problems[0] and "starting without a model" in problems[-1]
    shutil.copytree(saved, root / "good")
    problems = Predictors(root, checkpoint=root / "bad", device="cpu").warm_up()
    assert len(problems) == 1 and problems[0].startswith("checkpoint not usable") and "'num_classes'" in problems[0]


# ---------------------------------------------------------------------------------------------
# 3. Crashes and full disks leave nothing behind


def _interrupted_swap(saved: Path, root: Path, pid: int, complete: bool) -> None:
    """What a writer killed between the two renames of save_checkpoint(overwrite=True) leaves."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(saved, root / f".best.old-{pid}")
    new = root / f".best.tmp-{pid}-abc123xy"
    shutil.copytree(saved, new)
    meta = _meta(saved)
    meta["name"] = "new"
    (new / "metadata.json").write_text(json.dumps(meta))
    if not complete:
        (new / "metadata.json").unlink()


def test_interrupted_best_swap_is_finished_when_the_new_one_is_complete(saved, tmp_path):
    _interrupted_swap(saved, tmp_path, _dead_pid(), complete=True)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        read_metadata(tmp_path / "best")  # a read changes nothing: the swap is still there
    assert len(list(tmp_path.iterdir())) == 2
    assert load_state_dict(tmp_path / "best")[1]["name"] == "new"  # opening it finishes the swap
    assert [p.name for p in tmp_path.iterdir()] == ["best"]


def test_interrupted_best_swap_is_rolled_back_when_the_new_one_is_incomplete(saved, tmp_path):
    _interrupted_swap(saved, tmp_path, _dead_pid(), complete=False)
    assert [p.name for p, _ in list_checkpoints(tmp_path)] == ["best"]  # listing recovers too
    assert read_metadata(tmp_path / "best")["name"] == "tiny"
    assert [p.name for p in tmp_path.iterdir()] == ["best"]


def test_a_living_writers_temporaries_are_left_alone(saved, tmp_path):
    _interrupted_swap(saved, tmp_path, os.getpid(), complete=True)
    recover_checkpoint(tmp_path / "best")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f".best.old-{os.getpid()}",
        f".best.tmp-{os.getpid()}-abc123xy",
    ]


def test_stale_temporaries_are_swept(saved, tmp_path):
    dead = _dead_pid()
    shutil.copytree(saved, tmp_path / "best")
    for name in (f".best.tmp-{dead}-a1b2c3d4", f".best.old-{dead}", ".best.tmp-q1w2e3r4", ".best.tmp-z9y8x7w6"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(b"x" * 1000)
    old = time.time() - 2 * ckpt.LEGACY_TEMPORARY_AGE_S
    os.utime(tmp_path / ".best.tmp-q1w2e3r4", (old, old))  # named before pids were: removed when old
    list_checkpoints(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".best.tmp-z9y8x7w6", "best"]


def test_writer_alive_knows_reused_pids():
    assert writer_alive(os.getpid(), time.time())
    assert not writer_alive(_dead_pid(), time.time())
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert writer_alive(proc.pid, time.time())
        # A file made an hour before this process started was made by another process with its pid.
        assert not writer_alive(proc.pid, time.time() - 3600)
    finally:
        proc.kill()
        proc.wait()


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_save_checkpoint_on_a_full_disk_names_the_folder_and_space(saved, tmp_path, monkeypatch):
    shutil.copytree(saved, tmp_path / "best")
    monkeypatch.setattr(ckpt, "save_file", _enospc)
    with pytest.raises(OSError, match=r"no space left to write checkpoint .*best: it needs about [\d.]+ MB") as err:
        save_checkpoint(_tiny(), tmp_path / "best", variant="ssfnet_lite", label_set="lip-20", options=TINY,
                        overwrite=True)  # fmt: skip
    assert err.value.errno == errno.ENOSPC
    assert [p.name for p in tmp_path.iterdir()] == ["best"] and read_metadata(tmp_path / "best")["name"] == "tiny"
    monkeypatch.setattr(ckpt, "save_file", lambda *a, **k: (_ for _ in ()).throw(SafetensorError("No space left")))
    with pytest.raises(OSError, match="no space left"):
        save_checkpoint(_tiny(), tmp_path / "other", variant="ssfnet_lite", label_set="lip-20", options=TINY)
    monkeypatch.setattr(ckpt.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(OSError, match="1000 MB|0.0 MB are free"):
        save_checkpoint(_tiny(), tmp_path / "other", variant="ssfnet_lite", label_set="lip-20", options=TINY)
    assert [p.name for p in tmp_path.iterdir()] == ["best"]


def test_training_on_a_full_disk_keeps_last_and_says_why(tmp_path, monkeypatch, capsys):
    from train import engine
    from train import train as trainer
    from train.utils import DistInfo

    model = _tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.rand(2, 3, 32, 32))["out"].mean().backward()
    optimizer.step()
    kwargs = {"variant": "ssfnet_lite", "label_set": "lip-20", "options": TINY, "metadata": {}}
    state = engine.TrainState(iteration=1)
    engine.save_run_checkpoint(tmp_path, model, optimizer, state, [({}, {})], **kwargs)
    monkeypatch.setattr(engine, "save_file", _enospc)
    state.iteration = 2
    with pytest.raises(OSError, match=r"run checkpoint .*last: it needs about [\d.]+ MB.*last/ is unchanged") as err:
        engine.save_run_checkpoint(tmp_path, model, optimizer, state, [({}, {})], **kwargs)
    assert err.value.errno == errno.ENOSPC
    assert [p.name for p in tmp_path.iterdir()] == ["last"], "no staging debris"
    resumed, _, _ = engine.load_run_checkpoint(tmp_path / "last", _tiny(), None, DistInfo())
    assert resumed.iteration == 1

    monkeypatch.setattr(trainer, "run_training", lambda config: engine.save_run_checkpoint(
        tmp_path, model, optimizer, state, [({}, {})], **kwargs))  # fmt: skip
    assert trainer.main(["--data", "folder:x", "--out", str(tmp_path)]) == 1
    message = capsys.readouterr().err.strip()
    assert message.startswith("error: no space left") and "\n" not in message and "Traceback" not in message


def test_run_checkpoint_copies_of_killed_sessions_go_with_the_next_save(tmp_path):
    from train import engine

    model = _tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    kwargs = {"variant": "ssfnet_lite", "label_set": "lip-20", "options": TINY, "metadata": {}}
    engine.save_run_checkpoint(tmp_path, model, optimizer, engine.TrainState(iteration=1), [({}, {})], **kwargs)
    dead = _dead_pid()
    # A session killed between its renames: its staging copy is the newest and is resumed from.
    os.replace(tmp_path / "last", tmp_path / f".last.old-{dead}")
    shutil.copytree(tmp_path / f".last.old-{dead}", tmp_path / f".last.staging-{dead}")
    assert engine.find_run_checkpoint(tmp_path).name == f".last.staging-{dead}"
    engine.save_run_checkpoint(tmp_path, model, optimizer, engine.TrainState(iteration=2), [({}, {})], **kwargs)
    assert [p.name for p in tmp_path.iterdir()] == ["last"]


def test_run_files_on_a_full_disk_name_the_file(tmp_path, monkeypatch):
    import ssfnet.files
    from train.utils import write_json

    monkeypatch.setattr(ssfnet.files.os, "fsync", _enospc)
    with pytest.raises(OSError, match=r"no space left to write .*summary.json: it needs") as err:
        write_json(tmp_path / "summary.json", {"a": 1})
    assert err.value.errno == errno.ENOSPC and list(tmp_path.iterdir()) == []


def test_correction_save_on_a_full_disk_leaves_no_temporary(tmp_path, monkeypatch):
    import ssfnet.data.corrections as corrections

    image = np.zeros((32, 32, 3), np.uint8)
    labels = np.zeros((32, 32), np.uint8)
    monkeypatch.setattr(corrections.os, "fsync", _enospc)  # the write itself fails: the temp exists by then
    with pytest.raises(OSError) as err:
        save_correction(tmp_path, image, labels, "lip-20")
    assert err.value.errno == errno.ENOSPC
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_sweep_removes_debris_of_killed_saves_only(tmp_path):
    image = np.zeros((32, 32, 3), np.uint8)
    labels = np.zeros((32, 32), np.uint8)
    kept = save_correction(tmp_path, image, labels, "lip-20")
    dead = _dead_pid()
    # A writer killed after placing its image and label, and one killed while writing them.
    (tmp_path / "meta" / ".aaa-1.json.tmp").write_text(f"{dead}\n")
    (tmp_path / "images" / "aaa-1.png").write_bytes(b"png")
    (tmp_path / "labels" / "aaa-1.png").write_bytes(b"png")
    (tmp_path / "meta" / ".bbb-2.json.tmp").write_text(f"{dead}\n")
    (tmp_path / "labels" / ".bbb-2.png.tmp").write_bytes(b"half")
    (tmp_path / "images" / "ccc-3.jpg").write_bytes(b"no claim, no meta")
    # A save in progress in this process.
    (tmp_path / "meta" / ".ddd-4.json.tmp").write_text(f"{os.getpid()}\n")
    (tmp_path / "images" / ".ddd-4.png.tmp").write_bytes(b"writing")
    removed = sweep_corrections(tmp_path)
    assert len(removed) == 6
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == sorted(
        [
            f"images/{kept}.png",
            f"labels/{kept}.png",
            f"meta/{kept}.json",
            "images/.ddd-4.png.tmp",
            "meta/.ddd-4.json.tmp",
        ]
    )
    assert [m["id"] for m in list_corrections(tmp_path)] == [kept]


def test_sweep_finishes_an_interrupted_trash_instead_of_deleting(tmp_path):
    record = save_correction(tmp_path, np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32), np.uint8), "lip-20")
    # trash_correction moves the meta first: killed right after that, image and label have no meta.
    (tmp_path / "trash" / "meta").mkdir(parents=True)
    os.replace(tmp_path / "meta" / f"{record}.json", tmp_path / "trash" / "meta" / f"{record}.json")
    assert len(sweep_corrections(tmp_path)) == 2
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == [
        f"trash/images/{record}.png",
        f"trash/labels/{record}.png",
        f"trash/meta/{record}.json",
    ]


def test_sweep_of_a_read_only_store_does_not_fail(tmp_path, monkeypatch):
    save_correction(tmp_path, np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32), np.uint8), "lip-20")
    (tmp_path / "meta" / ".eee-5.json.tmp").write_text(f"{_dead_pid()}\n")

    def read_only(self, missing_ok=False):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(Path, "unlink", read_only)
    assert sweep_corrections(tmp_path) == []
    assert len(list_corrections(tmp_path)) == 1


def test_app_temp_folders_are_named_by_pid_removed_on_exit_and_swept(tmp_path, monkeypatch):
    from demo import cleanup

    monkeypatch.setattr(cleanup.tempfile, "tempdir", str(tmp_path))
    mine = cleanup.make_temp_dir("ssfnet-app-")
    assert mine.name.startswith(f"ssfnet-app-{os.getpid()}-")
    dead = tmp_path / f"ssfnet-thumbs-{_dead_pid()}-abcd1234"
    dead.mkdir()
    (dead / "t.png").write_bytes(b"x")
    other = tmp_path / "something-else"
    other.mkdir()
    assert cleanup.sweep_stale_temp_dirs(tmp_path) == [dead]
    assert mine.is_dir() and other.is_dir()
    cleanup.remove_temp_dirs()
    assert not mine.exists()


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_remove_the_app_folders(tmp_path, how):
    # What app.py does around launch(), with a sleep for the server.
    script = (
        "import sys, time\n"
        "from demo.cleanup import make_temp_dir, remove_temp_dirs, stop_on_sigterm\n"
        "stop_on_sigterm()\n"
        "try:\n"
        "    for prefix in ('ssfnet-app-', 'ssfnet-thumbs-'):\n"
        "        (make_temp_dir(prefix) / 'file.png').write_bytes(b'x' * 1000)\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(60)\n"
        "except KeyboardInterrupt:\n"
        "    pass\n"
        "finally:\n"
        "    remove_temp_dirs()\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    assert proc.stdout.readline().strip() == "ready"
    assert len(list(tmp_path.glob("ssfnet-*"))) == 2
    proc.send_signal(how)
    assert proc.wait(timeout=30) == 0
    assert list(tmp_path.glob("ssfnet-*")) == []


# SIGTERM while launch() finishes starting; Ctrl-C (SIGINT, what SIGTERM becomes) once it waits.
@pytest.mark.slow
@pytest.mark.parametrize("how, settle", [(signal.SIGTERM, 0.0), (signal.SIGINT, 3.0)])
def test_app_py_with_a_bad_checkpoint_says_one_line_and_leaves_nothing_on_exit(saved, tmp_path, how, settle):

    from helpers import free_port

    bad = tmp_path / "checkpoints" / "bad"
    shutil.copytree(saved, bad)
    (bad / "metadata.json").write_text("[]")
    temp = tmp_path / "tmp"
    temp.mkdir()
    stale = temp / f"ssfnet-app-{_dead_pid()}-abcd1234"  # what a killed app left
    stale.mkdir()
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "GRADIO_ANALYTICS_ENABLED": "False", "TMPDIR": str(temp)}
    args = [sys.executable, "app.py", "--port", str(port), "--checkpoint", str(bad),
            "--checkpoints-dir", str(bad.parent), "--corrections-dir", str(tmp_path / "corrections")]  # fmt: skip
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_page(proc, port)
        assert not stale.exists(), "start-up sweeps the folders of apps that are gone"
        assert list(temp.glob(f"ssfnet-*-{proc.pid}-*")), "the app made its folders"
        time.sleep(settle)
    finally:
        proc.send_signal(how)
        output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if "JSON object" in line]
    assert len(lines) == 1 and "starting without a model" in lines[0], output
    assert list(temp.glob("ssfnet-*")) == [], "the app's temporary folders are removed on exit"


# ---------------------------------------------------------------------------------------------
# 5. Smaller


def test_truncated_label_is_skipped_by_name_in_fine_tuning(tmp_path):
    from ssfnet import get_label_set
    from train.finetune.data import select_corrections

    rng = np.random.default_rng(0)
    ids = []
    for _ in range(4):
        image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        ids.append(save_correction(tmp_path, image, rng.integers(0, 20, (32, 32), dtype=np.uint8), "lip-20"))
    broken = ids[1]
    label = tmp_path / "labels" / f"{broken}.png"
    label.write_bytes(label.read_bytes()[: len(label.read_bytes()) // 2])
    said = []
    selected = select_corrections([str(tmp_path)], get_label_set("lip-20"), 0.0, 0, said.append)
    (entry,) = selected
    assert broken not in entry["train_ids"] + entry["held_out_ids"]
    assert len(entry["train_ids"]) == 3
    assert [s["id"] for s in entry["skipped"]] == [broken]
    assert any(broken in line and "skipping" in line for line in said)
    assert any("1 unreadable ones skipped" in line for line in said)


def _png(path: Path, size: int = 32) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), 128, np.uint8)).save(path)


def test_predict_writes_one_output_per_input_across_subfolders(saved, tmp_path):
    from ssfnet.predict import collect_images, main, plan_outputs

    photos = tmp_path / "photos"
    for name in ("person.jpg", "person.png", "sub/person.jpg"):
        _png(photos / name)
    for inputs in (
        [str(photos)],
        [str(photos / "person.jpg"), str(photos / "person.png"), str(photos / "sub/person.jpg")],
    ):
        jobs = plan_outputs(collect_images(inputs)[0], tmp_path / "out")
        assert len({j.labels for j in jobs}) == len({j.overlay for j in jobs}) == 3
    out = tmp_path / "parsed"
    assert main([str(photos), "--out", str(out), "--checkpoint", str(saved), "--device", "cpu"]) == 0
    assert len([p for p in out.rglob("*.png") if not p.name.endswith("_overlay.png")]) == 3


@pytest.mark.parametrize("bad", ["abc\n", "abc\r", "../abc", "abc/def", "", ".abc", "abc.json"])
def test_correction_ids_must_match_whole(bad):
    with pytest.raises(ValueError, match="invalid correction id"):
        _check_id(bad)
    assert _check_id("abc-1_2") == "abc-1_2"


def test_nan_is_never_written_into_json(tmp_path):
    from train.utils import JsonlWriter, write_json

    record = save_correction(tmp_path / "c", np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32), np.uint8), "lip-20",
                             extra={"score": math.nan, "nested": [math.inf, 1.5]})  # fmt: skip
    meta = _strict_json((tmp_path / "c" / "meta" / f"{record}.json").read_text())
    assert meta["extra"] == {"score": None, "nested": [None, 1.5]}
    path = save_checkpoint(_tiny(), tmp_path / "ck", variant="ssfnet_lite", label_set="lip-20", options=TINY,
                           metadata={"metrics": {"miou": math.nan}})  # fmt: skip
    assert _strict_json((path / "metadata.json").read_text())["metrics"]["miou"] is None
    assert _strict_json(write_json(tmp_path / "s.json", {"loss": math.nan}).read_text()) == {"loss": None}
    log = JsonlWriter(tmp_path / "log.jsonl")
    log.write({"loss": -math.inf})
    log.close()
    assert _strict_json((tmp_path / "log.jsonl").read_text()) == {"loss": None}


@pytest.mark.parametrize("umask, folder_mode, file_mode", [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640)])
def test_published_checkpoints_are_readable_as_the_umask_allows(tmp_path, umask, folder_mode, file_mode):
    previous = os.umask(umask)
    try:
        path = save_checkpoint(_tiny(), tmp_path / "ck", variant="ssfnet_lite", label_set="lip-20", options=TINY)
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == folder_mode
    for file in path.iterdir():
        assert file.stat().st_mode & 0o777 == file_mode, file.name


def test_folder_dataset_whose_names_never_match_says_so(tmp_path):
    from ssfnet.data.layouts import FolderDataset

    (tmp_path / "labels").mkdir()
    for i in range(3):
        _png(tmp_path / "images" / f"photo{i}.jpg")
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "labels" / f"photo{i}_label.png")
    with pytest.raises(ValueError, match="no image in .* has a label of the same name") as err:
        FolderDataset(tmp_path)
    assert "photo0.jpg" in str(err.value) and "photo0_label.png" in str(err.value)
    for label in (tmp_path / "labels").iterdir():
        label.unlink()
    with pytest.raises(ValueError, match="holds no label maps"):
        FolderDataset(tmp_path)
