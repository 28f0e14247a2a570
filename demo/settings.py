"""App settings from command-line flags, with environment variables as defaults.

Every flag has an environment variable so that a hosted Space (which cannot pass
flags) is configured the same way as a local run; a flag wins over its variable.
Each setting is written once, as a field of :class:`Settings` made with
:func:`setting`: its type, default, variables and help. :func:`parse_args`
derives the flags (``--max-side`` for ``max_side``) and the variables' reading
from those fields.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssfnet.predictor import CHECKPOINTS_DIR

from .access import Credentials, read_credentials

DEFAULT_MAX_SIDE = 1600


def setting(
    default: Any,
    help: str,
    *env: str,
    minimum: int | None = None,
    choices: tuple[str, ...] | None = None,
    on_space: Any = None,
    repeat: bool = False,
    secret: bool = False,
) -> Any:
    """A field of :class:`Settings`: its default, help and environment variables (the first one set wins).

    Args:
        default: The value without a flag or a variable.
        help: What the setting does (shown by ``--help``).
        *env: Environment variables read for the default, in order; an empty one counts as unset.
        minimum: Smallest accepted number, if any.
        choices: The accepted values, if only some are.
        on_space: The default on Hugging Face Spaces (``SPACE_ID`` is set there), if it differs.
        repeat: A tuple of texts: the flag may be repeated and commas separate entries; any flag
            replaces the variable, whose value ``--help`` does not show.
        secret: Kept out of the settings' repr (passwords).
    """
    metadata = {"help": help, "env": env, "minimum": minimum, "choices": choices}
    metadata |= {"on_space": on_space, "repeat": repeat}
    return dataclasses.field(default=default, metadata=metadata, repr=not secret)


@dataclass(frozen=True)
class Settings:
    """Everything the app needs to know at start-up; each field's help says what it does.

    ``finetune_args`` are chosen by whoever runs the server, never by users. Other folders than
    ``photos_dir`` can be typed in the page only while the app listens on localhost alone.
    """

    # GRADIO_SERVER_NAME / GRADIO_SERVER_PORT are what Hugging Face Spaces sets.
    host: str = setting(
        "127.0.0.1", "interface to listen on (0.0.0.0 serves other machines)", "SSFNET_HOST", "GRADIO_SERVER_NAME"
    )
    port: int = setting(7860, "TCP port", "SSFNET_PORT", "GRADIO_SERVER_PORT")
    share: bool = setting(False, "create a public Gradio share link", "SSFNET_SHARE")
    # Beyond localhost the login page is the only gate (see demo.access).
    auth: tuple[str, ...] = setting(
        (),
        "user:password that may log in; repeat the flag or separate users with commas (the first is the admin)",
        "SSFNET_AUTH",
        repeat=True,
        secret=True,
    )
    auth_file: Path | None = setting(
        None, "file of user:password lines that may log in (# starts a comment)", "SSFNET_AUTH_FILE"
    )
    corrections_dir: Path = setting(Path("corrections"), "where saved corrections go", "SSFNET_CORRECTIONS_DIR")
    checkpoint: Path | None = setting(
        None, "checkpoint folder to start with; default: the embedded one", "SSFNET_CHECKPOINT"
    )
    checkpoints_dir: Path = setting(
        CHECKPOINTS_DIR,
        "folder scanned for checkpoints to choose from (also for ones added while running)",
        "SSFNET_CHECKPOINTS_DIR",
    )
    device: str | None = setting(None, "cpu, cuda, cuda:1 ...; default: CUDA when available", "SSFNET_DEVICE")
    backend: str = setting(
        "torch",
        "what runs the model: torch, or onnxruntime on the CPU (each checkpoint is exported to ONNX on first use)",
        "SSFNET_BACKEND",
        choices=("torch", "onnxruntime"),
    )
    max_side: int = setting(
        DEFAULT_MAX_SIDE,
        "longer side of the working resolution for parsing and editing",
        "SSFNET_MAX_SIDE",
        minimum=64,
    )
    concurrency: int = setting(1, "model runs at once", "SSFNET_CONCURRENCY", minimum=1)
    max_file_size: str = setting("50mb", "largest accepted upload", "SSFNET_MAX_FILE_SIZE")
    # A shared Space must not let any visitor occupy the machine with training.
    finetune: bool = setting(
        True,
        "offer the fine-tuning panel, which runs python -m train.finetune on this machine "
        "(off by default on Hugging Face Spaces)",
        "SSFNET_FINETUNE",
        on_space=False,
    )
    # Any visitor could otherwise occupy the machine with training, or cancel someone's.
    finetune_remote: bool = setting(
        False,
        "offer the fine-tuning panel also when the app serves other machines (--host beyond localhost, --share)",
        "SSFNET_FINETUNE_REMOTE",
    )
    finetune_max_minutes: int = setting(
        60,
        "longest time budget a fine-tune started from the page may ask for",
        "SSFNET_FINETUNE_MAX_MINUTES",
        minimum=1,
    )
    runs_dir: Path = setting(Path("runs"), "where fine-tune run folders (logs, reports) go", "SSFNET_RUNS_DIR")
    finetune_args: tuple[str, ...] = setting(
        (),
        'more train.finetune options for every fine-tune, e.g. "--data lip:/data/lip --workers 8"',
        "SSFNET_FINETUNE_ARGS",
    )
    photos_dir: Path | None = setting(None, "a folder of photos to annotate, offered as the queue", "SSFNET_PHOTOS_DIR")
    # Unsaved work is autosaved as a draft on every edit, so an expired session loses nothing.
    session_minutes: int = setting(
        120,
        "forget a user's open photo after this many minutes without an action (its draft stays on disk)",
        "SSFNET_SESSION_MINUTES",
        minimum=1,
    )
    queue_size: int = setting(
        32, "requests that may wait at once; further ones are told the app is busy", "SSFNET_QUEUE_SIZE", minimum=1
    )

    @property
    def local_only(self) -> bool:
        """Whether only this machine can reach the app (then its user may point it at any folder)."""
        return self.host in ("127.0.0.1", "localhost", "::1") and not self.share

    @property
    def finetune_offered(self) -> bool:
        """Whether the page offers fine-tuning: on, and local-only or opened to other machines."""
        return self.finetune and (self.local_only or self.finetune_remote)

    def credentials(self) -> Credentials:
        """The ``(user, password)`` pairs of ``auth`` then ``auth_file``; see :func:`demo.access.read_credentials`."""
        return read_credentials(self.auth, self.auth_file)


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _reader(hint: Any) -> Callable[[str], Any]:
    """How the text of a flag or a variable becomes a value of type ``hint`` (``X | None`` reads as ``X``)."""
    kind = hint
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        kind = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if kind is bool:
        return _truthy
    if typing.get_origin(kind) is tuple:
        return str  # split (shell-style) once argparse has chosen between flag and variable
    return kind


def _variable(names: Sequence[str], env: Mapping[str, str]) -> str | None:
    """The text of the first variable of ``names`` set (an empty one counts as unset)."""
    return next((env[name] for name in names if env.get(name)), None)


def _add_option(parser: argparse.ArgumentParser, field: dataclasses.Field, hint: Any, env: Mapping[str, str]) -> None:
    """Add ``--<field>`` with its variable (or the field's default) as the default."""
    read = _reader(hint)
    names = field.metadata["env"]
    variables = " or ".join(names)
    if field.metadata["repeat"]:
        # No default here: parse_args reads the variable when no flag is given (so --help never shows it).
        kwargs = {"action": "append", "help": f"{field.metadata['help']} (env {variables})"}
        parser.add_argument("--" + field.name.replace("_", "-"), **kwargs)
        return
    text = _variable(names, env)
    if text is not None:
        try:
            default = read(text)
        except ValueError as err:
            parser.error(f"{names[0]}: {err}")
    elif field.metadata["on_space"] is not None and env.get("SPACE_ID"):
        default = field.metadata["on_space"]
    else:
        default = shlex.join(field.default) if typing.get_origin(hint) is tuple else field.default
    kwargs: dict[str, Any] = {"default": default, "help": f"{field.metadata['help']} (env {variables})"}
    if field.metadata["choices"]:
        kwargs["choices"] = field.metadata["choices"]
    if read is _truthy:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif read is not str:
        kwargs["type"] = read
    parser.add_argument("--" + field.name.replace("_", "-"), **kwargs)


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
    hints = typing.get_type_hints(Settings)
    fields = dataclasses.fields(Settings)
    for field in fields:
        _add_option(parser, field, hints[field.name], env)
    values = vars(parser.parse_args(argv))
    for field in fields:
        flag, minimum = "--" + field.name.replace("_", "-"), field.metadata["minimum"]
        if minimum is not None and values[field.name] < minimum:
            parser.error(f"{flag} must be at least {minimum}")
        choices = field.metadata["choices"]
        if choices and values[field.name] not in choices:  # a variable's value (argparse checks the flag's)
            parser.error(f"{field.metadata['env'][0]}: {values[field.name]!r} is not one of {', '.join(choices)}")
        if field.metadata["repeat"]:
            given = values[field.name]
            if given is None:
                text = _variable(field.metadata["env"], env)
                given = [text] if text is not None else []
            values[field.name] = tuple(entry.strip() for text in given for entry in text.split(",") if entry.strip())
        elif typing.get_origin(hints[field.name]) is tuple:
            try:
                values[field.name] = tuple(shlex.split(values[field.name]))
            except ValueError as err:
                parser.error(f"{flag}: {err}")
    settings = Settings(**values)
    try:
        settings.credentials()
    except ValueError as err:
        # One line, without the usage: the message names the entry (never a password).
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    return settings
