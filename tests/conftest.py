"""Shared fixtures: where the real datasets are, and skipping cleanly when they are not."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def own_cache_dir(tmp_path_factory) -> None:
    """Keep what the library caches (ONNX exports, precision timings) out of the user's home."""
    if "SSFNET_CACHE_DIR" not in os.environ:
        os.environ["SSFNET_CACHE_DIR"] = str(tmp_path_factory.mktemp("ssfnet-cache"))


@pytest.fixture(scope="session")
def datasets_root() -> Path:
    """The shared datasets folder: ``$SSFNET_DATASETS``, else ``../shared/datasets`` beside the repo."""
    configured = os.environ.get("SSFNET_DATASETS")
    return Path(configured) if configured else (REPO_ROOT / ".." / "shared" / "datasets").resolve()


@pytest.fixture(scope="session")
def dataset_dir(datasets_root: Path) -> Callable[..., Path]:
    """``dataset_dir("samples", "atr")`` -> that folder under ``datasets_root``, or skip the test.

    The skip message names the missing folder and how to point the tests at the data.
    """

    def find(*parts: str) -> Path:
        path = datasets_root.joinpath(*parts)
        if not path.is_dir():
            pytest.skip(f"dataset folder {path} is absent (set SSFNET_DATASETS to the shared datasets folder)")
        return path

    return find
