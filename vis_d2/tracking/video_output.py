"""Tracks -> video predictions (data contract 3), the format the YouTube-VIS evaluator reads."""
from typing import Dict, List, Optional, Sequence, Union

import pycocotools.mask as mask_util

from .bitrack import resolve_tracker, track_video
from .frame_detections import FrameDetections, TrackingInputError
from .online_tracker import OnlineTracker, Tracklet
from .track_nms import track_nms

__all__ = ["tracklets_to_predictions", "predict_video"]


def _json_rle(rle: Dict) -> Dict:
    """The cached RLE itself when its counts are already a str; else a compressed copy with
    str counts (contract 3), from bytes counts or an uncompressed (list) RLE."""
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


def tracklets_to_predictions(tracklets: Sequence[Tracklet], frames: Sequence[FrameDetections],
                             video_id: int, length: int, label_voting: bool,
                             score_weighted: bool, score_coverage_exp: float = 0.0,
                             track_nms_thresh: float = 0.0) -> List[Dict]:
    """One prediction per track.

    Args:
        tracklets: the video's tracks (from OnlineTracker.track, bitrack or track_video).
        frames: the cached FrameDetections the tracks index into (len == length).
        video_id: the video's id.
        length: number of frames of the video.
        label_voting: with label voting the category vote may be score-weighted.
        score_weighted: vote with summed scores instead of counts (only with label_voting).
        score_coverage_exp: e >= 0; the track score is its mean per-frame score times
            (frames with a detection / length) ** e. 0 (the baseline) is the plain mean; e > 0
            ranks a fragment covering a few frames below a track of the whole object, which
            the video-level metric counts as the better prediction.
        track_nms_thresh: in [0, 1); > 0 groups duplicate tracks with
            :func:`vis_d2.tracking.track_nms.track_nms` (after scoring), 0 keeps them all.

    Returns:
        list of ``{"video_id", "category_id" (contiguous), "score",
        "segmentations": [RLE dict or None] * length}``, sorted by score descending (stable:
        equal scores keep the tracks' order). The RLEs are the cached ones; one whose "counts"
        is bytes or an uncompressed list is replaced by a compressed copy with str counts.
    """
    length = int(length)
    if not score_coverage_exp >= 0:
        raise TrackingInputError(
            f"tracklets_to_predictions: score_coverage_exp (MODEL.VIS.TRACKER.SCORE_COVERAGE_EXP) "
            f"must be >= 0, got {score_coverage_exp}")
    if len(frames) != length:
        raise TrackingInputError(
            f"tracklets_to_predictions: video {video_id} has length {length} but "
            f"{len(frames)} cached frames")
    preds = []
    for trk in tracklets:
        if len(trk) == 0:
            continue
        segs: List[Optional[Dict]] = [None] * length
        for t, d in trk.items():
            if not 0 <= t < length:
                raise TrackingInputError(
                    f"tracklets_to_predictions: video {video_id}: track {trk.track_id} has "
                    f"frame {t} outside 0..{length - 1}")
            masks = frames[t].masks
            if not 0 <= d.det < len(masks):
                raise TrackingInputError(
                    f"tracklets_to_predictions: video {video_id}: track {trk.track_id} refers "
                    f"to detection {d.det} of frame {t}, which has {len(masks)} detections")
            segs[t] = _json_rle(masks[d.det])
        category, score = trk.category_and_score(label_voting, score_weighted)
        if score_coverage_exp:
            score *= (len(trk) / length) ** score_coverage_exp
        preds.append({"video_id": int(video_id), "category_id": int(category),
                      "score": float(score), "segmentations": segs})
    preds.sort(key=lambda p: -p["score"])
    if track_nms_thresh:
        preds = track_nms(preds, track_nms_thresh)
    return preds


def predict_video(frames: Sequence[FrameDetections],
                  cfg_or_args: Union[object, dict, OnlineTracker], video_id: int, bitrack: Optional[bool] = None) -> List[Dict]:
    """Track one cached video and return its predictions (contract 3).

    Args:
        frames: the video's T cached FrameDetections.
        cfg_or_args: as for :func:`vis_d2.tracking.track_video`; the label-voting settings
            are the tracker's (MODEL.VIS.TRACKER.LABEL_VOTING / LABEL_VOTE_SCORE_WEIGHTED).
        video_id: the video's id.
        bitrack: override MODEL.VIS.TRACKER.BITRACK.
    """
    # A config is read once, here: the tracker, BiTrack and the output settings.
    tracker, s = resolve_tracker(cfg_or_args, "predict_video")
    coverage_exp, nms_thresh, iou_thresh = 0.0, 0.0, None  # None: track_video's defaults
    if s is not None:
        bitrack = s.bitrack if bitrack is None else bitrack
        iou_thresh = s.bitrack_iou_thresh
        coverage_exp, nms_thresh = s.score_coverage_exp, s.track_nms_thresh
    tracklets = track_video(frames, tracker, bitrack, iou_thresh)
    return tracklets_to_predictions(tracklets, frames, video_id, len(frames),
                                    tracker.label_voting, tracker.label_vote_score_weighted,
                                    coverage_exp, nms_thresh)
