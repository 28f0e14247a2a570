"""Checkpoints: safetensors shards under a size limit plus one JSON metadata file.

A checkpoint is a folder::

    metadata.json                 variant, options, label set, training data, metrics, shards
    model-00001-of-00004.safetensors
    ...

Loading never unpickles anything and is strict: a missing or unexpected tensor
is an error that names it. Writing goes to a temporary folder beside the target
that is renamed into place, so a reader never sees half a checkpoint.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .build import build_model

METADATA_FILE = "metadata.json"
FORMAT = "ssfnet-checkpoint"
FORMAT_VERSION = 1
MAX_SHARD_BYTES = 9_500_000  # below the 10 MB that Hugging Face accepts without LFS
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_PART = ".__part"


class CheckpointError(RuntimeError):
    """A checkpoint folder is missing, corrupt, truncated or does not fit the model."""


def unwrap_model(model: nn.Module) -> nn.Module:
    """Strip DistributedDataParallel and ``torch.compile`` wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def clean_state_dict(state: dict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """Remove wrapper prefixes (``module.``, ``_orig_mod.``) from every key."""
    out = OrderedDict()
    for key, value in state.items():
        while key.startswith(_WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        out[key.replace("._orig_mod.", ".")] = value  # submodules compiled on their own
    return out


def _split_into_shards(
    state: dict[str, torch.Tensor], max_bytes: int
) -> tuple[list[dict[str, torch.Tensor]], dict[str, dict]]:
    """Pack tensors greedily into shards; a tensor larger than a shard is cut into parts."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    sizes = [0]
    split: dict[str, dict] = {}

    def put(name: str, tensor: torch.Tensor) -> None:
        nbytes = tensor.numel() * tensor.element_size()
        if sizes[-1] + nbytes > max_bytes and shards[-1]:
            shards.append({})
            sizes.append(0)
        shards[-1][name] = tensor
        sizes[-1] += nbytes

    for name, tensor in state.items():
        tensor = tensor.detach().cpu().contiguous()
        nbytes = tensor.numel() * tensor.element_size()
        if nbytes <= max_bytes:
            put(name, tensor.clone())
            continue
        flat = tensor.reshape(-1)
        per_part = max(1, max_bytes // tensor.element_size())
        parts = list(torch.split(flat, per_part))
        split[name] = {"shape": list(tensor.shape), "parts": len(parts)}
        for i, part in enumerate(parts):
            put(f"{name}{_PART}{i}", part.clone())
    return shards, split


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(
    model: nn.Module,
    directory: str | Path,
    *,
    variant: str,
    label_set: str,
    options: dict | None = None,
    metadata: dict | None = None,
    dtype: torch.dtype | None = None,
    max_shard_bytes: int = MAX_SHARD_BYTES,
    overwrite: bool = False,
) -> Path:
    """Write ``model``'s weights and metadata to ``directory`` atomically.

    Args:
        model: The model (DDP / compile wrappers are stripped).
        directory: Target folder; must not exist unless ``overwrite``.
        variant: Variant name passed to :func:`ssfnet.build_model` on loading.
        label_set: Name of the label set the model predicts.
        options: Model options (ablation switches ...) for ``build_model``.
        metadata: Extra JSON-serialisable fields (training data, metrics, lineage ...).
        dtype: Store floating tensors in this dtype (e.g. ``torch.float16``);
            loading casts back to the model's dtype.
        max_shard_bytes: Upper bound of one shard file's tensor bytes.
        overwrite: Replace an existing checkpoint (the old one stays complete
            until the new one is in place).

    Returns:
        The checkpoint folder.
    """
    directory = Path(directory)
    if directory.exists() and not overwrite:
        raise FileExistsError(f"checkpoint {directory} already exists")
    net = unwrap_model(model)
    state = clean_state_dict(net.state_dict())
    if dtype is not None:
        state = OrderedDict((k, v.to(dtype) if v.is_floating_point() else v) for k, v in state.items())
    shards, split = _split_into_shards(state, max_shard_bytes)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        shard_info = []
        for i, shard in enumerate(shards, 1):
            name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(tmp / name), metadata={"format": "pt"})
            shard_info.append({"file": name, "sha256": _sha256(tmp / name), "bytes": (tmp / name).stat().st_size})
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": directory.name,
            "variant": variant,
            "options": options or {},
            "num_classes": int(getattr(net, "num_classes", 0)),
            "label_set": label_set,
            "dtype": str(dtype or next(iter(state.values())).dtype).replace("torch.", ""),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "parameters": int(sum(p.numel() for p in net.parameters())),
            **(metadata or {}),
            "shards": shard_info,
            "split_tensors": split,
        }
        with open(tmp / METADATA_FILE, "w") as f:
            json.dump(meta, f, indent=2, sort_keys=False)
            f.flush()
            os.fsync(f.fileno())
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
            os.replace(directory, old)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def read_metadata(directory: str | Path) -> dict:
    """The metadata of a checkpoint folder, validated (raises CheckpointError)."""
    directory = Path(directory)
    path = directory / METADATA_FILE
    if not directory.is_dir():
        raise CheckpointError(f"no checkpoint at {directory} (expected a folder with {METADATA_FILE})")
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{directory} has no {METADATA_FILE}: not a checkpoint folder") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is corrupt: {err}") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an SSFNet checkpoint (format={meta.get('format')!r})")
    for key in ("variant", "num_classes", "label_set", "shards"):
        if key not in meta:
            raise CheckpointError(f"{path} lacks the field {key!r}")
    return meta


def load_state_dict(directory: str | Path, *, verify: bool = True) -> tuple[OrderedDict[str, torch.Tensor], dict]:
    """Read the tensors and metadata of a checkpoint folder (no model is built).

    Args:
        directory: Checkpoint folder.
        verify: Check each shard's SHA-256 against the metadata first.

    Raises:
        CheckpointError: a shard is missing, truncated, corrupt or altered.
    """
    directory = Path(directory)
    meta = read_metadata(directory)
    merged: dict[str, torch.Tensor] = {}
    for shard in meta["shards"]:
        path = directory / shard["file"]
        if not path.is_file():
            raise CheckpointError(f"checkpoint shard {path} is missing")
        if verify and shard.get("sha256") and _sha256(path) != shard["sha256"]:
            raise CheckpointError(f"checkpoint shard {path} is corrupt or truncated (checksum mismatch)")
        try:
            merged.update(load_file(str(path)))
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"checkpoint shard {path} is corrupt or truncated: {err}") from None
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for name, info in meta.get("split_tensors", {}).items():
        keys = [f"{name}{_PART}{i}" for i in range(info["parts"])]
        missing = [k for k in keys if k not in merged]
        if missing:
            raise CheckpointError(f"checkpoint {directory} lacks parts {missing} of {name}")
        state[name] = torch.cat([merged.pop(k) for k in keys]).reshape(info["shape"])
    state.update(merged)
    return state, meta


def load_into(model: nn.Module, state: dict[str, torch.Tensor], *, source: str = "checkpoint") -> None:
    """Strictly load ``state`` into ``model``, casting to each parameter's dtype.

    Raises:
        CheckpointError: naming missing and unexpected keys, or shape mismatches.
    """
    target = unwrap_model(model)
    own = target.state_dict()
    state = clean_state_dict(state)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{source} does not match the model: missing keys {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''}, unexpected keys {unexpected[:10]}"
            f"{' ...' if len(unexpected) > 10 else ''}"
        )
    bad = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if bad:
        k = bad[0]
        raise CheckpointError(f"{source}: {k} has shape {tuple(state[k].shape)}, model has {tuple(own[k].shape)}")
    cast = {k: v.to(own[k].dtype) for k, v in state.items()}
    target.load_state_dict(cast, strict=True)


def load_checkpoint(directory: str | Path, *, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Build the checkpoint's model and load its weights strictly.

    Returns:
        ``(model, metadata)``; the model is in eval mode on ``device``.
    """
    state, meta = load_state_dict(directory)
    model = build_model(meta["variant"], meta["num_classes"], **meta.get("options", {}))
    load_into(model, state, source=str(directory))
    return model.to(device).eval(), meta


def list_checkpoints(root: str | Path) -> list[tuple[Path, dict]]:
    """Every checkpoint folder directly under ``root`` with its metadata, newest first.

    Folders that are not valid checkpoints (or temporaries being written) are skipped.
    """
    root = Path(root)
    found = []
    if not root.is_dir():
        return found
    for sub in root.iterdir():
        if sub.name.startswith(".") or not sub.is_dir():
            continue
        try:
            found.append((sub, read_metadata(sub)))
        except CheckpointError:
            continue
    found.sort(key=lambda item: (item[1].get("created", ""), item[0].name), reverse=True)
    return found
