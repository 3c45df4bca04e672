"""5-point face alignment: a least-squares similarity transform (Umeyama 1991) onto a fixed template, warped by PIL.

Landmarks are (left eye, right eye, nose tip, left mouth corner, right mouth corner) in pixel coordinates with
pixel centres at integers (the convention of MTCNN/RetinaFace outputs and OpenCV). The ArcFace template is the
insightface 112x112 one; the SphereFace 112x96 template is the same face 8 pixels narrower on each side.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["ARCFACE_TEMPLATE", "SPHEREFACE_TEMPLATE", "TEMPLATES", "similarity_transform", "align_face"]

ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)
SPHEREFACE_TEMPLATE = ARCFACE_TEMPLATE - np.array([8.0, 0.0])
# name -> (template, output (H, W))
TEMPLATES = {"arcface": (ARCFACE_TEMPLATE, (112, 112)), "sphereface": (SPHEREFACE_TEMPLATE, (112, 96))}


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 matrix M of the similarity (rotation, uniform scale, translation) minimising sum |M [src;1] - dst|^2."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"expected two (N, 2) point sets with N >= 2, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s ** 2).sum() / len(src)
    if var_s <= 1e-12:
        raise ValueError("landmarks are all at one point")
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # a reflection is not a similarity
        sign[1, 1] = -1
    rot = u @ sign @ vt
    scale = np.trace(np.diag(sig) @ sign) / var_s
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def align_face(img: Image.Image, landmarks, template: str = "arcface") -> Image.Image:
    """Warp `img` so its 5 landmarks land on the template; returns the 112x112 (or 112x96) RGB crop."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown template '{template}'; choose from: {', '.join(TEMPLATES)}")
    ref, (h, w) = TEMPLATES[template]
    pts = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    m = similarity_transform(pts, ref)
    # PIL maps each output pixel to an input point (the inverse map), in coordinates whose pixel centres sit at
    # +0.5; shift in and out of the integer-centre convention of the landmarks around the inverse.
    a = np.vstack([m, [0, 0, 1]])
    inv = np.linalg.inv(a)
    shift = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])
    unshift = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    full = unshift @ inv @ shift
    coeffs = tuple(full[:2].ravel())
    return img.convert("RGB").transform((w, h), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)
