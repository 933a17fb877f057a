"""Synthetic YouTube-VIS benchmark: the project's embedded default dataset.

No real video data exists on the machines this project is developed and demonstrated on, so this
module renders a small benchmark with the properties video instance segmentation has to cope with:

* 4 video categories told apart by **shape** only (circle/ellipse, square/rectangle, triangle,
  star); colours and textures (stripes, checker, smooth noise, gradient) are random for every
  object, so an appearance embedding has to learn the object's own texture, not its class colour;
* objects move on smooth trajectories, rotate, change scale and brightness; the camera pans over
  a textured background;
* objects occlude one another (draw order) and ground-truth masks are the **visible** parts; an
  object whose visible area falls below ``min_visible_area`` pixels is absent (``null``) that frame;
* objects enter and leave the frame, some vanish for a few frames and come back with the same
  annotation id;
* some videos hold a stretch of nearly identical frames (static objects, static camera, only sensor
  noise changes) -- the temporal redundancy the paper exploits;
* a COCO-format image set from the same renderer with the video categories (same names and ids)
  plus extra shape categories that never appear in the videos, for multi-source training;
* a second image source with a taxonomy of its own, as COCO has (paper Sec. 3.2, "multi-source
  data"): the four video shapes under other names and ids (mapped to the video set by the table
  ``SYNTHVIS_TO_SYNTHVIS_MSD`` of ``vis_d2.data.categories``) and three shapes the videos never
  show (auxiliary classes). A share of its images (``msd_weak_share``) go to a split whose masks
  are noisy (shifted, dilated or eroded) or missing, registered as weakly segmented, as
  OpenImages is.

Layout written by :func:`generate` under ``out_dir``::

    JPEGImages/<video_name>/<00000>.jpg     video frames
    train.json, valid.json                  YouTube-VIS format, both with ground truth
    images/<000001>.jpg                     image set
    images_train.json                       COCO instances (RLE segmentation, bbox, area)
    images_train_boxonly.json               same images and boxes, no ``segmentation`` key
    msd_images/<000001>.jpg                 second source's images
    msd_train.json                          its images with exact masks (COCO format)
    msd_weak_train.json                     its images with noisy or missing masks
    stats.json                              per-split statistics of what was rendered

Everything is a deterministic function of ``seed``: every video / image draws from its own
``numpy.random.Generator`` seeded by ``SeedSequence([seed, split, index])``, so the output is
byte-identical for a seed, and adding videos does not change the earlier ones.

Command line::

    python -m vis_d2.data.synthetic --out datasets/synthvis \
        --train-videos 80 --val-videos 20 --seed 0 --image-set-size 200 \
        --msd-set-size 200 --msd-weak-share 0.3
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from pycocotools import mask as mask_util

from ..file_io import atomic_write_json

__all__ = [
    "VIDEO_CATEGORIES",
    "EXTRA_IMAGE_CATEGORIES",
    "IMAGE_CATEGORIES",
    "MSD_CATEGORIES",
    "SynthConfig",
    "generate",
    "main",
]

VIDEO_CATEGORIES: List[dict] = [
    {"id": 1, "name": "circle", "supercategory": "shape"},
    {"id": 2, "name": "square", "supercategory": "shape"},
    {"id": 3, "name": "triangle", "supercategory": "shape"},
    {"id": 4, "name": "star", "supercategory": "shape"},
]
# Image-only categories: ids continue after the video ones, so a model trained on the union can
# keep the video categories at the same ids (the multi-source setting of the paper).
EXTRA_IMAGE_CATEGORIES: List[dict] = [
    {"id": 5, "name": "hexagon", "supercategory": "shape"},
    {"id": 6, "name": "ring", "supercategory": "shape"},
    {"id": 7, "name": "crescent", "supercategory": "shape"},
]
IMAGE_CATEGORIES: List[dict] = VIDEO_CATEGORIES + EXTRA_IMAGE_CATEGORIES
# The second source's own taxonomy, and the shape each of its classes draws: the video shapes
# under other names and ids (the table SYNTHVIS_TO_SYNTHVIS_MSD of vis_d2.data.categories maps
# them), and three shapes the videos never show.
MSD_CATEGORIES: List[dict] = [
    {"id": 11, "name": "disc", "supercategory": "shape"},
    {"id": 12, "name": "hexagon", "supercategory": "shape"},
    {"id": 13, "name": "block", "supercategory": "shape"},
    {"id": 14, "name": "ring", "supercategory": "shape"},
    {"id": 15, "name": "wedge", "supercategory": "shape"},
    {"id": 16, "name": "crescent", "supercategory": "shape"},
    {"id": 17, "name": "pentagram", "supercategory": "shape"},
]
_MSD_SHAPES = {11: "circle", 12: "hexagon", 13: "square", 14: "ring", 15: "triangle",
               16: "crescent", 17: "star"}

# Split codes mixed into the seed sequence: train and val (and the image sets) never share a
# stream.
_SPLIT_CODES = {"train": 0, "valid": 1, "images": 2, "msd": 3}

_TEX = 128  # side of an object's texture image, in texture pixels
_TEX_R = 48.0  # radius of the unit shape in texture pixels (texture is mirrored beyond the border)
_SUBPIX_SHIFT = 4  # cv2.fillPoly fractional bits: sub-pixel smooth motion of mask edges


def _regular_polygon(n: int, radius: float = 1.0, phase: float = -math.pi / 2) -> np.ndarray:
    a = phase + 2.0 * math.pi * np.arange(n) / n
    return np.stack([radius * np.cos(a), radius * np.sin(a)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    outer = _regular_polygon(points)
    inn = _regular_polygon(points, inner, phase=-math.pi / 2 + math.pi / points)
    return np.stack([outer, inn], axis=1).reshape(-1, 2)


# Each shape is a list of (polygon in unit coordinates (N, 2), fill value); later entries are
# drawn over earlier ones, which carves holes (ring) and bites (crescent).
_CIRCLE = _regular_polygon(64)
_SHAPES: Dict[str, List[Tuple[np.ndarray, int]]] = {
    "circle": [(_CIRCLE, 1)],
    "square": [(np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64) * 0.82, 1)],
    "triangle": [(_regular_polygon(3) * np.array([1.0, 1.0]) + np.array([0.0, 0.12]), 1)],
    "star": [(_star(), 1)],
    "hexagon": [(_regular_polygon(6, phase=0.0), 1)],
    "ring": [(_CIRCLE, 1), (_CIRCLE * 0.55, 0)],
    "crescent": [(_CIRCLE, 1), (_CIRCLE * 0.85 + np.array([0.5, -0.1]), 0)],
}
# How much a category may be stretched (aspect ratio range): circles become ellipses and squares
# rectangles, but a triangle or star stays recognisable.
_MAX_ASPECT = {"circle": 1.35, "square": 1.35, "triangle": 1.15, "star": 1.12,
               "hexagon": 1.12, "ring": 1.2, "crescent": 1.15}
_CATEGORY_SHAPE = {**{c["id"]: c["name"] for c in IMAGE_CATEGORIES}, **_MSD_SHAPES}


@dataclass(frozen=True)
class SynthConfig:
    """Knobs of the renderer. Defaults give a moderate benchmark (see module docstring).

    All ranges are inclusive ``(low, high)``; sizes are object extents (about twice the radius) in
    pixels.
    """

    length_range: Tuple[int, int] = (10, 24)
    width_range: Tuple[int, int] = (256, 352)
    height_range: Tuple[int, int] = (160, 224)
    objects_range: Tuple[int, int] = (1, 4)
    image_objects_range: Tuple[int, int] = (1, 5)
    size_range: Tuple[float, float] = (28.0, 80.0)  # base extent; scale over time spans ~24..90
    scale_amplitude: float = 0.13  # relative size change over a video (sinusoidal)
    max_speed: float = 3.5  # px/frame for objects that stay in view
    cross_speed_range: Tuple[float, float] = (3.0, 7.0)  # px/frame for entering / leaving objects
    enter_prob: float = 0.15
    leave_prob: float = 0.15
    cross_prob: float = 0.8  # a video with >= 2 objects steers one across another's path
    gap_prob: float = 0.15  # an object vanishes for gap_frames and comes back
    gap_frames: Tuple[int, int] = (1, 3)
    static_prob: float = 0.35  # a video holds a stretch of static frames
    static_frames: Tuple[int, int] = (3, 6)
    camera_move_prob: float = 0.6
    max_camera_speed: float = 3.0
    # An object is "heavily occluded" in a frame when less than this fraction of its in-frame area
    # is visible; a video may hold at most one such object, and only with this probability.
    heavy_occlusion_ratio: float = 0.5
    heavy_occlusion_prob: float = 0.8
    min_visible_area: int = 16  # pixels; below this an object is absent from the frame
    min_contrast: float = 95.0  # RGB distance between object colours and the background mean
    noise_sigma: float = 2.0  # per-frame sensor noise (keeps static stretches *nearly* identical)
    jpeg_quality: int = 90

    def __post_init__(self):
        for name in ("length_range", "width_range", "height_range", "objects_range",
                     "image_objects_range", "size_range", "cross_speed_range", "gap_frames",
                     "static_frames"):
            lo, hi = getattr(self, name)
            if not (0 < lo <= hi):
                raise ValueError(f"SynthConfig.{name} must satisfy 0 < low <= high, got {(lo, hi)}")
        for name in ("enter_prob", "leave_prob", "cross_prob", "gap_prob", "static_prob",
                     "camera_move_prob",
                     "heavy_occlusion_ratio", "heavy_occlusion_prob"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"SynthConfig.{name} must lie in [0, 1], got {v}")
        if self.enter_prob + self.leave_prob > 1.0:
            raise ValueError("SynthConfig.enter_prob + leave_prob must not exceed 1")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(
                f"SynthConfig.jpeg_quality must lie in [1, 100], got {self.jpeg_quality}")
        if self.min_visible_area < 1:
            raise ValueError(
                f"SynthConfig.min_visible_area must be >= 1, got {self.min_visible_area}")
        # An object starts with its centre 0.4 extents inside the frame on every side.
        if 0.8 * self.size_range[1] > min(self.width_range[0], self.height_range[0]):
            raise ValueError(
                f"SynthConfig.size_range: objects up to {self.size_range[1]:g} px do not fit "
                f"frames from {self.width_range[0]}x{self.height_range[0]} px; the largest "
                "extent may be 1.25 x the smallest frame side")


# ----------------------------------------------------------------------------------------------
# Colours, textures, background
# ----------------------------------------------------------------------------------------------
def _hsv_to_bgr(h: float, s: float, v: float) -> np.ndarray:
    """h in [0, 180), s, v in [0, 255] (OpenCV convention) -> BGR float (3,)."""
    px = np.array([[[h, s, v]]], np.uint8)
    return cv2.cvtColor(px, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _object_colors(rng: np.random.Generator, bg_mean: np.ndarray, min_contrast: float
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """Two distinct saturated colours (BGR float (3,)), both far from the background mean.

    The draw is retried until both colours are ``min_contrast`` away from the background, so the
    shape outline is always visible; the best draw is kept if the budget runs out.
    """
    best, best_score = None, -1.0
    for _ in range(40):
        h1 = rng.uniform(0, 180)
        c1 = _hsv_to_bgr(h1, rng.uniform(130, 255), rng.uniform(60, 255))
        # second colour: another hue, or the same hue at another brightness
        if rng.random() < 0.5:
            h2 = (h1 + rng.uniform(40, 140)) % 180
            c2 = _hsv_to_bgr(h2, rng.uniform(130, 255), rng.uniform(60, 255))
        else:
            c2 = _hsv_to_bgr(h1, rng.uniform(80, 255), rng.uniform(60, 255))
        score = min(np.linalg.norm(c1 - bg_mean), np.linalg.norm(c2 - bg_mean))
        if np.linalg.norm(c1 - c2) < 50:  # the texture itself must be visible
            score = min(score, 0.0)
        if score > best_score:
            best, best_score = (c1, c2), score
        if score >= min_contrast:
            break
    return best


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1], float32 (h, w): a coarse random grid upsampled bicubically."""
    coarse = rng.random((cells, cells), dtype=np.float32)
    up = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    lo, hi = float(up.min()), float(up.max())
    return (up - lo) / max(hi - lo, 1e-6)


def _texture(rng: np.random.Generator, c1: np.ndarray, c2: np.ndarray) -> Tuple[np.ndarray, str]:
    """An object's texture, float32 (_TEX, _TEX, 3) BGR, in the object's own coordinates.

    The texture is warped with the object (rotation, scale, translation), so it is a stable
    appearance cue over time -- what a tracking embedding can latch on to.
    """
    kind = ["stripes", "checker", "noise", "gradient"][int(rng.integers(4))]
    yy, xx = np.mgrid[0:_TEX, 0:_TEX].astype(np.float32)
    ang = rng.uniform(0, math.pi)
    u = xx * math.cos(ang) + yy * math.sin(ang)
    v = -xx * math.sin(ang) + yy * math.cos(ang)
    if kind == "stripes":
        period = rng.uniform(12, 26)
        alpha = ((u / period) % 1.0 < rng.uniform(0.35, 0.65)).astype(np.float32)
    elif kind == "checker":
        cell = rng.uniform(12, 24)
        alpha = ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(np.float32)
    elif kind == "noise":
        alpha = _smooth_noise(rng, _TEX, _TEX, int(rng.integers(4, 8)))
    else:
        alpha = np.clip((u - u.min()) / (u.max() - u.min()), 0, 1)
    tex = alpha[..., None] * c1 + (1.0 - alpha[..., None]) * c2
    # fine grain so even flat regions carry some texture
    tex += rng.normal(0.0, 6.0, size=tex.shape).astype(np.float32)
    return np.clip(tex, 0, 255).astype(np.float32), kind


def _background(rng: np.random.Generator, h: int, w: int) -> Tuple[np.ndarray, np.ndarray]:
    """Low-saturation textured background, uint8 (h, w, 3), and its mean colour (3,) float32.

    Dark or light, with low-frequency shading, an optional faint pattern and faint distractor
    blobs; its contrast is kept low so that the objects stand out.
    """
    dark = rng.random() < 0.6
    base = _hsv_to_bgr(rng.uniform(0, 180), rng.uniform(0, 70),
                       rng.uniform(35, 95) if dark else rng.uniform(160, 220))
    img = np.empty((h, w, 3), np.float32)
    img[:] = base
    shade = _smooth_noise(rng, h, w, int(rng.integers(3, 7))) - 0.5
    img += shade[..., None] * rng.uniform(20, 45)
    # a second, colour-tinted noise layer so the background is not a flat grey
    tint = _smooth_noise(rng, h, w, int(rng.integers(5, 12))) - 0.5
    img += tint[..., None] * (rng.uniform(-12, 12, size=3).astype(np.float32))
    if rng.random() < 0.5:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ang = rng.uniform(0, math.pi)
        u = xx * math.cos(ang) + yy * math.sin(ang)
        img += (np.sin(u / rng.uniform(6, 20)) * rng.uniform(4, 9))[..., None]
    for _ in range(int(rng.integers(0, 7))):  # faint blobs: a background that is not trivial
        center = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.integers(6, 40)), int(rng.integers(6, 40)))
        delta = float(rng.uniform(-16, 16))
        blob = np.zeros((h, w), np.uint8)
        cv2.ellipse(blob, center, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        img[blob.astype(bool)] += delta
    img = np.clip(img, 0, 255)
    return img.astype(np.uint8), img.reshape(-1, 3).mean(axis=0).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Scene: objects, motion, camera
# ----------------------------------------------------------------------------------------------
@dataclass
class _Object:
    category_id: int
    shape: str
    radius: float  # base radius in frame pixels
    aspect: float
    p0: np.ndarray  # world position at tau = 0, (2,)
    vel: np.ndarray  # px / frame, (2,)
    acc: np.ndarray  # px / frame^2, (2,)
    wobble: Tuple[float, float, float]  # amplitude (px, perpendicular to vel), rad/frame, phase
    theta0: float
    omega: float  # rad / frame
    scale_wave: Tuple[float, float, float]  # amplitude, rad/frame, phase
    bright_wave: Tuple[float, float, float]
    role: str  # "inside" | "enter" | "leave"
    gap: Optional[Tuple[int, int]] = None  # frames [start, end) where the object is not drawn
    texture: Optional[np.ndarray] = None
    texture_kind: str = ""

    def pose(self, tau: float, cam: np.ndarray) -> Tuple[np.ndarray, float, float]:
        """(center (2,) in image pixels, angle rad, radius px) at scene time tau."""
        p = self.p0 + self.vel * tau + 0.5 * self.acc * tau * tau
        amp, freq, phase = self.wobble
        speed = float(np.linalg.norm(self.vel))
        if amp > 0 and speed > 1e-6:
            perp = np.array([-self.vel[1], self.vel[0]]) / speed
            p = p + perp * amp * math.sin(freq * tau + phase)
        sa, sf, sp = self.scale_wave
        radius = self.radius * (1.0 + sa * math.sin(sf * tau + sp))
        return p - cam, self.theta0 + self.omega * tau, radius

    def brightness(self, tau: float) -> float:
        a, f, p = self.bright_wave
        return 1.0 + a * math.sin(f * tau + p)

    def transform(self, tau: float, cam: np.ndarray) -> np.ndarray:
        """2x3 affine map from unit shape coordinates to image pixels."""
        center, ang, r = self.pose(tau, cam)
        sx, sy = r * math.sqrt(self.aspect), r / math.sqrt(self.aspect)
        c, s = math.cos(ang), math.sin(ang)
        a = np.array([[c * sx, -s * sy], [s * sx, c * sy]])
        return np.concatenate([a, center[:, None]], axis=1)


def _sample_object(rng: np.random.Generator, cfg: SynthConfig, category_id: int, w: int, h: int,
                   length: int, allow_motion: bool) -> _Object:
    shape = _CATEGORY_SHAPE[category_id]
    extent = rng.uniform(*cfg.size_range)
    radius = extent / 2.0
    aspect = math.exp(rng.uniform(-1, 1) * math.log(_MAX_ASPECT[shape]))
    role = "inside"
    if allow_motion:
        x = rng.random()
        if x < cfg.enter_prob:
            role = "enter"
        elif x < cfg.enter_prob + cfg.leave_prob:
            role = "leave"
    margin = radius * 0.8
    if role == "inside":
        p0 = np.array([rng.uniform(margin, w - margin), rng.uniform(margin, h - margin)])
        direction = rng.uniform(0, 2 * math.pi)
        speed = rng.uniform(0, cfg.max_speed) if allow_motion else 0.0
        vel = speed * np.array([math.cos(direction), math.sin(direction)])
    else:
        speed = rng.uniform(*cfg.cross_speed_range)
        side = int(rng.integers(4))  # 0 left, 1 right, 2 top, 3 bottom
        normal = np.array([[1, 0], [-1, 0], [0, 1], [0, -1]][side], np.float64)  # inward
        if role == "enter":
            # starts outside, reaches the border after `k` frames
            k = rng.uniform(0.5, max(1.0, length / 2.0))
            along = rng.uniform(margin, (h if side < 2 else w) - margin)
            border = [-radius, w + radius, -radius, h + radius][side]
            pos_n = border - normal[0 if side < 2 else 1] * speed * k
        else:
            # starts inside near a border and heads out of it before the video ends
            along = rng.uniform(margin, (h if side < 2 else w) - margin)
            depth = rng.uniform(margin, max(margin + 1.0, min(speed * (length - 1) * 0.6,
                                                                 (w if side < 2 else h) / 2.0)))
            pos_n = [depth, w - depth, depth, h - depth][side]
            normal = -normal
        p0 = np.array([pos_n, along]) if side < 2 else np.array([along, pos_n])
        jitter = rng.normal(0.0, 0.25, size=2) * speed
        vel = normal * speed + jitter * (1 - np.abs(normal))
    acc = rng.normal(0.0, 0.04, size=2) if allow_motion else np.zeros(2)
    wobble = (rng.uniform(0, 4) if allow_motion else 0.0, rng.uniform(0.2, 0.6),
              rng.uniform(0, 2 * math.pi))
    omega = (rng.uniform(-0.12, 0.12) if rng.random() < 0.75 else 0.0) if allow_motion else 0.0
    scale_wave = (rng.uniform(0, cfg.scale_amplitude) if allow_motion else 0.0,
                  rng.uniform(0.08, 0.3), rng.uniform(0, 2 * math.pi))
    bright_wave = (rng.uniform(0, 0.08) if allow_motion else 0.0, rng.uniform(0.1, 0.4),
                   rng.uniform(0, 2 * math.pi))
    return _Object(category_id, shape, radius, aspect, p0, vel, acc, wobble,
                   rng.uniform(0, 2 * math.pi), omega, scale_wave, bright_wave, role)


def _shape_mask(obj: _Object, affine: np.ndarray, h: int, w: int
                ) -> Tuple[Optional[Tuple[int, int, int, int]], Optional[np.ndarray]]:
    """Rasterise an object's full (unoccluded) shape.

    Returns ``(roi, mask)`` with ``roi = (x0, y0, x1, y1)`` the clipped bounding box in image
    pixels and ``mask`` a uint8 (y1-y0, x1-x0) array of {0, 1}; ``(None, None)`` when the shape lies
    outside the image.
    """
    parts = _SHAPES[obj.shape]
    outer = parts[0][0] @ affine[:, :2].T + affine[:, 2]
    x0 = max(int(math.floor(outer[:, 0].min())) - 1, 0)
    y0 = max(int(math.floor(outer[:, 1].min())) - 1, 0)
    x1 = min(int(math.ceil(outer[:, 0].max())) + 2, w)
    y1 = min(int(math.ceil(outer[:, 1].max())) + 2, h)
    if x1 <= x0 or y1 <= y0:
        return None, None
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    scale = float(1 << _SUBPIX_SHIFT)
    for poly, value in parts:
        pts = poly @ affine[:, :2].T + affine[:, 2] - np.array([x0, y0])
        pts = np.round(pts * scale).astype(np.int32)
        cv2.fillPoly(mask, [pts], int(value), lineType=cv2.LINE_8, shift=_SUBPIX_SHIFT)
    if not mask.any():
        return None, None
    return (x0, y0, x1, y1), mask


@dataclass
class _Layout:
    """Geometry of a scene: which pixels each object covers and shows, frame by frame."""

    objects: List[_Object]
    order: List[int]  # draw order, back to front (indices into objects)
    taus: np.ndarray  # (T,) scene time per frame (constant over a static stretch)
    cams: np.ndarray  # (T, 2) camera offset per frame
    rois: List[List[Optional[Tuple[int, int, int, int]]]]  # [object][frame]
    full: List[List[Optional[np.ndarray]]]  # [object][frame] shape in its roi; None: not drawn
    visible: List[List[Optional[np.ndarray]]]  # [object][frame] full-image bool mask or None
    full_area: np.ndarray  # (O, T) in-image area when drawn
    visible_area: np.ndarray  # (O, T)


def _layout(objects: List[_Object], order: List[int], taus: np.ndarray, cams: np.ndarray,
            h: int, w: int) -> _Layout:
    n, t_len = len(objects), len(taus)
    rois = [[None] * t_len for _ in range(n)]
    full = [[None] * t_len for _ in range(n)]
    visible = [[None] * t_len for _ in range(n)]
    full_area = np.zeros((n, t_len), np.int64)
    visible_area = np.zeros((n, t_len), np.int64)
    for t in range(t_len):
        occupied = np.zeros((h, w), bool)  # pixels claimed by objects in front
        for i in reversed(order):  # front to back
            obj = objects[i]
            if obj.gap is not None and obj.gap[0] <= t < obj.gap[1]:
                continue  # invisible: neither drawn nor occluding
            roi, m = _shape_mask(obj, obj.transform(taus[t], cams[t]), h, w)
            if roi is None:
                continue
            x0, y0, x1, y1 = roi
            rois[i][t], full[i][t] = roi, m
            vis = np.zeros((h, w), bool)
            vis[y0:y1, x0:x1] = m.astype(bool) & ~occupied[y0:y1, x0:x1]
            occupied[y0:y1, x0:x1] |= m.astype(bool)
            full_area[i, t] = int(m.sum())
            visible_area[i, t] = int(vis.sum())
            visible[i][t] = vis
    return _Layout(objects, order, taus, cams, rois, full, visible, full_area, visible_area)


def _heavily_occluded(lay: _Layout, cfg: SynthConfig) -> np.ndarray:
    """(O,) bool: the object shows < heavy_occlusion_ratio of its in-image area in some frame."""
    drawn = lay.full_area >= cfg.min_visible_area
    ratio = lay.visible_area / np.maximum(lay.full_area, 1)
    return np.any(drawn & (ratio < cfg.heavy_occlusion_ratio), axis=1)


def _scene_time(rng: np.random.Generator, cfg: SynthConfig, length: int
                ) -> Tuple[np.ndarray, Optional[Tuple[int, int]]]:
    """Scene time per frame. Over a static stretch time stands still: every object and the camera
    freeze, so consecutive frames differ only by sensor noise."""
    taus = np.arange(length, dtype=np.float64)
    stretch = None
    if length >= cfg.static_frames[0] + 1 and rng.random() < cfg.static_prob:
        n = int(rng.integers(cfg.static_frames[0], min(cfg.static_frames[1], length - 1) + 1))
        s = int(rng.integers(0, length - n + 1))
        t = np.arange(length)
        taus = t - np.clip(t - s, 0, n - 1).astype(np.float64)
        stretch = (s, s + n)
    return taus, stretch


def _camera(rng: np.random.Generator, cfg: SynthConfig, taus: np.ndarray) -> np.ndarray:
    """(T, 2) camera displacement since frame 0 (a pan: objects and background shift by -cam)."""
    if rng.random() >= cfg.camera_move_prob:
        return np.zeros((len(taus), 2))
    ang = rng.uniform(0, 2 * math.pi)
    speed = rng.uniform(0.5, cfg.max_camera_speed)
    vel = speed * np.array([math.cos(ang), math.sin(ang)])
    acc = rng.normal(0.0, 0.03, size=2)
    return taus[:, None] * vel[None] + 0.5 * (taus[:, None] ** 2) * acc[None]


def _steer_across(rng: np.random.Generator, cfg: SynthConfig, target: _Object, mover: _Object,
                  length: int) -> None:
    """Re-aim ``mover`` so that it passes over (or under) ``target`` around mid-video.

    Random motion alone rarely makes objects meet in small frames; occlusion is what the masks
    and the tracker must handle, so half of the multi-object videos get a deliberate crossing.
    The miss distance is a random fraction of the radii sum: from a graze to a full overlap.
    """
    tau_m = rng.uniform(0.3, 0.7) * (length - 1)
    meet = target.pose(tau_m, np.zeros(2))[0]
    ang = rng.uniform(0, 2 * math.pi)
    meet = meet + np.array([math.cos(ang), math.sin(ang)]) * rng.uniform(0.0, 0.9) * (
        target.radius + mover.radius)
    drift = 0.5 * mover.acc * tau_m * tau_m
    vel = (meet - drift - mover.p0) / tau_m
    speed = float(np.linalg.norm(vel))
    if speed > cfg.cross_speed_range[1]:  # too far to reach: start closer instead
        vel *= cfg.cross_speed_range[1] / speed
        mover.p0 = meet - drift - vel * tau_m
    mover.vel = vel


def _sample_scene(rng: np.random.Generator, cfg: SynthConfig, h: int, w: int, length: int,
                  category_ids: Sequence[int], n_range: Tuple[int, int], is_video: bool
                  ) -> Tuple[_Layout, Optional[Tuple[int, int]]]:
    """Objects, camera and time of one video (or one image when length == 1).

    The object draw is repeated (bounded) until the scene satisfies the occlusion budget and shows
    at least one object, so the benchmark stays moderately hard.
    """
    taus, stretch = _scene_time(rng, cfg, length) if is_video else (np.zeros(1), None)
    cams = _camera(rng, cfg, taus) if is_video else np.zeros((1, 2))
    allowed_heavy = 1 if rng.random() < cfg.heavy_occlusion_prob else 0
    best = None
    for _ in range(25):
        n = int(rng.integers(n_range[0], n_range[1] + 1))
        objects = [_sample_object(rng, cfg, int(category_ids[int(rng.integers(len(category_ids)))]),
                                  w, h, length, is_video) for _ in range(n)]
        if is_video and n >= 2 and length >= 4 and rng.random() < cfg.cross_prob:
            i, j = (int(k) for k in rng.choice(n, size=2, replace=False))
            _steer_across(rng, cfg, objects[i], objects[j], length)
        if is_video and length >= 4:
            for obj in objects:
                if rng.random() < cfg.gap_prob:
                    k = int(rng.integers(cfg.gap_frames[0], cfg.gap_frames[1] + 1))
                    k = min(k, length - 2)
                    s = int(rng.integers(1, length - k))  # visible before and after the gap
                    obj.gap = (s, s + k)
        order = [int(i) for i in rng.permutation(n)]
        lay = _layout(objects, order, taus, cams, h, w)
        n_heavy = int(_heavily_occluded(lay, cfg).sum())
        present = int(np.any(lay.visible_area >= cfg.min_visible_area, axis=1).sum())
        if present == 0:
            continue
        if best is None or n_heavy < best[0]:
            best = (n_heavy, lay)
        if n_heavy <= allowed_heavy:
            break
    if best is None:  # practically unreachable: 25 draws of objects placed inside the image
        raise RuntimeError("synthetic scene generation failed to place a visible object")
    return best[1], stretch


def _render(lay: _Layout, rng: np.random.Generator, cfg: SynthConfig, h: int, w: int
            ) -> List[np.ndarray]:
    """Paint the frames (uint8 (h, w, 3) BGR each) of a laid-out scene."""
    pad_x = int(math.ceil(np.abs(lay.cams[:, 0]).max())) + 2
    pad_y = int(math.ceil(np.abs(lay.cams[:, 1]).max())) + 2
    bg, bg_mean = _background(rng, h + 2 * pad_y, w + 2 * pad_x)
    for obj in lay.objects:
        c1, c2 = _object_colors(rng, bg_mean, cfg.min_contrast)
        obj.texture, obj.texture_kind = _texture(rng, c1, c2)
    # unit shape coordinates -> texture pixels
    tex_from_unit = np.array([[_TEX_R, 0.0, _TEX / 2.0], [0.0, _TEX_R, _TEX / 2.0], [0, 0, 1]])
    unit_from_tex = np.linalg.inv(tex_from_unit)
    frames = []
    for t in range(len(lay.taus)):
        cam = lay.cams[t]
        # subpixel pan: the background window moves with the camera
        m_bg = np.array([[1.0, 0.0, -(pad_x + cam[0])], [0.0, 1.0, -(pad_y + cam[1])]])
        frame = cv2.warpAffine(bg, m_bg, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT101).astype(np.float32)
        for i in lay.order:  # back to front: later objects overwrite (occlude) earlier ones
            if lay.full[i][t] is None:
                continue
            obj = lay.objects[i]
            x0, y0, x1, y1 = lay.rois[i][t]
            img_from_unit = np.vstack([obj.transform(lay.taus[t], cam), [0, 0, 1]])
            m = (img_from_unit @ unit_from_tex)[:2].copy()
            m[:, 2] -= (x0, y0)
            patch = cv2.warpAffine(obj.texture, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REFLECT101)
            sel = lay.full[i][t].astype(bool)
            frame[y0:y1, x0:x1][sel] = patch[sel] * obj.brightness(lay.taus[t])
        if cfg.noise_sigma > 0:
            # luminance noise (one channel, broadcast): a third of the cost of colour noise
            frame += (rng.standard_normal((h, w), dtype=np.float32) * cfg.noise_sigma)[..., None]
        frames.append(np.clip(frame + 0.5, 0, 255).astype(np.uint8))
    return frames


# ----------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------
def _encode_rle(mask: np.ndarray) -> dict:
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])],
            "counts": rle["counts"].decode("ascii")}


def _rle_box_area(rle: dict) -> Tuple[List[float], int]:
    enc = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    return [float(v) for v in mask_util.toBbox(enc)], int(mask_util.area(enc))


def _write_jpeg(path: str, img: np.ndarray, quality: int) -> None:
    ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise OSError(f"cv2.imencode failed for {path}")
    with open(path, "wb") as f:
        f.write(buf.tobytes())


def _write_json_atomic(path: str, obj) -> None:
    """Compact json, written next to ``path`` and renamed into place (readers never see half a
    file)."""
    atomic_write_json(path, obj, separators=(",", ":"))


def _scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_CODES[split], index]))


def _generate_videos(out_dir: str, split: str, num_videos: int, seed: int, cfg: SynthConfig
                     ) -> Tuple[dict, dict]:
    """Render one YouTube-VIS split. Returns (json dict, stats dict)."""
    frame_root = os.path.join(out_dir, "JPEGImages")
    videos, annotations = [], []
    stats = dict(videos=0, frames=0, instances=0, instance_frames=0, occluded_instance_frames=0,
                 frames_with_occlusion=0, heavily_occluded_instances=0, instances_with_gap=0,
                 instances_entering=0, instances_leaving=0, videos_with_static_stretch=0,
                 static_repeat_frames=0)
    for vi in range(num_videos):
        rng = _scene_rng(seed, split, vi)
        length = int(rng.integers(cfg.length_range[0], cfg.length_range[1] + 1))
        w = int(rng.integers(cfg.width_range[0], cfg.width_range[1] + 1))
        h = int(rng.integers(cfg.height_range[0], cfg.height_range[1] + 1))
        lay, stretch = _sample_scene(rng, cfg, h, w, length, [c["id"] for c in VIDEO_CATEGORIES],
                                     cfg.objects_range, is_video=True)
        frames = _render(lay, rng, cfg, h, w)

        name = f"{split}_{vi:04d}"
        os.makedirs(os.path.join(frame_root, name), exist_ok=True)
        file_names = []
        for t, img in enumerate(frames):
            rel = f"{name}/{t:05d}.jpg"
            _write_jpeg(os.path.join(frame_root, rel), img, cfg.jpeg_quality)
            file_names.append(rel)
        video_id = vi + 1
        videos.append({"id": video_id, "file_names": file_names, "height": h, "width": w,
                       "length": length})

        present = lay.visible_area >= cfg.min_visible_area  # (O, T)
        occluded = present & (lay.visible_area < lay.full_area)
        heavy = _heavily_occluded(lay, cfg)
        for i, obj in enumerate(lay.objects):
            if not present[i].any():
                continue  # never visible: not an instance of this video
            segs, boxes, areas = [], [], []
            for t in range(length):
                if not present[i, t]:
                    segs.append(None), boxes.append(None), areas.append(None)
                    continue
                rle = _encode_rle(lay.visible[i][t])
                box, area = _rle_box_area(rle)
                segs.append(rle), boxes.append(box), areas.append(area)
            annotations.append({
                "id": len(annotations) + 1, "video_id": video_id, "category_id": obj.category_id,
                "iscrowd": 0, "segmentations": segs, "bboxes": boxes, "areas": areas,
                "height": h, "width": w, "length": length,
            })
            idx = np.flatnonzero(present[i])
            stats["instances"] += 1
            stats["instance_frames"] += int(present[i].sum())
            stats["occluded_instance_frames"] += int(occluded[i].sum())
            stats["heavily_occluded_instances"] += int(heavy[i])
            stats["instances_with_gap"] += int(len(idx) < idx[-1] - idx[0] + 1)
            stats["instances_entering"] += int(obj.role == "enter")
            stats["instances_leaving"] += int(obj.role == "leave")
        stats["videos"] += 1
        stats["frames"] += length
        stats["frames_with_occlusion"] += int(occluded.any(axis=0).sum())
        if stretch is not None:
            stats["videos_with_static_stretch"] += 1
            stats["static_repeat_frames"] += stretch[1] - stretch[0] - 1
    data = {
        "info": {"description": f"vis_d2 synthetic YouTube-VIS benchmark, {split}, seed {seed}",
                 "version": "1.0"},
        "licenses": [],
        "videos": videos,
        "categories": [dict(c) for c in VIDEO_CATEGORIES],
        "annotations": annotations,
    }
    return data, stats


def _write_image(rng: np.random.Generator, cfg: SynthConfig, categories, image_root: str,
                 image_id: int) -> Tuple[dict, "_Layout"]:
    """Sample, render and write one image of ``categories`` as ``<image_root>/<id:06d>.jpg``.
    Returns its COCO ``images`` entry and its layout (objects, visible masks and areas)."""
    w = int(rng.integers(cfg.width_range[0], cfg.width_range[1] + 1))
    h = int(rng.integers(cfg.height_range[0], cfg.height_range[1] + 1))
    lay, _ = _sample_scene(rng, cfg, h, w, 1, [c["id"] for c in categories],
                           cfg.image_objects_range, is_video=False)
    (img,) = _render(lay, rng, cfg, h, w)
    file_name = f"{image_id:06d}.jpg"
    _write_jpeg(os.path.join(image_root, file_name), img, cfg.jpeg_quality)
    return {"id": image_id, "file_name": file_name, "height": h, "width": w}, lay


def _generate_images(out_dir: str, num_images: int, seed: int, cfg: SynthConfig
                     ) -> Tuple[dict, dict]:
    """Render the COCO-format image set. Returns (json dict with segmentation, stats dict)."""
    image_root = os.path.join(out_dir, "images")
    os.makedirs(image_root, exist_ok=True)
    images, annotations = [], []
    per_cat = {c["id"]: 0 for c in IMAGE_CATEGORIES}
    for ii in range(num_images):
        rng = _scene_rng(seed, "images", ii)
        image, lay = _write_image(rng, cfg, IMAGE_CATEGORIES, image_root, ii + 1)
        images.append(image)
        for i, obj in enumerate(lay.objects):
            if lay.visible_area[i, 0] < cfg.min_visible_area:
                continue
            rle = _encode_rle(lay.visible[i][0])
            box, area = _rle_box_area(rle)
            annotations.append({"id": len(annotations) + 1, "image_id": image["id"],
                                "category_id": obj.category_id, "segmentation": rle,
                                "area": area, "bbox": box, "iscrowd": 0})
            per_cat[obj.category_id] += 1
    data = {
        "info": {"description": f"vis_d2 synthetic image set, seed {seed}", "version": "1.0"},
        "licenses": [],
        "images": images,
        "categories": [dict(c) for c in IMAGE_CATEGORIES],
        "annotations": annotations,
    }
    stats = {"images": len(images), "instances": len(annotations),
             "instances_per_category": {_CATEGORY_SHAPE[k]: v for k, v in per_cat.items()}}
    return data, stats


def _noisy_mask(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """A weak annotator's mask (bool (H, W)): the true mask dilated or eroded by 1-3 px and
    shifted by up to 4 px."""
    k = 2 * int(rng.integers(1, 4)) + 1
    m = mask.astype(np.uint8)
    m = cv2.dilate(m, np.ones((k, k), np.uint8)) if rng.random() < 0.5 else cv2.erode(
        m, np.ones((k, k), np.uint8))
    dx, dy = (float(v) for v in rng.integers(-4, 5, size=2))
    m = cv2.warpAffine(m, np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]]), (m.shape[1], m.shape[0]),
                       flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return m.astype(bool)


def _generate_msd_images(out_dir: str, num_images: int, weak_share: float, seed: int,
                         cfg: SynthConfig) -> Tuple[dict, dict, dict]:
    """Render the second source (its own taxonomy, :data:`MSD_CATEGORIES`). Each image draws
    whether it is weakly annotated (probability ``weak_share``); a weak image's masks are noisy
    or missing (one coin per instance), its boxes exact.

    Returns:
        (json dict of the exactly annotated images, json dict of the weak ones, stats dict).
    """
    image_root = os.path.join(out_dir, "msd_images")
    os.makedirs(image_root, exist_ok=True)
    sets = {False: ([], []), True: ([], [])}  # weak -> (images, annotations)
    per_cat = {c["id"]: 0 for c in MSD_CATEGORIES}
    missing = noisy = 0
    for ii in range(num_images):
        rng = _scene_rng(seed, "msd", ii)
        weak = bool(rng.random() < weak_share)
        image, lay = _write_image(rng, cfg, MSD_CATEGORIES, image_root, ii + 1)
        images, annotations = sets[weak]
        images.append(image)
        for i, obj in enumerate(lay.objects):
            if lay.visible_area[i, 0] < cfg.min_visible_area:
                continue
            rle = _encode_rle(lay.visible[i][0])
            box, area = _rle_box_area(rle)
            anno = {"id": len(sets[False][1]) + len(sets[True][1]) + 1, "image_id": image["id"],
                    "category_id": obj.category_id, "area": area, "bbox": box, "iscrowd": 0}
            if weak and rng.random() < 0.5:
                missing += 1  # no "segmentation": the annotator drew a box only
            elif weak:
                rough = _noisy_mask(rng, lay.visible[i][0])
                if rough.any():
                    anno["segmentation"] = _encode_rle(rough)
                    noisy += 1
                else:
                    missing += 1
            else:
                anno["segmentation"] = rle
            annotations.append(anno)
            per_cat[obj.category_id] += 1
    out = []
    for weak in (False, True):
        images, annotations = sets[weak]
        kind = "noisy or missing masks" if weak else "exact masks"
        out.append({
            "info": {"description": f"vis_d2 synthetic second source ({kind}), seed {seed}",
                     "version": "1.0"},
            "licenses": [],
            "images": images,
            "categories": [dict(c) for c in MSD_CATEGORIES],
            "annotations": annotations,
        })
    names = {c["id"]: c["name"] for c in MSD_CATEGORIES}
    stats = {"images": num_images, "weak_images": len(sets[True][0]),
             "instances": len(sets[False][1]) + len(sets[True][1]),
             "weak_missing_masks": missing, "weak_noisy_masks": noisy,
             "instances_per_category": {names[k]: v for k, v in per_cat.items()}}
    return out[0], out[1], stats


def generate(out_dir: str, train_videos: int = 80, val_videos: int = 20, seed: int = 0,
             image_set_size: int = 200, config: Optional[SynthConfig] = None,
             verbose: bool = False, msd_set_size: Optional[int] = None,
             msd_weak_share: float = 0.3) -> Dict[str, str]:
    """Render the synthetic benchmark into ``out_dir`` (created if missing; files overwritten).

    Args:
        out_dir: output directory.
        train_videos, val_videos: number of videos of ``train.json`` / ``valid.json`` (>= 0).
        seed: everything written is a deterministic function of it.
        image_set_size: number of images of the COCO image set (>= 0).
        config: renderer knobs; ``SynthConfig()`` when None.
        verbose: print each file written with the time taken.
        msd_set_size: number of images of the second source (>= 0); None: ``image_set_size``.
        msd_weak_share: the probability that one of its images is weakly annotated, in [0, 1].

    Returns:
        dict of written paths: ``root``, ``video_root`` (the ``JPEGImages`` folder, image_root of
        the video jsons), ``train_json``, ``valid_json``, ``image_root`` (``images``),
        ``images_json``, ``images_boxonly_json``, ``msd_image_root`` (``msd_images``),
        ``msd_json``, ``msd_weak_json`` and ``stats_json``.
    """
    if msd_set_size is None:
        msd_set_size = image_set_size
    for name, value in (("train_videos", train_videos), ("val_videos", val_videos),
                        ("image_set_size", image_set_size), ("msd_set_size", msd_set_size),
                        ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(
                f"vis_d2.data.synthetic.generate: {name} must be an int >= 0, got {value!r}")
    if isinstance(msd_weak_share, bool) or not isinstance(msd_weak_share, (int, float)) or not (
            0.0 <= msd_weak_share <= 1.0):
        raise ValueError("vis_d2.data.synthetic.generate: msd_weak_share must lie in [0, 1], "
                         f"got {msd_weak_share!r}")
    cfg = config if config is not None else SynthConfig()
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise NotADirectoryError(
            f"vis_d2.data.synthetic.generate: out_dir {out_dir!r} exists and is not a directory")
    os.makedirs(os.path.join(out_dir, "JPEGImages"), exist_ok=True)
    paths = {
        "root": out_dir,
        "video_root": os.path.join(out_dir, "JPEGImages"),
        "train_json": os.path.join(out_dir, "train.json"),
        "valid_json": os.path.join(out_dir, "valid.json"),
        "image_root": os.path.join(out_dir, "images"),
        "images_json": os.path.join(out_dir, "images_train.json"),
        "images_boxonly_json": os.path.join(out_dir, "images_train_boxonly.json"),
        "msd_image_root": os.path.join(out_dir, "msd_images"),
        "msd_json": os.path.join(out_dir, "msd_train.json"),
        "msd_weak_json": os.path.join(out_dir, "msd_weak_train.json"),
        "stats_json": os.path.join(out_dir, "stats.json"),
    }
    all_stats = {"seed": int(seed)}

    def log(msg: str) -> None:
        if verbose:
            print(msg, flush=True)

    for split, n, key in (("train", train_videos, "train_json"),
                          ("valid", val_videos, "valid_json")):
        t0 = time.perf_counter()
        data, stats = _generate_videos(out_dir, split, int(n), int(seed), cfg)
        _write_json_atomic(paths[key], data)
        dt = time.perf_counter() - t0
        all_stats[split] = stats
        log(f"wrote {paths[key]}: {stats['videos']} videos, {stats['frames']} frames, "
            f"{stats['instances']} instances in {dt:.2f}s "
            f"({stats['videos'] / max(dt, 1e-9):.1f} videos/s, "
            f"{stats['frames'] / max(dt, 1e-9):.1f} frames/s)")

    t0 = time.perf_counter()
    data, stats = _generate_images(out_dir, int(image_set_size), int(seed), cfg)
    _write_json_atomic(paths["images_json"], data)
    boxonly = dict(data)
    boxonly["annotations"] = [{k: v for k, v in a.items() if k != "segmentation"}
                              for a in data["annotations"]]
    _write_json_atomic(paths["images_boxonly_json"], boxonly)
    dt = time.perf_counter() - t0
    all_stats["images"] = stats
    log(f"wrote {paths['images_json']} and {paths['images_boxonly_json']}: "
        f"{stats['images']} images, {stats['instances']} instances in {dt:.2f}s "
        f"({stats['images'] / max(dt, 1e-9):.1f} images/s)")

    t0 = time.perf_counter()
    exact, weak, stats = _generate_msd_images(out_dir, int(msd_set_size), float(msd_weak_share),
                                              int(seed), cfg)
    _write_json_atomic(paths["msd_json"], exact)
    _write_json_atomic(paths["msd_weak_json"], weak)
    all_stats["msd"] = stats
    log(f"wrote {paths['msd_json']} and {paths['msd_weak_json']}: {stats['images']} images "
        f"({stats['weak_images']} weak), {stats['instances']} instances in "
        f"{time.perf_counter() - t0:.2f}s")
    _write_json_atomic(paths["stats_json"], all_stats)
    log(f"wrote {paths['stats_json']}")
    return paths


def _format_stats(stats: dict) -> str:
    lines = []
    for split in ("train", "valid"):
        s = stats[split]
        if s["videos"] == 0:
            lines.append(f"  {split}: empty")
            continue
        lines.append(
            f"  {split}: {s['videos']} videos, {s['frames']} frames, {s['instances']} instances "
            f"({s['instance_frames']} instance-frames); frames with occlusion "
            f"{s['frames_with_occlusion'] / s['frames']:.1%}, occluded instance-frames "
            f"{s['occluded_instance_frames'] / max(s['instance_frames'], 1):.1%}, heavily occluded "
            f"instances {s['heavily_occluded_instances'] / max(s['instances'], 1):.1%}, instances "
            f"with a gap {s['instances_with_gap'] / max(s['instances'], 1):.1%}, entering "
            f"{s['instances_entering']}, leaving {s['instances_leaving']}, videos with a static "
            f"stretch {s['videos_with_static_stretch']} "
            f"({s['static_repeat_frames']} repeated frames)")
    s = stats["images"]
    lines.append(f"  images: {s['images']} images, {s['instances']} instances, per category "
                 f"{s['instances_per_category']}")
    s = stats["msd"]
    lines.append(f"  second source: {s['images']} images ({s['weak_images']} with noisy or "
                 f"missing masks: {s['weak_noisy_masks']} noisy, {s['weak_missing_masks']} "
                 f"missing), {s['instances']} instances, per category "
                 f"{s['instances_per_category']}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, str]:
    parser = argparse.ArgumentParser(
        prog="python -m vis_d2.data.synthetic",
        description="Render the synthetic YouTube-VIS benchmark (videos, the COCO image set and "
                    "a second image source with its own taxonomy).")
    parser.add_argument("--out", default="datasets/synthvis", help="output directory")
    parser.add_argument("--train-videos", type=int, default=80)
    parser.add_argument("--val-videos", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-set-size", type=int, default=200)
    parser.add_argument("--msd-set-size", type=int, default=None,
                        help="images of the second source (its own taxonomy); default: "
                             "--image-set-size")
    parser.add_argument("--msd-weak-share", type=float, default=0.3,
                        help="share of the second source's images with noisy or missing masks")
    default = SynthConfig()
    parser.add_argument("--frame-width", type=int, nargs=2, metavar=("LO", "HI"),
                        default=default.width_range, help="frame width range in pixels")
    parser.add_argument("--frame-height", type=int, nargs=2, metavar=("LO", "HI"),
                        default=default.height_range, help="frame height range in pixels")
    parser.add_argument("--object-size", type=float, nargs=2, metavar=("LO", "HI"),
                        default=default.size_range,
                        help="object extent range in pixels (larger frames and a wide range give "
                             "the metric's small, medium and large objects)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        config = SynthConfig(width_range=tuple(args.frame_width),
                             height_range=tuple(args.frame_height),
                             size_range=tuple(args.object_size))
        paths = generate(args.out, args.train_videos, args.val_videos, args.seed,
                         args.image_set_size, config=config, verbose=True,
                         msd_set_size=args.msd_set_size, msd_weak_share=args.msd_weak_share)
    except ValueError as e:
        parser.error(str(e))
    dt = time.perf_counter() - t0
    with open(paths["stats_json"]) as f:
        stats = json.load(f)
    n_videos = stats["train"]["videos"] + stats["valid"]["videos"]
    n_frames = stats["train"]["frames"] + stats["valid"]["frames"]
    n_images = stats["images"]["images"] + stats["msd"]["images"]
    print(f"done in {dt:.2f}s: {n_videos} videos, {n_frames} frames, {n_images} images "
          f"({n_videos / dt:.1f} videos/s, {(n_frames + n_images) / dt:.1f} frames/s incl. images)")
    print(_format_stats(stats))
    return paths


if __name__ == "__main__":
    main()
