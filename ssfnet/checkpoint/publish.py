"""Publishing a trained model as a checkpoint folder: free names, storage precision, the round trip.

The fine-tuner and ``train.release`` publish through these; :mod:`.store` writes the
folder itself (atomically: written aside and renamed into place).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from .store import load_checkpoint, save_checkpoint

# The suffix a fine-tune adds to its base's name: -ft-<UTC stamp>[-n].
_STAMP_SUFFIX = re.compile(r"-ft-\d{8}T\d{6}Z(-\d+)?$")


def default_name(base: Path) -> str:
    """The base folder's name without an earlier ``-ft-<stamp>``, plus ``-ft``."""
    return _STAMP_SUFFIX.sub("", base.name) + "-ft"


def storage_dtype(meta: dict) -> torch.dtype | None:
    """The floating-point type a checkpoint stores its weights in (None for float32)."""
    dtype = getattr(torch, str(meta.get("dtype", "float32")), None)
    return dtype if isinstance(dtype, torch.dtype) and dtype != torch.float32 else None


def fitting_dtype(model: torch.nn.Module, dtype: torch.dtype | None) -> torch.dtype | None:
    """``dtype``, or None (float32) where one of the model's values would overflow it.

    A BatchNorm running variance beyond float16's 65,504 (seen after a few steps at a high
    learning rate) would be stored as infinity and break every prediction.
    """
    if dtype is None:
        return None
    limit = torch.finfo(dtype).max
    for value in model.state_dict().values():
        if value.is_floating_point() and value.numel() and float(value.detach().abs().max()) > limit:
            return None
    return dtype


def round_to_storage(model: torch.nn.Module, dtype: torch.dtype | None) -> None:
    """Give the weights the precision they will be stored in, so the 'after' scores are the published model's."""
    if dtype is None:
        return
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.copy_(value.to(dtype).to(value.dtype))


def publish(
    model: torch.nn.Module,
    checkpoints_dir: Path,
    name: str,
    stamp: str,
    *,
    base: Path,
    meta: dict,
    metadata: dict,
    dtype: torch.dtype | None,
) -> Path:
    """Save ``model`` as ``checkpoints_dir/<name>-<stamp>`` (atomically; a free name, never the base).

    Args:
        meta: Metadata naming the model's variant, label set and options.
        metadata: The lineage and scores stored with it.
        dtype: Floating-point storage type (None: as the model's).
    """
    target = checkpoints_dir / f"{name}-{stamp}"
    suffix = 2
    while target.exists() or target.resolve() == base.resolve():
        target = checkpoints_dir / f"{name}-{stamp}-{suffix}"
        suffix += 1
    return save_checkpoint(
        model,
        target,
        variant=meta["variant"],
        label_set=meta["label_set"],
        options=meta.get("options", {}),
        metadata=metadata,
        dtype=dtype,
    )


def verify_round_trip(folder: Path) -> None:
    """Load a just-published folder strictly (hashes, shapes, dtypes): a bad write fails here, not later."""
    load_checkpoint(folder)
