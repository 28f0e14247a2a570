"""Checkpoints to choose from and the predictors loaded from them, shared by all users.

Loading a model takes about half a second and a few hundred MB, so each
checkpoint is loaded once and kept (a small LRU); a checkpoint folder replaced on
disk (new ``metadata.json``) is loaded again. The list of checkpoints is read
from disk on every request, so one added by fine-tuning shows up without a
restart.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from ssfnet import CheckpointError, Predictor, list_checkpoints, load_predictor
from ssfnet.checkpoint import METADATA_FILE, read_metadata, scan_checkpoints
from ssfnet.precision import resolve_device
from ssfnet.predictor import resolve_checkpoint

try:  # Hugging Face ZeroGPU: a GPU is attached only inside functions wrapped with spaces.GPU.
    import spaces
except ImportError:
    spaces = None

F = TypeVar("F", bound=Callable)
T = TypeVar("T")


def on_gpu(fn: F) -> F:
    """``spaces.GPU(fn)`` where the ``spaces`` package is installed, ``fn`` unchanged elsewhere."""
    return spaces.GPU(fn) if spaces is not None else fn


# Model runs happen on a few threads of their own rather than on whichever of Gradio's 40 worker
# threads a request lands on: each thread that runs the network keeps its own scratch memory
# (oneDNN's, the allocator's arena) for as long as it lives.
_model_threads: ThreadPoolExecutor | None = None
_model_thread_count = 0
_model_threads_pid = os.getpid()
_model_threads_lock = threading.Lock()


def set_model_threads(count: int) -> None:
    """Run the model on ``count`` threads of its own (the app's ``--concurrency``); call before the first run."""
    global _model_threads, _model_thread_count, _model_threads_pid
    with _model_threads_lock:
        if _model_threads is None or _model_thread_count != count:
            old, _model_threads = _model_threads, ThreadPoolExecutor(count, thread_name_prefix="ssfnet-model")
            _model_thread_count, _model_threads_pid = count, os.getpid()
            if old is not None:
                old.shutdown(wait=False)


def in_model_thread(fn: Callable[..., T], *args, **kwargs) -> T:
    """``fn(*args, **kwargs)`` run on one of the model's threads (see :func:`set_model_threads`).

    Called directly in a process forked after the threads were made (ZeroGPU runs the model in
    one): a forked copy of a thread pool has no threads and would wait for ever.
    """
    if _model_threads is None:
        set_model_threads(1)
    if os.getpid() != _model_threads_pid:
        return fn(*args, **kwargs)
    return _model_threads.submit(fn, *args, **kwargs).result()


@on_gpu
def run_predictor(predictor: Predictor, image: np.ndarray, multiscale: bool, flip: bool) -> np.ndarray:
    """Parse ``image`` (H x W x 3 uint8) into an H x W uint8 label map: the one call that needs the GPU."""
    return in_model_thread(predictor.predict, image, multiscale=multiscale, flip=flip)


def _number(value) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def validation_score(meta: dict) -> str:
    """The validation score a checkpoint's metadata records, for the chooser ("no val score" if none).

    Reads the trainer's and fine-tuner's ``val_miou``, or the release's per-source scores (the
    source of the checkpoint's own label set first); a fine-tuned child also says how many
    iterations it trained, so a 4-iteration model never looks like a real one.
    """
    metrics = meta.get("metrics") if isinstance(meta.get("metrics"), dict) else {}
    text = "no val score"
    miou = _number(metrics.get("val_miou")) or _number(metrics.get("best_val_miou"))
    sources = metrics.get("sources") if isinstance(metrics.get("sources"), dict) else {}
    if miou is not None:
        text = f"val mIoU {miou:.1f}"
    elif sources:
        scored = [
            (name, _number(s.get("miou")), s.get("label_set") == meta.get("label_set"))
            for name, s in sources.items()
            if isinstance(s, dict)
        ]
        scored = sorted((x for x in scored if x[1] is not None), key=lambda x: not x[2])
        if scored:
            text = f"val mIoU {scored[0][1]:.1f} on {scored[0][0]}"
    finetune = meta.get("finetune") if isinstance(meta.get("finetune"), dict) else {}
    iterations = _number(finetune.get("iterations")) or _number(meta.get("iteration"))
    if iterations is not None:
        text += f", {int(iterations):,} iterations"
    return text


def describe(path: Path, meta: dict) -> str:
    """A one-line name for a checkpoint in the chooser, with its validation score."""
    parts = [meta.get("variant", "?"), meta.get("label_set", "?"), validation_score(meta)]
    if meta.get("created"):
        parts.append(str(meta["created"])[:16].replace("T", " "))
    return f"{path.name} ({', '.join(str(p) for p in parts)})"


class Predictors:
    """The checkpoints on offer and a cache of loaded predictors.

    Args:
        checkpoints_dir: Folder scanned for checkpoint folders.
        checkpoint: The checkpoint to start with; ``None`` = ``$SSFNET_CHECKPOINT`` or the
            library's embedded default.
        device: Where models run; ``None`` picks CUDA when available.
        max_loaded: How many loaded models to keep.
        backend: ``torch``, or ``onnxruntime`` (on the CPU; each checkpoint is exported to ONNX
            on first use, see :func:`ssfnet.export.cached_export`).
    """

    def __init__(
        self,
        checkpoints_dir: str | Path,
        checkpoint: str | Path | None = None,
        device: str | None = None,
        max_loaded: int = 3,
        *,
        backend: str = "torch",
    ) -> None:
        self.checkpoints_dir = Path(checkpoints_dir)
        self.checkpoint = checkpoint
        self.backend = backend
        # onnxruntime runs the exported models on the CPU.
        self.device = torch.device("cpu") if backend == "onnxruntime" else resolve_device(device or None)
        self.max_loaded = max_loaded
        self._cache: OrderedDict[tuple[str, int], Predictor] = OrderedDict()
        self._lock = threading.Lock()

    def configured(self) -> Path:
        """The start-up checkpoint folder.

        Raises:
            FileNotFoundError: it does not exist (the message says what to do).
        """
        return resolve_checkpoint(self.checkpoint)

    def choices(self) -> list[tuple[str, str]]:
        """``(label, folder)`` of every usable checkpoint: the configured one first, then the scanned ones."""
        found: dict[str, str] = {}
        try:
            path = self.configured()
            found[str(path.resolve())] = describe(path, read_metadata(path))
        except (FileNotFoundError, CheckpointError):
            pass
        for path, meta in list_checkpoints(self.checkpoints_dir):
            found.setdefault(str(path.resolve()), describe(path, meta))
        return [(label, key) for key, label in found.items()]

    def unusable(self) -> list[tuple[str, str]]:
        """``(folder name, reason)`` of each checkpoint folder that cannot be offered (broken metadata ...)."""
        return [(path.name, reason) for path, reason in scan_checkpoints(self.checkpoints_dir)[1]]

    def unusable_note(self) -> str:
        """A Markdown line naming the unusable checkpoint folders and why ("" when there are none)."""
        broken = self.unusable()
        if not broken:
            return ""
        return "Not offered (broken): " + "; ".join(f"`{name}`: {reason}" for name, reason in broken) + "."

    def warm_up(self) -> list[str]:
        """Load the start-up model now (so that the first user does not wait); returns one line per problem.

        A configured checkpoint that cannot be used is reported, and so is starting without any
        model; neither stops the app (corrections can still be made by hand).
        """
        problems = []
        try:
            read_metadata(self.configured())
        except (FileNotFoundError, CheckpointError) as err:
            problems.append(f"checkpoint not usable: {err}")
        try:
            self.get(self.default())
        except (FileNotFoundError, CheckpointError, OSError) as err:
            problems = [f"starting without a model: {err}"]  # says why, the configured one included
        return [" ".join(line.split()) for line in problems]

    def default(self) -> str | None:
        """The folder selected at start: the configured one if usable, else the newest found."""
        choices = self.choices()
        return choices[0][1] if choices else None

    def problem(self) -> str | None:
        """Why no model can be used, or ``None`` when at least one checkpoint is available."""
        if self.choices():
            return None
        try:
            path = self.configured()
            read_metadata(path)
        except (FileNotFoundError, CheckpointError) as err:
            return f"No model is available: {err}"
        return f"No model is available: no checkpoint folders in {self.checkpoints_dir}"

    def resolve(self, choice: str | None) -> str:
        """The checkpoint folder meant by ``choice`` (``None`` or "" = the default).

        Raises:
            FileNotFoundError: ``choice`` is not (or no longer) one of the offered checkpoints.
        """
        offered = {folder for _, folder in self.choices()}
        if not choice:
            choice = self.default()
        # Only offered folders may be loaded: a request must not point the server at arbitrary paths.
        if choice is None or choice not in offered:
            raise FileNotFoundError(self.problem() or f"checkpoint {choice} is not available (any more)")
        return choice

    def get(self, choice: str | None) -> Predictor:
        """The predictor of a checkpoint folder from :meth:`choices` (loaded on first use).

        Raises:
            FileNotFoundError: ``choice`` is not (or no longer) one of the offered checkpoints.
            CheckpointError: the checkpoint is corrupt or does not fit its model.
        """
        choice = self.resolve(choice)
        key = (choice, (Path(choice) / METADATA_FILE).stat().st_mtime_ns)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            try:
                predictor = load_predictor(choice, device=self.device, backend=self.backend)
            except (ImportError, ValueError) as err:  # no onnxruntime, or a model it cannot run
                raise CheckpointError(f"{Path(choice).name} cannot run on {self.backend}: {err}") from None
            for old in [k for k in self._cache if k[0] == choice]:
                del self._cache[old]
            self._cache[key] = predictor
            while len(self._cache) > self.max_loaded:
                self._cache.popitem(last=False)
            return predictor

    def device_description(self) -> str:
        if self.backend == "onnxruntime":
            import onnxruntime

            return f"cpu (onnxruntime {onnxruntime.__version__})"
        if self.device.type == "cuda":
            return f"{self.device} ({torch.cuda.get_device_name(self.device)})"
        return f"{self.device} ({torch.get_num_threads()} threads)"
