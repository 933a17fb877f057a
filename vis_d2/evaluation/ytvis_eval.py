"""The YouTube-VIS 2019/2021 video mask AP metric (AP, AP50, AP75, APs, APm, APl, AR1, AR10).

It gives the numbers of the official evaluator (the youtubevos ``cocoapi``'s ``ytvoseval.py``,
a COCO eval for videos, which the YouTube-VIS server runs), with the per-pair, per-frame Python
loops replaced by batched ``pycocotools.mask`` calls:

* **Spatio-temporal IoU** of a predicted track ``d`` and a ground-truth track ``g`` of one
  video: ``sum_f |d_f ∩ g_f| / sum_f |d_f ∪ g_f|`` over the video's frames ``f``. A frame where
  only one side has a mask adds that mask's area to the union, one where neither has adds
  nothing. Because ``sum_f |d_f ∪ g_f| = A_d + A_g - sum_f |d_f ∩ g_f|`` (``A`` the track's
  total mask area), only the per-frame *intersections* have to be computed pair by pair; they
  come from one ``pycocotools.mask.iou`` call per frame for all pairs of the video (see
  ``_video_ious``), the areas of ground truths and of predictions that no ground truth of
  their category could match from ``pycocotools.mask.area``. All sums are of integers in
  float64, so every IoU has the exact bits of the official's.
* **Crowd ground truth** (``iscrowd`` 1; YouTube-VIS itself has none): as ``ytvoseval.py``, it
  is ignored (no target, and a prediction matched to it is neither a true nor a false positive),
  any number of predictions may match it, and its IoU is the plain spatio-temporal IoU above.
  ``coco_crowd=True`` (``--coco-crowd``; non-standard) scores it as COCO's ``cocoeval.py``
  does instead, with the prediction's area as the denominator, ``sum_f |d_f ∩ g_f| /
  sum_f |d_f|``, so that a prediction inside a crowd region matches it.
* A track's **area** (for the area ranges) is the mean of its non-zero per-frame areas: for a
  ground truth the json ``areas`` entries (a null entry is skipped, as the official does, even
  where the frame has a mask); for an annotation without ``areas`` (the official fails on it:
  ``KeyError``) the areas of its masks; for a prediction the areas of its masks; 0 when there
  are none. Area ranges (inclusive): all [0, 1e10], small [0, 128^2], medium [128^2, 256^2],
  large [256^2, 1e10].
* An **annotation id 0** is scored as the official scores it: the official stores the id of the
  matched ground truth, 0 meaning "unmatched", so a prediction matched to annotation 0 takes it
  from the other predictions yet counts as unmatched (a false positive, unless ignored by its
  area); a warning says so.
* Matching, accumulation and the summary are COCO's: IoU thresholds 0.50:0.05:0.95,
  101 recall points, at most 1 / 10 / 100 predictions per video and category (highest scores,
  ties in file order), greedy matching by score, a ground truth outside the area range is
  ignored, so is an unmatched prediction outside it; a category without (non-ignored) ground
  truth does not count, and a metric with none at all is -1.

**YouTube-VIS 2022** (:func:`evaluate_ytvis_long_videos`, ``--long-videos FILE``): its validation
set adds long videos to the 2021 one, and its server scores the short and the long videos
separately, each as the official scores a ground truth of those videos alone, reporting mAP_S,
AP50_S, AP75_S, AR1_S, AR10_S, the same for the long videos (_L), and ``mAP``, the mean of the
two APs (its scoring program, as republished in DVIS++'s ``utils/yt2022_evaluate.py``). Which
videos are long is the organisers' list (``gt_long.json``), not a published rule by length, so it
is an input.

Unlike the official code, malformed input is an error (``YTVISFormatError``, a ``ValueError``)
naming the file and the video / annotation / prediction / frame: a ``segmentations`` list whose
length is not the video's (the official silently truncates it), a mask whose size is not the
video's, RLE run lengths that do not cover the frame (a ``counts`` string cut short makes
pycocotools loop for minutes, ``"0"`` is scored as a wrong mask), a polygon vertex that is not
finite or lies far off the frame (pycocotools walks the outline pixel by pixel), a negative or
non-number ``areas`` entry, a ``score`` that is not a finite number (``true`` included), an
unknown ``video_id`` or ``category_id``, a ``category_name`` (optional; vis_d2's predictor
writes it) that is not the ground truth's name of the ``category_id`` (shifted ids), a missing
field, and a ground truth with nothing to
score: no annotations, or no mask in any frame of any annotation (box-only). Annotations without
a mask in any frame, next to others with masks, are scored as the official does (ground truth no
prediction can match) with a warning.

Usage::

    gt = YTVISGroundTruth.load("valid.json")
    metrics = evaluate_ytvis(gt, json.load(open("results.json")))   # {"AP": 0.41, ...}
    evaluate_ytvis_long_videos(gt, "results.json", "gt_long.json")  # {"AP", "short", "long"}
"""
import functools
import json
import logging
import math
import numbers
import os
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pycocotools.mask as mask_util

from ..rle import rle_problems

__all__ = [
    "YTVISFormatError",
    "YTVISGroundTruth",
    "YTVISEval",
    "VideoInfo",
    "Track",
    "evaluate_ytvis",
    "evaluate_ytvis_long_videos",
    "load_predictions",
    "read_video_ids",
    "read_json",
    "to_class_agnostic",
    "format_metrics_table",
    "IOU_THRESHOLDS",
    "RECALL_THRESHOLDS",
    "MAX_DETS",
    "AREA_RANGES",
    "METRIC_NAMES",
]


# The official parameters (np.linspace, as COCO, so that 0.5 / 0.75 are found exactly).
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, int(np.round((1.0 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETS = (1, 10, 100)
# YouTube-VIS's ranges, not COCO's 32^2 / 96^2: its frames are 720p.
AREA_RANGES = OrderedDict([
    ("all", (0.0, 1e5 ** 2)),
    ("small", (0.0, 128.0 ** 2)),
    ("medium", (128.0 ** 2, 256.0 ** 2)),
    ("large", (256.0 ** 2, 1e5 ** 2)),
])
METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10")

logger = logging.getLogger(__name__)

# Per-prediction match state at one IoU threshold.
_UNMATCHED, _MATCHED, _MATCHED_IGNORED = 0, 1, 2


class YTVISFormatError(ValueError):
    """A YouTube-VIS json (ground truth, read by the evaluator or by
    :func:`vis_d2.data.load_ytvis_json`) or results file that does not follow the format.

    The message names the file and the video / annotation / prediction / field at fault. It is
    defined here, in the module that imports neither torch nor detectron2, so that the metric
    runs without them.
    """


@dataclass(frozen=True)
class VideoInfo:
    """One video of the ground truth."""

    id: int
    height: int
    width: int
    length: int


@dataclass
class Track:
    """One ground-truth or predicted track (an object through a video).

    Attributes:
        id: the json annotation id (ground truth) or the 0-based index in the results list.
        video_id, category_id: json ids.
        score: the prediction's confidence (1.0 for ground truth).
        iscrowd: ground truth only; always False for predictions.
        masks: ``length`` compressed RLE dicts; a frame without a mask holds an empty RLE.
        present: (length,) bool, the frames that have a mask.
        frame_areas: (length,) float64 mask area of each frame (0 where there is none); None
            for a prediction until it is computed.
        area: the track's size for the area ranges (mean of the non-zero per-frame areas).
    """

    id: int
    video_id: int
    category_id: int
    score: float
    iscrowd: bool
    masks: List[dict]
    present: np.ndarray
    frame_areas: Optional[np.ndarray]
    area: float


@functools.lru_cache(maxsize=None)
def _empty_rle(height: int, width: int) -> dict:
    """The all-zero compressed RLE of an ``height x width`` frame (shared, never mutated)."""
    return mask_util.frPyObjects({"size": [height, width], "counts": [height * width]},
                                 height, width)


def _mean_nonzero(values: Sequence[float]) -> float:
    """Mean of the non-zero, non-null ``values`` (0 when there are none), as the official."""
    kept = [v for v in values if v]
    return float(np.asarray(kept, dtype=np.float64).mean()) if kept else 0.0


def _is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _is_number(x) -> bool:
    """A finite real number (a json ``true`` is not one)."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


class _RunLengthChecks:
    """The RLE masks of a file, gathered to have their run lengths checked before pycocotools
    reads any of them (it scores a mask that does not cover its frame wrong, or loops in
    ``mask.iou``); decoded some ``CHUNK`` characters of masks of one frame size at a time:
    numpy's per-call cost would dominate mask by mask, arrays much larger than the CPU's cache
    are slower, and a whole file at once takes gigabytes."""

    CHUNK = 1 << 15

    def __init__(self):
        # (h, w) -> [(place in the file, where, segs, frames)]: one entry per annotation or
        # prediction, not per mask (millions of small objects make the garbage collector crawl).
        self._by_size = defaultdict(list)
        self._count = 0

    def add(self, segs: Sequence[dict], frames: List[int], h: int, w: int, where: str) -> None:
        """The RLE dicts ``segs[f]``, f in ``frames`` (their size checked), of the annotation or
        prediction ``where`` (e.g. "gt.json: annotation 3 (video 2)")."""
        self._by_size[(h, w)].append((self._count, where, segs, frames))
        self._count += 1

    def check(self) -> None:
        """Raise ``YTVISFormatError`` naming the first mask, in file order, whose run lengths
        are not non-negative or do not cover its frame exactly."""
        found = []  # (place in the file, message) of the first fault of each frame size
        for (h, w), entries in self._by_size.items():
            e = 0
            while e < len(entries):
                counts, owner, frame, size = [], [], [], 0
                while e < len(entries) and size < self.CHUNK:
                    _, _, segs, frames = entries[e]
                    for f in frames:
                        c = segs[f]["counts"]
                        counts.append(c)
                        size += len(c) if isinstance(c, (str, bytes, list, tuple)) else 1
                    owner.extend([e] * len(frames))
                    frame.extend(frames)
                    e += 1
                problems = rle_problems(counts, h, w)
                k = next((k for k, p in enumerate(problems) if p is not None), None)
                if k is not None:
                    place, where, _, _ = entries[owner[k]]
                    found.append((place, f"{where} frame {frame[k]}: {problems[k]}"))
                    break  # the rest of this frame size comes later in the file
        if found:
            raise YTVISFormatError(min(found)[1])


class YTVISGroundTruth:
    """A YouTube-VIS ground-truth json, checked and with every mask converted to compressed RLE.

    Attributes:
        videos: ``{video_id: VideoInfo}`` in increasing id order.
        categories: ``{category_id: name}`` in increasing id order.
        tracks: ``{video_id: [Track, ...]}`` (json order; every video has an entry).
        source: the file name, for messages.
    """

    def __init__(self, dataset: dict, source: str = "<ground truth>"):
        """
        Args:
            dataset: the parsed json: ``videos`` (id, height, width, length and/or file_names),
                ``categories`` (id, name), ``annotations`` (id, video_id, category_id, iscrowd,
                segmentations: one polygon list / compressed RLE / uncompressed RLE / null per
                frame, areas: one number or null per frame, or absent / null).
            source: where it came from, for error messages.
        """
        self.source = source
        if not isinstance(dataset, dict):
            raise YTVISFormatError(
                f"{source}: expected a json object, got {type(dataset).__name__}")
        if dataset.get("annotations", None) is None and isinstance(dataset.get("videos"), list):
            raise YTVISFormatError(
                f"{source}: has no 'annotations' (a split without ground truth, such as "
                f"YouTube-VIS valid/test, can only be scored by its server)")
        for key in ("videos", "categories", "annotations"):
            if not isinstance(dataset.get(key), list):
                raise YTVISFormatError(f"{source}: missing or non-list field {key!r}")
        if not dataset["annotations"]:
            raise YTVISFormatError(f"{source}: 'annotations' is empty: no ground truth to score "
                                   f"against")

        videos = {}
        for i, v in enumerate(dataset["videos"]):
            where = f"{source}: videos[{i}]"
            if not isinstance(v, dict) or not _is_int(v.get("id")):
                raise YTVISFormatError(f"{where}: missing integer 'id'")
            where = f"{source}: video {v['id']}"
            if v["id"] in videos:
                raise YTVISFormatError(f"{where}: duplicate video id")
            for key in ("height", "width"):
                if not _is_int(v.get(key)) or v[key] <= 0:
                    raise YTVISFormatError(f"{where}: missing or invalid {key!r}: {v.get(key)!r}")
            length = v.get("length")
            names = v.get("file_names")
            if length is None and names is None:
                raise YTVISFormatError(f"{where}: needs 'length' or 'file_names'")
            if length is not None and (not _is_int(length) or length <= 0):
                raise YTVISFormatError(f"{where}: invalid 'length': {length!r}")
            if names is not None:
                if not isinstance(names, list):
                    raise YTVISFormatError(f"{where}: 'file_names' is not a list")
                if length is not None and len(names) != length:
                    raise YTVISFormatError(
                        f"{where}: 'length' is {length} but there are {len(names)} file_names")
                length = len(names)
            videos[v["id"]] = VideoInfo(v["id"], v["height"], v["width"], length)
        self.videos: Dict[int, VideoInfo] = OrderedDict(sorted(videos.items()))

        categories = {}
        for i, c in enumerate(dataset["categories"]):
            if not isinstance(c, dict) or not _is_int(c.get("id")):
                raise YTVISFormatError(f"{source}: categories[{i}]: missing integer 'id'")
            if c["id"] in categories:
                raise YTVISFormatError(f"{source}: duplicate category id {c['id']}")
            categories[c["id"]] = str(c.get("name", c["id"]))
        self.categories: Dict[int, str] = OrderedDict(sorted(categories.items()))

        seen_ids = set()
        rles = _RunLengthChecks()
        for i, ann in enumerate(dataset["annotations"]):
            self._check_annotation(i, ann, rles)
            if ann["id"] in seen_ids:
                raise YTVISFormatError(f"{source}: duplicate annotation id {ann['id']}")
            seen_ids.add(ann["id"])
        rles.check()
        self.tracks: Dict[int, List[Track]] = OrderedDict((vid, []) for vid in self.videos)
        for ann in dataset["annotations"]:
            self.tracks[ann["video_id"]].append(self._track(ann))
        self._check_masks_present(len(seen_ids))
        if 0 in seen_ids:
            logger.warning(
                f"{source}: annotation id 0: the official evaluator counts a prediction matched "
                f"to it as unmatched (it takes id 0 for 'no match'), and so does this one; "
                f"number the annotations from 1 to score it as a target")

    def _check_masks_present(self, num_annotations: int) -> None:
        """Refuse a ground truth without any mask (box-only: every AP would be 0) or with only
        crowds (ignored: every metric would be -1); warn about annotations without a mask in
        any frame, which no prediction can match."""
        tracks = [t for ts in self.tracks.values() for t in ts]
        if all(t.iscrowd for t in tracks):
            raise YTVISFormatError(f"{self.source}: every annotation is a crowd (iscrowd 1), "
                                   f"which the metric ignores: no ground truth to score against")
        maskless = [t.id for t in tracks if not t.present.any()]
        if len(maskless) == num_annotations:
            raise YTVISFormatError(
                f"{self.source}: the metric scores masks, and no annotation has a mask in any "
                f"frame (annotation {maskless[0]}: every 'segmentations' entry is null or empty; "
                f"box-only ground truth?)")
        if maskless:
            shown = ", ".join(str(i) for i in maskless[:10]) + (", ..." if len(maskless) > 10
                                                                 else "")
            logger.warning(
                f"{self.source}: {len(maskless)} of {num_annotations} annotations have no mask in "
                f"any frame (ids {shown}); they are scored as ground truth no prediction can "
                f"match, as the official evaluator does")

    @classmethod
    def load(cls, json_file: str) -> "YTVISGroundTruth":
        """Read and check a ground-truth json file."""
        return cls(read_json(json_file), source=json_file)

    def _check_annotation(self, index: int, ann, rles: _RunLengthChecks) -> None:
        """Check ``annotations[index]``; its RLE masks go to ``rles``."""
        source = self.source
        if not isinstance(ann, dict) or not _is_int(ann.get("id")):
            raise YTVISFormatError(f"{source}: annotations[{index}]: missing integer 'id'")
        where = f"{source}: annotation {ann['id']}"
        vid = ann.get("video_id")
        if not _is_int(vid) or vid not in self.videos:
            raise YTVISFormatError(f"{where}: unknown video_id {vid!r}")
        if "category_id" in ann and not _is_int(ann["category_id"]):
            raise YTVISFormatError(f"{where}: 'category_id' must be an integer, got "
                                   f"{ann['category_id']!r}")
        if ann.get("category_id") not in self.categories:
            raise YTVISFormatError(f"{where}: unknown category_id {ann.get('category_id')!r}")
        video = self.videos[vid]
        h, w, length = video.height, video.width, video.length
        segs = ann.get("segmentations")
        if not isinstance(segs, list):
            raise YTVISFormatError(f"{where} (video {vid}): missing or non-list 'segmentations'")
        if len(segs) != length:
            raise YTVISFormatError(
                f"{where}: 'segmentations' has {len(segs)} entries but video {vid} has "
                f"{length} frames")
        rle_frames = [f for f, seg in enumerate(segs)
                      if _check_gt_frame(seg, h, w, f"{where} (video {vid}) frame {f}")]
        rles.add(segs, rle_frames, h, w, f"{where} (video {vid})")
        areas = ann.get("areas")
        if areas is not None:
            if not isinstance(areas, list) or len(areas) != length:
                raise YTVISFormatError(
                    f"{where}: 'areas' must be null or a list of {length} entries (video {vid})")
            for f, a in enumerate(areas):
                if a is not None and (not _is_number(a) or a < 0):
                    raise YTVISFormatError(
                        f"{where} (video {vid}) frame {f}: invalid area {a!r} (an 'areas' entry "
                        f"is a non-negative number, or null)")
        iscrowd = ann.get("iscrowd", 0)
        if iscrowd not in (0, 1, True, False):
            raise YTVISFormatError(f"{where}: 'iscrowd' must be 0 or 1, got {iscrowd!r}")

    def _track(self, ann: dict) -> Track:
        """A checked annotation (and its checked masks) -> its Track."""
        video = self.videos[ann["video_id"]]
        h, w = video.height, video.width
        masks, present = [], []
        for seg in ann["segmentations"]:
            rle = _gt_frame_to_rle(seg, h, w)
            present.append(rle is not None)
            masks.append(rle if rle is not None else _empty_rle(h, w))
        frame_areas = mask_util.area(masks).astype(np.float64)
        areas = ann.get("areas")
        # The official reads only the json's areas (skipping null entries, masks or not).
        track_area = _mean_nonzero(frame_areas.tolist() if areas is None else areas)
        return Track(
            id=ann["id"], video_id=ann["video_id"], category_id=ann["category_id"], score=1.0,
            iscrowd=bool(ann.get("iscrowd", 0)), masks=masks,
            present=np.array(present, dtype=bool), frame_areas=frame_areas, area=track_area,
        )


def _check_gt_frame(seg, h: int, w: int, where: str) -> bool:
    """Check one frame of a ground-truth ``segmentations``: null or ``[]`` (no mask), a list of
    polygons, or an RLE dict of the video's size (its counts are checked by the caller). Returns
    whether it is an RLE dict."""
    if seg is None or (isinstance(seg, list) and len(seg) == 0):
        return False
    if isinstance(seg, list):  # polygons, one object in several parts
        for poly in seg:
            if (not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2
                    or not all(isinstance(x, numbers.Real) and not isinstance(x, bool)
                               for x in poly)):
                raise YTVISFormatError(
                    f"{where}: a polygon must be a list of an even number (>= 6) of coordinates")
            xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
            # pycocotools walks the outline pixel by pixel: a vertex at 1e9 (or NaN) takes minutes.
            off = np.abs(xy - (w / 2, h / 2)) > (1.5 * w, 1.5 * h)
            if not np.isfinite(xy).all() or off.any():
                raise YTVISFormatError(
                    f"{where}: a polygon has a coordinate that is not finite or lies more than a "
                    f"frame size off the {h}x{w} frame")
        return False
    if not isinstance(seg, dict) or "counts" not in seg or "size" not in seg:
        raise YTVISFormatError(
            f"{where}: a segmentation must be a polygon list, an RLE dict or null")
    size = seg["size"]
    if not isinstance(size, (list, tuple)) or len(size) != 2 or list(size) != [h, w]:
        raise YTVISFormatError(f"{where}: mask size {size!r} differs from the video's [{h}, {w}]")
    return True


def _gt_frame_to_rle(seg, h: int, w: int) -> Optional[dict]:
    """One checked frame of a ground-truth ``segmentations`` -> compressed RLE, or None."""
    if seg is None or (isinstance(seg, list) and len(seg) == 0):
        return None
    if isinstance(seg, list):
        return mask_util.merge(mask_util.frPyObjects(seg, h, w))
    if isinstance(seg["counts"], (list, tuple)):  # uncompressed RLE
        return mask_util.frPyObjects(seg, h, w)
    return seg


def _check_category_name(category_id: int, name, gt: YTVISGroundTruth, where: str) -> None:
    """A prediction's optional ``category_name`` (vis_d2's predictor writes one) must be the
    ground truth's name of its ``category_id``: ids shifted by one (0-based against 1-based)
    otherwise score silently as other classes."""
    expected = gt.categories[category_id]
    if name == expected:
        return
    msg = (f"{where}: category_id {category_id} is {expected!r} in {gt.source}, but the "
           f"prediction's category_name is {name!r}")
    named = [c for c, n in gt.categories.items() if n == name]
    if named:
        msg += (f" (category_id {named[0]} there): the results' ids are not the dataset's; "
                "write the dataset's category ids (results from 0-based class indices are "
                "shifted)")
    raise YTVISFormatError(msg)


def _parse_predictions(predictions: Sequence[dict], gt: YTVISGroundTruth,
                       source: str) -> Dict[int, List[Track]]:
    """Check predictions against ``gt``; tracks without areas yet (``frame_areas`` None)."""
    if not isinstance(predictions, (list, tuple)):
        raise YTVISFormatError(f"{source}: results must be a json list, got "
                               f"{type(predictions).__name__}")
    rles = _RunLengthChecks()
    for i, p in enumerate(predictions):
        where = f"{source}: prediction #{i}"
        if not isinstance(p, dict):
            raise YTVISFormatError(f"{where}: not a json object")
        for key in ("video_id", "category_id", "score", "segmentations"):
            if key not in p:
                raise YTVISFormatError(f"{where}: missing field {key!r}")
        vid = p["video_id"]
        video = gt.videos.get(vid) if _is_int(vid) else None
        if video is None:
            raise YTVISFormatError(f"{where}: video_id {vid!r} is not in {gt.source}")
        where = f"{where} (video {vid})"
        if not _is_int(p["category_id"]):
            raise YTVISFormatError(
                f"{where}: 'category_id' must be an integer, got {p['category_id']!r}")
        if p["category_id"] not in gt.categories:
            raise YTVISFormatError(
                f"{where}: category_id {p['category_id']!r} is not in {gt.source}")
        if "category_name" in p:
            _check_category_name(p["category_id"], p["category_name"], gt, where)
        score = p["score"]
        if not _is_number(score):
            raise YTVISFormatError(f"{where}: 'score' must be a finite number, got {score!r}")
        segs = p["segmentations"]
        if not isinstance(segs, (list, tuple)):
            raise YTVISFormatError(f"{where}: 'segmentations' must be a list")
        h, w, length = video.height, video.width, video.length
        if len(segs) != length:
            raise YTVISFormatError(
                f"{where}: 'segmentations' has {len(segs)} entries but video {vid} has "
                f"{length} frames")
        rle_frames = []
        for f, seg in enumerate(segs):
            if seg is None:
                continue
            try:
                size, _ = seg["size"], seg["counts"]
                ok = size[0] == h and size[1] == w and len(size) == 2
            except (TypeError, KeyError, IndexError):
                raise YTVISFormatError(
                    f"{where} frame {f}: a segmentation must be null or an RLE dict "
                    f"{{'size': [h, w], 'counts': ...}}, got {str(seg)[:80]}") from None
            if not ok:
                raise YTVISFormatError(f"{where} frame {f}: mask size {list(size)} differs from "
                                       f"the video's [{h}, {w}]")
            rle_frames.append(f)
        rles.add(segs, rle_frames, h, w, where)
    rles.check()

    by_video: Dict[int, List[Track]] = defaultdict(list)
    for i, p in enumerate(predictions):
        video = gt.videos[p["video_id"]]
        h, w = video.height, video.width
        empty = _empty_rle(h, w)
        segs = p["segmentations"]
        masks = [empty if seg is None
                 else mask_util.frPyObjects({"size": [h, w], "counts": seg["counts"]}, h, w)
                 if isinstance(seg["counts"], (list, tuple)) else seg
                 for seg in segs]
        by_video[video.id].append(Track(
            id=i, video_id=video.id, category_id=p["category_id"], score=float(p["score"]),
            iscrowd=False, masks=masks, present=np.array([s is not None for s in segs]),
            frame_areas=None, area=0.0,
        ))
    return by_video


def _set_areas(track: Track, frame_areas: np.ndarray) -> None:
    """A prediction's per-frame areas and its size: the mean of its non-zero per-frame areas
    (integers, so sum / count is exactly the official's ``np.mean``)."""
    track.frame_areas = frame_areas
    nonzero = np.count_nonzero(frame_areas)
    track.area = float(frame_areas.sum() / nonzero) if nonzero else 0.0


def _compute_areas(tracks: Sequence[Track]) -> None:
    """Areas of the predictions ``tracks``, all masks in one ``pycocotools.mask.area`` call."""
    masks = [m for t in tracks for m, p in zip(t.masks, t.present.tolist()) if p]
    areas = mask_util.area(masks).astype(np.float64) if masks else np.zeros(0)
    pos = 0
    for t in tracks:
        frame_areas = np.zeros(len(t.masks))
        n = int(np.count_nonzero(t.present))
        frame_areas[t.present] = areas[pos:pos + n]
        pos += n
        _set_areas(t, frame_areas)


def load_predictions(predictions: Sequence[dict], gt: YTVISGroundTruth,
                     source: str = "<predictions>") -> Dict[int, List[Track]]:
    """Check predictions against ``gt`` and convert them to tracks (with their areas).

    Args:
        predictions: ``[{video_id, category_id (json id), score, segmentations}]`` where
            ``segmentations`` holds one compressed (or uncompressed) RLE or null per frame.
        gt: the ground truth they are scored against.
        source: the results file name, for error messages.
    Returns:
        ``{video_id: [Track, ...]}`` in the order of ``predictions``.
    Raises:
        YTVISFormatError: naming ``source``, the prediction's index and its video.
    """
    by_video = _parse_predictions(predictions, gt, source)
    _compute_areas([t for tracks in by_video.values() for t in tracks])
    return by_video


@functools.lru_cache(maxsize=None)
def _full_rle(height: int, width: int) -> dict:
    """The all-one compressed RLE of an ``height x width`` frame (shared, never mutated)."""
    return mask_util.frPyObjects({"size": [height, width], "counts": [0, height * width]},
                                 height, width)


def _video_ious(dets: List[Track], gts: List[Track], video: VideoInfo,
                coco_crowd: bool = False) -> np.ndarray:
    """Spatio-temporal IoU of every prediction with every ground truth of one video; also sets
    the predictions' areas (``_set_areas``).

    One ``pycocotools.mask.iou`` call per frame where some prediction has a mask, for all pairs
    at once: with the ground truths flagged "crowd" it returns ``|d ∩ g| / |d|``, and an extra
    all-one "ground truth" (not crowd) gives ``|d| / (h * w)``, so both the integer areas and
    the integer intersections are recovered exactly (|d| < 2^32) while each predicted mask is
    decoded once.

    Args:
        dets: D predicted tracks, gts: G ground-truth tracks (non-empty lists) of ``video``.
        coco_crowd: the IoU with a crowd ground truth is ``sum_f inter / sum_f |d_f|``
            (COCO's rule) rather than the plain IoU (the official's).
    Returns:
        (D, G) float64: ``sum_f inter / sum_f union`` (0 where the denominator is 0).
    """
    D, G = len(dets), len(gts)
    pixels = float(video.height * video.width)
    full = _full_rle(video.height, video.width)
    gt_present = np.stack([g.present for g in gts]).any(axis=0)
    det_frames = np.flatnonzero(np.stack([d.present for d in dets]).any(axis=0)).tolist()
    with_gt = [f for f in det_frames if gt_present[f]]
    without_gt = [f for f in det_frames if not gt_present[f]]

    det_areas = np.zeros((D, video.length))
    inter = np.zeros((D, G))
    if with_gt:
        flags = np.array([1] * G + [0], dtype=np.uint8)
        ratios = np.stack([
            mask_util.iou([d.masks[f] for d in dets], [g.masks[f] for g in gts] + [full], flags)
            for f in with_gt
        ])                                                    # (F, D, G + 1)
        areas = np.rint(ratios[:, :, G] * pixels)              # (F, D)
        det_areas[:, with_gt] = areas.T
        inter = np.rint(ratios[:, :, :G] * areas[:, :, None]).sum(axis=0)
    if without_gt:
        flags = np.zeros(1, dtype=np.uint8)
        ratios = np.stack([mask_util.iou([d.masks[f] for d in dets], [full], flags)[:, 0]
                           for f in without_gt])              # (F, D)
        det_areas[:, without_gt] = np.rint(ratios * pixels).T
    for d, frame_areas in zip(dets, det_areas):
        _set_areas(d, frame_areas)

    det_total = det_areas.sum(axis=1)[:, None]
    gt_total = np.array([g.frame_areas.sum() for g in gts])[None, :]
    denom = det_total + gt_total - inter
    if coco_crowd:
        crowd = np.array([g.iscrowd for g in gts])[None, :]
        denom = np.where(crowd, det_total, denom)
    return np.where(denom > 0, inter / np.where(denom > 0, denom, 1.0), 0.0)


def _greedy_match(ious: List[List[float]], gt_ignore: List[bool], gt_crowd: List[bool],
                  iou_thresholds: Sequence[float], gt_id_zero: Sequence[bool] = ()) -> np.ndarray:
    """COCO's greedy matching of one video and category, for every IoU threshold.

    Args:
        ious: D x G nested lists, predictions sorted by score (highest first).
        gt_ignore, gt_crowd: G flags.
        gt_id_zero: G flags (or empty: none), the ground truths whose annotation id is 0: a
            prediction matched to one is left unmatched, as the official's (see the module doc).
    Returns:
        (T, D) int8: ``_UNMATCHED``, ``_MATCHED`` (to a non-ignored ground truth) or
        ``_MATCHED_IGNORED``.
    """
    num_dets = len(ious)
    state = np.zeros((len(iou_thresholds), num_dets), dtype=np.int8)
    # Non-ignored ground truth first (stable), as COCO: a prediction takes the best non-ignored
    # match and only falls back to an ignored one when there is none.
    order = sorted(range(len(gt_ignore)), key=lambda g: gt_ignore[g])
    best_iou = [max(row) for row in ious]
    for ti, thr in enumerate(iou_thresholds):
        thr = min(thr, 1 - 1e-10)
        candidates = [d for d in range(num_dets) if best_iou[d] >= thr]
        if not candidates:
            continue
        taken = [False] * len(order)
        for d in candidates:
            row = ious[d]
            best, m = thr, -1
            for g in order:
                if taken[g] and not gt_crowd[g]:
                    continue
                if m > -1 and not gt_ignore[m] and gt_ignore[g]:
                    break
                if row[g] < best:
                    continue
                best, m = row[g], g   # ties go to the later ground truth, as COCO
            if m > -1:
                taken[m] = True
                if gt_ignore[m]:
                    state[ti, d] = _MATCHED_IGNORED
                elif not (gt_id_zero and gt_id_zero[m]):
                    state[ti, d] = _MATCHED
    return state


class YTVISEval:
    """Scores predictions against a YouTube-VIS ground truth.

    ``evaluate()`` returns the summary; afterwards ``precision`` (T, R, K, A, M) and ``recall``
    (T, K, A, M) hold COCO's arrays (-1 where a category has no ground truth), over
    ``IOU_THRESHOLDS`` x ``RECALL_THRESHOLDS`` x ``categories`` x ``area_ranges`` x ``MAX_DETS``.
    """

    def __init__(self, gt: YTVISGroundTruth, predictions: Sequence[dict],
                 source: str = "<predictions>",
                 area_ranges: "OrderedDict[str, Tuple[float, float]]" = AREA_RANGES,
                 coco_crowd: bool = False):
        """
        Args:
            gt: the ground truth.
            predictions: ``[{video_id, category_id, score, segmentations}]`` (json ids).
            source: the results file name, for error messages.
            area_ranges: ``{name: (min, max)}`` with keys all/small/medium/large; the default
                is the official; others are for tests and non-standard datasets.
            coco_crowd: non-standard: score crowd ground truth with COCO's IoU (intersection
                over the prediction's area) instead of the official's plain IoU.
        """
        missing = {"all", "small", "medium", "large"} - set(area_ranges)
        if missing:
            raise ValueError(f"area_ranges lacks {sorted(missing)}")
        self.gt = gt
        self.area_ranges = OrderedDict(area_ranges)
        self.coco_crowd = coco_crowd
        # Areas come later, with the IoUs (each mask is decoded once).
        self.predictions = _parse_predictions(predictions, gt, source)
        self.category_ids = list(gt.categories)
        self.precision: Optional[np.ndarray] = None
        self.recall: Optional[np.ndarray] = None
        self.stats: Optional["OrderedDict[str, float]"] = None

    def evaluate(self, video_ids: Optional[Sequence[int]] = None) -> "OrderedDict[str, float]":
        """Match, accumulate and summarise. Returns ``{name: value}`` for ``METRIC_NAMES``
        as fractions in [0, 1] (-1 where there is no ground truth to score).

        Args:
            video_ids: score only these videos of the ground truth (and the predictions on
                them), as the official scores a ground-truth file holding only them; None: all.
        """
        if video_ids is not None:
            unknown = sorted(set(video_ids) - set(self.gt.videos))
            if unknown:
                raise YTVISFormatError(f"video ids {unknown[:10]} are not in {self.gt.source}")
        per_category = self._match_all(video_ids)
        self._accumulate(per_category)
        self.stats = self._summarize()
        return self.stats

    def _match_all(self, video_ids: Optional[Sequence[int]] = None):
        """Per category: the predictions (kept top-100 per video) in the official's order
        (videos by id, then score) with their match states per area range, and the number of
        non-ignored ground truths per area range; over the videos ``video_ids`` (None: all)."""
        ranges = list(self.area_ranges.values())
        num_thr = len(IOU_THRESHOLDS)
        thresholds = IOU_THRESHOLDS.tolist()
        max_det = MAX_DETS[-1]
        cat_index = {c: k for k, c in enumerate(self.category_ids)}
        K, A = len(self.category_ids), len(ranges)
        num_gt = np.zeros((K, A), dtype=np.int64)  # non-ignored ground truths

        # Group by video and category; keep the 100 best per group (stable: file order on ties).
        groups = []  # (video, {category: gts}, {category: dets})
        unpaired = []  # predictions of a category without ground truth in their video
        selected = None if video_ids is None else set(video_ids)
        for vid, gts_all in self.gt.tracks.items():
            if selected is not None and vid not in selected:
                continue
            gts_by_cat = defaultdict(list)
            for g in gts_all:
                gts_by_cat[g.category_id].append(g)
            for c, gts in gts_by_cat.items():
                area = np.array([g.area for g in gts])
                crowd = np.array([g.iscrowd for g in gts])
                for a, (lo, hi) in enumerate(ranges):
                    num_gt[cat_index[c], a] += int(np.count_nonzero(
                        ~crowd & (area >= lo) & (area <= hi)))
            dets_by_cat = defaultdict(list)
            for d in self.predictions.get(vid, ()):
                dets_by_cat[d.category_id].append(d)
            for c in dets_by_cat:
                dets_by_cat[c] = sorted(dets_by_cat[c], key=lambda d: -d.score)[:max_det]
                if c not in gts_by_cat:
                    unpaired.extend(dets_by_cat[c])
            groups.append((self.gt.videos[vid], gts_by_cat, dets_by_cat))
        _compute_areas(unpaired)

        scores = [[] for _ in range(K)]   # per category: list of (D,) arrays, one per video
        ranks = [[] for _ in range(K)]    # rank of the prediction within its video and category
        areas = [[] for _ in range(K)]
        states = [[[] for _ in range(A)] for _ in range(K)]   # (T, D) int8 arrays
        for video, gts_by_cat, dets_by_cat in groups:
            paired = [c for c in dets_by_cat if c in gts_by_cat]
            if paired:
                # One IoU computation per video for all its paired categories (fewer
                # pycocotools calls; pairs across categories are cheap and dropped).
                dets = [d for c in paired for d in dets_by_cat[c]]
                gts = [g for c in paired for g in gts_by_cat[c]]
                ious_all = _video_ious(dets, gts, video, coco_crowd=self.coco_crowd)
                d0 = g0 = 0
            for c, dets in dets_by_cat.items():
                k = cat_index[c]
                gts = gts_by_cat.get(c)
                if gts:
                    ious = ious_all[d0:d0 + len(dets), g0:g0 + len(gts)].tolist()
                    d0, g0 = d0 + len(dets), g0 + len(gts)
                scores[k].append(np.array([d.score for d in dets]))
                ranks[k].append(np.arange(len(dets)))
                areas[k].append(np.array([d.area for d in dets]))
                if not gts:
                    unmatched = np.zeros((num_thr, len(dets)), dtype=np.int8)
                    for a in range(A):
                        states[k][a].append(unmatched)
                    continue
                crowd = [g.iscrowd for g in gts]
                id_zero = [g.id == 0 for g in gts] if any(g.id == 0 for g in gts) else []
                cache = {}  # area ranges that ignore the same ground truths match the same way
                for a, (lo, hi) in enumerate(ranges):
                    ignore = tuple(g.iscrowd or g.area < lo or g.area > hi for g in gts)
                    if ignore not in cache:
                        cache[ignore] = _greedy_match(ious, list(ignore), crowd, thresholds,
                                                      id_zero)
                    states[k][a].append(cache[ignore])

        def cat(parts, dtype, shape_t=False):
            if parts:
                return np.concatenate(parts, axis=-1)
            return np.zeros((num_thr, 0) if shape_t else (0,), dtype=dtype)

        return [
            dict(
                scores=cat(scores[k], np.float64),
                ranks=cat(ranks[k], np.int64),
                areas=cat(areas[k], np.float64),
                states=[cat(states[k][a], np.int8, shape_t=True) for a in range(A)],
                num_gt=num_gt[k],
            )
            for k in range(K)
        ]

    def _accumulate(self, per_category) -> None:
        """COCO's accumulate: precision at the 101 recall points and the final recall."""
        T, R = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS)
        K, A, M = len(self.category_ids), len(self.area_ranges), len(MAX_DETS)
        precision = -np.ones((T, R, K, A, M))
        recall = -np.ones((T, K, A, M))
        for k, cat in enumerate(per_category):
            for a, (lo, hi) in enumerate(self.area_ranges.values()):
                npig = int(cat["num_gt"][a])
                if npig == 0:
                    continue
                outside = (cat["areas"] < lo) | (cat["areas"] > hi)
                for m, max_det in enumerate(MAX_DETS):
                    keep = cat["ranks"] < max_det
                    order = np.argsort(-cat["scores"][keep], kind="mergesort")
                    state = cat["states"][a][:, keep][:, order]
                    # An unmatched prediction outside the area range is ignored.
                    tps = state == _MATCHED
                    fps = (state == _UNMATCHED) & ~outside[keep][order][None, :]
                    nd = tps.shape[1]
                    if nd == 0:
                        precision[:, :, k, a, m] = 0.0
                        recall[:, k, a, m] = 0.0
                        continue
                    tp_sum = np.cumsum(tps, axis=1).astype(np.float64)
                    fp_sum = np.cumsum(fps, axis=1).astype(np.float64)
                    rc = tp_sum / npig
                    pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
                    recall[:, k, a, m] = rc[:, -1]
                    # Interpolated precision: the best precision at any higher recall.
                    pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
                    for t in range(T):
                        inds = np.searchsorted(rc[t], RECALL_THRESHOLDS, side="left")
                        valid = inds < nd
                        q = np.zeros(R)
                        q[valid] = pr[t, inds[valid]]
                        precision[t, :, k, a, m] = q
        self.precision, self.recall = precision, recall

    def _summarize(self) -> "OrderedDict[str, float]":
        names = list(self.area_ranges)
        t50 = int(np.flatnonzero(np.isclose(IOU_THRESHOLDS, 0.5))[0])
        t75 = int(np.flatnonzero(np.isclose(IOU_THRESHOLDS, 0.75))[0])

        def mean_valid(s):
            s = s[s > -1]
            return float(np.mean(s)) if s.size else -1.0

        def ap(area="all", thr=None):
            s = self.precision[..., names.index(area), len(MAX_DETS) - 1]
            return mean_valid(s if thr is None else s[thr])

        def ar(max_det_index):
            return mean_valid(self.recall[:, :, names.index("all"), max_det_index])

        return OrderedDict([
            ("AP", ap()), ("AP50", ap(thr=t50)), ("AP75", ap(thr=t75)),
            ("APs", ap("small")), ("APm", ap("medium")), ("APl", ap("large")),
            ("AR1", ar(0)), ("AR10", ar(1)),
        ])

    def per_category_ap(self) -> "OrderedDict[str, float]":
        """``{category name: AP}`` (area all, 100 detections; -1 without ground truth)."""
        if self.precision is None:
            raise RuntimeError("call evaluate() first")
        out = OrderedDict()
        for k, c in enumerate(self.category_ids):
            s = self.precision[:, :, k, 0, -1]
            s = s[s > -1]
            out[self.gt.categories[c]] = float(np.mean(s)) if s.size else -1.0
        return out


def read_json(path) -> object:
    """The parsed content of a json file; ``YTVISFormatError`` naming the file if it is not json."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:  # a zip or gzip is not UTF-8
        raise YTVISFormatError(f"{path}: not valid json: {e}") from e


def to_class_agnostic(gt: dict, predictions: Sequence[dict], source: str = "<ground truth>"):
    """Copies of a ground truth (parsed json) and predictions with every annotation and prediction
    moved to one category, the first of ``gt["categories"]``: the AP this gives, minus the plain
    AP, is what classification costs."""
    cats = gt.get("categories") if isinstance(gt, dict) else None
    if not (isinstance(cats, list) and cats and isinstance(cats[0], dict) and "id" in cats[0]):
        raise YTVISFormatError(f"{source}: class-agnostic scoring needs a non-empty 'categories' "
                               f"list of {{'id', 'name'}} objects")
    cid = cats[0]["id"]
    gt = dict(gt, categories=[dict(cats[0], name="object")])
    if isinstance(gt.get("annotations"), list):  # anything else is reported by YTVISGroundTruth
        gt["annotations"] = [dict(a, category_id=cid) if isinstance(a, dict) else a
                             for a in gt["annotations"]]
    if isinstance(predictions, list):  # anything else is reported by load_predictions
        # Names were checked against the ids by the class-aware scoring; here there is one class.
        predictions = [{**{k: v for k, v in p.items() if k != "category_name"},
                        "category_id": cid} if isinstance(p, dict) else p for p in predictions]
    return gt, predictions


def _load_inputs(gt, predictions, class_agnostic: bool):
    """(YTVISGroundTruth, predictions list, results source) from :func:`evaluate_ytvis`'s
    arguments."""
    source = "<predictions>"
    if isinstance(predictions, (str, os.PathLike)):
        source = str(predictions)
        predictions = read_json(predictions)
    if class_agnostic:
        if isinstance(gt, YTVISGroundTruth):
            raise TypeError("evaluate_ytvis(class_agnostic=True) needs the ground truth as a path "
                            "or a dict, not a YTVISGroundTruth")
        gt_source = str(gt) if isinstance(gt, (str, os.PathLike)) else "<ground truth>"
        data = read_json(gt) if isinstance(gt, (str, os.PathLike)) else gt
        data, predictions = to_class_agnostic(data, predictions, source=gt_source)
        gt = YTVISGroundTruth(data, source=gt_source)
    if not isinstance(gt, YTVISGroundTruth):
        if isinstance(gt, (str, os.PathLike)):
            gt = YTVISGroundTruth.load(gt)
        else:
            gt = YTVISGroundTruth(gt)
    return gt, predictions, source


def evaluate_ytvis(gt: Union[str, dict, YTVISGroundTruth], predictions: Union[str, Sequence[dict]],
                   class_agnostic: bool = False, coco_crowd: bool = False
                   ) -> "OrderedDict[str, float]":
    """The eight YouTube-VIS metrics (fractions in [0, 1]; -1 without ground truth).

    Args:
        gt: a ground-truth json path, its parsed dict, or a ``YTVISGroundTruth`` (not with
            ``class_agnostic``).
        predictions: a results json path or the list of predictions (json category ids).
        class_agnostic: score every track as one category (:func:`to_class_agnostic`).
        coco_crowd: non-standard crowd scoring (see :class:`YTVISEval`).
    """
    gt, predictions, source = _load_inputs(gt, predictions, class_agnostic)
    return YTVISEval(gt, predictions, source=source, coco_crowd=coco_crowd).evaluate()


def read_video_ids(path, gt: YTVISGroundTruth) -> List[int]:
    """The video ids listed in ``path``: a json list of ids, or a YouTube-VIS json (an object
    with ``videos``, such as the 2022 server's ``gt_long.json``) whose videos are taken.
    Each must be a video of ``gt``; ``YTVISFormatError`` naming the file otherwise."""
    data = read_json(path)
    if isinstance(data, dict) and isinstance(data.get("videos"), list):
        data = [v.get("id") if isinstance(v, dict) else v for v in data["videos"]]
    if not isinstance(data, list) or not data:
        raise YTVISFormatError(f"{path}: expected a non-empty json list of video ids, or a "
                               f"YouTube-VIS json with a non-empty 'videos' list")
    for i, vid in enumerate(data):
        if not _is_int(vid):
            raise YTVISFormatError(f"{path}: entry {i}: a video id is an integer, got {vid!r}")
        if vid not in gt.videos:
            raise YTVISFormatError(f"{path}: video {vid} is not in {gt.source}")
    return sorted(set(data))


def evaluate_ytvis_long_videos(gt: Union[str, dict, YTVISGroundTruth],
                               predictions: Union[str, Sequence[dict]],
                               long_videos: Union[str, Sequence[int]],
                               class_agnostic: bool = False, coco_crowd: bool = False
                               ) -> "OrderedDict[str, object]":
    """The YouTube-VIS 2022 protocol: the short and the long videos scored separately, each as
    the official scores a ground truth of those videos only, and their mean AP, which the 2022
    server reports as its ``mAP`` (next to ``mAP_S``, ``AP50_S``, ... ``AR10_L``).

    Args:
        gt, predictions, class_agnostic, coco_crowd: as :func:`evaluate_ytvis`.
        long_videos: the ids of the long videos (the rest of ``gt`` are the short ones), or a
            file listing them (:func:`read_video_ids`).
    Returns:
        ``{"AP": mean of the two APs (-1 if either is -1), "short": {metric: value},
        "long": {metric: value}}``.
    """
    gt, predictions, source = _load_inputs(gt, predictions, class_agnostic)
    if isinstance(long_videos, (str, os.PathLike)):
        long_ids = read_video_ids(long_videos, gt)
    else:
        long_ids = sorted(set(long_videos))
        unknown = [v for v in long_ids if v not in gt.videos]
        if unknown:
            raise YTVISFormatError(f"long videos {unknown[:10]} are not in {gt.source}")
    short_ids = sorted(set(gt.videos) - set(long_ids))
    if not long_ids or not short_ids:
        raise YTVISFormatError(
            f"{gt.source}: the long-video protocol needs both short and long videos; "
            f"{len(long_ids)} of its {len(gt.videos)} videos are long")
    ytvis_eval = YTVISEval(gt, predictions, source=source, coco_crowd=coco_crowd)
    short = ytvis_eval.evaluate(short_ids)
    long = ytvis_eval.evaluate(long_ids)
    mean = (short["AP"] + long["AP"]) / 2 if short["AP"] >= 0 and long["AP"] >= 0 else -1.0
    return OrderedDict([("AP", mean), ("short", short), ("long", long)])


def format_metrics_table(metrics: "OrderedDict[str, object]") -> str:
    """A text table of the metrics, as fractions like the YouTube-VIS server reports them
    ("-" where there is no ground truth to score); for the result of
    :func:`evaluate_ytvis_long_videos`, one row per split and their mean AP."""
    width = 6

    def cell(v):
        return f"{v:>{width}.4f}" if v >= 0 else f"{'-':>{width}}"

    if "short" in metrics and "long" in metrics:
        names = [n for n in METRIC_NAMES if n in metrics["short"]]
        head = "videos | " + " | ".join(f"{n:>{width}}" for n in names)
        rows = [f"{split:<6} | " + " | ".join(cell(metrics[split][n]) for n in names)
                for split in ("short", "long")]
        return "\n".join([head, "-" * len(head), *rows,
                          f"mean AP of short and long (the 2022 server's mAP): "
                          f"{cell(metrics['AP']).strip()}"])
    names = [n for n in METRIC_NAMES if n in metrics]
    head = " | ".join(f"{n:>{width}}" for n in names)
    vals = " | ".join(cell(metrics[n]) for n in names)
    return f"{head}\n{'-' * len(head)}\n{vals}"
