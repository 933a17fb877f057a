"""Tracking: link per-frame detections into video instances.

* :class:`FrameDetections` -- one frame's cached model outputs (data contract 4).
* :class:`OnlineTracker` -- MaskTrack R-CNN association as a one-to-one assignment, run
  forward or backward over the cache (or frame by frame with ``step``).
* :func:`bitrack` -- BiTrack (paper 3.4): merge forward and backward tracklets.
* :class:`TrackerSettings` -- the tracker's settings (``MODEL.VIS.TRACKER``) as a dataclass.
* :func:`vote_label` -- label voting (paper 3.5.4).
* :func:`track_nms` -- group a video's duplicate tracks (one prediction per group and category).
* :func:`tracklets_to_predictions` / :func:`predict_video` -- tracks -> video predictions
  (data contract 3).
"""
from .frame_detections import FrameDetections, TrackingInputError, pairwise_box_iou
from .label_voting import track_category_and_score, vote_label
from .online_tracker import OnlineTracker, TrackedDetection, Tracklet
from .bitrack import bitrack, merge_bidirectional, track_video
from .settings import TrackerSettings, tracker_settings
from .track_nms import spatio_temporal_iou, track_nms
from .video_output import predict_video, tracklets_to_predictions

__all__ = [
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
    "track_video",
    "predict_video",
    "tracklets_to_predictions",
    "TrackerSettings",
    "tracker_settings",
    "spatio_temporal_iou",
    "track_nms",
]
