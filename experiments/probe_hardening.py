"""Kill -9 loops against the writers, and a table of what they leave (not collected by pytest).

    python -m experiments.probe_hardening --kills 20 --corrections-kills 40

Each round forks a writer that saves in a loop (``save_checkpoint(overwrite=True)`` of a
checkpoint, or ``save_correction`` of a photo), kills it with SIGKILL at a random moment, and
counts what is on disk before and after the clean-up the next start runs
(:func:`ssfnet.list_checkpoints` / :func:`ssfnet.data.corrections.sweep_corrections`):
whether ``best/`` exists and verifies, and the bytes of temporaries and orphans.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ssfnet import build_model, list_checkpoints, load_checkpoint, save_checkpoint
from ssfnet.checkpoint import CheckpointError, load_state_dict
from ssfnet.data.corrections import list_corrections, load_correction, save_correction, sweep_corrections


def _bytes(paths) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file())


def _debris(root: Path) -> list[Path]:
    """Files under hidden entries of ``root`` (temporaries and old copies of checkpoints)."""
    return [f for entry in root.iterdir() if entry.name.startswith(".") for f in entry.rglob("*")]


def _fork_loop(work) -> int:
    """Fork a child that runs ``work()`` forever; returns its pid (the child never returns)."""
    pid = os.fork()
    if pid == 0:
        try:
            while True:
                work()
        finally:
            os._exit(0)
    return pid


def _kill_after(pid: int, delay: float) -> None:
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)  # reaped, as a supervisor or shell would


def _widen_swap(pause: float) -> None:
    """Sleep in this (child) process between the two renames of a swap, so that kills land there."""
    import ssfnet.checkpoint.store as ckpt

    replace = os.replace

    def slow(src, dst):
        replace(src, dst)
        if ".old-" in str(dst):
            time.sleep(pause)

    ckpt.os = type(os)("os_with_a_slow_swap")
    ckpt.os.__dict__.update(os.__dict__)
    ckpt.os.replace = slow


def checkpoint_loop(root: Path, kills: int, rng: random.Random, swap_pause: float = 0.0) -> dict:
    torch.manual_seed(0)
    model = build_model("ssfnet_lite", 20)  # ~45 MB of fp32 weights, fp16 on disk
    kwargs = {"variant": "ssfnet_lite", "label_set": "lip-20", "dtype": torch.float16, "overwrite": True}
    began = time.perf_counter()
    save_checkpoint(model, root / "best", **kwargs)
    save_s = time.perf_counter() - began
    stats = {"kills": kills, "save_s": save_s, "missing_before": 0, "invalid_after": 0, "debris_before": []}
    stats["debris_after"] = []
    for _ in range(kills):

        def work():
            if swap_pause:
                _widen_swap(swap_pause)
            save_checkpoint(model, root / "best", **kwargs)

        pid = _fork_loop(work)
        _kill_after(pid, rng.uniform(0.0, 2.5 * (save_s + swap_pause)))
        stats["missing_before"] += not (root / "best").is_dir()
        stats["debris_before"].append(_bytes(_debris(root)))
        list_checkpoints(root)  # what the app or the trainer does on start
        try:
            load_state_dict(root / "best")
        except CheckpointError:
            stats["invalid_after"] += 1
        stats["debris_after"].append(_bytes(_debris(root)))
    return stats


def corrections_loop(root: Path, kills: int, rng: random.Random) -> dict:
    gen = np.random.default_rng(0)
    image = gen.integers(0, 256, (768, 512, 3), dtype=np.uint8)
    labels = gen.integers(0, 20, (768, 512), dtype=np.uint8)
    began = time.perf_counter()
    save_correction(root, image, labels, "lip-20")
    save_s = time.perf_counter() - began
    stats = {"kills": kills, "save_s": save_s, "orphans_before": [], "orphans_after": [], "unreadable_after": 0}

    def orphans() -> list[Path]:
        records = {m["id"] for m in list_corrections(root)}
        return [p for p in root.rglob("*") if p.is_file() and p.name.lstrip(".").split(".", 1)[0] not in records]

    for _ in range(kills):
        pid = _fork_loop(lambda: save_correction(root, image, labels, "lip-20"))
        _kill_after(pid, rng.uniform(0.0, 3 * save_s))
        found = orphans()
        stats["orphans_before"].append((len(found), _bytes(found)))
        sweep_corrections(root)
        found = orphans()
        stats["orphans_after"].append((len(found), _bytes(found)))
    for meta in list_corrections(root):
        try:
            load_correction(root, meta["id"])
        except (OSError, ValueError):
            stats["unreadable_after"] += 1
    stats["records"] = len(list_corrections(root))
    return stats


_HOSTILE = [None, "", "20", "lip-20", 20, 0, -1, 1e10, 10**10, 2**63, True, [], {}, [1, 2], {"a": 1}, "../x",
            "/etc/passwd", "model-00001-of-00001.safetensors", "0" * 64, float("nan")]  # fmt: skip


def _paths(value, prefix=()):
    """Every (path of keys) into a JSON value, containers included."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


def _tamper(folder: Path, rng: random.Random) -> str:
    """One random change to a checkpoint folder; returns what was done."""
    meta_path = folder / "metadata.json"
    meta = json.loads(meta_path.read_text())
    shards = sorted(folder.glob("*.safetensors"))
    kind = rng.choice(["set", "set", "set", "delete", "whole", "flip", "truncate"])
    if kind in ("flip", "truncate"):
        shard = rng.choice(shards)
        data = bytearray(shard.read_bytes())
        if kind == "flip":
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        else:
            data = data[: rng.randrange(len(data))]
        shard.write_bytes(bytes(data))
        return kind
    if kind == "whole":
        meta_path.write_text(json.dumps(rng.choice(_HOSTILE)))
        return kind
    path = rng.choice([p for p in _paths(meta) if p and p[0] not in ("metrics", "training")] or [("name",)])
    parent = meta
    for key in path[:-1]:
        parent = parent[key]
    value = rng.choice(_HOSTILE)
    if kind == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    meta_path.write_text(json.dumps(meta))
    return f"{kind} {'.'.join(map(str, path))}" + ("" if kind == "delete" else f" = {value!r}")


def tamper_loop(root: Path, rounds: int, rng: random.Random) -> dict:
    """Load checkpoints changed at random: each must load exactly, or fail with CheckpointError."""
    torch.manual_seed(0)
    options = {"ppm_bin_channels": 8, "ppm_channels": 16, "top_channels": 16, "mid_channels": 8, "high_channels": 8,
               "aux_channels": 8}  # fmt: skip
    model = build_model("ssfnet_lite", 20, **options)
    original = save_checkpoint(model, root / "original", variant="ssfnet_lite", label_set="lip-20", options=options,
                               dtype=torch.float16, max_shard_bytes=4_000_000)  # fmt: skip
    reference = {k: v.half() for k, v in model.state_dict().items() if v.is_floating_point()}
    stats = {"rounds": rounds, "refused": 0, "loaded": 0, "loaded_altered": 0, "other": [], "slowest_s": 0.0}
    for i in range(rounds):
        folder = root / f"t{i}"
        shutil.copytree(original, folder)
        what = _tamper(folder, rng)
        began = time.perf_counter()
        try:
            loaded, _ = load_checkpoint(folder)
        except CheckpointError:
            stats["refused"] += 1
        except Exception as err:  # anything else is a bug: the loader must say what is wrong
            stats["other"].append(f"{what}: {type(err).__name__}: {err}")
        else:
            stats["loaded"] += 1
            state = loaded.state_dict()
            if any(not torch.equal(state[k].half(), v) for k, v in reference.items()):
                stats["loaded_altered"] += 1
        stats["slowest_s"] = max(stats["slowest_s"], time.perf_counter() - began)
        shutil.rmtree(folder)
    stats["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return stats


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m experiments.probe_hardening", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="kills during save_checkpoint(overwrite=True)")
    parser.add_argument("--corrections-kills", type=int, default=40, help="kills during save_correction")
    parser.add_argument("--swap-pause", type=float, default=0.3, help="seconds between the renames in the 2nd loop")
    parser.add_argument("--tamper", type=int, default=300, help="random changes to a checkpoint, each loaded")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the recoveries' own warnings would drown the table
    torch.set_num_threads(1)  # forked children must not inherit a started OpenMP pool
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="probe-hardening-") as tmp:
        loops = [
            ("at random moments", checkpoint_loop(Path(tmp) / "checkpoints", args.kills, rng)),
            (
                f"with the swap widened to {args.swap_pause} s",
                checkpoint_loop(Path(tmp) / "swap", args.kills, rng, swap_pause=args.swap_pause),
            ),
        ]
        co = corrections_loop(Path(tmp) / "corrections", args.corrections_kills, rng)
        ta = tamper_loop(Path(tmp) / "tamper", args.tamper, rng)
    mb = 1e6
    for how, ck in loops:
        print(f"save_checkpoint(overwrite=True): {ck['kills']} kills {how} (one save: {ck['save_s']:.2f} s)")
        print(f"  best/ absent right after the kill          {ck['missing_before']:>4} of {ck['kills']}")
        print(f"  best/ absent or failing to verify after    {ck['invalid_after']:>4} of {ck['kills']} (after listing)")
        print(f"  debris right after a kill (max / total)    {max(ck['debris_before']) / mb:8.1f} / "
              f"{sum(ck['debris_before']) / mb:8.1f} MB")  # fmt: skip
        print(f"  debris after the start-up clean-up (max)   {max(ck['debris_after']) / mb:8.1f} MB")
    print(f"save_correction: {co['kills']} kills at random moments (one save: {co['save_s']:.2f} s)")
    before = [n for n, _ in co["orphans_before"]]
    print(f"  kills leaving orphans (files / MB max)     {sum(1 for n in before if n):>4} of {co['kills']} "
          f"({max(before)} / {max(b for _, b in co['orphans_before']) / mb:.2f})")  # fmt: skip
    print(f"  orphans after sweep_corrections (max)      {max(n for n, _ in co['orphans_after']):>4} files")
    print(f"  complete records / unreadable              {co['records']:>4} / {co['unreadable_after']}")
    print(f"tampered checkpoints: {ta['rounds']} random changes (metadata fields, whole metadata, shard bytes)")
    print(f"  refused with CheckpointError               {ta['refused']:>4}")
    print(f"  loaded (change harmless) / weights altered {ta['loaded']:>4} / {ta['loaded_altered']}")
    print(f"  any other exception                        {len(ta['other']):>4}")
    for line in ta["other"][:10]:
        print(f"    {line}")
    print(f"  slowest load / peak RSS of the probe       {ta['slowest_s']:.2f} s / {ta['max_rss_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
