"""Which tracks of an unlabeled video become pseudo labels (paper Sec. 3.5.3): "if we can match
boxes over frames, these boxes are likely to represent a foreground object".

A track is kept when the tracker followed it over at least ``min_track_length`` frames and its
score is at least ``min_track_score``; a kept track gives its boxes, one per frame, all of its
category (label voting where the tracker votes). The thresholds are ``TEST.VIS.PSEUDO.*``
(their defaults and reasons: ``vis_d2/config.py``).
"""
import dataclasses
import math
from typing import Dict, List, Sequence, Set, Tuple

import numpy as np

from ..tracking import Tracklet, VideoTracker

__all__ = ["PseudoTrack", "PseudoLabelFilter"]


@dataclasses.dataclass(frozen=True)
class PseudoTrack:
    """One pseudo-labelled object of a video.

    Attributes:
        category: contiguous class index (0..C-1).
        score: the track's score (mean of its per-frame scores).
        boxes: {frame index: (4,) float32 XYXY box in the video's pixels}, frames in order.
        box_scores: {frame index: that frame's detection score}.
    """

    category: int
    score: float
    boxes: Dict[int, np.ndarray]
    box_scores: Dict[int, float]

    def __len__(self) -> int:
        return len(self.boxes)


@dataclasses.dataclass(frozen=True)
class PseudoLabelFilter:
    """The thresholds of ``TEST.VIS.PSEUDO`` and the selection of one video's tracks.

    Attributes:
        min_track_length: integer >= 1; frames in which the track has a detection (not its span:
            frames it was lost in do not count), counted after ``min_box_score``.
        min_track_score: in [0, 1]; the track's mean per-frame score, over all its detections.
        min_box_score: in [0, 1]; a kept track's detections scoring below it are left out.
    """

    min_track_length: int
    min_track_score: float
    min_box_score: float

    def __post_init__(self):
        n = self.min_track_length
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"TEST.VIS.PSEUDO.MIN_TRACK_LENGTH must be an integer >= 1 (frames), "
                             f"got {n!r}")
        for key in ("min_track_score", "min_box_score"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or not 0.0 <= v <= 1.0:
                raise ValueError(f"TEST.VIS.PSEUDO.{key.upper()} must be a score in [0, 1], got "
                                 f"{v!r}")

    @classmethod
    def from_config(cls, cfg) -> "PseudoLabelFilter":
        """The filter of a config holding ``TEST.VIS.PSEUDO`` (``add_vis_config``)."""
        node = cfg.TEST.VIS.PSEUDO
        return cls(node.MIN_TRACK_LENGTH, node.MIN_TRACK_SCORE, node.MIN_BOX_SCORE)

    def config_summary(self) -> Dict[str, float]:
        """``{"MIN_TRACK_LENGTH": ..., ...}``: the thresholds under their config keys."""
        return {f.name.upper(): getattr(self, f.name) for f in dataclasses.fields(self)}

    def select(self, tracklets: Sequence[Tracklet], tracker: VideoTracker) -> List[PseudoTrack]:
        """The pseudo labels of one video.

        Args:
            tracklets: the video's tracks (``tracker.track(frames)``).
            tracker: gives each track's category and score
                (:meth:`~vis_d2.tracking.online_tracker.Tracklet.category_and_score` with its
                label-voting settings).

        Returns:
            the kept tracks, best score first. A detection belongs to at most one of them: where
            two tracks share one (BiTrack's "paper" merge can give that), the better-scoring
            track keeps it and the other is judged without it.
        """
        scored: List[Tuple[float, int, Tracklet]] = []
        for trk in tracklets:
            if len(trk) == 0:
                continue
            category, score = trk.category_and_score(tracker.label_voting,
                                                     tracker.label_vote_score_weighted)
            if score >= self.min_track_score:
                scored.append((float(score), int(category), trk))
        scored.sort(key=lambda s: -s[0])  # stable: equal scores keep the tracker's order
        used: Set[Tuple[int, int]] = set()
        kept = []
        for score, category, trk in scored:
            dets = [(t, d) for t, d in trk.items()
                    if d.score >= self.min_box_score and (t, d.det) not in used]
            if len(dets) < self.min_track_length:
                continue
            used.update((t, d.det) for t, d in dets)
            kept.append(PseudoTrack(
                category=category, score=score,
                boxes={t: np.asarray(d.box, dtype=np.float32) for t, d in dets},
                box_scores={t: float(d.score) for t, d in dets}))
        return kept
