"""App settings from command-line flags, with environment variables as defaults.

Every flag has an environment variable so that a hosted Space (which cannot pass
flags) is configured the same way as a local run; a flag wins over its variable.
"""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ssfnet.predictor import CHECKPOINTS_DIR

DEFAULT_MAX_SIDE = 1600


@dataclass(frozen=True)
class Settings:
    """Everything the app needs to know at start-up.

    Args:
        host: Interface to listen on (``0.0.0.0`` to serve other machines).
        port: TCP port.
        share: Ask Gradio for a public share link.
        corrections_dir: Folder that saved corrections are written to.
        checkpoint: Checkpoint folder selected at start; ``None`` = the library default.
        checkpoints_dir: Folder scanned for checkpoints (also for ones added while running).
        device: ``"cpu"``, ``"cuda"``, ...; ``None`` picks CUDA when available.
        max_side: Longer side of the working resolution for parsing and editing.
        concurrency: How many model runs may execute at once.
        max_file_size: Largest upload Gradio accepts, e.g. ``"50mb"``.
        finetune: Offer the fine-tuning panel (it runs ``python -m train.finetune`` on this machine).
        runs_dir: Where fine-tune run folders (logs, reports) go.
        finetune_args: More ``train.finetune`` options for every fine-tune (data sources, crop
            size, workers ...), chosen by whoever runs the server, never by users.
        photos_dir: A folder of photos to annotate, offered as the queue's folder. Other folders
            can be typed in the page only while the app listens on localhost alone.
    """

    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    corrections_dir: Path = Path("corrections")
    checkpoint: Path | None = None
    checkpoints_dir: Path = CHECKPOINTS_DIR
    device: str | None = None
    max_side: int = DEFAULT_MAX_SIDE
    concurrency: int = 1
    max_file_size: str = "50mb"
    finetune: bool = True
    runs_dir: Path = Path("runs")
    finetune_args: tuple[str, ...] = ()
    photos_dir: Path | None = None

    @property
    def local_only(self) -> bool:
        """Whether only this machine can reach the app (then its user may point it at any folder)."""
        return self.host in ("127.0.0.1", "localhost", "::1") and not self.share


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def parse_args(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read flags (``argv``) over environment variables (``env``, default ``os.environ``).

    Args:
        argv: Command-line arguments without the program name; ``None`` = ``sys.argv[1:]``.
        env: Environment to read defaults from.

    Returns:
        The settings.
    """
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(
        description="SSFNet human parsing: parse photos, correct the labels, save them as training data.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    # GRADIO_SERVER_NAME / GRADIO_SERVER_PORT are what Hugging Face Spaces sets.
    parser.add_argument(
        "--host",
        default=env.get("SSFNET_HOST") or env.get("GRADIO_SERVER_NAME") or Settings.host,
        help="interface to listen on (env SSFNET_HOST or GRADIO_SERVER_NAME)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(env.get("SSFNET_PORT") or env.get("GRADIO_SERVER_PORT") or Settings.port),
        help="port (env SSFNET_PORT or GRADIO_SERVER_PORT)",
    )
    parser.add_argument(
        "--share",
        action=argparse.BooleanOptionalAction,
        default=_truthy(env.get("SSFNET_SHARE", "")),
        help="create a public Gradio share link (env SSFNET_SHARE=1)",
    )
    parser.add_argument(
        "--corrections-dir",
        type=Path,
        default=Path(env.get("SSFNET_CORRECTIONS_DIR") or Settings.corrections_dir),
        help="where saved corrections go (env SSFNET_CORRECTIONS_DIR)",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=Path(env["SSFNET_CHECKPOINT"]) if env.get("SSFNET_CHECKPOINT") else None,
        help="checkpoint folder to start with (env SSFNET_CHECKPOINT); default: the embedded one",
    )
    parser.add_argument(
        "--checkpoints-dir",
        type=Path,
        default=Path(env.get("SSFNET_CHECKPOINTS_DIR") or Settings.checkpoints_dir),
        help="folder scanned for checkpoints to choose from (env SSFNET_CHECKPOINTS_DIR)",
    )
    parser.add_argument(
        "--device",
        default=env.get("SSFNET_DEVICE") or None,
        help="cpu, cuda, cuda:1 ... (env SSFNET_DEVICE); default: CUDA when available",
    )
    parser.add_argument(
        "--max-side",
        type=int,
        default=int(env.get("SSFNET_MAX_SIDE") or Settings.max_side),
        help="longer side of the working resolution for parsing and editing (env SSFNET_MAX_SIDE)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=int(env.get("SSFNET_CONCURRENCY") or Settings.concurrency),
        help="model runs at once (env SSFNET_CONCURRENCY)",
    )
    parser.add_argument(
        "--max-file-size",
        default=env.get("SSFNET_MAX_FILE_SIZE") or Settings.max_file_size,
        help="largest accepted upload (env SSFNET_MAX_FILE_SIZE)",
    )
    # A shared Space (SPACE_ID is set there) must not let any visitor occupy the machine with training.
    parser.add_argument(
        "--finetune",
        action=argparse.BooleanOptionalAction,
        default=_truthy(env.get("SSFNET_FINETUNE") or ("0" if env.get("SPACE_ID") else "1")),
        help="offer the fine-tuning panel (env SSFNET_FINETUNE=0 disables it; off by default on Hugging Face Spaces)",
    )
    parser.add_argument(
        "--runs-dir",
        type=Path,
        default=Path(env.get("SSFNET_RUNS_DIR") or Settings.runs_dir),
        help="where fine-tune run folders go (env SSFNET_RUNS_DIR)",
    )
    parser.add_argument(
        "--finetune-args",
        default=env.get("SSFNET_FINETUNE_ARGS", ""),
        help='more train.finetune options for every fine-tune, e.g. "--data lip:/data/lip --workers 8" '
        "(env SSFNET_FINETUNE_ARGS)",
    )
    parser.add_argument(
        "--photos-dir",
        type=Path,
        default=Path(env["SSFNET_PHOTOS_DIR"]) if env.get("SSFNET_PHOTOS_DIR") else None,
        help="a folder of photos to annotate, offered as the queue (env SSFNET_PHOTOS_DIR)",
    )
    args = parser.parse_args(argv)
    if args.max_side < 64:
        parser.error("--max-side must be at least 64")
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    try:
        finetune_args = tuple(shlex.split(args.finetune_args))
    except ValueError as err:
        parser.error(f"--finetune-args: {err}")
    return Settings(
        host=args.host,
        port=args.port,
        share=args.share,
        corrections_dir=args.corrections_dir,
        checkpoint=args.checkpoint,
        checkpoints_dir=args.checkpoints_dir,
        device=args.device,
        max_side=args.max_side,
        concurrency=args.concurrency,
        max_file_size=args.max_file_size,
        finetune=args.finetune,
        runs_dir=args.runs_dir,
        finetune_args=finetune_args,
        photos_dir=args.photos_dir,
    )
