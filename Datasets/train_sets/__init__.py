"""Training sets by format: `build_train_dataset(cfg)` reads what `cfg.train_format` names.

An item is (image float32 (3, H, W), label int, n_bad int); the set has `.num_classes`. A new format is one file
here registering its builder with `register_train_format`. `train_sets` lists several sets for one run (multi.py).
"""
from . import folder, rec, synthetic  # noqa: F401  (registers the formats)
from .base import FaceTrainDataset
from .folder import FolderTrainDataset
from .multi import ConcatTrainSets
from .rec import RecordIOTrainDataset
from .registry import build_train_dataset, list_train_formats, register_train_format

__all__ = ["ConcatTrainSets", "FaceTrainDataset", "FolderTrainDataset", "RecordIOTrainDataset", "build_train_dataset",
           "list_train_formats", "register_train_format"]
