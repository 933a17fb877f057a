"""Track NMS: merge a video's predictions that cover the same object.

Per-class detection NMS lets one object yield a detection for each class it might be, and the
tracker's label term links those into one track per class; fragments and near-duplicate boxes
add more, so one object can own several predicted tracks.

Every duplicate scored above another object's track is a false positive to the video-level
metric, but the duplicates of other classes are also the hedge that keeps an uncertain object
recallable in the class it really is. So duplicates are grouped, not dropped:

1. sort the video's predictions by score; greedily, the best ungrouped prediction starts a group
   and takes every ungrouped prediction whose spatio-temporal mask IoU with it exceeds the
   threshold (any category);
2. each group emits one prediction per category present in it: the masks of the group's first
   (best) prediction, the best score among the group's predictions of that category.

spatio-temporal IoU (the metric's): sum over frames of |A_t & B_t| / sum over frames of
|A_t | B_t|, with a frame where only one is present adding its area to the union.
"""
from typing import Dict, List, Optional, Sequence

import numpy as np
import pycocotools.mask as mask_util

from .frame_detections import TrackingInputError

__all__ = ["spatio_temporal_iou", "track_nms"]


def spatio_temporal_iou(segmentations: Sequence[Sequence[Optional[Dict]]]) -> np.ndarray:
    """(P, P) float64 spatio-temporal mask IoU between P tracks of one video.

    Args:
        segmentations: P lists of T compressed RLEs (or None where the track is absent), all
            of the same length T and frame size.
    """
    num = len(segmentations)
    if num == 0:
        return np.zeros((0, 0))
    length = len(segmentations[0])
    if any(len(s) != length for s in segmentations):
        raise TrackingInputError(
            f"spatio_temporal_iou: tracks of one video must have the same number of frames, got "
            f"{sorted({len(s) for s in segmentations})}")
    inter = np.zeros((num, num))
    area_sum = np.zeros(num)
    for t in range(length):
        idx = [i for i in range(num) if segmentations[i][t] is not None]
        if not idx:
            continue
        rles = [segmentations[i][t] for i in idx]
        area = mask_util.area(rles).astype(np.float64)
        area_sum[idx] += area
        iou = mask_util.iou(rles, rles, [0] * len(rles))
        # |A & B| from IoU and the areas: IoU = I / (a + b - I)  =>  I = IoU (a + b) / (1 + IoU)
        inter[np.ix_(idx, idx)] += iou * (area[:, None] + area[None, :]) / (1.0 + iou)
    union = area_sum[:, None] + area_sum[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def track_nms(predictions: Sequence[Dict], iou_thresh: float) -> List[Dict]:
    """Group one video's duplicate predictions (see module doc).

    Args:
        predictions: one video's predictions (``video_id``, ``category_id``, ``score``,
            ``segmentations``: T RLEs or None), any order.
        iou_thresh: in [0, 1); predictions whose stIoU with a group's first one is strictly
            greater join the group.

    Returns:
        the groups' predictions (at most one per group and category), sorted by score
        descending; groups are formed and emitted in score order, ties keep the input order.
    """
    if not 0.0 <= float(iou_thresh) < 1.0:
        raise TrackingInputError(
            f"track_nms: iou_thresh (MODEL.VIS.TRACKER.TRACK_NMS_THRESH) must be in [0, 1), "
            f"got {iou_thresh}")
    if not predictions:
        return []
    videos = {p["video_id"] for p in predictions}
    if len(videos) != 1:
        raise TrackingInputError(
            f"track_nms: predictions of one video expected, got video ids {sorted(videos)}")
    order = sorted(range(len(predictions)), key=lambda i: -float(predictions[i]["score"]))
    preds = [predictions[i] for i in order]
    ious = spatio_temporal_iou([p["segmentations"] for p in preds])
    grouped = np.zeros(len(preds), dtype=bool)
    out: List[Dict] = []
    for lead in range(len(preds)):
        if grouped[lead]:
            continue
        members = np.nonzero(~grouped & (ious[lead] > iou_thresh))[0].tolist()
        members = sorted(set(members) | {lead})
        grouped[members] = True
        best: Dict[int, float] = {}
        for m in members:  # members are in score order: the first of a category is its best
            best.setdefault(int(preds[m]["category_id"]), float(preds[m]["score"]))
        for category, score in best.items():
            out.append(dict(preds[lead], category_id=category, score=score))
    out.sort(key=lambda p: -p["score"])
    return out
