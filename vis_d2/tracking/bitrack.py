"""BiTrack (paper 3.4, Algorithm 2): merge forward and backward tracklets of one video.

The tracker runs over the per-frame detections cached once per video, forward (0..T-1) and
backward (T-1..0) -- one extra association pass, no extra model pass. A frame is *valid* for a
forward tracklet f and a backward tracklet b when both have a detection there; f and b
*overlap* (the paper's IsOverlap) when the mean box IoU over their valid frames exceeds a
threshold (no valid frame: no overlap; the same cached detection counts IoU 1). Two merge modes
(``MODEL.VIS.TRACKER.BITRACK_MERGE``):

``"paper"`` -- Algorithm 2 as written. For each forward tracklet f in id order, for each backward
tracklet b in id order not matched yet: if f and b overlap, output Merge(f, b) and mark both
matched. Then every unmatched f and b is output as it is. One f may merge with several b's, and
each merge is its own output track, so f's detections can appear in several tracks. Merge(f, b)
is the union of their frames; in a frame where both have a detection, f's is kept: the paper
merges to fill the frames one direction missed (Fig. 4), not to re-pick detections.

``"disjoint"`` -- vis_d2's variant, which never outputs a detection twice:

* a forward tracklet absorbs every unused backward tracklet that overlaps it, each checked
  against the growing merged tracklet (best mean IoU first, the lowest backward id on a tie);
* where the two have different detections in one frame, the higher-scoring one is kept;
* walking the output in order, a detection already used by an earlier track is dropped from
  the later one, and a track left empty disappears.

Output order, with ids renumbered 0..M-1 in it: "paper", Algorithm 2's M -- the merges (by forward,
then backward id), the unmatched forward tracklets, the unmatched backward ones; "disjoint", the
forward tracklets by id (merged or not), then the unmatched backward ones.

The default is "disjoint" (``VideoTracker.bitrack_merge``), the better of the two with the
tracker's default settings, which have no track NMS. Measured against forward-only tracking by
``tools/sweep_postprocess.py --variants '{}' '{"bitrack": true, "bitrack_merge": "paper"}'
'{"bitrack": true, "bitrack_merge": "disjoint"}'`` (official-metric AP on ``synthvis_val`` / the
unseen seed-11 split, R18 models of 800 steps, seeds 0 and 1), first on the paper-faithful A4
models of the ablation (docs/ABLATION.md), whose tracker is the default one:

==========  ===============  ===============  ===============  ===============
AP          seed 0 val       seed 0 s11       seed 1 val       seed 1 s11
==========  ===============  ===============  ===============  ===============
forward     0.188            0.129            0.173            0.114
paper       0.118 (-7.0)     0.070 (-5.9)     0.085 (-8.8)     0.052 (-6.2)
disjoint    0.180 (-0.8)     0.114 (-1.5)     0.175 (+0.2)     0.082 (-3.2)
==========  ===============  ===============  ===============  ===============

"paper" outputs 1.7 times the tracks there: a forward tracklet merged with several backward ones
comes out once per merge, and the copies are false positives. ``track_nms_thresh`` (0.3) removes
them, and then "paper" is level with forward-only tracking (-0.1, +1.3, 0.0, -0.5), "disjoint"
0.4 to 3.7 below it. The same on two demo-recipe A3 models, whose tracker runs track NMS:

==========  ===============  ===============  ===============  ===============
AP          seed 0 val       seed 0 s11       seed 1 val       seed 1 s11
==========  ===============  ===============  ===============  ===============
forward     0.385            0.349            0.436            0.392
paper       0.386 (+0.1)     0.339 (-1.0)     0.434 (-0.2)     0.391 (-0.1)
disjoint    0.356 (-2.9)     0.296 (-5.3)     0.404 (-3.2)     0.374 (-1.8)
==========  ===============  ===============  ===============  ===============

So: with track NMS, "paper" (``MODEL.VIS.TRACKER.BITRACK_MERGE "paper"``, as Table 1's A5 rows
set); without, "disjoint". Neither adds AP over forward-only tracking on the synthetic videos.

Cost: a pair is compared only over the frames both cover, and only where their frame spans
meet, so time and memory follow the number of overlapping pairs, not tracks x frames.
"""
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .frame_detections import FrameDetections, TrackingInputError, paired_box_iou
from .online_tracker import OnlineTracker, TrackedDetection, Tracklet, check_frames

__all__ = ["BITRACK_MERGE_MODES", "bitrack", "merge_bidirectional"]

BITRACK_MERGE_MODES = ("paper", "disjoint")


class _Arrays:
    """A tracklet's frames (sorted), detection indices and boxes as arrays, for fast overlap."""

    def __init__(self, dets: Dict[int, TrackedDetection]):
        self.frames = np.fromiter(sorted(dets), dtype=np.int64, count=len(dets))
        self.det = np.array([dets[t].det for t in self.frames], dtype=np.int64)
        self.box = np.array([dets[t].box for t in self.frames], dtype=np.float32).reshape(-1, 4)

    @property
    def span(self) -> Tuple[int, int]:
        return (int(self.frames[0]), int(self.frames[-1])) if len(self.frames) else (0, -1)


def _mean_iou(a: _Arrays, b: _Arrays) -> float:
    """Mean box IoU of two tracklets over the frames both cover; -inf without such a frame."""
    _, ia, ib = np.intersect1d(a.frames, b.frames, assume_unique=True, return_indices=True)
    if len(ia) == 0:
        return -np.inf
    iou = paired_box_iou(a.box[ia], b.box[ib])
    # The same detection is the same object: IoU 1 even for a degenerate box.
    iou[a.det[ia] == b.det[ib]] = 1.0
    return float(iou.astype(np.float64).sum() / len(ia))


def _check_tracklets(forward, backward, num_frames: int) -> None:
    for name, group in (("forward", forward), ("backward", backward)):
        for trk in group:
            fr = trk.frames()
            if fr and (fr[0] < 0 or fr[-1] >= num_frames):
                raise TrackingInputError(
                    f"merge_bidirectional: {name} tracklet {trk.track_id} has frames "
                    f"{fr[0]}..{fr[-1]} outside the video's {num_frames} frames")


def _merge_paper(forward: Sequence[Tracklet], backward: Sequence[Tracklet],
                 iou_thresh: float) -> List[Dict[int, TrackedDetection]]:
    back = [_Arrays(dict(b.items())) for b in backward]
    back_spans = np.array([b.span for b in back], dtype=np.int64).reshape(-1, 2)
    used_back = np.zeros(len(backward), dtype=bool)
    merges, unmatched_forward = [], []
    for f in forward:
        fa = _Arrays(dict(f.items()))
        lo, hi = fa.span
        matched = False
        # in id order, the unmatched backward tracklets whose spans meet f's
        for j in np.flatnonzero(~used_back & (back_spans[:, 0] <= hi) & (back_spans[:, 1] >= lo)):
            if _mean_iou(fa, back[j]) > iou_thresh:
                merges.append({**dict(backward[j].items()), **dict(f.items())})  # f's wins
                used_back[j] = matched = True
        if not matched:
            unmatched_forward.append(dict(f.items()))
    # Algorithm 2's M: the merges, then F \ F^, then B \ B^.
    return merges + unmatched_forward + [dict(b.items()) for j, b in enumerate(backward)
                                         if not used_back[j]]


def _merge_disjoint(forward: Sequence[Tracklet], backward: Sequence[Tracklet],
                    iou_thresh: float) -> List[Dict[int, TrackedDetection]]:
    back = [_Arrays(dict(b.items())) for b in backward]
    back_spans = np.array([b.span for b in back], dtype=np.int64).reshape(-1, 2)
    used_back = np.zeros(len(backward), dtype=bool)
    merged: List[Dict[int, TrackedDetection]] = []
    for f in forward:
        cur = dict(f.items())
        cur_arrays = _Arrays(cur)
        while True:
            lo, hi = cur_arrays.span
            cand = np.flatnonzero(~used_back & (back_spans[:, 0] <= hi) & (back_spans[:, 1] >= lo))
            if len(cand) == 0:
                break
            means = np.array([_mean_iou(cur_arrays, back[j]) for j in cand])
            k = int(np.argmax(means))  # first maximum: lowest backward id
            if not means[k] > iou_thresh:
                break
            best = int(cand[k])
            used_back[best] = True
            for t, d in backward[best].items():
                if t not in cur or d.score > cur[t].score:
                    cur[t] = d
            cur_arrays = _Arrays(cur)
        merged.append(cur)
    merged.extend(dict(b.items()) for j, b in enumerate(backward) if not used_back[j])
    # No detection in two output tracks: the earlier track keeps it.
    out, taken = [], set()
    for dets in merged:
        keep = {t: d for t, d in sorted(dets.items()) if (t, d.det) not in taken}
        if keep:
            taken.update((t, d.det) for t, d in keep.items())
            out.append(keep)
    return out


def merge_bidirectional(forward: Sequence[Tracklet], backward: Sequence[Tracklet],
                        frames: Sequence[FrameDetections], iou_thresh: float,
                        mode: str) -> List[Tracklet]:
    """Merge forward and backward tracklets of the same cached video (see module doc).

    Args:
        forward: tracklets of the forward pass.
        backward: tracklets of the backward pass.
        frames: the T cached FrameDetections both passes ran on (the boxes compared are the
            tracklets' copies of the cached ones).
        iou_thresh: two tracklets overlap when their mean IoU over valid frames is strictly
            greater than this.
        mode: "paper" (Algorithm 2 as written) or "disjoint" (no detection in two tracks).

    Returns:
        the merged tracklets, ids 0..M-1; disjoint in "disjoint" mode.
    """
    if mode not in BITRACK_MERGE_MODES:
        raise TrackingInputError(f"merge_bidirectional: mode (MODEL.VIS.TRACKER.BITRACK_MERGE) "
                                 f"must be one of {list(BITRACK_MERGE_MODES)}, got {mode!r}")
    forward = sorted(forward, key=lambda x: x.track_id)
    backward = sorted(backward, key=lambda x: x.track_id)
    _check_tracklets(forward, backward, len(frames))
    merge = _merge_paper if mode == "paper" else _merge_disjoint
    merged = [dets for dets in merge(forward, backward, iou_thresh) if dets]
    return [Tracklet(i, dets) for i, dets in enumerate(merged)]


def bitrack(frames: Sequence[FrameDetections], tracker: OnlineTracker,
            iou_thresh: float, mode: str) -> List[Tracklet]:
    """Run ``tracker`` forward and backward over the cached ``frames`` and merge the results.

    Args:
        frames: T FrameDetections of one video (frame t at index t).
        tracker: the online tracker (reset by each pass); ``VideoTracker.online()``.
        iou_thresh: in [0, 1], mean-IoU threshold for merging (``bitrack_iou_thresh``).
        mode: the merge (``bitrack_merge``): "paper" or "disjoint" (see module doc).

    Returns:
        tracklets with ids 0..M-1 (see :func:`merge_bidirectional`).
    """
    if not 0.0 <= float(iou_thresh) <= 1.0:
        raise TrackingInputError(
            f"bitrack: iou_thresh (MODEL.VIS.TRACKER.BITRACK_IOU_THRESH) must be in [0, 1], "
            f"got {iou_thresh}")
    check_frames(frames)
    fwd = tracker.track(frames, reverse=False)
    bwd = tracker.track(frames, reverse=True)
    return merge_bidirectional(fwd, bwd, frames, float(iou_thresh), mode)
