"""Raw image and flip embeddings of an IJB set's aligned loose crops, cached on disk.

The cache holds what the network gave (image and flip, unnormalised) under a key of checkpoint + data + the
settings that change those numbers (input size, colour order, precision); flip on/off, detector-score weighting and
the pooling variant are applied afterwards (templates.image_features), so a rerun with other pooling flags reads
the cache instead of embedding 469,375 images again.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from Datasets.ijb import IJBImages, IJBMeta

from ..feature_cache import FeatureCache, cache_key
from ..features import extract_embeddings

__all__ = ["ijb_embeddings"]


def _list_digest(meta: IJBMeta) -> str:
    """Digest of the image names and landmarks: an edited list is other data even under the same root."""
    h = hashlib.sha1("\n".join(meta.names).encode())
    h.update(np.ascontiguousarray(meta.landmarks).tobytes())
    return h.hexdigest()


def ijb_embeddings(loaded, meta: IJBMeta, checkpoint: str, cache_folder: str | Path | None, batch_size: int,
                   num_workers: int, progress: bool = True) -> tuple[np.ndarray, np.ndarray, str]:
    """(emb, emb_flip, where they came from): float32 (N, D) each, in the order of the image list."""
    cache = FeatureCache(cache_folder) if cache_folder else None
    role = f"{meta.target.lower()}_images"
    key = cache_key(checkpoint, "ijb", meta.target, str(Path(meta.root).resolve()), _list_digest(meta),
                    list(loaded.input_hw), loaded.color_order, loaded.amp)
    if cache is not None:
        both = cache.load(role, key, len(meta.names))
        if both is not None:
            half = both.shape[1] // 2
            return both[:, :half], both[:, half:], f"cache {cache.folder / (role + '.npy')}"
    images = IJBImages(meta, loaded.input_hw, loaded.color_order)
    emb, emb_flip = extract_embeddings(loaded.model, images, batch_size=batch_size, device=loaded.device,
                                       amp_dtype=loaded.amp_dtype, num_workers=num_workers,
                                       desc=f"embeddings {meta.target}", progress=progress)
    if cache is not None:
        cache.save(role, key, np.concatenate([emb, emb_flip], axis=1), root=meta.root, layout="[emb, emb_flip]")
    return emb, emb_flip, "model"
