"""Online tracker: MaskTrack R-CNN's association, solved as a one-to-one assignment.

For detection i of the current frame and active track n (memory embedding m_n, box, label)::

    S[i, n] = log_softmax([0, e_i.m_1, ..., e_i.m_N])_n + a*log(score_i)
              + b*IoU(box_i, box_n) + c*[label_i == label_n] - d*dist(box_i, box_n)

with a, b, c, d the :class:`~vis_d2.tracking.VideoTracker`'s ``score_weight``, ``iou_weight``,
``label_term_weight`` and ``distance_weight``.

Slot 0 of the softmax stands for "a new object"; it gets IoU 0, distance 0 and the label term as
if matched (+c). A track's memory is its latest box and label and its embedding (the latest, or a
momentum average); tracks unseen for more than ``max_age`` frames retire and drop it.

``dist`` is the distance between the two box centres in units of the track box's size (the
square root of its area); d = 0 (the default) is MaskTrack R-CNN's score. The IoU term is 0 for
every box that does not touch the track's, so without it a track whose object has left or is
hidden takes any far detection of its label whose embedding beats the "new" slot.

MaskTrack R-CNN takes each detection's argmax, so two detections can take the
same track; here each track is taken by at most one detection per frame: the frame is solved
with ``scipy.optimize.linear_sum_assignment`` on detections x [tracks + one "new" column per
detection], maximising the total score.

The tracker runs over per-frame detections cached once (a list of
:class:`~vis_d2.tracking.FrameDetections`) in either direction, so BiTrack reuses the cache
backwards. It never copies masks: a :class:`Tracklet` maps frame index -> detection index in
that frame, plus the detection's box, score and label (a few numbers).
"""
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.special import log_softmax

from .frame_detections import FrameDetections, TrackingInputError, pairwise_box_iou
from .label_voting import track_category_and_score

__all__ = ["OnlineTracker", "Tracklet", "TrackedDetection", "center_distance"]

# log(score) of a zero score would be -inf and make the assignment infeasible.
_MIN_SCORE = 1e-12


class TrackedDetection(NamedTuple):
    """One detection of a tracklet: its index in the frame's cache and small copies of its
    box ((4,) float32 XYXY), score and label (the mask stays in the cache)."""

    det: int
    box: np.ndarray
    score: float
    label: int


class Tracklet:
    """A track: frame index -> :class:`TrackedDetection` (at most one detection per frame).

    Args:
        track_id: the track's id (unique within one tracker run / one BiTrack output).
        detections: optional initial mapping frame index -> TrackedDetection.
    """

    def __init__(self, track_id: int, detections: Optional[Dict[int, TrackedDetection]] = None):
        self.track_id = int(track_id)
        self._dets: Dict[int, TrackedDetection] = dict(detections or {})

    # ---- building ----
    def add(self, frame_idx: int, det: TrackedDetection) -> None:
        frame_idx = int(frame_idx)
        if frame_idx in self._dets:
            raise TrackingInputError(
                f"Tracklet {self.track_id}: frame {frame_idx} already has detection "
                f"{self._dets[frame_idx].det}; a track holds one detection per frame")
        self._dets[frame_idx] = det

    # ---- accessors ----
    def frames(self) -> List[int]:
        """Sorted frame indices where the track has a detection."""
        return sorted(self._dets)

    def items(self) -> Iterator[Tuple[int, TrackedDetection]]:
        """(frame index, TrackedDetection) pairs in frame order."""
        for t in self.frames():
            yield t, self._dets[t]

    def det_index(self, frame_idx: int) -> int:
        return self._get(frame_idx).det

    def box(self, frame_idx: int) -> np.ndarray:
        return self._get(frame_idx).box

    def score(self, frame_idx: int) -> float:
        return self._get(frame_idx).score

    def label(self, frame_idx: int) -> int:
        return self._get(frame_idx).label

    def mask(self, frame_idx: int, frames: Sequence[FrameDetections]):
        """The cached RLE of this track's detection at ``frame_idx`` (not a copy)."""
        return frames[frame_idx].masks[self.det_index(frame_idx)]

    def scores(self) -> np.ndarray:
        """(K,) float32 per-frame scores in frame order."""
        return np.array([d.score for _, d in self.items()], dtype=np.float32)

    def labels(self) -> np.ndarray:
        """(K,) int64 per-frame labels in frame order."""
        return np.array([d.label for _, d in self.items()], dtype=np.int64)

    def category_and_score(self, label_voting: bool, score_weighted: bool) -> Tuple[int, float]:
        """(voted category, mean score); see :func:`vis_d2.tracking.track_category_and_score`."""
        return track_category_and_score(self.labels(), self.scores(), label_voting, score_weighted)

    def __len__(self) -> int:
        return len(self._dets)

    def __contains__(self, frame_idx) -> bool:
        return frame_idx in self._dets

    def __repr__(self) -> str:
        return f"Tracklet(id={self.track_id}, frames={self.frames()})"

    def _get(self, frame_idx: int) -> TrackedDetection:
        try:
            return self._dets[frame_idx]
        except KeyError:
            raise KeyError(
                f"Tracklet {self.track_id} has no detection in frame {frame_idx}") from None


class _TrackMemory:
    """What an active track remembers for association (constant size per track)."""

    __slots__ = ("track_id", "embedding", "box", "label", "last_seen")

    def __init__(self, track_id, embedding, box, label, last_seen):
        self.track_id = track_id
        self.embedding = embedding
        self.box = box
        self.label = label
        self.last_seen = last_seen


class OnlineTracker:
    """Frame-by-frame association (MaskTrack R-CNN's score, one-to-one assignment), with the
    weights, thresholds and memory of a :class:`~vis_d2.tracking.VideoTracker`.

    Build it with ``video_tracker.online()``; it holds the state of one pass (the active
    tracks and the tracklets built), which :meth:`reset` and :meth:`track` clear.

    Args:
        settings: the VideoTracker whose fields it reads (``score_weight``, ``iou_weight``,
            ``label_term_weight``, ``distance_weight``, ``score_thresh``, ``max_age``,
            ``momentum``).
    """

    def __init__(self, settings):
        self.settings = settings
        self.reset()

    # ---- state ----
    def reset(self, reverse: bool = False) -> None:
        """Forget all tracks; the next :meth:`step` calls must run in the given direction."""
        self._reverse = bool(reverse)
        self._last_frame: Optional[int] = None
        self._active: List[_TrackMemory] = []
        self._tracklets: Dict[int, Tracklet] = {}
        self._next_id = 0

    def active_track_ids(self) -> List[int]:
        """Ids of the tracks that can still be matched, in the column order of
        :meth:`association_scores`."""
        return [m.track_id for m in self._active]

    def memory_embedding(self, track_id: int) -> np.ndarray:
        """(D,) memory embedding of an active track."""
        for m in self._active:
            if m.track_id == track_id:
                return m.embedding.copy()
        raise KeyError(f"OnlineTracker: track {track_id} is not active")

    def tracklets(self) -> List[Tracklet]:
        """All tracks built since the last :meth:`reset` (retired ones included), by id."""
        return [self._tracklets[k] for k in sorted(self._tracklets)]

    # ---- association ----
    def kept_detections(self, frame_dets: FrameDetections) -> np.ndarray:
        """Indices of the detections that take part in association, ascending: those scoring
        >= ``score_thresh`` (the per-frame cap was applied when the frame was cached)."""
        return np.nonzero(frame_dets.scores >= self.settings.score_thresh)[0]

    def association_scores(self, frame_dets: FrameDetections,
                           keep: Optional[np.ndarray] = None) -> np.ndarray:
        """MaskTrack R-CNN scores (with the distance term) against the active tracks, before
        assignment.

        Args:
            frame_dets: the current frame.
            keep: (K,) detection indices to score; default :meth:`kept_detections`.

        Returns:
            (K, 1 + N) float64: column 0 is "new track", column 1 + n is
            ``active_track_ids()[n]``.
        """
        if keep is None:
            keep = self.kept_detections(frame_dets)
        s = self.settings
        a, b, c, d = s.score_weight, s.iou_weight, s.label_term_weight, s.distance_weight
        k, n = len(keep), len(self._active)
        emb = frame_dets.embeddings[keep].astype(np.float64)
        if n:
            mem = np.stack([m.embedding for m in self._active]).astype(np.float64)
            if mem.shape[1] != emb.shape[1]:
                raise TrackingInputError(
                    f"OnlineTracker: {frame_dets.source or 'frame'} has embeddings of dimension "
                    f"{emb.shape[1]} but the tracks' memory has dimension {mem.shape[1]}")
            dots = emb @ mem.T
            det_boxes = frame_dets.boxes[keep]
            track_boxes = np.stack([m.box for m in self._active])
            iou = pairwise_box_iou(det_boxes, track_boxes).astype(np.float64)
            same = frame_dets.labels[keep][:, None] == np.array(
                [m.label for m in self._active], dtype=np.int64)[None, :]
            dist = center_distance(det_boxes, track_boxes) if d else np.zeros((k, n))
        else:
            dots = np.zeros((k, 0))
            iou = np.zeros((k, 0))
            same = np.zeros((k, 0), dtype=bool)
            dist = np.zeros((k, 0))
        logits = np.concatenate([np.zeros((k, 1)), dots], axis=1)
        scores = log_softmax(logits, axis=1)
        scores += a * np.log(np.maximum(frame_dets.scores[keep].astype(np.float64),
                                        _MIN_SCORE))[:, None]
        scores[:, 0] += c                      # "new": IoU 0, distance 0, label counted as matched
        scores[:, 1:] += b * iou + c * same - d * dist
        return scores

    def step(self, frame_idx: int, frame_dets: FrameDetections) -> List[int]:
        """Associate one frame's detections with the active tracks.

        Args:
            frame_idx: index of the frame in the video; must move strictly forward (or
                backward after ``reset(reverse=True)``) from call to call.
            frame_dets: the frame's cached detections.

        Returns:
            list of N track ids, one per detection of the frame (-1 for a dropped detection).
        """
        if not isinstance(frame_dets, FrameDetections):
            raise TrackingInputError(
                f"OnlineTracker.step: frame {frame_idx} is a {type(frame_dets).__name__}, "
                "expected FrameDetections")
        if int(frame_idx) != frame_idx:
            raise TrackingInputError(
                f"OnlineTracker.step: frame_idx must be an integer, got {frame_idx}")
        frame_idx = int(frame_idx)
        if self._last_frame is not None:
            ok = frame_idx < self._last_frame if self._reverse else frame_idx > self._last_frame
            if not ok:
                raise TrackingInputError(
                    f"OnlineTracker.step: frame {frame_idx} after frame {self._last_frame} in a "
                    f"{'backward' if self._reverse else 'forward'} run; call reset() to restart")
        self._last_frame = frame_idx

        # Retire tracks unseen for more than max_age frames; they drop their memory.
        self._active = [m for m in self._active
                        if abs(frame_idx - m.last_seen) - 1 <= self.settings.max_age]

        ids = [-1] * len(frame_dets)
        keep = self.kept_detections(frame_dets)
        if len(keep) == 0:
            return ids
        scores = self.association_scores(frame_dets, keep)
        k, n = scores.shape[0], scores.shape[1] - 1
        # detections x [N tracks | K "new" columns, detection i may only take new column i]
        gain = np.full((k, n + k), -np.inf)
        gain[:, :n] = scores[:, 1:]
        gain[np.arange(k), n + np.arange(k)] = scores[:, 0]
        rows, cols = linear_sum_assignment(gain, maximize=True)

        matched = []
        for r, col in zip(rows.tolist(), cols.tolist()):   # rows ascending = detection order
            det = int(keep[r])
            if col < n:
                mem = self._active[col]
                matched.append((mem, det))
            else:
                mem = _TrackMemory(self._next_id, None, None, None, None)
                self._next_id += 1
                self._tracklets[mem.track_id] = Tracklet(mem.track_id)
                matched.append((mem, det))
        new_mems = []
        for mem, det in matched:
            emb = frame_dets.embeddings[det]
            if mem.embedding is None:
                mem.embedding = emb.copy()
                new_mems.append(mem)
            else:
                m = self.settings.momentum
                mem.embedding = (m * mem.embedding + (1.0 - m) * emb).astype(np.float32)
            mem.box = frame_dets.boxes[det].copy()
            mem.label = int(frame_dets.labels[det])
            mem.last_seen = frame_idx
            self._tracklets[mem.track_id].add(frame_idx, TrackedDetection(
                det=det, box=mem.box, score=float(frame_dets.scores[det]), label=mem.label))
            ids[det] = mem.track_id
        self._active.extend(new_mems)
        return ids

    def track(self, frames: Sequence[FrameDetections], reverse: bool = False) -> List[Tracklet]:
        """Track a whole video from its cached per-frame detections.

        Args:
            frames: T FrameDetections, frame t of the video at index t.
            reverse: associate frames T-1, ..., 0 instead of 0, ..., T-1.

        Returns:
            the tracklets, ordered by id (ids 0, 1, ... in order of creation).
        """
        check_frames(frames)
        self.reset(reverse=reverse)
        order = range(len(frames) - 1, -1, -1) if reverse else range(len(frames))
        for t in order:
            self.step(t, frames[t])
        return self.tracklets()


def center_distance(boxes: np.ndarray, track_boxes: np.ndarray) -> np.ndarray:
    """Distance between box centres in units of the track box's size.

    Args:
        boxes: (K, 4) XYXY detection boxes.
        track_boxes: (N, 4) XYXY boxes of the tracks' memory.

    Returns:
        (K, N) float64: ``|centre(box_k) - centre(track_n)| / sqrt(area(track_n))``; a track box
        of zero area counts as 1 pixel^2, so the distance stays finite.
    """
    b = np.asarray(boxes, dtype=np.float64)
    t = np.asarray(track_boxes, dtype=np.float64)
    bc = (b[:, None, :2] + b[:, None, 2:]) / 2.0
    tc = (t[None, :, :2] + t[None, :, 2:]) / 2.0
    size = np.sqrt(np.maximum((t[:, 2] - t[:, 0]) * (t[:, 3] - t[:, 1]), 1.0))
    return np.linalg.norm(bc - tc, axis=2) / size[None, :]


def check_frames(frames: Sequence[FrameDetections]) -> None:
    """Check that ``frames`` is a sequence of FrameDetections sharing one embedding size."""
    if isinstance(frames, FrameDetections) or not hasattr(frames, "__len__"):
        raise TrackingInputError(
            f"tracking: expected a sequence of FrameDetections (one per frame), got "
            f"{type(frames).__name__}")
    dim = None
    for t, f in enumerate(frames):
        if not isinstance(f, FrameDetections):
            raise TrackingInputError(
                f"tracking: frame {t} is a {type(f).__name__}, expected FrameDetections")
        if len(f) == 0:
            continue
        if dim is None:
            dim, first = f.embed_dim, t
        elif f.embed_dim != dim:
            raise TrackingInputError(
                f"tracking: frame {t} ({f.source or 'no source'}) has embeddings of dimension "
                f"{f.embed_dim} but frame {first} has {dim}")
