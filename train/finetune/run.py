"""Fine-tune a checkpoint on saved corrections mixed with the original training data.

    python -m train.finetune --base checkpoints/ssfnet_lite0-lip20 --corrections corrections \\
        --data lip:../shared/datasets/lip --max-minutes 10

It is the trainer of :mod:`train.train` with other defaults (:data:`FINETUNE_DEFAULTS`: a low
learning rate, a short time budget), every one of its options still available, plus the options
of the ``fine-tuning`` group. The steps:

1. Each photo counts once, with its latest record (a photo saved twice without a link between
   the records, e.g. accepted as proposed and later corrected, is the later record alone). A
   fraction (``--holdout``) of each corrections folder's photos is held out, deterministically
   per photo (``--seed`` and the image's hash), so that no photo is both trained on and scored.
   The original sources (``--data``; default: the base checkpoint's training data, where
   present) keep the validation split the base was trained with.
2. The base is scored on the held-out corrections, on the training corrections and on the
   original validation split.
3. The trainer starts from the base on the training corrections (a ``--corrections-share`` of
   every epoch, i.e. oversampled) and the original training split; coarse labels go through the
   partial loss as in training.
4. The result is scored on the same images, so an improvement and any forgetting both show, and
   published as ``<checkpoints-dir>/<name>-<UTC timestamp>/`` (written aside and renamed, never
   over the base; by default ``checkpoints/finetuned/``, which git ignores) with its lineage in
   the metadata. A result that scores lower than the base on the corrections it trained on or on
   the held-out ones is not published unless ``--publish-anyway`` is given: the run says what got
   worse and exits with status 4.

Both scorings run at the base's inference size (its ``input_size``), and the new checkpoint
inherits that size: before and after, and any later comparison of the two, parse the same
pixels. A run that trained nothing (no iteration done) publishes nothing, says why and exits with
status 2.

The run folder (default ``runs/finetune-<timestamp>``) holds the trainer's files (``log.jsonl``,
``curves.png``, ...), ``finetune.json`` (the plan: base, corrections and held-out ids, sources),
``status.json`` (the phase, for the app; :func:`train.finetune.status.read_progress` turns it into a fraction),
``report.json`` (before / after metrics, the new checkpoint) and ``finetune.png``.

``--max-minutes`` is the budget of the whole command, from its start (loading, both evaluations
and publishing included), and it belongs to training: the evaluations before and after together
get a fifth of what the start-up leaves (:data:`train.finetune.budget.EVAL_SHARE`), and score as
many images as fit in it, the held-out corrections first, then the original sources' validation
photos, then the corrections trained on, from the scoring time per image measured as they go;
training gets the rest (at least 70 % of a budget of 5 minutes or more, with a start-up under 25 s). The log, the report
and the app say how many images of each set were scored and how long training got. A budget under
a minute is refused; none is refused for lack of time. 0 runs ``--epochs`` instead, of
``--epoch-size`` samples (default: the training samples, but at least :data:`MIN_EPOCH_BATCHES`
batches), and scores every image. SIGTERM, Ctrl-C, the run's ``STOP`` file (``--stop-file``) or
the ``cancel`` event of :func:`run_finetune` stop it without publishing anything; the exit status is then 3.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from ssfnet.checkpoint import (
    CheckpointError,
    fitting_dtype,
    load_checkpoint,
    read_metadata,
    round_to_storage,
    storage_dtype,
)
from ssfnet.precision import resolve_device
from ssfnet.predictor import DEFAULT_CHECKPOINT

from ..config import TrainConfig, load_config_file
from ..config import get_args_parser as get_train_args_parser
from ..config import parse_args as parse_train_args
from ..train import TrainSummary
from ..train import run_training as train_main
from ..utils import write_json
from .adapt import adapt_settings
from .budget import Timing, before_deadline_s, budget_problem, training_s, write_timing
from .config import FINETUNE_DEFAULTS, INHERITED, LR_SHARE, FinetuneConfig
from .data import FinetuneRun, Plan, make_plan
from .publish import Outcome, publish_run
from .report import FinetuneReport
from .score import evaluate_sets, scored_counts, summary_line
from .status import REPORT_FILE, Cancelled, Progress, signals_cancel, utc_stamp

# The checkpoint fine-tuned when no --base is given (tests point this elsewhere).
DEFAULT_BASE = DEFAULT_CHECKPOINT
EXIT_CANCELLED = 3
# The fine-tune scored lower than its base (see train.finetune.publish.GUARDED_SETS) and published nothing.
EXIT_NOT_PUBLISHED = 4
# Without --epoch-size an epoch has at least this many batches: a few corrections would otherwise
# make epochs of one or two steps, and the data loader starts its worker processes every epoch.
MIN_EPOCH_BATCHES = 200


class NothingTrained(ValueError):
    """The run trained nothing (no iteration done): nothing is published."""


# ---------------------------------------------------------------------------------------------
# Command line


def _add_finetune_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    d = FinetuneConfig()
    parser.add_argument(
        "--base",
        default=None,
        help=f"checkpoint folder to fine-tune (default: the embedded {DEFAULT_BASE.name}, or --init-checkpoint)",
    )
    parser.add_argument(
        "--corrections",
        action="append",
        default=None,
        metavar="DIR",
        help="corrections folder written by the app (repeatable; default: corrections)",
    )
    parser.add_argument(
        "--corrections-share",
        type=float,
        default=d.corrections_share,
        help="share of every epoch drawn from the corrections (they are oversampled: a few corrections "
        "among thousands of original images would otherwise hardly be seen); default: chosen from how the base "
        "parses the corrections, 0.05 for photos like its own up to 0.5 for a new kind of photo",
    )
    parser.add_argument(
        "--holdout",
        type=float,
        default=d.holdout,
        help="share of the corrections held out (by a hash of --seed and the id) to score before and after",
    )
    parser.add_argument(
        "--blend",
        type=float,
        default=d.blend,
        help="share of the fine-tune's change kept: publish base + BLEND x (trained - base), BatchNorm statistics "
        "too (weight-space ensembling; 1: the trained weights); default: chosen with the share, 0.25 for photos "
        "like the base's own up to 1 for a new kind of photo",
    )
    parser.add_argument("--name", default=None, help="name of the new checkpoint (default: the base's + '-ft')")
    parser.add_argument(
        "--checkpoints-dir", default=d.checkpoints_dir, help="where the new checkpoint folder is published"
    )
    parser.add_argument(
        "--publish-anyway",
        action="store_true",
        default=d.publish_anyway,
        help="publish even when the result scores lower than the base on the corrections it trained on or on "
        "the held-out ones (by default such a run publishes nothing and exits with status 4)",
    )
    parser.add_argument(
        "--approved-only",
        action="store_true",
        default=d.approved_only,
        help="use only the photos whose latest correction a reviewer approved in the app (default: every "
        "saved correction, reviewed or not)",
    )
    parser.add_argument(
        "--keep-run-checkpoint",
        action=argparse.BooleanOptionalAction,
        default=d.keep_run_checkpoint,
        help="keep the run folder's last/ (with optimizer state) after publishing",
    )


def get_args_parser() -> argparse.ArgumentParser:
    """The trainer's parser with the fine-tuning defaults and the ``fine-tuning`` options."""
    parser = get_train_args_parser(
        FINETUNE_DEFAULTS,
        prog="python -m train.finetune",
        description="Fine-tune an SSFNet checkpoint on saved corrections mixed with the original data. "
        "--max-minutes covers the whole command (0: run --epochs instead); the original data "
        "default to the base checkpoint's training data where those folders exist.",
    )
    # Abbreviations would let the two parsers of parse_args read an option differently.
    parser.allow_abbrev = False
    _add_finetune_options(parser.add_argument_group("fine-tuning"))
    return parser


def parse_args(argv: Sequence[str] | None = None) -> FinetuneConfig:
    """Parse a command line (``--config FILE`` holds trainer options, as for the trainer)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    get_args_parser().parse_args(argv)  # --help and errors that know every option
    own = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    _add_finetune_options(own)
    values, rest = own.parse_known_args(argv)
    train = parse_train_args(rest, FINETUNE_DEFAULTS, prog="python -m train.finetune")
    if train.max_minutes is not None and train.max_minutes <= 0:
        train.max_minutes = None
    options = vars(values)
    options["corrections"] = options["corrections"] or ["corrections"]
    return FinetuneConfig(train=train, given=given_options(rest), **options)


def given_options(argv: Sequence[str]) -> tuple[str, ...]:
    """The trainer options ``argv`` sets, on the command line or in its ``--config`` file."""
    parser = get_train_args_parser(FINETUNE_DEFAULTS, prog="python -m train.finetune")
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    named = vars(parser.parse_args(list(argv)))
    config_file = named.pop("config", None)
    if config_file:
        named.update(load_config_file(config_file))
    return tuple(sorted(named))


def inherit_recipe(train: TrainConfig, base_meta: dict, given: Sequence[str]) -> tuple[TrainConfig, dict]:
    """``train`` with the options not ``given`` taken from the base's recorded recipe, and what changed.

    The recipe is what :mod:`train.release` records (``training.recipe``); a base without one, or
    with values the trainer refuses, leaves ``train`` as it is.
    """
    training = base_meta.get("training")
    recipe = training.get("recipe") if isinstance(training, dict) else None
    if not isinstance(recipe, dict):
        return train, {}
    changes = {key: recipe[key] for key in INHERITED if key not in given and recipe.get(key) is not None}
    lr = recipe.get("lr")
    if "lr" not in given and isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0:
        changes["lr"] = float(lr) * LR_SHARE
    defaults = dataclasses.asdict(FINETUNE_DEFAULTS)
    for key, value in list(changes.items()):
        wanted = type(defaults[key])
        if wanted is tuple and isinstance(value, list):
            changes[key] = value = tuple(value)
        if not isinstance(value, wanted) and not (wanted is float and isinstance(value, int)):
            del changes[key]  # a value of the wrong type: the fine-tune's own default stays
    try:
        return dataclasses.replace(train, **changes), changes
    except (TypeError, ValueError):
        return train, {}


# ---------------------------------------------------------------------------------------------
# Main


def clock() -> float:
    """Seconds on the clock of the time budget: ``time.perf_counter()`` (tests drive a clock of their own)."""
    return time.perf_counter()


def resolve_base(base: str | None) -> Path:
    """The base checkpoint folder, with a message that says what to do when it is missing."""
    path = Path(base) if base else DEFAULT_BASE
    if not path.is_dir():
        if base is None:
            raise FileNotFoundError(
                f"the embedded default checkpoint {DEFAULT_BASE} is not in this copy (none has been trained "
                "yet): pass --base FOLDER with the checkpoint to fine-tune"
            )
        raise FileNotFoundError(f"base checkpoint folder {path} does not exist")
    return path


def process_age_s() -> float:
    """Seconds since this process started (interpreter start-up and imports), 0 where unknown."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def run_finetune(
    config: FinetuneConfig, *, cancel: threading.Event | None = None, began: float | None = None
) -> FinetuneReport:
    """Fine-tune as configured; returns the report (``report.json`` holds its ``to_dict()``).

    Args:
        config: The fine-tune.
        cancel: Optional event that stops the run (no checkpoint is published); SIGTERM, Ctrl-C
            and the run's stop file do the same.
        began: :func:`clock` when the time budget started (default: now); the command
            line passes its process's start.

    Returns:
        The report: ``status`` (``finished`` or ``cancelled``), ``checkpoint`` (the new folder or
        None), ``metrics`` before and after, the run folder.

    Raises:
        FileNotFoundError: no base checkpoint or corrections folder.
        NothingTrained: no training iteration ran; nothing is published.
        ValueError: nothing to train on, a budget under a minute, or options that do not fit.
    """
    began = clock() if began is None else began
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("fine-tuning runs as one process (the evaluations are not distributed): not under torchrun")
    if problem := budget_problem(config.train.max_minutes):
        raise ValueError(problem)
    base = resolve_base(config.base or config.train.init_checkpoint)
    base_meta = read_metadata(base)
    train, inherited = inherit_recipe(config.train, base_meta, config.given)
    if inherited:
        config = dataclasses.replace(config, train=train)
        _say("from the base's recipe: " + ", ".join(f"{k} {v}" for k, v in inherited.items()))
    for root in config.corrections:
        if not (Path(root) / "meta").is_dir():
            raise FileNotFoundError(f"no corrections folder at {root} (expected images/, labels/ and meta/)")
    stamp = utc_stamp()
    run_dir = Path(config.train.out.replace("{timestamp}", stamp))
    if (run_dir / REPORT_FILE).exists() or (run_dir / "last").exists():
        raise FileExistsError(f"{run_dir} already holds a fine-tune run: choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    cancel = cancel or threading.Event()
    stop_file = Path(config.train.stop_file) if config.train.stop_file else run_dir / "STOP"
    progress = Progress(run_dir, stop_file, cancel)
    run = FinetuneRun(config, base, base_meta, run_dir, stamp, progress, began)
    with signals_cancel(cancel):
        try:
            report = _finetune(run)
        except Cancelled:
            return _cancelled(run)
        except NothingTrained as err:
            # Not a crash: the message alone says what happened and what to change.
            write_json(
                run_dir / REPORT_FILE,
                {
                    "status": "failed",
                    "error": str(err),
                    "checkpoint": None,
                    "phase": progress.phase,
                    "elapsed_s": round(clock() - began, 1),
                },
            )
            progress.finish("failed", str(err))
            raise
        except BaseException as err:
            write_json(run_dir / REPORT_FILE, {"status": "failed", "error": f"{type(err).__name__}: {err}"})
            progress.finish("failed", f"{type(err).__name__}: {err}")
            raise
    if report.checkpoint is None:
        progress.finish("finished", report.note, checkpoint=None)
    else:
        note = f"; warning: {report.note}" if report.note else ""
        progress.finish("finished", f"wrote {report.checkpoint}{note}", checkpoint=report.checkpoint)
    return report


def _cancelled(run: FinetuneRun) -> FinetuneReport:
    """The report of a run stopped before publishing, written and said in its status."""
    progress = run.progress
    report = FinetuneReport(
        status="cancelled",
        checkpoint=None,
        base=str(run.base),
        run=str(run.run_dir),
        phase=progress.phase,
        elapsed_s=round(clock() - run.began, 1),
    )
    write_json(run.run_dir / REPORT_FILE, report.to_dict())
    progress.finish("cancelled", f"cancelled during {progress.phase}; no checkpoint was written")
    return report


def _finetune(run: FinetuneRun) -> FinetuneReport:
    """The four phases: plan, score the base, train, score and publish the result."""
    config, base, progress = run.config, run.base, run.progress
    progress.enter("setup", f"base {base.name}; reading the corrections and sources")
    plan = make_plan(config, base, run.base_meta, run.run_dir, _say)
    device = resolve_device(config.train.device)
    before, eval_s = _score_base(run, plan, device)
    run, plan, choice = adapt_settings(run, plan, before, _say)
    config = run.config
    # The evaluation after scores the images the one before did: each set's first (a budget's sample).
    scored = scored_counts(before)
    plan = dataclasses.replace(plan, eval_sets={n: items[: scored[n]] for n, items in plan.eval_sets.items()})
    summary, trainer = _train(run, plan, eval_s, choice.reason)
    progress.enter("evaluate-after", f"scoring the fine-tuned model ({summary.iteration} iterations)")
    model, trained_meta = load_checkpoint(run.run_dir / "last", device=device)
    if config.blend < 1.0:
        base_model, _ = load_checkpoint(base, device=device)
        blend_weights(model, base_model.state_dict(), config.blend)
        del base_model
        _say(f"published weights: the base plus {config.blend:g} of the fine-tune's change")
    wanted = storage_dtype(run.base_meta)
    dtype = fitting_dtype(model, wanted)
    if dtype != wanted:
        _say(f"a weight exceeds {wanted}'s range: the new checkpoint is stored in float32")
    round_to_storage(model, dtype)
    after = evaluate_sets(
        model,
        plan.label_set,
        plan.eval_sets,
        device=device,
        input_size=plan.input_size,
        progress=progress,
        names=plan.source_names,
    )
    _say(f"after:  {summary_line(after)}")
    outcome = Outcome(before, after, summary, trainer, model, trained_meta, dtype, eval_s)
    return publish_run(run, plan, outcome, clock=clock)


def blend_weights(model: torch.nn.Module, base_state: dict[str, torch.Tensor], keep: float) -> None:
    """Move ``model``'s floating tensors back towards ``base_state``: ``base + keep * (model - base)``.

    Averaging the weights of a model and its fine-tuned copy keeps much of what the fine-tune
    learnt while undoing part of the drift of a short run on small batches (weight-space
    ensembling: Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022).
    Integer buffers (BatchNorm's batch counters) keep the model's values.

    Raises:
        ValueError: the two state dicts do not hold the same tensors.
    """
    state = model.state_dict()
    if state.keys() != base_state.keys():
        raise ValueError("the base and the fine-tuned model do not have the same weights: cannot blend them")
    with torch.no_grad():
        for key, tensor in state.items():
            if tensor.is_floating_point():
                base = base_state[key].to(tensor.device, tensor.dtype)
                if base.shape != tensor.shape:
                    raise ValueError(f"cannot blend {key}: shape {tuple(base.shape)} != {tuple(tensor.shape)}")
                tensor.copy_(base + keep * (tensor - base))


def _say(text: str) -> None:
    print(f"[finetune] {text}", flush=True)


def _score_base(run: FinetuneRun, plan: Plan, device: torch.device) -> tuple[dict, float]:
    """The base's scores on the evaluation sets, and how long scoring took (reserved for the second).

    On a time budget it scores as many images as fit in its share (:func:`train.finetune.budget.before_deadline_s`).
    What the start-up and the evaluation took is recorded in the run's ``timing.json``, so that the
    app can tell what the next run's budget buys before starting it (see :mod:`train.finetune.budget`).
    """
    config, base, progress, began = run.config, run.base, run.progress, run.began
    available = sum(plan.available.values())
    max_minutes = config.train.max_minutes
    eval_began = clock()
    until = None
    if max_minutes is not None:
        share_s = before_deadline_s(max_minutes * 60, eval_began - began)
        until = (clock, eval_began + share_s)
        progress.enter("evaluate-before", f"scoring {base.name} on up to {available} images in about {share_s:.0f} s")
    else:
        progress.enter("evaluate-before", f"scoring {base.name} on {available} images")
    base_model, _ = load_checkpoint(base, device=device)
    scoring_began = clock()
    before = evaluate_sets(
        base_model,
        plan.label_set,
        plan.eval_sets,
        device=device,
        input_size=plan.input_size,
        progress=progress,
        until=until,
        names=plan.source_names,
    )
    del base_model
    eval_s = clock() - eval_began
    images = scored_counts(before)
    timing = Timing(
        base=base.name,
        setup_s=round(eval_began - began, 3),
        load_s=round(scoring_began - eval_began, 3),
        eval_s=round(eval_s, 3),
        images=images,
        val_max_images=config.train.val_max_images,
        available=dict(plan.available),
    )
    write_timing(progress.run_dir, timing)
    _say(f"before: {summary_line(before)}")
    _say(f"scored {scored_text(images, plan.available)} in {eval_s:.0f} s")
    return before, eval_s


SET_NAMES = {
    "held_out_corrections": "held-out corrections",
    "original_val": "original validation photos",
    "train_corrections": "corrections trained on",
}


def scored_text(images: dict[str, int], available: dict[str, int]) -> str:
    """``2 of 2 held-out corrections, 40 of 100 original validation photos, 0 of 5 corrections trained on``."""
    return ", ".join(
        f"{images.get(n, 0)} of {available.get(n, 0)} {SET_NAMES.get(n, n)}" for n in SET_NAMES if available.get(n)
    )


def _train(run: FinetuneRun, plan: Plan, eval_s: float, settings: str = "") -> tuple[TrainSummary, TrainConfig]:
    """The trainer from the base on the plan's mix, for the time the budget leaves; its summary and config.

    ``settings`` says how the mix and the blend were chosen (the training phase's message shows it).
    """
    base, run_dir, progress, began = run.base, run.run_dir, run.progress, run.began
    train_cfg = run.config.train
    max_minutes = None
    if train_cfg.max_minutes is not None:
        spent = clock() - began
        max_minutes = round(training_s(train_cfg.max_minutes * 60, spent, eval_s) / 60, 3)
        _say(
            f"{spent:.0f} s spent (the evaluation {eval_s:.0f} s): training for {max_minutes:.1f} of the "
            f"{train_cfg.max_minutes:g} minutes"
        )
    trainer = dataclasses.replace(
        train_cfg,
        data=plan.data,
        epoch_size=train_cfg.epoch_size or max(plan.samples, MIN_EPOCH_BATCHES * train_cfg.batch_size),
        val_fraction=0.0,
        init_checkpoint=str(base),
        out=str(run_dir),
        max_minutes=max_minutes,
        resume=False,
        stop_file=str(progress.stop_file),
    )
    plan_text = f"{max_minutes:.1f} minutes" if max_minutes is not None else f"{trainer.epochs} epochs"
    said = f"{settings}; " if settings else ""
    progress.enter("train", f"{said}lr {trainer.lr:g} for {plan_text}, corrections {plan.share:.0%} of the samples")
    summary = train_main(trainer, cancel=progress.cancel)
    # --stop-after-iters caps the steps of a fine-tune (tests, quick trials): reaching it is the
    # end of training, not a cancel, and the run is scored and published as usual.
    capped = trainer.stop_after_iters is not None and summary.iteration >= trainer.stop_after_iters
    if progress.stop_requested() or (summary.status != "finished" and not capped):
        raise Cancelled(summary.stop_reason or "stopped")
    if not summary.iteration:
        raise NothingTrained(
            f"no training iteration ran in the {plan_text} left for training: nothing was published "
            "(the weights would be the base's); give a larger budget"
        )
    return summary, trainer


def main(argv: list[str] | None = None, *, began: float | None = None) -> int:
    """``python -m train.finetune``: the exit status; ``began`` as for :func:`run_finetune`."""
    config = parse_args(argv)
    try:
        report = run_finetune(config, began=began)
    except (FileNotFoundError, FileExistsError, ValueError, CheckpointError) as err:
        print(f"python -m train.finetune: error: {err}", file=sys.stderr)
        return 2
    if report.status == "cancelled":
        return EXIT_CANCELLED
    delta = ", ".join(f"{k} {v:+.2f}" for k, v in report.delta_miou.items())
    if report.checkpoint is None:
        print(f"[finetune] nothing published (mIoU change: {delta or 'n/a'})", flush=True)
        return EXIT_NOT_PUBLISHED
    print(f"[finetune] new checkpoint {report.checkpoint} (mIoU change: {delta or 'n/a'})", flush=True)
    return 0
