"""Checkpoints: sharding, bit-exact round trip, strict loading, corruption, wrappers."""

import json

import pytest
import torch
from helpers import TINY
from safetensors.torch import load_file

from ssfnet import CheckpointError, build_model, list_checkpoints, load_checkpoint, save_checkpoint
from ssfnet.checkpoint import clean_state_dict, load_into, load_state_dict


def _tiny(seed=0):
    torch.manual_seed(seed)
    model = build_model("ssfnet_lite", 20, **TINY)
    with torch.no_grad():  # non-trivial batch-norm statistics too
        for buf in model.buffers():
            if buf.is_floating_point():
                buf.uniform_(0.5, 1.5)
    return model


def test_round_trip_bit_exact_and_sharded(tmp_path):
    model = _tiny()
    path = save_checkpoint(model, tmp_path / "ck", variant="ssfnet_lite", label_set="lip-20", options=TINY,
                           metadata={"metrics": {"miou": 12.5}}, max_shard_bytes=1_000_000)  # fmt: skip
    meta = json.loads((path / "metadata.json").read_text())
    assert len(meta["shards"]) > 1 and meta["metrics"]["miou"] == 12.5
    assert all(s["bytes"] < 1_100_000 for s in meta["shards"])
    assert meta["split_tensors"], "a tensor above the shard limit is split into parts"
    loaded, meta2 = load_checkpoint(path)
    ref = model.state_dict()
    got = loaded.state_dict()
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    assert meta2["label_set"] == "lip-20" and not loaded.training


def test_fp16_storage_halves_size(tmp_path):
    model = _tiny()
    a = save_checkpoint(model, tmp_path / "a", variant="ssfnet_lite", label_set="lip-20", options=TINY)
    b = save_checkpoint(model, tmp_path / "b", variant="ssfnet_lite", label_set="lip-20", options=TINY,
                        dtype=torch.float16)  # fmt: skip
    size = lambda p: sum(f.stat().st_size for f in p.glob("*.safetensors"))
    assert size(b) < 0.55 * size(a)
    loaded, meta = load_checkpoint(b)
    assert meta["dtype"] == "float16"
    assert next(loaded.parameters()).dtype == torch.float32


def test_never_overwrites_unless_asked(tmp_path):
    model = _tiny()
    save_checkpoint(model, tmp_path / "ck", variant="ssfnet_lite", label_set="lip-20", options=TINY)
    with pytest.raises(FileExistsError):
        save_checkpoint(model, tmp_path / "ck", variant="ssfnet_lite", label_set="lip-20", options=TINY)
    other = _tiny(seed=1)
    save_checkpoint(other, tmp_path / "ck", variant="ssfnet_lite", label_set="lip-20", options=TINY, overwrite=True)
    loaded, _ = load_checkpoint(tmp_path / "ck")
    assert torch.equal(loaded.head[-1].weight, other.head[-1].weight)
    assert [p.name for p in tmp_path.iterdir()] == ["ck"], "no temporaries left behind"


def test_strict_loading_names_keys(tmp_path):
    model = _tiny()
    state = dict(model.state_dict())
    state.pop("head.3.weight")
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"missing keys \['head.3.weight'\].*unexpected keys \['extra.weight'\]"):
        load_into(_tiny(), state)
    wrong = build_model("ssfnet_lite", 7, **TINY)
    save_checkpoint(wrong, tmp_path / "ck", variant="ssfnet_lite", label_set="pascal-person-part-7", options=TINY)
    meta = json.loads((tmp_path / "ck" / "metadata.json").read_text())
    meta["num_classes"], meta["label_set"] = 20, "lip-20"  # metadata that lies about the head
    (tmp_path / "ck" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(tmp_path / "ck")


def test_wrappers_are_stripped(tmp_path):
    model = _tiny()
    wrapped = torch.nn.Module()
    wrapped.module = model  # what DistributedDataParallel looks like
    compiled = torch.nn.Module()
    compiled._orig_mod = wrapped
    save_checkpoint(compiled, tmp_path / "ck", variant="ssfnet_lite", label_set="lip-20", options=TINY)
    keys = set()
    for f in (tmp_path / "ck").glob("*.safetensors"):
        keys |= set(load_file(str(f)))
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in keys)
    assert list(clean_state_dict({"_orig_mod.module.a.b": 1})) == ["a.b"]
    load_checkpoint(tmp_path / "ck")


def test_corrupt_and_truncated_files(tmp_path):
    model = _tiny()
    path = save_checkpoint(model, tmp_path / "ck", variant="ssfnet_lite", label_set="lip-20", options=TINY)
    shard = sorted(path.glob("*.safetensors"))[0]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_state_dict(path, verify=False)  # safetensors' own check catches truncation too
    (path / "metadata.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "absent")
    shard.unlink()


def test_list_checkpoints_skips_junk(tmp_path):
    model = _tiny()
    save_checkpoint(model, tmp_path / "a", variant="ssfnet_lite", label_set="lip-20", options=TINY)
    (tmp_path / "junk").mkdir()
    (tmp_path / ".a.tmp-123").mkdir()
    assert [p.name for p, _ in list_checkpoints(tmp_path)] == ["a"]
    assert list_checkpoints(tmp_path / "nothing") == []
