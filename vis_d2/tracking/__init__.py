"""Tracking: link per-frame detections into video instances (numpy only, no torch).

* :class:`VideoTracker` -- every tracking setting (``MODEL.VIS.TRACKER``) and the one object
  that turns a video's cached detections into video predictions: per-frame cap, association,
  BiTrack, label voting, track scoring and track NMS.
* :class:`FrameDetections` -- one frame's cached model outputs (boxes, scores, labels,
  embeddings, RLE masks).
* :class:`OnlineTracker` -- MaskTrack R-CNN association as a one-to-one assignment, run
  forward or backward over the cache (or frame by frame with ``step``); ``VideoTracker.online()``.
* :func:`bitrack` -- BiTrack (paper 3.4): merge forward and backward tracklets.
* :func:`vote_label` -- label voting (paper 3.5.4).
* :func:`track_nms` -- group a video's duplicate tracks (one prediction per group and category).
"""
from .frame_detections import FrameDetections, TrackingInputError, pairwise_box_iou
from .label_voting import track_category_and_score, vote_label
from .online_tracker import OnlineTracker, TrackedDetection, Tracklet
from .bitrack import bitrack, merge_bidirectional
from .track_nms import spatio_temporal_iou, track_nms
from .video_tracker import VideoTracker

__all__ = [
    "VideoTracker",
    "FrameDetections",
    "TrackingInputError",
    "pairwise_box_iou",
    "vote_label",
    "track_category_and_score",
    "OnlineTracker",
    "TrackedDetection",
    "Tracklet",
    "bitrack",
    "merge_bidirectional",
    "spatio_temporal_iou",
    "track_nms",
]
