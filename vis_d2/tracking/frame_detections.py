"""``FrameDetections``: one frame's detections, cached once per video for the tracker.

The model runs once per frame and stores its outputs here; the tracker then
associates them forward and, for BiTrack, backward, from the same cache without a second model
pass. The tracker never copies the masks: it refers to a detection by its index in a frame.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, List

import numpy as np

__all__ = ["FrameDetections", "TrackingInputError", "pairwise_box_iou", "paired_box_iou"]


class TrackingInputError(ValueError):
    """Malformed input to the tracking package (detections, tracklets or arguments)."""


def _where(source: str) -> str:
    return f"FrameDetections ({source})" if source else "FrameDetections"


@dataclass(eq=False)
class FrameDetections:
    """Detections of one video frame, as the tracker reads them.

    Attributes:
        boxes: (N, 4) float32, XYXY in original video pixels (x2 >= x1, y2 >= y1).
        scores: (N,) float32, finite and >= 0.
        labels: (N,) int64, contiguous category ids (0..C-1).
        embeddings: (N, D) float32 track-head embeddings.
        masks: list of N pycocotools RLE dicts ({"size": [h, w], "counts": ...}) at the
            original video size. The tracker only passes them through.
        source: optional text naming the video / frame, used in error messages only
            (e.g. ``"video 12, frame 3"``).

    Inputs are converted to the dtypes above; wrong shapes, non-finite values or
    mismatched lengths raise :class:`TrackingInputError` naming the field.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    embeddings: np.ndarray
    masks: List[Dict[str, Any]]
    source: str = field(default="", repr=False)

    def __post_init__(self):
        where = _where(self.source)
        self.boxes = _as_float_array(self.boxes, "boxes", where)
        self.scores = _as_float_array(self.scores, "scores", where)
        self.embeddings = _as_float_array(self.embeddings, "embeddings", where)
        self.labels = _as_label_array(self.labels, where)

        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
            raise TrackingInputError(
                f"{where}: field 'boxes' must have shape (N, 4), got {self.boxes.shape}")
        n = self.boxes.shape[0]
        if self.scores.shape != (n,):
            raise TrackingInputError(
                f"{where}: field 'scores' must have shape ({n},) to match 'boxes', "
                f"got {self.scores.shape}")
        if self.labels.shape != (n,):
            raise TrackingInputError(
                f"{where}: field 'labels' must have shape ({n},) to match 'boxes', "
                f"got {self.labels.shape}")
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] != n:
            raise TrackingInputError(
                f"{where}: field 'embeddings' must have shape ({n}, D) to match 'boxes', "
                f"got {self.embeddings.shape}")
        if not isinstance(self.masks, (list, tuple)) or len(self.masks) != n:
            got = len(self.masks) if isinstance(self.masks, (list, tuple)) else type(self.masks)
            raise TrackingInputError(
                f"{where}: field 'masks' must be a list of {n} RLE dicts, got {got}")
        self.masks = list(self.masks)
        for i, rle in enumerate(self.masks):
            if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
                raise TrackingInputError(
                    f"{where}: field 'masks'[{i}] must be an RLE dict with 'size' and 'counts', "
                    f"got {type(rle).__name__}")
        flipped = (self.boxes[:, 2] < self.boxes[:, 0]) | (self.boxes[:, 3] < self.boxes[:, 1])
        if flipped.any():
            bad = int(np.nonzero(flipped)[0][0])
            raise TrackingInputError(
                f"{where}: field 'boxes'[{bad}] = {self.boxes[bad].tolist()} is not XYXY "
                "(x2 < x1 or y2 < y1)")
        if (self.scores < 0).any():
            raise TrackingInputError(f"{where}: field 'scores' has negative values")
        if (self.labels < 0).any():
            raise TrackingInputError(f"{where}: field 'labels' has negative category ids")

    @classmethod
    def empty(cls, embed_dim: int, source: str = "") -> "FrameDetections":
        """A frame without detections (N = 0) whose embeddings have shape (0, embed_dim)."""
        if int(embed_dim) < 0:
            raise TrackingInputError(f"{_where(source)}: embed_dim must be >= 0, got {embed_dim}")
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            labels=np.zeros((0,), np.int64),
            embeddings=np.zeros((0, int(embed_dim)), np.float32),
            masks=[],
            source=source,
        )

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def embed_dim(self) -> int:
        return int(self.embeddings.shape[1])


def _as_float_array(value, name: str, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise TrackingInputError(f"{where}: field '{name}' is not a numeric array ({e})") from None
    if not np.isfinite(arr).all():
        raise TrackingInputError(f"{where}: field '{name}' has NaN or infinite values")
    return arr


def _as_label_array(value, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as e:
        raise TrackingInputError(f"{where}: field 'labels' is not an array ({e})") from None
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        # Accept float arrays of whole numbers (e.g. from a tensor's .float()), nothing else.
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(np.isfinite(arr)) \
                or not np.all(arr == np.round(arr)):
            raise TrackingInputError(
                f"{where}: field 'labels' must hold integer category ids, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def pairwise_box_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """IoU of XYXY boxes, (..., N, 4) x (..., M, 4) -> (..., N, M) float32.

    Same definition as ``torchvision.ops.box_iou``, in numpy and batched over leading
    dimensions: the tracker calls it on ~10 x 10 boxes per frame, where torchvision's
    per-call overhead (~0.2 ms) costs more than the arithmetic. A pair with zero union
    (two zero-area boxes) has IoU 0.
    """
    b1 = np.asarray(boxes1, dtype=np.float32)[..., :, None, :]
    b2 = np.asarray(boxes2, dtype=np.float32)[..., None, :, :]
    return paired_box_iou(b1, b2)


def paired_box_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """IoU of corresponding XYXY boxes, (..., 4) x (..., 4) -> (...) float32 (broadcasting)."""
    b1 = np.asarray(boxes1, dtype=np.float32)
    b2 = np.asarray(boxes2, dtype=np.float32)
    wh = np.clip(np.minimum(b1[..., 2:], b2[..., 2:]) - np.maximum(b1[..., :2], b2[..., :2]),
                 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area1 = (b1[..., 2] - b1[..., 0]) * (b1[..., 3] - b1[..., 1])
    area2 = (b2[..., 2] - b2[..., 0]) * (b2[..., 3] - b2[..., 1])
    union = area1 + area2 - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
