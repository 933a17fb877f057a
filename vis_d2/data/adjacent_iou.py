"""The box IoU of the same object in adjacent annotated frames (paper Sec. 3.1, Fig. 2a).

For every object (a track id of a video record) and every two adjacent annotated frames t, t+1
of its video that both hold it, the IoU of its two boxes. A high IoU means the object hardly
moved: the paper reads a histogram dominated by IoU > 0.8 as "adjacent frames are nearly the
same", so most frames of a video add little to training.

* Adjacent means adjacent in the record's frame list: the frames of a YouTube-VIS json are its
  annotated frames (every 5th frame of the source video), in temporal order.
* Absent frames: an object missing from frame t+1 (its box and mask null there, so the loader
  left it out) gives no pair for (t, t+1) nor (t+1, t+2); a pair never bridges the gap (t, t+2),
  since those frames are not adjacent.
* Crowd annotations (``iscrowd`` 1) are skipped, as the training mappers drop them.

``tools/analyze_data.py adjacent-iou`` draws the histogram.
"""
import dataclasses
from typing import Dict, Iterable, List, Sequence, Tuple

import numpy as np
import torch

from detectron2.structures import Boxes, BoxMode
from detectron2.structures.boxes import matched_pairwise_iou

from .video_record import check_video_record, video_name

__all__ = ["AdjacentPairs", "adjacent_box_ious", "summarize_ious", "IOU_THRESHOLDS"]

# The shares summarize_ious reports; 0.8 is the paper's reading of Fig. 2a.
IOU_THRESHOLDS = (0.5, 0.7, 0.8, 0.9)


@dataclasses.dataclass
class AdjacentPairs:
    """One entry per (object, adjacent annotated frames t and t+1) holding it in both.

    ious: float64 [P] box IoU in [0, 1]; video_ids, track_ids, frames: int64 [P], the video, the
    object's track id and t (the index of the first frame in the record's frame list).
    """

    ious: np.ndarray
    video_ids: np.ndarray
    track_ids: np.ndarray
    frames: np.ndarray

    def __len__(self) -> int:
        return len(self.ious)

    def per_track_mean(self) -> np.ndarray:
        """float64 [K]: the mean IoU of each object over its pairs (the paper's "average IoU
        score over the video", one value per object), in order of first appearance."""
        keys = list(zip(self.video_ids.tolist(), self.track_ids.tolist()))
        groups: Dict[Tuple[int, int], List[float]] = {}
        for key, iou in zip(keys, self.ious.tolist()):
            groups.setdefault(key, []).append(iou)
        return np.array([np.mean(v) for v in groups.values()], dtype=np.float64)


def _frame_boxes(record: dict, frame: int) -> Dict[int, List[float]]:
    """{track id: XYXY_ABS box} of the non-crowd instances of one frame of a video record."""
    out: Dict[int, List[float]] = {}
    for anno in record["annotations"][frame]:
        if anno.get("iscrowd", 0):
            continue
        where = f"{video_name(record)}, frame {frame}"
        for key in ("track_id", "bbox", "bbox_mode"):
            if key not in anno:
                raise ValueError(f"{where}: an instance has no '{key}'")
        tid = int(anno["track_id"])
        if tid in out:
            raise ValueError(f"{where}: track id {tid} appears twice")
        box = BoxMode.convert(list(anno["bbox"]), anno["bbox_mode"], BoxMode.XYXY_ABS)
        if not (box[2] > box[0] and box[3] > box[1]):
            # IoU of an empty box is 0/0: no number to put in the histogram.
            raise ValueError(f"{where}: track {tid} has an empty box {list(anno['bbox'])}")
        out[tid] = [float(v) for v in box]
    return out


def adjacent_box_ious(records: Iterable[dict]) -> AdjacentPairs:
    """
    Args:
        records: video records (:func:`vis_d2.data.load_ytvis_json`, or any registered video
            dataset's ``DatasetCatalog.get``): per-frame lists of instances with "track_id",
            "bbox", "bbox_mode" and optionally "iscrowd".

    Returns:
        AdjacentPairs, in record order, then frame, then track id. The IoUs are detectron2's
        :func:`~detectron2.structures.matched_pairwise_iou` of the two boxes.

    Raises:
        ValueError naming the video (and frame, track) for a record that is not a video record
        or has no per-frame annotations, an instance lacking one of those keys, a track id twice
        in a frame, or an empty box.
    """
    first, second, vids, tids, frames = [], [], [], [], []
    for i, record in enumerate(records):
        if not isinstance(record, dict) or "file_names" not in record:
            raise ValueError(f"record #{i} is not a video record (no 'file_names'): an image "
                             "dataset has no adjacent frames")
        length = check_video_record(record, need_annotations=True)
        prev = _frame_boxes(record, 0) if length else {}
        for t in range(1, length):
            cur = _frame_boxes(record, t)
            for tid in sorted(prev.keys() & cur.keys()):
                first.append(prev[tid])
                second.append(cur[tid])
                vids.append(record["video_id"])
                tids.append(tid)
                frames.append(t - 1)
            prev = cur
    if first:
        ious = matched_pairwise_iou(Boxes(torch.tensor(first, dtype=torch.float64)),
                                    Boxes(torch.tensor(second, dtype=torch.float64))).numpy()
    else:
        ious = np.zeros(0, dtype=np.float64)
    as_int = lambda v: np.asarray(v, dtype=np.int64)  # noqa: E731
    return AdjacentPairs(ious.astype(np.float64), as_int(vids), as_int(tids), as_int(frames))


def summarize_ious(ious: Sequence[float],
                   thresholds: Sequence[float] = IOU_THRESHOLDS) -> Dict[str, float]:
    """
    Args:
        ious: IoU values in [0, 1] (at least one).

    Returns:
        {"count", "mean", "median", "share_above_<thr>" for each threshold}: the shares are the
        fractions of values strictly above the threshold.
    """
    values = np.asarray(ious, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no IoU values to summarize")
    out = {"count": int(values.size), "mean": float(values.mean()),
           "median": float(np.median(values))}
    for thr in thresholds:
        out[f"share_above_{thr:g}"] = float((values > thr).mean())
    return out
