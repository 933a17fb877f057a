"""``VideoTracker``: every tracking setting with its default, and the one object that turns a
video's cached per-frame detections into video predictions.

Its fields are ``MODEL.VIS.TRACKER.<FIELD>`` in upper case; ``vis_d2.config.add_vis_config``
derives that config node from them, so a default is stated here and nowhere else. It builds
from a yacs config (``VideoTracker.from_config(cfg)``) and in a LazyConfig
(``L(VideoTracker)(bitrack=True)``).

A video goes through it in three steps:

1. :meth:`top_k` -- the detections of each frame that are cached for tracking (the one place
   the per-frame cap is applied; ``vis_d2.engine.video_inference`` calls it);
2. :meth:`track` -- association (:class:`~vis_d2.tracking.OnlineTracker`) forward, or
   BiTrack's forward and backward passes merged (paper 3.4);
3. :meth:`predictions` -- one prediction per track: its category (label voting, paper 3.5.4),
   its score (mean per-frame score, optionally times its coverage), then track NMS.

:meth:`predict` runs steps 2 and 3.
"""
import dataclasses
import math
from typing import Dict, List, Optional, Sequence

import numpy as np
import pycocotools.mask as mask_util

from .bitrack import BITRACK_MERGE_MODES, bitrack
from .frame_detections import FrameDetections, TrackingInputError
from .online_tracker import OnlineTracker, Tracklet
from .track_nms import track_nms

__all__ = ["VideoTracker", "RETIRED_TRACKER_KEYS"]

# Keys of MODEL.VIS.TRACKER that no longer exist -> the message that replaces yacs' bare
# "Non-existent config key" (vis_d2.config.get_vis_cfg raises it).
RETIRED_TRACKER_KEYS = {
    "MATCH_COEFFS": "MODEL.VIS.TRACKER.MATCH_COEFFS [a, b, c] was replaced by named weights: "
                    "MODEL.VIS.TRACKER.SCORE_WEIGHT a, MODEL.VIS.TRACKER.IOU_WEIGHT b, "
                    "MODEL.VIS.TRACKER.LABEL_WEIGHT c",
}


@dataclasses.dataclass(frozen=True)
class VideoTracker:
    """Tracking settings (``MODEL.VIS.TRACKER``) and the tracking of one cached video.

    Association score of detection i and active track n (see
    :class:`~vis_d2.tracking.OnlineTracker`)::

        log_softmax([0, e_i.m_1, ..., e_i.m_N])_n + score_weight * log(score_i)
            + iou_weight * IoU + label_weight * [same label] - distance_weight * dist

    Attributes:
        score_weight: weight of log(detection score).
        iou_weight: weight of the box IoU with the track's last box.
        label_weight: weight of the same-label term (replaced by ``label_voting_weight`` when
            ``label_voting`` is on).
        distance_weight: >= 0; weight of the distance between the box centres in units of the
            track box's size; > 0 keeps a track whose object has left or is hidden from
            jumping to a far detection, 0 is MaskTrack R-CNN's score.
        score_thresh: >= 0; detections scoring below it are not tracked.
        max_age: integer >= 0; a track unseen for more than this many frames retires.
        momentum: in [0, 1); track embedding memory = m * old + (1 - m) * new (0: the latest).
        label_voting: label voting (paper 3.5.4): the label term weighs ``label_voting_weight``
            and a track's category is its most frequent label.
        label_voting_weight: the label-term weight under label voting.
        label_vote_score_weighted: under label voting, vote with each label's summed scores
            instead of its frame count (the paper's, Sec. 3.5.4: "the one with highest
            frequency").
        bitrack: BiTrack (paper 3.4, Algorithm 2): merge a forward and a backward pass.
        bitrack_iou_thresh: in [0, 1]; a forward and a backward tracklet merge when their mean
            box IoU over the frames both cover exceeds it.
        bitrack_merge: "paper" (Algorithm 2 as written: one output per merged pair, a forward
            tracklet may merge with several backward ones) or "disjoint" (vis_d2's: a forward
            tracklet absorbs the backward ones, no detection in two tracks; the default, as
            "paper" needs track NMS); see :mod:`vis_d2.tracking.bitrack`.
        max_dets_per_frame: integer >= 0; at most this many highest-scoring detections of a
            frame are cached for tracking (0: all).
        score_coverage_exp: >= 0; track score = mean per-frame score * (frames covered / video
            length) ** e, so that short fragments rank below whole-object tracks (0: the mean).
        track_nms_thresh: in [0, 1); > 0 groups a video's tracks whose spatio-temporal mask IoU
            exceeds it, keeping the best track's masks once per category in the group.
    """

    score_weight: float = 1.0
    iou_weight: float = 2.0
    label_weight: float = 10.0
    distance_weight: float = 0.0
    score_thresh: float = 0.05
    max_age: int = 10
    momentum: float = 0.0
    label_voting: bool = False
    label_voting_weight: float = 0.0
    label_vote_score_weighted: bool = False
    bitrack: bool = False
    bitrack_iou_thresh: float = 0.5
    bitrack_merge: str = "disjoint"
    max_dets_per_frame: int = 20
    score_coverage_exp: float = 0.0
    track_nms_thresh: float = 0.0

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            object.__setattr__(self, f.name, _coerce(f.name, f.type, value))
        for name in ("score_weight", "iou_weight", "label_weight", "label_voting_weight"):
            _check(name, getattr(self, name), math.isfinite(getattr(self, name)), "finite")
        _check("distance_weight", self.distance_weight,
               math.isfinite(self.distance_weight) and self.distance_weight >= 0, "finite, >= 0")
        _check("score_thresh", self.score_thresh, self.score_thresh >= 0, ">= 0")
        _check("max_age", self.max_age, self.max_age >= 0, ">= 0")
        _check("momentum", self.momentum, 0.0 <= self.momentum < 1.0, "in [0, 1)")
        _check("bitrack_iou_thresh", self.bitrack_iou_thresh,
               0.0 <= self.bitrack_iou_thresh <= 1.0, "in [0, 1]")
        _check("bitrack_merge", repr(self.bitrack_merge),
               self.bitrack_merge in BITRACK_MERGE_MODES,
               f"one of {list(BITRACK_MERGE_MODES)}")
        _check("max_dets_per_frame", self.max_dets_per_frame, self.max_dets_per_frame >= 0,
               ">= 0")
        _check("score_coverage_exp", self.score_coverage_exp, self.score_coverage_exp >= 0,
               ">= 0")
        _check("track_nms_thresh", self.track_nms_thresh,
               0.0 <= self.track_nms_thresh < 1.0, "in [0, 1)")

    # ---- configuration ----
    @classmethod
    def config_defaults(cls) -> Dict[str, object]:
        """``{KEY: default}`` of ``MODEL.VIS.TRACKER`` (each field's name in upper case)."""
        return {f.name.upper(): f.default for f in dataclasses.fields(cls)}

    @classmethod
    def from_config(cls, cfg) -> "VideoTracker":
        """The tracker of a detectron2 config holding ``MODEL.VIS.TRACKER``."""
        try:
            node = cfg.MODEL.VIS.TRACKER
        except AttributeError:
            raise TrackingInputError(
                "VideoTracker.from_config: the config has no MODEL.VIS.TRACKER; call "
                "vis_d2.config.add_vis_config(cfg) first") from None
        return cls(**{f.name: node[f.name.upper()] for f in dataclasses.fields(cls)})

    @property
    def label_term_weight(self) -> float:
        """The same-label weight association uses (``label_voting_weight`` under label voting)."""
        return self.label_voting_weight if self.label_voting else self.label_weight

    # ---- step 1: per-frame cap ----
    def top_k(self, scores) -> np.ndarray:
        """Which detections of a frame are cached for tracking.

        Args:
            scores: (N,) detection scores of one frame.

        Returns:
            (K,) int64 indices: ``arange(N)`` when N <= ``max_dets_per_frame`` or that is 0,
            else the ``max_dets_per_frame`` highest scores, best first (equal scores keep the
            lower index first).
        """
        scores = np.asarray(scores).reshape(-1)
        k = self.max_dets_per_frame
        if not k or len(scores) <= k:
            return np.arange(len(scores), dtype=np.int64)
        return np.argsort(-scores, kind="stable")[:k].astype(np.int64)

    # ---- step 2: association ----
    def online(self) -> OnlineTracker:
        """A fresh frame-by-frame associator with these settings (for streams and BiTrack)."""
        return OnlineTracker(self)

    def track(self, frames: Sequence[FrameDetections]) -> List[Tracklet]:
        """Tracks of one cached video: the forward pass, or BiTrack's merge when ``bitrack``.

        Args:
            frames: T FrameDetections, frame t of the video at index t.

        Returns:
            the tracks, ids 0..M-1.
        """
        online = self.online()  # both passes check the frames
        if self.bitrack:
            return bitrack(frames, online, self.bitrack_iou_thresh, self.bitrack_merge)
        return online.track(frames)

    # ---- step 3: track -> prediction ----
    def predictions(self, tracklets: Sequence[Tracklet], frames: Sequence[FrameDetections],
                    video_id: int) -> List[Dict]:
        """One prediction per non-empty track, then track NMS.

        Args:
            tracklets: the video's tracks (from :meth:`track`).
            frames: the T cached FrameDetections the tracks index into.
            video_id: the video's id.

        Returns:
            ``[{"video_id", "category_id" (contiguous, 0..C-1), "score",
            "segmentations": [RLE dict with str counts, or None] * T}]``, sorted by score
            descending (stable). The RLEs are the cached ones, converted only where their
            counts are not a str.
        """
        length = len(frames)
        preds = []
        for trk in tracklets:
            if len(trk) == 0:
                continue
            segs: List[Optional[Dict]] = [None] * length
            for t, d in trk.items():
                if not 0 <= t < length:
                    raise TrackingInputError(
                        f"VideoTracker.predictions: video {video_id}: track {trk.track_id} has "
                        f"frame {t} outside 0..{length - 1}")
                masks = frames[t].masks
                if not 0 <= d.det < len(masks):
                    raise TrackingInputError(
                        f"VideoTracker.predictions: video {video_id}: track {trk.track_id} "
                        f"refers to detection {d.det} of frame {t}, which has {len(masks)} "
                        "detections")
                segs[t] = _json_rle(masks[d.det])
            category, score = trk.category_and_score(self.label_voting,
                                                     self.label_vote_score_weighted)
            if self.score_coverage_exp:
                score *= (len(trk) / length) ** self.score_coverage_exp
            preds.append({"video_id": int(video_id), "category_id": int(category),
                          "score": float(score), "segmentations": segs})
        preds.sort(key=lambda p: -p["score"])
        if self.track_nms_thresh:
            preds = track_nms(preds, self.track_nms_thresh)
        return preds

    def predict(self, frames: Sequence[FrameDetections], video_id: int) -> List[Dict]:
        """:meth:`track` then :meth:`predictions`: one cached video -> its predictions."""
        return self.predictions(self.track(frames), frames, video_id)


def _coerce(name: str, kind, value):
    """``value`` as the field's type; a bool field takes only a bool, an int field a whole
    number, so that a typo in a config is an error rather than a silent cast."""
    where = f"VideoTracker: {name} (MODEL.VIS.TRACKER.{name.upper()})"
    if kind in (str, "str"):
        if not isinstance(value, str):
            raise TrackingInputError(f"{where} must be a string, got {value!r}")
        return value
    if kind in (bool, "bool"):
        if not isinstance(value, (bool, np.bool_)):
            raise TrackingInputError(f"{where} must be True or False, got {value!r}")
        return bool(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TrackingInputError(f"{where} must be a number, got {value!r}")
    if kind in (int, "int"):
        if int(value) != value:
            raise TrackingInputError(f"{where} must be an integer, got {value!r}")
        return int(value)
    return float(value)


def _check(name: str, value, ok: bool, rule: str) -> None:
    if not ok:
        raise TrackingInputError(
            f"VideoTracker: {name} (MODEL.VIS.TRACKER.{name.upper()}) must be {rule}, "
            f"got {value}")


def _json_rle(rle: Dict) -> Dict:
    """The cached RLE itself when its counts are already a str; else a compressed copy with
    str counts, from bytes counts or an uncompressed (list) RLE."""
    counts = rle["counts"]
    if isinstance(counts, str):
        return rle
    if isinstance(counts, list):
        h, w = rle["size"]
        rle = mask_util.frPyObjects(rle, h, w)
        counts = rle["counts"]
    rle = dict(rle)
    rle["counts"] = counts.decode("ascii")
    return rle
