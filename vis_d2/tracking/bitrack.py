"""BiTrack (paper 3.4, Algorithm 2): merge forward and backward tracklets of one video.

The tracker runs over the per-frame detections cached once per video, forward (0..T-1) and
backward (T-1..0) -- one extra association pass, no extra model pass. A frame is *valid* for a
forward tracklet f and a backward tracklet b when both have a detection there; f and b merge
when the mean box IoU over their valid frames exceeds a threshold (no valid frame: no merge).

Fixes to the paper's Algorithm 2, which lets one forward tracklet merge with several backward
ones and outputs each merge separately (duplicating detections):

* a forward tracklet absorbs every unused backward tracklet that overlaps it, each checked
  against the growing merged tracklet (best mean IoU first);
* where the two have different detections in one frame, the higher-scoring one is kept;
* no detection appears in two output tracks: walking the output in order, a detection already
  used by an earlier track is dropped from the later one, and a track left empty disappears.

Unmatched tracklets of both directions are kept. Output order: forward tracklets by id (merged
or not), then unmatched backward tracklets by id; output ids are renumbered 0..M-1 in that order.
"""
from typing import Dict, List, Sequence

import numpy as np

from .frame_detections import FrameDetections, TrackingInputError, paired_box_iou
from .online_tracker import OnlineTracker, TrackedDetection, Tracklet, check_frames

__all__ = ["bitrack", "merge_bidirectional"]


def merge_bidirectional(forward: Sequence[Tracklet], backward: Sequence[Tracklet],
                        frames: Sequence[FrameDetections], iou_thresh: float) -> List[Tracklet]:
    """Merge forward and backward tracklets of the same cached video (see module doc).

    Args:
        forward: tracklets of the forward pass.
        backward: tracklets of the backward pass.
        frames: the T cached FrameDetections both passes ran on (the boxes compared are the
            tracklets' copies of the cached ones).
        iou_thresh: merge when the mean IoU over valid frames is strictly greater than this.

    Returns:
        disjoint tracklets (no (frame, detection) in two of them), ids 0..M-1.
    """
    num_frames = len(frames)
    forward = sorted(forward, key=lambda x: x.track_id)
    backward = sorted(backward, key=lambda x: x.track_id)
    for name, group in (("forward", forward), ("backward", backward)):
        for trk in group:
            fr = trk.frames()
            if fr and (fr[0] < 0 or fr[-1] >= num_frames):
                raise TrackingInputError(
                    f"merge_bidirectional: {name} tracklet {trk.track_id} has frames "
                    f"{fr[0]}..{fr[-1]} outside the video's {num_frames} frames")

    # (num_backward, T) detection index and box of each backward tracklet per frame
    # (-1 / zeros where absent), so that one merge candidate check is a few array ops.
    back_det = np.full((len(backward), num_frames), -1, dtype=np.int64)
    back_box = np.zeros((len(backward), num_frames, 4), dtype=np.float32)
    for j, trk in enumerate(backward):
        for t, d in trk.items():
            back_det[j, t] = d.det
            back_box[j, t] = d.box
    used_back = np.zeros(len(backward), dtype=bool)

    merged: List[Dict[int, TrackedDetection]] = []
    for f in forward:
        cur = dict(f.items())
        cur_det = np.full(num_frames, -1, dtype=np.int64)
        cur_box = np.zeros((num_frames, 4), dtype=np.float32)
        for t, d in cur.items():
            cur_det[t], cur_box[t] = d.det, d.box
        while not used_back.all():
            valid = (back_det >= 0) & (cur_det >= 0)[None, :] & ~used_back[:, None]
            iou = paired_box_iou(back_box, cur_box[None])
            # The same detection is the same object: IoU 1 even for a degenerate box.
            iou[back_det == cur_det[None, :]] = 1.0
            num_valid = valid.sum(axis=1)
            iou_sum = (iou.astype(np.float64) * valid).sum(axis=1)
            mean = np.where(num_valid > 0, iou_sum / np.maximum(num_valid, 1), -np.inf)
            best = int(np.argmax(mean))          # first maximum: lowest backward id
            if not mean[best] > iou_thresh:
                break
            used_back[best] = True
            for t, d in backward[best].items():
                if t not in cur or d.score > cur[t].score:
                    cur[t] = d
                    cur_det[t], cur_box[t] = d.det, d.box
        merged.append(cur)
    merged.extend(dict(b.items()) for j, b in enumerate(backward) if not used_back[j])

    out: List[Tracklet] = []
    taken = set()
    for dets in merged:
        keep = {t: d for t, d in sorted(dets.items()) if (t, d.det) not in taken}
        if not keep:
            continue
        taken.update((t, d.det) for t, d in keep.items())
        out.append(Tracklet(len(out), keep))
    return out


def bitrack(frames: Sequence[FrameDetections], tracker: OnlineTracker,
            iou_thresh: float) -> List[Tracklet]:
    """Run ``tracker`` forward and backward over the cached ``frames`` and merge the results.

    Args:
        frames: T FrameDetections of one video (frame t at index t).
        tracker: the online tracker (reset by each pass); ``VideoTracker.online()``.
        iou_thresh: in [0, 1], mean-IoU threshold for merging (``bitrack_iou_thresh``).

    Returns:
        disjoint tracklets with ids 0..M-1 (see :func:`merge_bidirectional`).
    """
    if not 0.0 <= float(iou_thresh) <= 1.0:
        raise TrackingInputError(
            f"bitrack: iou_thresh (MODEL.VIS.TRACKER.BITRACK_IOU_THRESH) must be in [0, 1], "
            f"got {iou_thresh}")
    check_frames(frames)
    fwd = tracker.track(frames, reverse=False)
    bwd = tracker.track(frames, reverse=True)
    return merge_bidirectional(fwd, bwd, frames, float(iou_thresh))
