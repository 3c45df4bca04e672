"""Training-time augmentation: named ops with a probability and a strength (`augment` in Config), applied in the
loader workers on uint8 tensors and seeded per sample. `python -m Datasets.augment --preview` shows a recipe."""
from .ops import OP_HELP, build_op, list_ops, register_op
from .pipeline import Augment, AugmentSpec, EpochIndex, parse_augment, sample_seed

__all__ = ["OP_HELP", "build_op", "list_ops", "register_op", "Augment", "AugmentSpec", "EpochIndex",
           "parse_augment", "sample_seed"]
