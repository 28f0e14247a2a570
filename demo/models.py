"""Checkpoints to choose from and the predictors loaded from them, shared by all users.

Loading a model takes about half a second and a few hundred MB, so each
checkpoint is loaded once and kept (a small LRU); a checkpoint folder replaced on
disk (new ``metadata.json``) is loaded again. The list of checkpoints is read
from disk on every request, so one added by fine-tuning shows up without a
restart: the checkpoints folder and its ``finetuned/`` folder, where fine-tunes
publish (git-ignored, so that a user's checkpoints never show as changes to the
shipped ones).

The page and the API name a checkpoint by its path from the checkpoints folder
(``ssfnet_lite0-lip20``, ``finetuned/ssfnet_lite0-lip20-ft-20260101T000000Z``), never by
the server's absolute path; only :meth:`Predictors.folder` turns a name into a folder.
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

from ssfnet import CheckpointError, Predictor, load_predictor
from ssfnet.checkpoint import METADATA_FILE, check_shards, scan_checkpoints
from ssfnet.precision import resolve_device
from ssfnet.predictor import resolve_checkpoint
from train.finetune.defaults import FINETUNED_DIR

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


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


# A fine-tune's scores, before and after on the same images, as the chooser names them (the
# corrections it trained on are left out: a model always looks better on what it learnt).
FINETUNE_SETS = (("held_out_corrections", "held-out corrections"), ("original_val", "original validation"))


def _finetune_score(finetune: dict) -> str:
    """``mIoU against <base>: held-out corrections 62.1 → 65.3, ...``: the base and the child on the same images."""
    metrics = _dict(finetune.get("metrics"))
    before, after = _dict(metrics.get("before")), _dict(metrics.get("after"))
    pairs = []
    for key, name in FINETUNE_SETS:
        was, now = _number(_dict(before.get(key)).get("miou")), _number(_dict(after.get(key)).get("miou"))
        if was is not None and now is not None:
            pairs.append(f"{name} {was:.1f} → {now:.1f}")
    base = _dict(finetune.get("base")).get("name")
    if not pairs:
        return "no held-out score"
    return f"mIoU against {base if isinstance(base, str) else 'its base'}: " + ", ".join(pairs)


def validation_score(meta: dict) -> str:
    """The validation score a checkpoint's metadata records, for the chooser ("no val score" if none).

    Every figure names the images it was scored on, so that two lines of the list never read as
    comparable when they are not: a release's per-source score names its source (the source of
    the checkpoint's own label set first); a trainer's checkpoint says its figure is on its own
    validation split; a fine-tuned child shows its base's score and its own on the same images
    (:data:`FINETUNE_SETS`), never a bare figure beside its base's, and how many iterations it
    trained, so a 4-iteration model never looks like a real one.
    """
    metrics = _dict(meta.get("metrics"))
    finetune = _dict(meta.get("finetune"))
    sources = _dict(metrics.get("sources"))
    text = "no val score"
    miou = _number(metrics.get("val_miou")) or _number(metrics.get("best_val_miou"))
    if finetune:
        text = _finetune_score(finetune)
    elif sources:
        scored = [
            (name, _number(s.get("miou")), s.get("label_set") == meta.get("label_set"))
            for name, s in sources.items()
            if isinstance(s, dict)
        ]
        scored = sorted((x for x in scored if x[1] is not None), key=lambda x: not x[2])
        if scored:
            text = f"val mIoU {scored[0][1]:.1f} on {scored[0][0]}"
    elif miou is not None:
        data = _dict(meta.get("training")).get("data")
        kinds = sorted({str(d).split(":", 1)[0] for d in data}) if isinstance(data, list) else []
        text = f"val mIoU {miou:.1f} on its own {'+'.join(kinds) + ' ' if kinds else ''}validation split"
    iterations = _number(finetune.get("iterations")) or _number(meta.get("iteration"))
    if iterations is not None:
        text += f", {int(iterations):,} iterations"
    return text


def describe(path: Path, meta: dict, name: str | None = None) -> str:
    """A one-line name for a checkpoint in the chooser (``name``, default the folder's), with its score."""
    parts = [meta.get("variant", "?"), meta.get("label_set", "?"), validation_score(meta)]
    if meta.get("created"):
        parts.append(str(meta["created"])[:16].replace("T", " "))
    return f"{name or path.name} ({', '.join(str(p) for p in parts)})"


class Predictors:
    """The checkpoints on offer and a cache of loaded predictors.

    Args:
        checkpoints_dir: Folder scanned for checkpoint folders, with its ``finetuned/`` folder.
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

    @property
    def finetuned_dir(self) -> Path:
        """Where fine-tunes started from the app publish (scanned with the checkpoints folder)."""
        return self.checkpoints_dir / FINETUNED_DIR

    def configured(self) -> Path:
        """The start-up checkpoint folder.

        Raises:
            FileNotFoundError: it does not exist (the message says what to do).
        """
        return resolve_checkpoint(self.checkpoint)

    def name_of(self, folder: str | Path) -> str:
        """What the page calls a checkpoint folder: its path from the checkpoints folder, else its own name."""
        absolute = Path(os.path.abspath(folder))
        root = Path(os.path.abspath(self.checkpoints_dir))
        if absolute.is_relative_to(root) and absolute != root:
            return absolute.relative_to(root).as_posix()
        return absolute.name

    def _scan(self) -> tuple[list[tuple[Path, dict]], list[tuple[Path, str]]]:
        usable, unusable = [], []
        for root in (self.checkpoints_dir, self.finetuned_dir):
            found, broken = scan_checkpoints(root)
            usable += found
            unusable += broken
        usable.sort(key=lambda item: (item[1].get("created", ""), item[0].name), reverse=True)
        return usable, unusable

    def offered(self) -> dict[str, tuple[Path, dict]]:
        """``name -> (folder, metadata)`` of every usable checkpoint: the configured one first, then the
        scanned ones, newest first (see :meth:`name_of`)."""
        scanned: dict[str, tuple[Path, dict]] = {}
        for path, meta in self._scan()[0]:
            scanned[self.name_of(path)] = (path, meta)
        found: dict[str, tuple[Path, dict]] = {}
        try:
            path = self.configured()
            meta = check_shards(path)
        except (FileNotFoundError, CheckpointError):
            pass
        else:
            name = self.name_of(path)
            same = scanned.get(name)
            if same is not None and same[0].resolve() != path.resolve():
                # A configured folder outside the checkpoints folder, named like one inside it.
                name = f"{path.parent.name}/{path.name}"
                while name in scanned:
                    name += "+"
            found[name] = (path, meta)
        for name, item in scanned.items():
            found.setdefault(name, item)
        return found

    def choices(self) -> list[tuple[str, str]]:
        """``(label, name)`` of every usable checkpoint: the configured one first, then the scanned ones."""
        return [(describe(path, meta, name), name) for name, (path, meta) in self.offered().items()]

    def unusable(self) -> list[tuple[str, str]]:
        """``(name, reason)`` of each checkpoint folder that cannot be offered (broken metadata ...)."""
        return [(self.name_of(path), reason) for path, reason in self._scan()[1]]

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
            check_shards(self.configured())
        except (FileNotFoundError, CheckpointError) as err:
            problems.append(f"checkpoint not usable: {err}")
        try:
            self.get(self.default())
        except (FileNotFoundError, CheckpointError, OSError) as err:
            problems = [f"starting without a model: {err}"]  # says why, the configured one included
        return [" ".join(line.split()) for line in problems]

    def default(self) -> str | None:
        """The checkpoint selected at start: the configured one if usable, else the newest found."""
        return next(iter(self.offered()), None)

    def problem(self) -> str | None:
        """Why no model can be used, or ``None`` when at least one checkpoint is available."""
        if self.offered():
            return None
        try:
            check_shards(self.configured())
        except (FileNotFoundError, CheckpointError) as err:
            return f"No model is available: {err}"
        return f"No model is available: no checkpoint folders in {self.checkpoints_dir}"

    def resolve(self, choice: str | None) -> str:
        """The name of the checkpoint meant by ``choice`` (``None`` or "" = the default).

        ``choice`` is a name from :meth:`choices`, or the path of an offered folder (as earlier
        versions of the page and the API named them).

        Raises:
            FileNotFoundError: ``choice`` is not (or no longer) one of the offered checkpoints.
        """
        return self._lookup(choice, self.offered())

    def _lookup(self, choice: str | None, offered: dict[str, tuple[Path, dict]]) -> str:
        if not choice:
            choice = next(iter(offered), None)
        # Only offered folders may be loaded: a request must not point the server at arbitrary paths.
        if choice is None:
            raise FileNotFoundError(self.problem() or "no checkpoint is available")
        if choice in offered:
            return choice
        try:
            target = Path(choice).resolve()
        except (OSError, ValueError, RuntimeError):
            target = None
        for name, (path, _) in offered.items():
            if target is not None and path.resolve() == target:
                return name
        raise FileNotFoundError(self.problem() or f"checkpoint {choice} is not available (any more)")

    def folder(self, choice: str | None) -> Path:
        """The folder of the checkpoint meant by ``choice`` (see :meth:`resolve`); for the server only."""
        offered = self.offered()
        return offered[self._lookup(choice, offered)][0]

    def get(self, choice: str | None) -> Predictor:
        """The predictor of a checkpoint from :meth:`choices` (loaded on first use).

        Raises:
            FileNotFoundError: ``choice`` is not (or no longer) one of the offered checkpoints.
            CheckpointError: the checkpoint is corrupt or does not fit its model.
        """
        folder = self.folder(choice)
        try:
            key = (str(folder.resolve()), (folder / METADATA_FILE).stat().st_mtime_ns)
        except OSError as err:
            raise FileNotFoundError(f"checkpoint {self.name_of(folder)} is not available (any more): {err}") from None
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            try:
                predictor = load_predictor(folder, device=self.device, backend=self.backend)
            except (ImportError, ValueError) as err:  # no onnxruntime, or a model it cannot run
                raise CheckpointError(f"{Path(folder).name} cannot run on {self.backend}: {err}") from None
            for old in [k for k in self._cache if k[0] == key[0]]:
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
