"""Checkpoints: folders of safetensors shards plus one JSON metadata file.

- :mod:`.store`: writing (atomically), reading strictly, listing and scanning checkpoint folders.
- :mod:`.schema`: the metadata format and :func:`validate_metadata`.
- :mod:`.recovery`: interrupted swaps and stale temporaries finished, rolled back or removed.
- :mod:`.publish`: publishing a trained model (free names, storage precision, the round trip).
"""

from __future__ import annotations

from .publish import default_name, fitting_dtype, publish, round_to_storage, storage_dtype, verify_round_trip
from .store import (
    FORMAT,
    FORMAT_VERSION,
    LEGACY_TEMPORARY_AGE_S,
    MAX_SHARD_BYTES,
    METADATA_FILE,
    CheckpointError,
    check_shards,
    clean_state_dict,
    list_checkpoints,
    load_checkpoint,
    load_into,
    load_state_dict,
    read_metadata,
    recover_checkpoint,
    recover_checkpoints,
    save_checkpoint,
    scan_checkpoints,
    unwrap_model,
    validate_metadata,
    writer_alive,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "LEGACY_TEMPORARY_AGE_S",
    "MAX_SHARD_BYTES",
    "METADATA_FILE",
    "CheckpointError",
    "check_shards",
    "clean_state_dict",
    "default_name",
    "fitting_dtype",
    "list_checkpoints",
    "load_checkpoint",
    "load_into",
    "load_state_dict",
    "publish",
    "read_metadata",
    "recover_checkpoint",
    "recover_checkpoints",
    "round_to_storage",
    "save_checkpoint",
    "scan_checkpoints",
    "storage_dtype",
    "unwrap_model",
    "validate_metadata",
    "verify_round_trip",
    "writer_alive",
]
