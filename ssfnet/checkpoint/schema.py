"""What a checkpoint's ``metadata.json`` may hold: :func:`validate_metadata` trusts nothing in it.

Every field the loader uses is checked (types, ranges, a known variant and label set, plain
shard names with mandatory SHA-256); a bad one raises :class:`CheckpointError` naming it.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable
from pathlib import Path

from ..build import MODELS, ModelConfig, list_models
from ..labels import LABEL_SETS
from ..modeling.backbones import BACKBONES
from ..modeling.ram import Refinement

METADATA_FILE = "metadata.json"
FORMAT = "ssfnet-checkpoint"
FORMAT_VERSION = 1
MAX_METADATA_BYTES = 16_000_000  # metrics and lineage included, real files are a few kB
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Floating dtypes a checkpoint may store its weights in (metadata name -> safetensors header name).
_FLOAT_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64"}
_MAX_CLASSES = 255  # label maps are uint8 and 255 means "ignore"
_MAX_WIDTH = 8192  # far above any variant's channel count; bounds what a model build may allocate


class CheckpointError(RuntimeError):
    """A checkpoint folder is missing, corrupt, truncated or does not fit the model."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _plain_file_name(name: object) -> bool:
    """Whether ``name`` names a file directly inside the checkpoint folder (no path, no dot-file)."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= 255
        and not name.startswith(".")
        and not any(c in name for c in "/\\\0:")
        and Path(name).name == name
    )


def _option_errors(variant: str, options: dict) -> str | None:
    """Why ``options`` are not valid for ``variant`` (None when they are)."""
    if not MODELS[variant].takes_options:
        return f"must be empty for {variant}" if options else None
    fields = {f.name: f for f in ModelConfig.__dataclass_fields__.values()}
    choices = {"backbone": tuple(BACKBONES), "fusion": ("none", "h", "hl", "smm"), "refinement": Refinement.__args__}
    for key, value in options.items():
        if key not in fields:
            return f"has an unknown option {key!r} (valid: {sorted(fields)})"
        kind = fields[key].type
        if key in choices:
            if value not in choices[key]:
                return f"{key} must be one of {list(choices[key])}, got {value!r}"
        elif kind == "bool":
            if not isinstance(value, bool):
                return f"{key} must be true or false, got {value!r}"
        elif key == "part_classes":
            # 0: no body-part head.
            if not _is_int(value) or not (value == 0 or 2 <= value <= _MAX_CLASSES):
                return f"{key} must be 0 or an integer from 2 to {_MAX_CLASSES}, got {value!r}"
        elif kind == "int":
            if not _is_int(value) or not 1 <= value <= _MAX_WIDTH:
                return f"{key} must be an integer from 1 to {_MAX_WIDTH}, got {value!r}"
        elif kind == "float":
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
                return f"{key} must be a number from 0 to below 1, got {value!r}"
    if "output_stride" in options and options["output_stride"] not in (8, 16, 32):
        return f"output_stride must be 8, 16 or 32, got {options['output_stride']!r}"
    if "hourglass_depth" in options and options["hourglass_depth"] > 8:
        return f"hourglass_depth must be at most 8, got {options['hourglass_depth']!r}"
    return None


Complaint = Callable[[str, str], CheckpointError]


def _check_model(meta: dict, bad: Complaint) -> None:
    """The fields that say what to build: format version, variant and options, classes, label set, dtype."""
    for key in ("format_version", "variant", "num_classes", "label_set", "dtype", "shards"):
        if key not in meta:
            raise bad(key, "is missing")
    version = meta["format_version"]
    if not _is_int(version) or version < 1:
        raise bad("format_version", f"must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise bad("format_version", f"is {version}: a newer ssfnet wrote it (this one reads {FORMAT_VERSION})")
    variant = meta["variant"]
    if not isinstance(variant, str) or variant not in MODELS:
        raise bad("variant", f"names no known variant: {variant!r} (known: {list_models()})")
    options = meta.get("options", {})
    if not isinstance(options, dict):
        raise bad("options", f"must be an object, got {type(options).__name__}")
    problem = _option_errors(variant, options)
    if problem:
        raise bad("options", problem)
    num_classes = meta["num_classes"]
    if not _is_int(num_classes) or not 2 <= num_classes <= _MAX_CLASSES:
        raise bad("num_classes", f"must be an integer from 2 to {_MAX_CLASSES}, got {num_classes!r}")
    label_set = meta["label_set"]
    if not isinstance(label_set, str) or label_set not in LABEL_SETS:
        raise bad("label_set", f"names no known label set: {label_set!r} (known: {sorted(LABEL_SETS)})")
    if LABEL_SETS[label_set].num_classes != num_classes:
        raise bad(
            "num_classes",
            f"is {num_classes} but label set {label_set} has {LABEL_SETS[label_set].num_classes} classes",
        )
    if not isinstance(meta["dtype"], str) or meta["dtype"] not in _FLOAT_DTYPES:
        raise bad("dtype", f"must be one of {sorted(_FLOAT_DTYPES)}, got {meta['dtype']!r}")


def _check_record(meta: dict, bad: Complaint) -> None:
    """The descriptive fields: name, date, training, metrics, fine-tune, lineage, sizes."""
    for key in ("name", "created"):
        if key in meta and not isinstance(meta[key], str):
            raise bad(key, f"must be a string, got {meta[key]!r}")
    if "created" in meta:
        try:
            _dt.datetime.fromisoformat(meta["created"])
        except ValueError:
            raise bad("created", f"must be an ISO date and time, got {meta['created']!r}") from None
    for key, kind in (("training", dict), ("metrics", dict), ("finetune", dict), ("lineage", list)):
        if key in meta and meta[key] is not None and not isinstance(meta[key], kind):
            raise bad(key, f"must be {'an object' if kind is dict else 'a list'}, got {type(meta[key]).__name__}")
    if "part_gate" in meta and not isinstance(meta["part_gate"], bool):
        raise bad("part_gate", f"must be true or false, got {meta['part_gate']!r}")
    data = (meta.get("training") or {}).get("data")
    if data is not None and (not isinstance(data, list) or not all(isinstance(d, str) for d in data)):
        raise bad("training.data", f"must be a list of source specs (strings), got {data!r}")
    if not all(isinstance(entry, dict) for entry in meta.get("lineage") or []):
        raise bad("lineage", "must be a list of objects")
    for key, low, high in (("input_size", 16, 8192), ("parameters", 0, 10**12)):
        if key in meta and (not _is_int(meta[key]) or not low <= meta[key] <= high):
            raise bad(key, f"must be an integer from {low} to {high}, got {meta[key]!r}")


def _check_shards(meta: dict, bad: Complaint) -> None:
    """The shard files (plain names in the folder, each once, with its SHA-256) and the tensors split across them."""
    shards = meta["shards"]
    if not isinstance(shards, list) or not shards:
        raise bad("shards", f"must be a non-empty list, got {type(shards).__name__}")
    seen = set()
    for i, shard in enumerate(shards):
        field = f"shards[{i}]"
        if not isinstance(shard, dict):
            raise bad(field, f"must be an object, got {type(shard).__name__}")
        if not _plain_file_name(shard.get("file")) or shard["file"] in (METADATA_FILE, ".", ".."):
            raise bad(f"{field}.file", f"must be a plain file name inside the folder, got {shard.get('file')!r}")
        if shard["file"] in seen:
            raise bad(f"{field}.file", f"repeats {shard['file']!r}")
        seen.add(shard["file"])
        if "sha256" not in shard:
            raise bad(f"{field}.sha256", "is missing: every shard needs its SHA-256 (re-save the checkpoint)")
        if not isinstance(shard["sha256"], str) or not _SHA256.fullmatch(shard["sha256"]):
            raise bad(f"{field}.sha256", f"must be 64 lowercase hex digits, got {shard['sha256']!r}")
        if "bytes" in shard and (not _is_int(shard["bytes"]) or shard["bytes"] < 0):
            raise bad(f"{field}.bytes", f"must be a non-negative integer, got {shard['bytes']!r}")
    split = meta.get("split_tensors", {})
    if not isinstance(split, dict):
        raise bad("split_tensors", f"must be an object, got {type(split).__name__}")
    for name, info in split.items():
        field = f"split_tensors[{name!r}]"
        if not isinstance(info, dict):
            raise bad(field, f"must be an object, got {type(info).__name__}")
        parts, shape = info.get("parts"), info.get("shape")
        if not _is_int(parts) or parts < 1:
            raise bad(f"{field}.parts", f"must be a positive integer, got {parts!r}")
        if not isinstance(shape, list) or len(shape) > 8 or not all(_is_int(d) and d >= 0 for d in shape):
            raise bad(f"{field}.shape", f"must be a list of at most 8 non-negative integers, got {shape!r}")


def validate_metadata(meta: object, source: str = METADATA_FILE) -> dict:
    """Check every field of a checkpoint's metadata that loading relies on.

    Args:
        meta: The parsed ``metadata.json``.
        source: What to name in messages (the file's path).

    Returns:
        ``meta`` itself.

    Raises:
        CheckpointError: naming the first field that is missing, of the wrong type or out of range.
    """

    def bad(field: str, why: str) -> CheckpointError:
        return CheckpointError(f"{source}: field {field!r} {why}")

    if not isinstance(meta, dict):
        raise CheckpointError(f"{source} must hold a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{source} is not an SSFNet checkpoint (format={meta.get('format')!r})")
    _check_model(meta, bad)
    _check_record(meta, bad)
    _check_shards(meta, bad)
    return meta
