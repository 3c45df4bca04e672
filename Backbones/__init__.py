"""Face-recognition backbones, by name: `get_backbone("ResNet50_IR")`, `list_backbones()`."""
from . import iresnet, mobilefacenet  # noqa: F401  (registers the networks)
from .iresnet import IResNet
from .mobilefacenet import MobileFaceNet
from .registry import build_backbone, get_backbone, list_backbones, register_backbone

__all__ = ["IResNet", "MobileFaceNet", "build_backbone", "get_backbone", "list_backbones", "register_backbone"]
