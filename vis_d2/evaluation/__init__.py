"""YouTube-VIS evaluation: the video mask AP metric and its detectron2 ``DatasetEvaluator``.

``YTVISEvaluator`` (which needs detectron2, hence torch) is imported on first use, so the
metric and its command line (``python -m vis_d2.evaluation``) start without them.
"""
from .ytvis_eval import (
    AREA_RANGES,
    IOU_THRESHOLDS,
    MAX_DETS,
    METRIC_NAMES,
    RECALL_THRESHOLDS,
    YTVISEval,
    YTVISFormatError,
    YTVISGroundTruth,
    evaluate_ytvis,
    evaluate_ytvis_long_videos,
    format_metrics_table,
    load_predictions,
    read_video_ids,
)

__all__ = [
    "AREA_RANGES",
    "IOU_THRESHOLDS",
    "MAX_DETS",
    "METRIC_NAMES",
    "RECALL_THRESHOLDS",
    "YTVISEval",
    "YTVISEvaluator",
    "YTVISFormatError",
    "YTVISGroundTruth",
    "evaluate_ytvis",
    "evaluate_ytvis_long_videos",
    "format_metrics_table",
    "load_predictions",
    "read_video_ids",
]


def __getattr__(name):
    if name == "YTVISEvaluator":
        from .evaluator import YTVISEvaluator

        return YTVISEvaluator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
