"""Classification heads for face recognition, by name: `get_head("ArcFace", 512, 10575, scale=64, margin=0.5)`.

Every head maps (embeddings (N, D), int64 labels (N,)) to `HeadOutput(logits, cosine)`: float32 logits for
cross-entropy and the margin-free score whose argmax is the prediction.
"""
from . import (adaface, arcface, combined, cosface, curricularface, elasticface, magface, softmax,  # noqa: F401
               sphereface)  # (imported to register)
from .adaface import AdaFace
from .arcface import ArcFace, SubCenterArcFace
from .base import HeadOutput, MarginHead
from .combined import CombinedMargin
from .cosface import CosFace
from .curricularface import CurricularFace
from .elasticface import ElasticArcFace, ElasticArcFacePlus, ElasticCosFace, ElasticCosFacePlus
from .magface import MagFace
from .registry import build_head, get_head, list_heads, register_head
from .softmax import Softmax
from .sphereface import SphereFace

__all__ = ["AdaFace", "ArcFace", "CombinedMargin", "CosFace", "CurricularFace", "ElasticArcFace", "ElasticArcFacePlus",
           "ElasticCosFace", "ElasticCosFacePlus", "HeadOutput", "MagFace", "MarginHead",
           "Softmax", "SphereFace", "SubCenterArcFace", "build_head", "get_head", "list_heads", "register_head"]
