"""The paper's box rule for merging several detection sets of one frame (Sec. 3.5.2, also used
by multi-scale testing, Sec. 3.5.5): boxes of one class that overlap are merged into one box whose
score is the **maximum** of the merged boxes' scores, not their mean, so that the merged score
stays calibrated like a single model's ("inherited from the dominant box").

The paper names this step "Greedy Auto Ensemble [23]"; its reference list is not in the text
this project works from, so the rule is implemented as the paper's own sentences state it, with
the weighted boxes fusion (WBF) of the ``ensemble-boxes`` package, ``conf_type="max"``
(``pip install 'vis_d2[ensemble]'``). How WBF (ensemble-boxes 1.0.9) does it, and where that may
differ from the cited method:

* per class, the boxes of all sets are visited in descending score; a box joins the cluster
  whose current merged box it overlaps most if that IoU exceeds ``iou_thresh`` (strictly), else
  it starts a cluster. Boxes of the same set can join one cluster.
* the merged box's coordinates are the score-weighted mean of its cluster's boxes. The paper
  says nothing of the coordinates; a rule that keeps the dominant box's coordinates too would
  give other boxes (same scores).
* the merged score is the cluster's maximum score (all sets weigh 1): no penalty for sets that
  missed the object, unlike WBF's default ``"avg"`` mode.
* the greedy part, choosing which models join the ensemble, is
  :func:`vis_d2.ensemble.greedy.greedy_selection`.

WBF wants coordinates normalised to [0, 1]: :func:`fuse_boxes` divides by the frame's width and
height, clips to [0, 1] (a box past the border is clipped, as detectron2 clips its own), leaves
out boxes of zero area (WBF would skip them with a warning), and multiplies back.
"""
import importlib
from typing import Sequence, Tuple

import numpy as np

__all__ = ["fuse_boxes", "import_ensemble_boxes"]

# ensemble-boxes' default IoU for two boxes to be merged.
DEFAULT_IOU_THRESH = 0.55


def import_ensemble_boxes():
    """The ``ensemble_boxes`` module, or an ImportError saying which extra installs it."""
    try:
        return importlib.import_module("ensemble_boxes")
    except ImportError as e:
        raise ImportError(
            "fusing detections (multi-scale testing, TEST.VIS.SCALES with several factors, or a "
            "model ensemble) needs the ensemble-boxes package: pip install 'vis_d2[ensemble]' "
            f"({e})") from None


def fuse_boxes(boxes: Sequence[np.ndarray], scores: Sequence[np.ndarray],
               labels: Sequence[np.ndarray], image_size: Tuple[int, int],
               iou_thresh: float = DEFAULT_IOU_THRESH, names: Sequence[str] = ()
               ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge S detection sets of one frame with the paper's rule (see the module doc).

    Args:
        boxes: S arrays (N_s, 4) XYXY in pixels of the frame.
        scores: S arrays (N_s,) in [0, 1].
        labels: S arrays (N_s,) integer class ids; only boxes of one class merge.
        image_size: (height, width) of the frame.
        iou_thresh: boxes merge above this IoU, in (0, 1).
        names: optional name of each set, for error messages (e.g. "model 2, scale 0.7").

    Returns:
        (K, 4) float32 XYXY pixel boxes, (K,) float32 scores (each the max of its cluster) and
        (K,) int64 labels, sorted by descending score.
    """
    h, w = (int(v) for v in image_size)
    if h <= 0 or w <= 0:
        raise ValueError(f"fuse_boxes: image_size must be positive (height, width), got "
                         f"{image_size}")
    if not 0.0 < iou_thresh < 1.0:
        raise ValueError(f"fuse_boxes: iou_thresh must be in (0, 1), got {iou_thresh}")
    if not (len(boxes) == len(scores) == len(labels)) or not boxes:
        raise ValueError(f"fuse_boxes: needs as many score and label arrays as box arrays (at "
                         f"least one), got {len(boxes)}, {len(scores)}, {len(labels)}")
    scale = np.array([w, h, w, h], np.float64)
    norm_boxes, norm_scores, norm_labels = [], [], []
    for s, (b, sc, lb) in enumerate(zip(boxes, scores, labels)):
        where = names[s] if s < len(names) else f"set {s}"
        b = np.asarray(b, np.float64).reshape(-1, 4) if np.size(b) else np.zeros((0, 4))
        sc = np.asarray(sc, np.float64).reshape(-1)
        lb = np.asarray(lb).reshape(-1)
        if not len(b) == len(sc) == len(lb):
            raise ValueError(f"fuse_boxes: {where} has {len(b)} boxes, {len(sc)} scores and "
                             f"{len(lb)} labels")
        if not (np.isfinite(b).all() and np.isfinite(sc).all()):
            raise ValueError(f"fuse_boxes: {where} has NaN or infinite boxes or scores")
        if ((sc < 0) | (sc > 1)).any():
            raise ValueError(f"fuse_boxes: {where} has scores outside [0, 1]")
        nb = np.clip(b / scale, 0.0, 1.0)
        keep = (nb[:, 2] > nb[:, 0]) & (nb[:, 3] > nb[:, 1])
        norm_boxes.append(nb[keep])
        norm_scores.append(sc[keep])
        norm_labels.append(lb[keep].astype(np.int64))
    if sum(len(b) for b in norm_boxes) == 0:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int64)
    ensemble_boxes = import_ensemble_boxes()
    fused, fused_scores, fused_labels = ensemble_boxes.weighted_boxes_fusion(
        norm_boxes, norm_scores, norm_labels, iou_thr=float(iou_thresh), skip_box_thr=0.0,
        conf_type="max")
    return ((np.asarray(fused, np.float64) * scale).astype(np.float32),
            np.asarray(fused_scores, np.float32), np.asarray(fused_labels).astype(np.int64))
