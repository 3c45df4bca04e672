"""Procedural face-like identities: a fixed parameter set per identity, nuisance factors per image.

An identity is a vector of shape, colour and mark parameters (head outline, skin tone, eye/brow/nose/mouth
geometry, ears, hair style and colour, moles, freckles, beard); each image re-renders it under nuisances drawn
per image (yaw/pitch simulated by projecting the features on a head ellipsoid, in-plane rotation, scale and
shift, expression, illumination direction and strength, colour cast, background clutter, glasses/hat/mask
occlusion, blur, noise, JPEG quality). `difficulty` in [0, 1] scales every nuisance, so 0 gives clean frontal
faces. Everything is drawn as polygons in face coordinates, projected, then rasterised once by PIL at twice the
output size and box-downsampled: no image resampling per feature, ~3-5 ms per 112x112 JPEG on one core.

Identities and images are pure functions of (seed, role, identity index[, image index]) through numpy's
SeedSequence, so any subset can be rendered in any process, in any order, with identical results.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = ["Identity", "make_identity", "render_face", "render_face_jpeg", "GENERATOR_VERSION"]

# Bump when the drawing changes, so cached sets are regenerated.
GENERATOR_VERSION = 3

_SS = 2  # supersampling factor of the rasteriser
_HAIR = np.array([[20, 17, 15], [45, 30, 22], [85, 55, 35], [140, 95, 55], [200, 160, 100], [150, 60, 30],
                  [120, 120, 120], [215, 210, 205]], dtype=np.float64)
_IRIS = np.array([[60, 35, 20], [100, 65, 35], [70, 110, 160], [80, 120, 80], [110, 110, 120], [25, 20, 20]],
                 dtype=np.float64)


@dataclass
class Identity:
    """Everything fixed about one synthetic person (lengths in 112-pixel face units)."""
    head_w: float
    head_h: float
    jaw: float
    chin: float
    skin: np.ndarray
    hair_color: np.ndarray
    hair_style: int
    hairline: float
    hair_volume: float
    hair_part: float
    eye_dx: float
    eye_y: float
    eye_w: float
    eye_h: float
    eye_tilt: float
    iris: np.ndarray
    iris_r: float
    brow_gap: float
    brow_thick: float
    brow_len: float
    brow_arch: float
    brow_tilt: float
    nose_len: float
    nose_w: float
    nose_bridge: float
    mouth_y: float
    mouth_w: float
    lip_top: float
    lip_bot: float
    lip_color: np.ndarray
    ear_size: float
    moles: np.ndarray      # (k, 3): x, y, radius
    freckles: np.ndarray   # (k, 2)
    beard: int             # 0 none, 1 stubble, 2 full, 3 goatee
    mustache: bool
    blush: float
    cheekbone: float


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in key]))


def make_identity(seed: int, role: int, index: int) -> Identity:
    """The identity `index` of generator `seed`; `role` separates disjoint populations (train, val, probes, ...)."""
    r = _rng(seed, role, index, 0x1D)
    u = r.uniform
    tone = u() ** 1.3
    skin = (1 - tone) * np.array([240, 208, 182]) + tone * np.array([92, 58, 40]) + r.normal(0, 9, 3)
    skin[0] += u(0, 12)
    hair_color = _HAIR[r.integers(len(_HAIR))] + r.normal(0, 10, 3)
    if tone > 0.6 and u() < 0.7:
        hair_color = _HAIR[r.integers(2)] + r.normal(0, 6, 3)
    n_moles = r.choice(4, p=[0.35, 0.35, 0.2, 0.1])
    moles = np.stack([u(-26, 26, n_moles), u(35, 100, n_moles), u(0.8, 2.2, n_moles)], 1)
    freckles = np.stack([u(-24, 24, 40), u(56, 82, 40)], 1) if u() < 0.15 else np.zeros((0, 2))
    return Identity(
        head_w=u(35, 46), head_h=u(47, 58), jaw=u(0.55, 1.0), chin=u(-4, 4),
        skin=np.clip(skin, 30, 250), hair_color=np.clip(hair_color, 5, 250),
        hair_style=int(r.integers(6)), hairline=u(8, 30), hair_volume=u(0, 12), hair_part=u(-15, 15),
        eye_dx=u(14.5, 20.5), eye_y=u(46, 56), eye_w=u(6.5, 11), eye_h=u(2.6, 5.2), eye_tilt=u(-0.22, 0.22),
        iris=np.clip(_IRIS[r.integers(len(_IRIS))] + r.normal(0, 12, 3), 0, 255), iris_r=u(0.32, 0.5),
        brow_gap=u(5.5, 11), brow_thick=u(1.3, 4.2), brow_len=u(9, 17), brow_arch=u(-1.5, 4.5),
        brow_tilt=u(-0.3, 0.3),
        nose_len=u(13, 25), nose_w=u(5.5, 12.5), nose_bridge=u(0.2, 1.0),
        mouth_y=u(84, 97), mouth_w=u(12, 25), lip_top=u(1.2, 4.2), lip_bot=u(1.8, 5.5),
        lip_color=np.clip(skin * u(0.55, 0.85) + np.array([u(20, 70), 0, u(0, 20)]), 0, 255),
        ear_size=u(7, 14),
        moles=moles, freckles=freckles,
        beard=int(r.choice(4, p=[0.62, 0.14, 0.14, 0.10])), mustache=bool(u() < 0.22),
        blush=u(0, 0.5) if u() < 0.3 else 0.0, cheekbone=u(0, 1),
    )


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 18, rot: float = 0.0,
             t0: float = 0.0, t1: float = 2 * math.pi) -> np.ndarray:
    t = np.linspace(t0, t1, n, endpoint=(t1 - t0) < 2 * math.pi - 1e-6)
    x, y = rx * np.cos(t), ry * np.sin(t)
    c, s = math.cos(rot), math.sin(rot)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], 1)


def _tone(c) -> tuple[int, int, int]:
    return tuple(min(255, max(0, int(v))) for v in c)


class _Painter:
    """Projects face-coordinate polygons (yaw/pitch on a head ellipsoid, then roll/scale/shift) and draws them."""

    def __init__(self, draw: ImageDraw.ImageDraw, ident: Identity, yaw: float, pitch: float, roll: float,
                 scale: float, shift: tuple[float, float], centre: tuple[float, float]):
        self.draw, self.id = draw, ident
        self.cy, self.sy = math.cos(yaw), math.sin(yaw)
        self.pitch = pitch
        self.cr, self.sr = math.cos(roll) * scale * _SS, math.sin(roll) * scale * _SS
        self.ox, self.oy = (centre[0] + shift[0] * scale) * _SS, (centre[1] + shift[1] * scale) * _SS

    def project(self, pts: np.ndarray, depth: float = 0.0) -> list[tuple[float, float]]:
        x, y = pts[:, 0], pts[:, 1] - 60.0
        hw, hh = self.id.head_w, self.id.head_h
        z = np.sqrt(np.clip(1 - (x / hw) ** 2 - 0.35 * (y / hh) ** 2, 0, 1)) * hw * 0.75 + depth
        xp = x * self.cy + z * self.sy
        yp = y + self.pitch * z / hw
        X = self.ox + self.cr * xp - self.sr * yp
        Y = self.oy + self.sr * xp + self.cr * yp
        return list(zip(X.tolist(), Y.tolist()))

    def poly(self, pts: np.ndarray, fill, depth: float = 0.0, outline=None, width: int = 1) -> None:
        self.draw.polygon(self.project(pts, depth), fill=fill, outline=outline, width=width)

    def line(self, pts: np.ndarray, fill, width: float, depth: float = 0.0) -> None:
        self.draw.line(self.project(pts, depth), fill=fill, width=max(1, int(round(width * _SS))), joint="curve")

    def dot(self, x: float, y: float, r: float, fill, depth: float = 0.0) -> None:
        self.poly(_ellipse(x, y, r, r, n=8), fill, depth)


def _background(r: np.random.Generator, wh: tuple[int, int], d: float) -> Image.Image:
    # a bilinear blend of four corner colours: a smooth gradient for the price of a 2x2 resize
    base = r.uniform(20, 235, 3)
    corners = base[None, None, :] + r.normal(0, 20 + 40 * d, (2, 2, 3))
    img = Image.fromarray(np.clip(corners, 0, 255).astype(np.uint8), "RGB").resize(wh, Image.BILINEAR)
    draw = ImageDraw.Draw(img)
    for _ in range(r.poisson(1 + 5 * d)):  # clutter
        x, y = r.uniform(0, wh[0]), r.uniform(0, wh[1])
        w, h = r.uniform(8, 60, 2) * _SS / 2
        col = _tone(r.uniform(0, 255, 3))
        if r.uniform() < 0.5:
            draw.rectangle([x, y, x + w, y + h], fill=col)
        else:
            draw.ellipse([x, y, x + w, y + h], fill=col)
    return img


def _shade(arr: np.ndarray, r: np.random.Generator, ident: Identity, d: float, P: _Painter) -> np.ndarray:
    """Directional light on a sphere-like head plus a global brightness/contrast/colour cast."""
    h, w = arr.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = P.ox / _SS, P.oy / _SS
    scale = math.hypot(P.cr, P.sr) / _SS
    nx = (xx - cx) / (ident.head_w * scale * 1.15)
    ny = (yy - cy) / (ident.head_h * scale * 1.15)
    nz = np.sqrt(np.clip(1 - nx ** 2 - ny ** 2, 0, 1))
    ang = r.uniform(0, 2 * math.pi)
    strength = r.uniform(0.1, 0.25 + 0.75 * d)
    lx, ly = math.cos(ang) * strength, math.sin(ang) * strength
    lz = math.sqrt(max(1e-3, 1 - strength ** 2))
    shade = np.clip(nx * lx + ny * ly + nz * lz, 0, 1) * 0.85 + 0.15
    shade = np.where(nz > 0, shade, 1.0 - 0.3 * strength * (xx / w * math.cos(ang) + yy / h * math.sin(ang)))
    gain = math.exp(r.normal(0, 0.12 + 0.28 * d)) * np.exp(r.normal(0, 0.04 + 0.14 * d, 3))
    contrast = math.exp(r.normal(0, 0.05 + 0.2 * d))
    out = arr.astype(np.float32) * shade[..., None] * gain[None, None, :].astype(np.float32)
    mean = out.mean()
    return (out - mean) * contrast + mean


def render_face(seed: int, role: int, index: int, image: int, difficulty: float = 0.6,
                size: tuple[int, int] = (112, 112), identity: Identity | None = None) -> Image.Image:
    """Image `image` of identity (seed, role, index) as an RGB PIL image of size (H, W), before JPEG.

    The face sits where 5-point alignment puts it: 112x112 is the ArcFace crop, 112x96 the SphereFace one (the
    same face, 8 pixels narrower on each side).
    """
    ident = identity if identity is not None else make_identity(seed, role, index)
    d = float(min(max(difficulty, 0.0), 1.0))
    r = _rng(seed, role, index, image + 1, 0x1F)
    n = r.normal
    yaw = float(np.clip(n(0, 0.05 + 0.45 * d), -0.95, 0.95))
    P = _Painter(None, ident, yaw=yaw, pitch=n(0, 1 + 9 * d), roll=n(0, 0.02 + 0.22 * d),
                 scale=math.exp(n(0, 0.02 + 0.09 * d)) * size[0] / 112, shift=(n(0, 0.5 + 4 * d), n(0, 0.5 + 4 * d)),
                 centre=(size[1] / 2, size[0] * 60 / 112))
    canvas = _background(r, (size[1] * _SS, size[0] * _SS), d)
    P.draw = ImageDraw.Draw(canvas)
    I = ident
    skin = I.skin * math.exp(n(0, 0.03 + 0.05 * d))  # tan, make-up
    skin_c = _tone(skin)
    dark_skin = _tone(skin * 0.72)
    hair = _tone(I.hair_color)
    hw, hh = I.head_w, I.head_h
    top = 60 - 0.9 * hh  # crown of the head outline below
    # expression and per-image appearance changes
    smile = n(0, 0.15 + 0.8 * d)
    mouth_open = max(0.0, n(0, 0.5 + 2.5 * d)) if r.uniform() < 0.15 + 0.35 * d else 0.0
    eye_open = 0.08 if r.uniform() < 0.03 + 0.1 * d else float(np.clip(n(1, 0.05 + 0.2 * d), 0.3, 1.4))
    brow_raise = n(0, 0.3 + 2.2 * d)
    hairline = I.hairline + n(0, 0.5 + 2 * d)

    # long hair and neck behind the head
    if I.hair_style in (3, 4):
        long_h = 115 if I.hair_style == 3 else 90
        P.poly(np.array([[-hw - I.hair_volume - 4, 40], [-hw - 8, long_h], [hw + 8, long_h],
                         [hw + I.hair_volume + 4, 40], [0, top - I.hair_volume]]), hair, depth=-20)
    cloth = _tone(r.uniform(0, 255, 3))
    P.poly(np.array([[-hw * 0.45, 90], [-hw * 0.5, 125], [hw * 0.5, 125], [hw * 0.45, 90]]), dark_skin, depth=-10)
    P.poly(np.array([[-hw * 1.9, 140], [-hw * 1.5, 118], [-hw * 0.45, 112], [hw * 0.45, 112], [hw * 1.5, 118],
                     [hw * 1.9, 140]]), cloth, depth=-15)
    # ears (behind the head outline)
    for side in (-1, 1):
        P.poly(_ellipse(side * (hw - 1), 62, I.ear_size * 0.45, I.ear_size, n=10), dark_skin, depth=-hw * 0.6)
    # head: upper half ellipse, lower half tapered towards the jaw
    t = np.linspace(math.pi, 2 * math.pi, 14)
    upper = np.stack([hw * np.cos(t), 60 + hh * 0.9 * np.sin(t)], 1)
    t2 = np.linspace(0, math.pi, 14)
    taper = 1 - (1 - I.jaw) * np.sin(t2) ** 2
    lower = np.stack([hw * np.cos(t2) * taper, 60 + (hh + I.chin) * np.sin(t2)], 1)
    P.poly(np.concatenate([upper, lower]), skin_c, depth=-hw * 0.75)
    if I.cheekbone > 0.5:
        for side in (-1, 1):
            P.poly(_ellipse(side * hw * 0.62, 74, 6, 9, n=10), _tone(skin * 0.93), depth=-hw * 0.5)
    if I.blush > 0:
        for side in (-1, 1):
            P.dot(side * (I.eye_dx + 3), 74, 6, _tone(skin * (1 - I.blush * 0.3) + np.array([40, 0, 0]) * I.blush))
    # beard and moustache
    if I.beard:
        bc = _tone(I.hair_color * 0.8 + skin * 0.2) if I.beard > 1 else _tone(I.hair_color * 0.35 + skin * 0.65)
        if I.beard == 3:
            P.poly(_ellipse(0, 60 + hh + I.chin - 6, I.mouth_w * 0.45, 9, n=12), bc)
        else:
            jaw = lower[2:-2]
            P.poly(np.concatenate([jaw, [[-hw * 0.5, I.mouth_y - 6], [hw * 0.5, I.mouth_y - 6]]]), bc)
            P.poly(_ellipse(0, I.mouth_y + 1, I.mouth_w * 0.6, I.lip_top + I.lip_bot + 1, n=12), skin_c)
    # hair on top
    if I.hair_style != 5:  # 5 = bald
        vol = I.hair_volume
        t = np.linspace(math.pi * 1.02, math.pi * 1.98, 16)
        cap = np.stack([(hw + vol * 0.6 + 1) * np.cos(t), 60 + (0.9 * hh + vol * 0.8 + 2) * np.sin(t)], 1)
        lo = top + hairline
        if I.hair_style == 1:  # fringe
            front = np.array([[hw * 0.95, lo + 6], [hw * 0.3, lo + 10], [I.hair_part, lo + 3],
                              [-hw * 0.4, lo + 12], [-hw * 0.95, lo + 8]])
        elif I.hair_style == 2:  # side part, swept
            front = np.array([[hw * 0.98, lo + 14], [I.hair_part + 6, lo - 2], [I.hair_part, lo - 6],
                              [-hw * 0.5, lo + 2], [-hw * 0.98, lo + 12]])
        else:
            front = np.array([[hw * 0.98, lo + 12], [hw * 0.5, lo + 1], [0, lo - 1], [-hw * 0.5, lo + 1],
                              [-hw * 0.98, lo + 12]])
        P.poly(np.concatenate([cap, front]), hair, depth=-hw * 0.2)
    # brows
    bc = _tone(I.hair_color * 0.7 + skin * 0.1)
    for side in (-1, 1):
        x0 = side * (I.eye_dx - I.brow_len * 0.45)
        x1 = side * (I.eye_dx + I.brow_len * 0.55)
        yb = I.eye_y - I.brow_gap - brow_raise
        xs = np.linspace(x0, x1, 5)
        ys = yb - I.brow_arch * np.sin(np.linspace(0, math.pi, 5)) + I.brow_tilt * (xs - x0) * side
        P.line(np.stack([xs, ys], 1), bc, I.brow_thick, depth=2)
    # eyes
    for side in (-1, 1):
        ex, ey = side * I.eye_dx, I.eye_y
        eh = I.eye_h * eye_open
        rot = I.eye_tilt * side
        P.poly(_ellipse(ex, ey, I.eye_w + 1.5, eh + 1.8, n=12, rot=rot), _tone(skin * 0.82), depth=1)
        if eh > 0.6:
            P.poly(_ellipse(ex, ey, I.eye_w, eh, n=14, rot=rot), (235, 232, 228), depth=1)
            gaze = n(0, 0.5 + 1.5 * d)
            ir = min(I.eye_w * I.iris_r * 1.6, eh * 1.05)
            P.poly(_ellipse(ex + gaze, ey, ir, min(ir, eh), n=10), _tone(I.iris), depth=1.5)
            P.dot(ex + gaze, ey, ir * 0.45, (12, 10, 10), depth=1.6)
        lid = _ellipse(ex, ey, I.eye_w, eh, n=9, rot=rot, t0=math.pi, t1=2 * math.pi)
        P.line(lid, (30, 22, 20), 1.0 + 0.4 * (eh > 1), depth=1.5)
    # nose
    nt = I.eye_y + I.nose_len
    nd = hw * 0.35
    bridge = np.array([[-1.5 * I.nose_bridge, I.eye_y + 2], [-I.nose_w * 0.4, nt - 3]])
    P.line(bridge, _tone(skin * 0.8), 1.2, depth=nd * 0.6)
    P.poly(_ellipse(0, nt - 2, I.nose_w * 0.5, 3.5, n=10), _tone(skin * 1.04), depth=nd)
    for side in (-1, 1):
        P.dot(side * I.nose_w * 0.3, nt, 1.1 + I.nose_w * 0.08, _tone(skin * 0.45), depth=nd * 0.8)
    # mouth
    my, mw = I.mouth_y, I.mouth_w * (1 + 0.12 * max(smile, 0))
    xs = np.linspace(-mw / 2, mw / 2, 9)
    mid = my - smile * 2.0 * ((2 * xs / mw) ** 2 - 0.3)  # corners rise when smiling
    upper_lip = np.concatenate([np.stack([xs, mid], 1),
                                np.stack([xs[::-1], mid[::-1] - I.lip_top * (1 - (2 * xs[::-1] / mw) ** 4)], 1)])
    lower_edge = mid[::-1] + mouth_open + I.lip_bot * (1 - (2 * xs[::-1] / mw) ** 2)
    lower_lip = np.concatenate([np.stack([xs, mid + mouth_open], 1), np.stack([xs[::-1], lower_edge], 1)])
    if mouth_open > 0.8:
        inside = np.concatenate([np.stack([xs, mid], 1), np.stack([xs[::-1], mid[::-1] + mouth_open], 1)])
        P.poly(inside, (45, 15, 20), depth=2)
        P.poly(np.array([[-mw * 0.3, mid[4]], [mw * 0.3, mid[4]], [mw * 0.3, mid[4] + min(2.5, mouth_open * 0.4)],
                         [-mw * 0.3, mid[4] + min(2.5, mouth_open * 0.4)]]), (230, 228, 220), depth=2)
    P.poly(upper_lip, _tone(I.lip_color), depth=2)
    P.poly(lower_lip, _tone(I.lip_color * 1.08), depth=2)
    P.line(np.stack([xs, mid + mouth_open * 0.5], 1), _tone(I.lip_color * 0.55), 0.8, depth=2.1)
    if I.mustache:
        P.poly(np.array([[-mw * 0.62, my - 1], [-mw * 0.3, my - I.lip_top - 6], [mw * 0.3, my - I.lip_top - 6],
                         [mw * 0.62, my - 1], [0, my - I.lip_top - 1.5]]), _tone(I.hair_color * 0.9), depth=2.5)
    # marks
    for x, y, rad in I.moles:
        P.dot(x, y, rad, _tone(skin * 0.4), depth=1)
    for x, y in I.freckles:
        P.dot(x, y, 0.55, _tone(skin * 0.75), depth=1)
    # occlusions
    if r.uniform() < 0.05 + 0.3 * d:
        sun = r.uniform() < 0.35
        frame = _tone(r.uniform(0, 90, 3)) if r.uniform() < 0.8 else _tone(r.uniform(90, 255, 3))
        for side in (-1, 1):
            lens = _ellipse(side * I.eye_dx, I.eye_y + 1, I.eye_w + 4, I.eye_h + 5, n=14)
            if sun:
                P.poly(lens, _tone(r.uniform(5, 50, 3)), depth=4)
            P.poly(lens, None, depth=4, outline=frame, width=2 * _SS // 2 + 1)
        P.line(np.array([[-I.eye_dx + I.eye_w + 4, I.eye_y], [I.eye_dx - I.eye_w - 4, I.eye_y]]), frame, 1.5, depth=6)
    if r.uniform() < 0.03 + 0.2 * d:  # hat
        hc = _tone(r.uniform(0, 255, 3))
        brim = top + hairline * r.uniform(0.3, 1.1) + r.uniform(0, 8)
        t = np.linspace(math.pi, 2 * math.pi, 12)
        crown = np.stack([(hw + 4) * np.cos(t), brim + (brim - top + 12) * np.sin(t)], 1)
        P.poly(crown, hc, depth=-5)
        peak = np.array([[-hw - 12, brim], [hw + 12, brim], [hw + 8, brim + 4], [-hw - 8, brim + 4]])
        P.poly(peak, _tone(np.array(hc) * 0.8), depth=-5)
    if r.uniform() < 0.02 + 0.16 * d:  # mask
        mc = _tone(r.choice([np.array([210, 225, 240]), np.array([240, 240, 240]), np.array([30, 30, 35]),
                              r.uniform(0, 255, 3)]))
        mtop = I.eye_y + I.nose_len * r.uniform(0.45, 0.8)
        mask = np.array([[-hw * 0.95, mtop + 2], [-hw * 0.3, mtop - 2], [hw * 0.3, mtop - 2], [hw * 0.95, mtop + 2],
                         [hw * 0.7, 60 + hh * 0.85], [0, 60 + hh + I.chin + 1], [-hw * 0.7, 60 + hh * 0.85]])
        P.poly(mask, mc, depth=4)
    if r.uniform() < 0.1 * d:  # hand, microphone, another face: an arbitrary blob in front
        P.poly(_ellipse(r.uniform(-40, 40), r.uniform(40, 110), r.uniform(6, 18), r.uniform(8, 25), n=10,
                        rot=r.uniform(0, 3)), _tone(r.uniform(0, 255, 3)), depth=30)

    img = canvas.reduce(_SS)
    if r.uniform() < 0.1 + 0.6 * d:
        img = img.filter(ImageFilter.GaussianBlur(r.uniform(0.2, 0.4 + 1.4 * d)))
    arr = _shade(np.asarray(img), r, ident, d, P)
    sigma = r.uniform(0, 2 + 10 * d)
    if sigma > 0.5:
        arr = arr + r.normal(0, sigma, arr.shape).astype(np.float32)
    if r.uniform() < 0.04 * d:
        arr = np.repeat(arr.mean(axis=2, keepdims=True), 3, axis=2)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def render_face_jpeg(seed: int, role: int, index: int, image: int, difficulty: float = 0.6,
                     size: tuple[int, int] = (112, 112), identity: Identity | None = None) -> bytes:
    """`render_face` encoded as JPEG at a per-image quality (lower with difficulty), as a real crawl would be."""
    img = render_face(seed, role, index, image, difficulty, size, identity)
    q = int(_rng(seed, role, index, image + 1, 0x2F).uniform(95 - 60 * min(max(difficulty, 0.0), 1.0), 96))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=max(10, min(q, 95)))
    return buf.getvalue()
