"""What a fine-tune works on: held-out corrections, the original sources' splits, the trainer's mix.

Everything here is decided before anything is scored or trained, and written to the run's
``finetune.json`` (:func:`make_plan`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torch.utils.data import Dataset

from ssfnet.data import CorrectionsDataset, holdout_split, mix_weights, open_source, parse_source, split_ids
from ssfnet.data.corrections import correction_problem, list_corrections, photo_of
from ssfnet.data.review import APPROVED, review_status
from ssfnet.data.sources import SourceSpec, SubsetSpec
from ssfnet.files import sha256_file
from ssfnet.labels import LabelSet, get_label_set

from ..config import TrainConfig
from ..utils import write_json
from .config import FinetuneConfig
from .defaults import CORRECTIONS_SHARE
from .score import prefix_spread, spread_items
from .status import PLAN_FILE, Progress

# The inference size of a checkpoint whose metadata names none (as ssfnet.load_predictor assumes).
DEFAULT_INPUT_SIZE = 473


@dataclass
class CorrectionsSplit:
    """One corrections folder's photos to train on and held out, and the records left out.

    ``root`` is resolved; ``skipped`` lists ``{"id", "reason"}`` of the records that cannot be read
    whole, ``superseded`` ``{"id", "latest"}`` of earlier records of a photo, ``unapproved`` (only
    when approval was asked for) ``{"id", "status"}`` of latest records left out for their review.
    """

    root: str
    train_ids: list[str]
    held_out_ids: list[str]
    skipped: list[dict] = field(default_factory=list)
    superseded: list[dict] = field(default_factory=list)
    unapproved: list[dict] | None = None

    @property
    def source(self) -> SourceSpec:
        return SourceSpec("corrections", Path(self.root))

    def record(self) -> dict:
        """As ``finetune.json`` lists it."""
        record = {
            "root": self.root,
            "train_ids": self.train_ids,
            "held_out_ids": self.held_out_ids,
            "skipped": self.skipped,
            "superseded": self.superseded,
        }
        return record if self.unapproved is None else {**record, "unapproved": self.unapproved}


@dataclass
class OriginalSplit:
    """One original source split into training and validation ids.

    ``text`` is the source as given (and recorded), ``spec`` its typed form; ``split_from`` says
    whose split it is: ``"base"`` (the split the base was trained with) or ``"options"``.
    """

    text: str
    spec: SourceSpec
    val_fraction: float
    split_seed: int
    split_from: str
    train_ids: list[str]
    val_ids: list[str]

    @property
    def weight(self) -> float:
        return self.spec.weight

    def record(self) -> dict:
        """As ``finetune.json`` lists it (the validation ids, not the training ones)."""
        return {
            "spec": self.text,
            "weight": self.weight,
            "val_fraction": self.val_fraction,
            "split_seed": self.split_seed,
            "split_from": self.split_from,
            "val_ids": self.val_ids,
        }


def _same_source(a: SourceSpec, b: SourceSpec) -> bool:
    return a.kind == b.kind and a.split == b.split and Path(a.path).resolve() == Path(b.path).resolve()


def _base_split(spec: SourceSpec, base_meta: dict) -> tuple[float, int] | None:
    """(val_fraction, split_seed) the base was trained with on ``spec``'s source, if it was."""
    training = base_meta.get("training") or {}
    for entry in training.get("splits") or []:
        try:
            if _same_source(spec, parse_source(entry["spec"])):
                return float(entry["val_fraction"]), int(entry["split_seed"])
        except (KeyError, ValueError, TypeError):
            continue
    # A trainer's checkpoint records the split beside its data; a released one, in its recipe.
    recipe = training.get("recipe") if isinstance(training.get("recipe"), dict) else {}
    recorded = training if "val_fraction" in training else recipe
    for text in training.get("data") or []:
        try:
            if _same_source(spec, parse_source(text)) and recorded.get("val_fraction") is not None:
                return float(recorded["val_fraction"]), int(recorded.get("split_seed") or 0)
        except (ValueError, TypeError):
            continue
    return None


def original_specs(data: Sequence[str], base_meta: dict, say: Callable[[str], None]) -> list[str]:
    """The original sources: ``--data``, else those of the base's training data that exist here."""
    if data:
        return list(data)
    found = []
    for text in (base_meta.get("training") or {}).get("data") or []:
        try:
            spec = parse_source(text)
        except ValueError:
            continue
        if spec.kind == "subset" or not Path(spec.path).exists():
            say(f"the base's training source {text} is not here: left out")
            continue
        found.append(text)
    return found


def latest_per_photo(records: Sequence[dict], ids: Sequence[str]) -> tuple[list[str], list[dict]]:
    """The latest record of each photo among ``ids``, and the earlier ones it stands for.

    Args:
        records: Meta dicts (with ``id``) as :func:`ssfnet.data.list_corrections` lists them,
            newest first.
        ids: The records to choose from.

    Returns:
        The chosen ids, and ``{"id", "latest"}`` for each record of a photo that a later
        record of the same photo replaces.
    """
    wanted = set(ids)
    chosen: dict[str, str] = {}
    earlier = []
    for meta in records:  # newest first: the first record of a photo is its latest
        if meta["id"] not in wanted:
            continue
        photo = photo_of(meta)
        if photo in chosen:
            earlier.append({"id": meta["id"], "latest": chosen[photo]})
        else:
            chosen[photo] = meta["id"]
    return sorted(chosen.values()), earlier


def select_corrections(
    roots: Sequence[str],
    label_set: LabelSet,
    holdout: float,
    seed: int,
    say: Callable[[str], None],
    *,
    approved_only: bool = False,
) -> list[dict]:
    """:func:`split_corrections`'s choice as ``finetune.json`` records it: a dict per folder."""
    return [c.record() for c in split_corrections(roots, label_set, holdout, seed, say, approved_only=approved_only)]


def split_corrections(
    roots: Sequence[str],
    label_set: LabelSet,
    holdout: float,
    seed: int,
    say: Callable[[str], None],
    *,
    approved_only: bool = False,
) -> list[CorrectionsSplit]:
    """Each corrections folder's latest record of each photo, split by photo with :func:`holdout_split`.

    A photo saved more than once counts once, with its latest record: one saved as the model
    proposed it and later corrected (two records with no link between them) must neither be
    trained on in one version and scored in the other, nor scored in its superseded version. The
    held-out choice is made per photo (a hash of ``seed`` and the image's hash), never per record.
    Records that cannot be read whole are skipped with a warning naming them. With
    ``approved_only`` a photo counts only if its latest record's review approves it
    (:mod:`ssfnet.data.review`): an approved record edited since is to review again.

    Returns:
        One :class:`CorrectionsSplit` per folder that has records (``unapproved`` set with ``approved_only``).

    Raises:
        ValueError: no record to train on.
    """
    corrections = []
    for root in roots:
        ids, skipped = [], []
        for record_id in CorrectionsDataset(root, label_set).ids:
            # A record broken on disk (e.g. a truncated label) is left out by name, not fatal mid-run.
            problem = correction_problem(root, record_id)
            if problem is None:
                ids.append(record_id)
            else:
                say(f"warning: skipping correction {record_id} in {root}: {problem}")
                skipped.append({"id": record_id, "reason": problem})
        records = list_corrections(root)
        ids, superseded = latest_per_photo(records, ids)
        unapproved = []
        if approved_only:
            status = {m["id"]: review_status(m)["status"] for m in records}
            unapproved = [{"id": i, "status": status[i]} for i in ids if status[i] != APPROVED]
            ids = [i for i in ids if status[i] == APPROVED]
        photo = {m["id"]: photo_of(m) for m in records}
        _, held_photos = holdout_split([photo[i] for i in ids], holdout, seed)
        held = set(held_photos)
        train_ids = sorted(i for i in ids if photo[i] not in held)
        held_ids = sorted(i for i in ids if photo[i] in held)
        say(
            f"{root}: {len(ids)} photos, {len(train_ids)} to train on, {len(held_ids)} held out"
            + (f", {len(superseded)} earlier records of the same photos left out" if superseded else "")
            + (f", {len(skipped)} unreadable ones skipped" if skipped else "")
            + (f", {len(unapproved)} not approved left out" if approved_only else "")
        )
        if ids or skipped or unapproved:
            resolved = str(Path(root).resolve())
            unapproved = unapproved if approved_only else None
            corrections.append(CorrectionsSplit(resolved, train_ids, held_ids, skipped, superseded, unapproved))
    if not any(c.train_ids for c in corrections):
        if approved_only:
            raise ValueError(
                f"no approved corrections to train on in {', '.join(roots)}: approve records in the app's "
                "review (or train without --approved-only)"
            )
        raise ValueError(f"no corrections to train on in {', '.join(roots)}: save corrections in the app first")
    return corrections


def select_originals(
    specs: Sequence[str | SourceSpec],
    base_meta: dict,
    label_set: LabelSet,
    config: TrainConfig,
    say: Callable[[str], None],
) -> list[OriginalSplit]:
    """The original sources split into training and validation ids.

    A source the base was trained on keeps the base's split (so that forgetting is measured on
    images the base never saw); others are split with ``config.val_fraction`` / ``split_seed``.
    """
    originals = []
    for given in specs:
        spec, text = (parse_source(given), given) if isinstance(given, str) else (given, given.to_text())
        split = _base_split(spec, base_meta)
        val_fraction, split_seed = split or (config.val_fraction, config.split_seed)
        train_ids, val_ids = split_ids(open_source(spec, label_set).ids, val_fraction, split_seed)
        if not train_ids:
            raise ValueError(f"source {text} has no training samples left after its validation split")
        say(f"{text}: {len(train_ids)} training and {len(val_ids)} validation images")
        split_from = "base" if split else "options"
        originals.append(OriginalSplit(text, spec, val_fraction, split_seed, split_from, train_ids, val_ids))
    return originals


def trainer_data(
    corrections: list[CorrectionsSplit], originals: list[OriginalSplit], share: float, folder: Path
) -> tuple[list[SubsetSpec], float]:
    """The trainer's data: a :class:`~ssfnet.data.SubsetSpec` per source with its mixing weight.

    Each subset is also written to ``folder/NN.json``, which its text form names in the run's records
    (``finetune.json``, the trainer's ``config.json``, the checkpoints); the trainer takes the ids given here.

    Returns:
        The subsets, and the share of every epoch that the corrections actually get (all of it
        without original sources).
    """
    counts = [len(c.train_ids) for c in corrections]
    weights = mix_weights(counts, [o.weight for o in originals], share)
    entries = [(f"corrections:{c.root}", c.source, c.train_ids) for c in corrections]
    entries += [(o.text, o.spec, o.train_ids) for o in originals]
    data = []
    for k, ((text, source, ids), weight) in enumerate(zip(entries, weights)):
        if ids and weight > 0:
            path = write_json(folder / f"{k:02d}.json", {"source": text, "ids": ids})
            # The weight its record states (6 significant digits), so that a run started again from
            # the records samples alike.
            data.append(SubsetSpec(source, tuple(ids), float(f"{weight:.6g}"), path.resolve()))
    return data, round(sum(weights[: len(corrections)]), 6)


def source_name(spec: SourceSpec) -> str:
    """How reports and the app name an original source: its kind, and its folder's name where that differs
    (``viton``, ``folder (shop)``); never the server's path."""
    folder = Path(spec.path).name
    return spec.kind if folder in ("", spec.kind) else f"{spec.kind} ({folder})"


@dataclass
class FinetuneRun:
    """One fine-tune under way: its options, the base it starts from, its run folder and UTC stamp, its progress.

    ``began`` is the time budget's clock reading when the command started.
    """

    config: FinetuneConfig
    base: Path
    base_meta: dict
    run_dir: Path
    stamp: str
    progress: Progress
    began: float


@dataclass
class Plan:
    """What a fine-tune works on, decided before anything is scored or trained.

    ``eval_sets`` list each set's images in an order whose every prefix is a spread sample of it
    (:func:`~train.finetune.score.prefix_spread`): a time budget scores the first images of each;
    ``available`` counts them all, ``source_names`` names the original sources' datasets (by ``id``).
    """

    label_set: LabelSet
    input_size: int
    corrections: list[CorrectionsSplit]
    originals: list[OriginalSplit]
    data: list[SubsetSpec]
    share: float
    samples: int
    record: dict
    eval_sets: dict[str, list[tuple[Dataset, int]]]
    source_names: dict[int, str] = field(default_factory=dict)
    available: dict[str, int] = field(default_factory=dict)


def make_plan(config: FinetuneConfig, base: Path, base_meta: dict, run_dir: Path, say: Callable[[str], None]) -> Plan:
    """Held-out and training corrections, original sources, the trainer's mix; ``finetune.json``."""
    label_set = get_label_set(base_meta["label_set"])
    train_cfg = config.train
    # The base's own inference size, not the training crop: the scores before and after are of the
    # same pixels, and the new checkpoint parses as its base did (it inherits this size).
    input_size = int(base_meta.get("input_size") or DEFAULT_INPUT_SIZE)
    seed = train_cfg.seed

    corrections = split_corrections(
        config.corrections, label_set, config.holdout, seed, say, approved_only=config.approved_only
    )
    originals = select_originals(original_specs(train_cfg.data, base_meta, say), base_meta, label_set, train_cfg, say)
    if not originals:
        say("no original data: fine-tuning on the corrections only (forgetting is not measured)")
    # Without a share given, the mix starts at the default one: the fine-tune may change it once it
    # has scored the corrections with the base (train.finetune.run.adapt_settings).
    share = CORRECTIONS_SHARE if config.corrections_share is None else config.corrections_share
    data, share = trainer_data(corrections, originals, share, run_dir / "sources")
    samples = sum(len(c.train_ids) for c in corrections) + sum(len(o.train_ids) for o in originals)
    record = {
        "base": {
            "path": str(base.resolve()),
            "name": base.name,
            "created": base_meta.get("created"),
            "metadata_sha256": sha256_file(base / "metadata.json"),
        },
        "label_set": label_set.name,
        "corrections": [c.record() for c in corrections],
        "originals": [o.record() for o in originals],
        "mix": {
            "corrections_share": share,
            "natural_share": round(sum(len(c.train_ids) for c in corrections) / samples, 6),
            "trainer_data": [d.to_record() for d in data],
        },
        "config": config.to_dict(),
    }
    write_json(run_dir / PLAN_FILE, record)

    def corrections_set(key: str, limit: int | None) -> list[tuple[Dataset, int]]:
        chosen = [(c.source, getattr(c, key)) for c in corrections]
        sets = [open_source(source, label_set, ids=ids) for source, ids in chosen if ids]
        return prefix_spread(spread_items(sets, limit))

    val_sets: dict[str, Dataset] = {}
    for o in originals:
        if o.val_ids:
            name, k = source_name(o.spec), 1
            while (name if k == 1 else f"{name} {k}") in val_sets:  # two sources of one kind and folder name
                k += 1
            name = name if k == 1 else f"{name} {k}"
            val_sets[name] = open_source(o.spec, label_set, ids=o.val_ids)
    eval_sets = {
        "held_out_corrections": corrections_set("held_out_ids", None),
        "train_corrections": corrections_set("train_ids", train_cfg.val_max_images),
        "original_val": prefix_spread(spread_items(list(val_sets.values()), train_cfg.val_max_images)),
    }
    names = {id(dataset): name for name, dataset in val_sets.items()}
    available = {name: len(items) for name, items in eval_sets.items()}
    return Plan(
        label_set, input_size, corrections, originals, data, share, samples, record, eval_sets, names, available
    )
