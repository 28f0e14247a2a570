"""Dataset layouts, training packs, the corrections store, mixing of sources and transforms."""

from ssfnet.data.corrections import (
    CorrectionsDataset,
    export_zip,
    list_corrections,
    load_correction,
    save_correction,
)
from ssfnet.data.layouts import (
    ATRDataset,
    CCPDataset,
    CIHPDataset,
    FolderDataset,
    LIPDataset,
    ParsingDataset,
    PascalPersonPartDataset,
    VitonDataset,
    nearest_colour_ids,
    read_id_png,
    read_stored_image,
)
from ssfnet.data.mixed import MixedDataset, holdout_split, mix_weights, split_ids
from ssfnet.data.packs import PackDataset
from ssfnet.data.sources import (
    SOURCE_KINDS,
    Source,
    SourceSpec,
    SubsetSpec,
    as_source,
    open_source,
    parse_source,
    register_source,
    source_record,
)
from ssfnet.data.transforms import EvalTransform, TrainTransform, flip_sample, to_tensors
from ssfnet.geometry import resize_long_side

__all__ = [
    "ATRDataset",
    "CCPDataset",
    "CIHPDataset",
    "CorrectionsDataset",
    "EvalTransform",
    "FolderDataset",
    "LIPDataset",
    "MixedDataset",
    "PackDataset",
    "ParsingDataset",
    "PascalPersonPartDataset",
    "SOURCE_KINDS",
    "Source",
    "SourceSpec",
    "SubsetSpec",
    "TrainTransform",
    "VitonDataset",
    "as_source",
    "export_zip",
    "flip_sample",
    "holdout_split",
    "list_corrections",
    "load_correction",
    "mix_weights",
    "nearest_colour_ids",
    "open_source",
    "parse_source",
    "read_id_png",
    "read_stored_image",
    "register_source",
    "resize_long_side",
    "save_correction",
    "source_record",
    "split_ids",
    "to_tensors",
]
