"""Face-recognition backbones, by name: `get_backbone("ResNet50_IR")`, `list_backbones()`."""
from . import iresnet, mobilefacenet, timm_backbone, vit  # noqa: F401  (registers the networks; timm is deferred)
from .iresnet import IResNet
from .mobilefacenet import MobileFaceNet
from .registry import (build_backbone, check_backbone_name, get_backbone, list_backbones, register_backbone,
                       register_backbone_family, supports_activation_checkpointing)
from .vit import FaceViT

__all__ = ["FaceViT", "IResNet", "MobileFaceNet", "build_backbone", "check_backbone_name", "get_backbone",
           "list_backbones", "register_backbone", "register_backbone_family", "supports_activation_checkpointing"]
