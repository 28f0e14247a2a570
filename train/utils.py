"""Helpers shared by the training scripts: distributed setup, RNG states, run-folder files, stop control."""

from __future__ import annotations

import json
import os
import platform
import random
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ssfnet.files import atomic_write_bytes, json_bytes
from ssfnet.precision import resolve_device

# ---------------------------------------------------------------------------------------------
# Distributed


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialised_here: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    With ``WORLD_SIZE`` > 1 (set by torchrun) this initialises NCCL on CUDA and gloo on CPU, and
    pins each process to the GPU of its ``LOCAL_RANK``. A process group that already exists (a
    caller that set it up itself) is used as is.

    Args:
        device: ``auto``, ``cpu``, ``cuda`` ...; a CUDA device is replaced by ``cuda:LOCAL_RANK``.
    """
    base = resolve_device(device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if dist.is_available() and dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
        if base.type == "cuda":
            base = torch.device("cuda", local_rank)
        return DistInfo(rank, world_size, local_rank, base, initialised_here=False)
    if world_size <= 1:
        return DistInfo(device=base)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if base.type == "cuda":
        torch.cuda.set_device(local_rank)
        base = torch.device("cuda", local_rank)
    dist.init_process_group(backend="nccl" if base.type == "cuda" else "gloo", rank=rank, world_size=world_size)
    return DistInfo(rank, world_size, local_rank, base, initialised_here=True)


def all_reduce_max(values: list[float], info: DistInfo) -> list[float]:
    """Element-wise maximum of ``values`` over all processes (a no-op in a single process)."""
    if not info.distributed:
        return values
    # NCCL only reduces CUDA tensors; gloo only CPU ones.
    tensor = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor.tolist()


def all_reduce_sum_array(array: np.ndarray, info: DistInfo) -> np.ndarray:
    """Sum an int64 numpy array (a confusion matrix) over all processes."""
    if not info.distributed:
        return array
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64)).to(info.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().numpy()


def broadcast_buffers(model: torch.nn.Module, info: DistInfo) -> None:
    """Copy rank 0's buffers (BN running statistics) to every rank.

    DDP broadcasts buffers at the start of each training forward, so after the last step every
    rank holds statistics updated by its own batch; validation must use the saved (rank-0) ones.
    """
    if not info.distributed:
        return
    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


# ---------------------------------------------------------------------------------------------
# RNG states as tensors (resume files must not need unpickling)


def capture_rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    """This process's torch, CUDA, numpy and Python RNG states as uint8 tensors plus JSON fields."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda{i}"] = state
    _, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["numpy"] = torch.from_numpy(np.asarray(keys, dtype="<u4").view(np.uint8).copy())
    version, words, gauss_next = random.getstate()
    tensors["python"] = torch.from_numpy(np.asarray(words, dtype="<u4").view(np.uint8).copy())
    fields = {
        "numpy": {"pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "gauss_next": gauss_next},
    }
    return tensors, fields


def restore_rng_state(tensors: dict[str, torch.Tensor], fields: dict) -> None:
    """Inverse of :func:`capture_rng_state`; CUDA states are restored for the devices present."""
    torch.set_rng_state(tensors["torch"].to(torch.uint8).cpu())
    cuda = sorted((k for k in tensors if k.startswith("cuda")), key=lambda k: int(k[4:]))
    if cuda and torch.cuda.is_available():
        states = [tensors[k].to(torch.uint8).cpu() for k in cuda][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(states)
    keys = tensors["numpy"].numpy().view("<u4").astype(np.uint32)
    npf = fields["numpy"]
    np.random.set_state(("MT19937", keys, npf["pos"], npf["has_gauss"], npf["cached_gaussian"]))
    words = tuple(int(w) for w in tensors["python"].numpy().view("<u4"))
    random.setstate((fields["python"]["version"], words, fields["python"]["gauss_next"]))


def gather_rng_states(info: DistInfo) -> list[tuple[dict[str, torch.Tensor], dict]]:
    """Every rank's RNG state, in rank order (collective: all ranks must call it)."""
    own = capture_rng_state()
    if not info.distributed:
        return [own]
    # Plain data (numpy arrays and JSON fields) travels between processes; nothing is stored pickled.
    payload = ({k: v.numpy() for k, v in own[0].items()}, own[1])
    gathered: list = [None] * info.world_size
    dist.all_gather_object(gathered, payload)
    return [({k: torch.from_numpy(np.array(v)) for k, v in t.items()}, f) for t, f in gathered]


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# Run-folder files


def write_json(path: str | Path, data: object) -> Path:
    """Write ``data`` as indented strict JSON (NaN and inf as ``null``), atomically."""
    return atomic_write_bytes(path, json_bytes(data))


def read_jsonl(path: str | Path) -> list[dict]:
    """All records of a JSON-lines file (a torn last line from a crash is skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class JsonlWriter:
    """Appends one JSON record per line and flushes, so a crash loses at most the last line."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", buffering=1)

    def write(self, record: dict) -> None:
        self._file.write(json_bytes(record, indent=None).decode() + "\n")

    def truncate_after(self, key: str, value: float) -> None:
        """Drop records whose ``key`` exceeds ``value`` (lines logged after the checkpoint a run resumes from)."""
        self._file.close()
        kept = [r for r in read_jsonl(self.path) if r.get(key, value) <= value]
        atomic_write_bytes(self.path, b"".join(json_bytes(r, indent=None) + b"\n" for r in kept))
        self._file = open(self.path, "a", buffering=1)

    def close(self) -> None:
        self._file.close()


# ---------------------------------------------------------------------------------------------
# Stop control: stop-file, signals, Python-side cancel


class StopControl:
    """Collects requests to stop a run early, so the trainer can finish a step and save cleanly.

    A stop is requested by creating ``stop_file``, by SIGTERM / SIGINT (installed only when
    constructed in the main thread; a second SIGINT raises KeyboardInterrupt as usual), or by a
    caller's ``threading.Event`` (e.g. a UI thread that runs :func:`train.train.run_training`).

    Use as a context manager: the previous signal handlers are restored on exit.
    """

    def __init__(self, stop_file: str | Path | None = None, cancel: threading.Event | None = None) -> None:
        self.stop_file = Path(stop_file) if stop_file else None
        self.cancel = cancel
        self.reason: str | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopControl:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _on_signal(self, signum: int, frame) -> None:
        if signum == signal.SIGINT and self.reason is not None:
            raise KeyboardInterrupt
        self.reason = signal.Signals(signum).name

    def requested(self) -> bool:
        """Whether a stop was requested (checks the stop-file and the event)."""
        if self.reason is None and self.stop_file is not None and self.stop_file.exists():
            self.reason = f"stop file {self.stop_file}"
        if self.reason is None and self.cancel is not None and self.cancel.is_set():
            self.reason = "cancelled"
        return self.reason is not None


class Stopwatch:
    """Seconds of training over all sessions of a run (resumed runs continue the count)."""

    def __init__(self, already: float = 0.0) -> None:
        self.already = already
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return self.already + time.perf_counter() - self.start


def hardware(device: torch.device | str = "cpu", gpus: int = 1) -> str:
    """A one-line description of the machine a run computes on, and torch's version.

    On the CPU: its model, cores and vector extensions (AVX-512-BF16 makes bf16 autocast fast;
    without it the trainer computes in fp32); on CUDA: the GPU model and how many.
    """
    if torch.device(device).type == "cuda":
        return f"{torch.cuda.get_device_name(device)} x{gpus}, torch {torch.__version__}"
    model = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", platform.machine()):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[-1].split())
    except OSError:
        pass
    if "avx512_bf16" in flags:
        extensions = " with AVX-512-BF16"
    elif "avx512f" in flags:
        extensions = " with AVX-512 (no BF16)"
    elif "avx2" in flags:
        extensions = " with AVX2 (no AVX-512)"
    else:
        extensions = ""
    return f"{model}{extensions}, {os.cpu_count()} cores, torch {torch.__version__}"
