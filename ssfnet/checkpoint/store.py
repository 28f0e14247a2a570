"""Checkpoints: safetensors shards under a size limit plus one JSON metadata file.

A checkpoint is a folder::

    metadata.json                 variant, options, label set, training data, metrics, shards
    model-00001-of-00004.safetensors
    ...

Loading never unpickles anything and is strict: a missing or unexpected tensor
is an error that names it. Writing goes to a temporary folder beside the target
that is renamed into place, so a reader never sees half a checkpoint.

Nothing in ``metadata.json`` is trusted: :func:`validate_metadata` checks every field
the loader uses (types, ranges, known variant and label set, plain shard names with
mandatory SHA-256), and the safetensors headers are checked against it before any
tensor is read. Every folder this project has written carries the hashes (since the
first version), so a folder without them is refused rather than loaded unverified.

Replacing a checkpoint takes two renames (old away, new in). A process killed between
them leaves ``.<name>.old-<pid>`` and ``.<name>.tmp-<pid>-*``; :func:`recover_checkpoint`
(run on reading, listing and saving) finishes or rolls back such a swap and removes
temporaries whose writer is gone.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import logging
import math
import os
import shutil
import stat
import tempfile
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ..build import build_model
from ..files import current_umask, json_safe, replace_dir, sha256_file, writer_alive
from ..labels import LABEL_SETS
from .recovery import LEGACY_TEMPORARY_AGE_S, recover_checkpoint, recover_checkpoints
from .schema import (
    _FLOAT_DTYPES,
    FORMAT,
    FORMAT_VERSION,
    MAX_METADATA_BYTES,
    METADATA_FILE,
    CheckpointError,
    validate_metadata,
)

logger = logging.getLogger("ssfnet.checkpoint")

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "LEGACY_TEMPORARY_AGE_S",
    "MAX_SHARD_BYTES",
    "METADATA_FILE",
    "CheckpointError",
    "check_shards",
    "clean_state_dict",
    "list_checkpoints",
    "load_checkpoint",
    "load_into",
    "load_state_dict",
    "read_metadata",
    "recover_checkpoint",
    "recover_checkpoints",
    "save_checkpoint",
    "scan_checkpoints",
    "unwrap_model",
    "validate_metadata",
    "writer_alive",
]

MAX_SHARD_BYTES = 9_500_000  # below the 10 MB that Hugging Face accepts without LFS
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_PART = ".__part"
_HEADER_FLOATS = set(_FLOAT_DTYPES.values()) | {"F8_E4M3", "F8_E5M2"}


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


# ---------------------------------------------------------------------------------------------
# Writing


def _disk_full(err: BaseException) -> bool:
    if isinstance(err, OSError):
        return err.errno in (errno.ENOSPC, errno.EDQUOT)
    return "No space left" in str(err) or "Disk quota" in str(err)  # safetensors wraps the OS error


def _new_metadata(
    net: nn.Module,
    state: dict[str, torch.Tensor],
    directory: Path,
    variant: str,
    label_set: str,
    options: dict | None,
    metadata: dict | None,
    dtype: torch.dtype | None,
) -> dict:
    """The metadata a checkpoint of ``net`` records, checked as the loader would (the shards are set on writing).

    Raises:
        ValueError: the metadata would not load.
    """
    first_float = next((v.dtype for v in state.values() if v.is_floating_point()), torch.float32)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": directory.name,
        "variant": variant,
        "options": options or {},
        "num_classes": int(getattr(net, "num_classes", 0)),
        "label_set": label_set,
        "dtype": str(dtype or first_float).replace("torch.", ""),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "parameters": int(sum(p.numel() for p in net.parameters())),
        **json_safe(metadata or {}),
        "shards": [{"file": "model-00001-of-00001.safetensors", "sha256": "0" * 64}],  # checked here, set on writing
        "split_tensors": {},
    }
    try:
        validate_metadata(meta, f"metadata for {directory}")
    except CheckpointError as err:
        raise ValueError(str(err)) from None
    return meta


def _no_space(directory: Path, needed: int) -> OSError:
    """The error of a checkpoint that does not fit: the folder, the space it needs and the space free."""
    free = shutil.disk_usage(directory.parent).free
    return OSError(
        errno.ENOSPC,
        f"no space left to write checkpoint {directory}: it needs about {needed / 1e6:.1f} MB, "
        f"{free / 1e6:.1f} MB are free in {directory.parent}"
        + ("; the existing checkpoint is unchanged" if directory.exists() else ""),
    )


def _write_files(folder: Path, shards: list[dict[str, torch.Tensor]], split: dict, meta: dict, mode: int) -> None:
    """Write the shards and ``metadata.json`` (``meta`` with the shards' names, sizes and hashes) into ``folder``."""
    shard_info = []
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(folder / name), metadata={"format": "pt"})
        os.chmod(folder / name, mode & 0o666)
        shard_info.append({"file": name, "sha256": sha256_file(folder / name), "bytes": (folder / name).stat().st_size})
    meta["shards"], meta["split_tensors"] = shard_info, split
    with open(folder / METADATA_FILE, "w") as f:
        json.dump(meta, f, indent=2, sort_keys=False, allow_nan=False)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(folder / METADATA_FILE, mode & 0o666)


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

    The folder and its files get the usual permissions (0755 / 0644 less the umask), so a
    shared model folder is readable by the other users the umask lets in.

    Args:
        model: The model (DDP / compile wrappers are stripped).
        directory: Target folder; must not exist unless ``overwrite``.
        variant: Variant name passed to :func:`ssfnet.build_model` on loading.
        label_set: Name of the label set the model predicts.
        options: Model options (ablation switches ...) for ``build_model``.
        metadata: Extra JSON-serialisable fields (training data, metrics, lineage ...); numbers
            that are not finite (NaN, inf) are written as ``null``.
        dtype: Store floating tensors in this dtype (e.g. ``torch.float16``);
            loading casts back to the model's dtype.
        max_shard_bytes: Upper bound of one shard file's tensor bytes.
        overwrite: Replace an existing checkpoint (the old one stays complete
            until the new one is in place; see :func:`recover_checkpoint`).

    Returns:
        The checkpoint folder.

    Raises:
        FileExistsError: ``directory`` exists and not ``overwrite``.
        ValueError: the metadata would not load (e.g. a label set of another size than the model's output).
        OSError: writing failed; with ``errno.ENOSPC`` when the disk is full, the message naming
            the folder and the space needed. Nothing is left behind and ``directory`` is unchanged.
    """
    directory = Path(directory)
    recover_checkpoint(directory)
    if directory.exists() and not overwrite:
        raise FileExistsError(f"checkpoint {directory} already exists")
    net = unwrap_model(model)
    state = clean_state_dict(net.state_dict())
    if dtype is not None:
        state = OrderedDict((k, v.to(dtype) if v.is_floating_point() else v) for k, v in state.items())
    meta = _new_metadata(net, state, directory, variant, label_set, options, metadata, dtype)
    shards, split = _split_into_shards(state, max_shard_bytes)
    needed = sum(v.numel() * v.element_size() for s in shards for v in s.values()) + 65536 * len(shards)
    directory.parent.mkdir(parents=True, exist_ok=True)
    recover_checkpoints(directory.parent)  # leftovers of dead writers take space too
    if shutil.disk_usage(directory.parent).free < needed:
        raise _no_space(directory, needed)
    mode = 0o777 & ~current_umask()
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-{os.getpid()}-", dir=directory.parent))
    try:
        _write_files(tmp, shards, split, meta, mode)
        os.chmod(tmp, mode)  # mkdtemp makes it 0700
        replace_dir(tmp, directory)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if _disk_full(err):
            raise _no_space(directory, needed) from err
        if isinstance(err, SafetensorError):
            raise OSError(f"could not write checkpoint {directory}: {err}") from err
        raise
    return directory


# ---------------------------------------------------------------------------------------------
# Reading


def read_metadata(directory: str | Path) -> dict:
    """The metadata of a checkpoint folder, validated (see :func:`validate_metadata`).

    A pure read: nothing is renamed or removed. Scanning (:func:`scan_checkpoints`), loading
    (:func:`load_state_dict`) and saving finish or roll back an interrupted replacement of the
    folder first (:func:`recover_checkpoint`); a folder caught in one reads as absent here.

    Raises:
        CheckpointError: no such folder, no metadata, or metadata that fails validation (the message names the field).
    """
    directory = Path(directory)
    path = directory / METADATA_FILE
    if not directory.is_dir():
        raise CheckpointError(f"no checkpoint at {directory} (expected a folder with {METADATA_FILE})")
    try:
        info = path.stat()
        # A FIFO or a device (a link to /dev/zero) would block or never end: only a file is read.
        if not stat.S_ISREG(info.st_mode):
            raise CheckpointError(f"{path} is not a file: not a checkpoint's metadata")
        if info.st_size > MAX_METADATA_BYTES:
            raise CheckpointError(f"{path} is {info.st_size / 1e6:.0f} MB: not a checkpoint's metadata")
        with open(path, "rb") as f:
            data = f.read(MAX_METADATA_BYTES + 1)
    except FileNotFoundError:
        raise CheckpointError(f"{directory} has no {METADATA_FILE}: not a checkpoint folder") from None
    except OSError as err:
        raise CheckpointError(f"{path} cannot be read: {err.strerror or err}") from None
    if len(data) > MAX_METADATA_BYTES:
        raise CheckpointError(f"{path} grew past {MAX_METADATA_BYTES / 1e6:.0f} MB: not a checkpoint's metadata")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CheckpointError(f"{path} is not UTF-8 text (byte {err.start}): corrupt") from None
    try:
        meta = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        raise CheckpointError(f"{path} is corrupt: {err}") from None
    return validate_metadata(meta, str(path))


def _shard_headers(path: Path) -> dict[str, tuple[str, list[int]]]:
    """``name -> (dtype, shape)`` of a safetensors file, read from its header only."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: (f.get_slice(k).get_dtype(), list(f.get_slice(k).get_shape())) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint shard {path} is corrupt or truncated: {err}") from None


def _check_headers(directory: Path, meta: dict, headers: dict[str, tuple[str, list[int]]]) -> None:
    """Check the tensors the shards declare against the metadata, before any is read."""
    wanted = _FLOAT_DTYPES[meta["dtype"]]
    for key, (dtype, _) in headers.items():
        if dtype in _HEADER_FLOATS and dtype != wanted:
            raise CheckpointError(
                f"checkpoint {directory}: tensor {key} is stored as {dtype}, but the field 'dtype' says {meta['dtype']}"
            )
    for name, info in meta.get("split_tensors", {}).items():
        parts = info["parts"]
        present = [k for k in headers if k.startswith(f"{name}{_PART}")]
        if parts != len(present):
            raise CheckpointError(
                f"checkpoint {directory}: split_tensors[{name!r}] says {parts} parts, the shards hold {len(present)}"
            )
        keys = [f"{name}{_PART}{i}" for i in range(parts)]
        missing = [k for k in keys if k not in headers]
        if missing:
            raise CheckpointError(f"checkpoint {directory} lacks parts {missing[:5]} of {name}")
        if len({headers[k][0] for k in keys}) != 1 or any(len(headers[k][1]) != 1 for k in keys):
            raise CheckpointError(f"checkpoint {directory}: the parts of {name} are not 1-D tensors of one dtype")
        total = sum(headers[k][1][0] for k in keys)
        if total != math.prod(info["shape"]):
            raise CheckpointError(
                f"checkpoint {directory}: split_tensors[{name!r}] has shape {info['shape']} "
                f"({math.prod(info['shape'])} values), its parts hold {total}"
            )


def _read_headers(directory: Path, meta: dict, *, verify: bool) -> tuple[list[Path], dict[str, tuple[str, list[int]]]]:
    """The shard files of a checkpoint and the tensors their headers declare, checked against ``meta``.

    Args:
        verify: Also check each shard's SHA-256 (reads every byte; the headers alone are a few kB).

    Raises:
        CheckpointError: a shard is missing, a link, of another size or hash than recorded, or
            its headers do not hold what the metadata says (dtype, split tensors' parts).
    """
    headers: dict[str, tuple[str, list[int]]] = {}
    paths = []
    for shard in meta["shards"]:
        path = directory / shard["file"]
        if path.is_symlink():
            raise CheckpointError(f"checkpoint shard {path} is a link: shards must be files inside the folder")
        if not path.is_file():
            raise CheckpointError(f"checkpoint shard {path} is missing")
        if "bytes" in shard and path.stat().st_size != shard["bytes"]:
            size = path.stat().st_size
            raise CheckpointError(
                f"checkpoint shard {path} is corrupt or truncated ({size} bytes, expected {shard['bytes']})"
            )
        if verify and sha256_file(path) != shard["sha256"]:
            raise CheckpointError(f"checkpoint shard {path} is corrupt or truncated (checksum mismatch)")
        found = _shard_headers(path)
        repeated = sorted(found.keys() & headers.keys())
        if repeated:
            raise CheckpointError(f"checkpoint {directory}: tensor {repeated[0]} is in more than one shard")
        headers.update(found)
        paths.append(path)
    _check_headers(directory, meta, headers)
    return paths, headers


def check_shards(directory: str | Path, meta: dict | None = None) -> dict:
    """Check a checkpoint folder as far as its shard headers, without reading the weights; its metadata.

    What :func:`scan_checkpoints` offers: a folder whose shards are missing, of the wrong size, or
    whose headers cannot be honoured (a split tensor of 10^10 parts) is refused when listed, not
    only when chosen. The hashes are checked on loading.

    Raises:
        CheckpointError: see :func:`read_metadata` and :func:`load_state_dict`.
    """
    directory = Path(directory)
    meta = read_metadata(directory) if meta is None else meta
    _read_headers(directory, meta, verify=False)
    return meta


def load_state_dict(directory: str | Path, *, verify: bool = True) -> tuple[OrderedDict[str, torch.Tensor], dict]:
    """Read the tensors and metadata of a checkpoint folder (no model is built).

    Args:
        directory: Checkpoint folder.
        verify: Check each shard's SHA-256 against the metadata first.

    Raises:
        CheckpointError: the metadata is invalid, or a shard is missing, truncated, corrupt,
            altered or holds other tensors than the metadata says.
    """
    directory = Path(directory)
    recover_checkpoint(directory)  # an interrupted replacement is finished or rolled back first
    meta = read_metadata(directory)
    paths, _ = _read_headers(directory, meta, verify=verify)
    merged: dict[str, torch.Tensor] = {}
    for path in paths:
        try:
            merged.update(load_file(str(path)))
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"checkpoint shard {path} is corrupt or truncated: {err}") from None
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for name, info in meta.get("split_tensors", {}).items():
        keys = [f"{name}{_PART}{i}" for i in range(info["parts"])]
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

    Raises:
        CheckpointError: see :func:`load_state_dict` and :func:`load_into`; also when the
            model's output does not have one channel per class of the label set.
    """
    state, meta = load_state_dict(directory)
    try:
        model = build_model(meta["variant"], meta["num_classes"], **meta.get("options", {}))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {directory}: its variant and options do not build a model: {err}") from None
    load_into(model, state, source=str(directory))
    outputs = getattr(model, "num_classes", meta["num_classes"])
    if outputs != LABEL_SETS[meta["label_set"]].num_classes:
        raise CheckpointError(
            f"checkpoint {directory}: the model has {outputs} outputs but label set {meta['label_set']} "
            f"has {LABEL_SETS[meta['label_set']].num_classes} classes"
        )
    return model.to(device).eval(), meta


def scan_checkpoints(root: str | Path) -> tuple[list[tuple[Path, dict]], list[tuple[Path, str]]]:
    """The checkpoint folders directly under ``root``: the usable ones and the broken ones.

    Hidden folders (temporaries being written) are not listed; interrupted replacements are
    finished or rolled back first (:func:`recover_checkpoints`). One broken folder never hides
    the others.

    A folder is usable when its metadata is valid and its shards' headers hold what the
    metadata says (:func:`check_shards`; the hashes are checked on loading).

    Returns:
        ``(usable, unusable)``: ``(folder, metadata)`` newest first, and ``(folder, reason)``
        by name, for folders with a ``metadata.json`` that cannot be read (not UTF-8, not a
        file ...), fails validation or does not fit its shards (folders without one are not
        checkpoints and are left out).
    """
    root = Path(root)
    usable: list[tuple[Path, dict]] = []
    unusable: list[tuple[Path, str]] = []
    if not root.is_dir():
        return usable, unusable
    recover_checkpoints(root)
    for sub in sorted(root.iterdir()):
        if sub.name.startswith(".") or not sub.is_dir():
            continue
        try:
            usable.append((sub, check_shards(sub)))
        except CheckpointError as err:
            if os.path.lexists(sub / METADATA_FILE):
                unusable.append((sub, str(err).replace(f"{sub}{os.sep}", "").replace(str(sub), sub.name)))
    usable.sort(key=lambda item: (item[1].get("created", ""), item[0].name), reverse=True)
    return usable, unusable


def list_checkpoints(root: str | Path) -> list[tuple[Path, dict]]:
    """Every usable checkpoint folder directly under ``root`` with its metadata, newest first.

    Folders that are not valid checkpoints (or temporaries being written) are skipped; see
    :func:`scan_checkpoints` for the broken ones and why.
    """
    return scan_checkpoints(root)[0]
