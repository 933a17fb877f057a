"""Video-level inference: run the per-frame model once over a video, cache its detections, then
track them (forward, or BiTrack's forward + backward over the same cache).

The cache keeps, per frame, only boxes/scores/labels/embeddings and one RLE per detection, so
memory grows with the number of detections, not with the frames' pixels.

The tracker's settings come from a yacs config (``MODEL.VIS.TRACKER``) or, for LazyConfig files
and scripts, from a :class:`TrackerSettings` (or a dict of its fields): every function here that
takes ``cfg`` takes either.
"""
import datetime
import logging
import time
from typing import Dict, List, Sequence

import numpy as np
import pycocotools.mask as mask_util
import torch

from detectron2.evaluation import DatasetEvaluators
from detectron2.evaluation.evaluator import inference_context
from detectron2.structures import Instances
from detectron2.utils import comm
from detectron2.utils.logger import log_every_n_seconds

from ..tracking import FrameDetections, track_video
from ..tracking.settings import TrackerSettings, tracker_settings
from ..tracking.video_output import tracklets_to_predictions

__all__ = [
    "TrackerSettings",
    "tracker_settings",
    "instances_to_frame_detections",
    "cache_video_detections",
    "predict_video",
    "inference_on_videos",
]

logger = logging.getLogger(__name__)


def encode_masks(masks: torch.Tensor) -> List[dict]:
    """(N, H, W) bool masks -> N compressed RLEs with str counts (JSON-serialisable)."""
    if masks.shape[0] == 0:
        return []
    arr = np.asfortranarray(masks.permute(1, 2, 0).numpy().astype(np.uint8))
    rles = mask_util.encode(arr)
    for r in rles:
        r["counts"] = r["counts"].decode("ascii")
    return rles


def instances_to_frame_detections(instances: Instances, max_dets: int, source: str = "") -> FrameDetections:
    """One frame's postprocessed ``Instances`` (at the video's size) -> ``FrameDetections``.

    Keeps the ``max_dets`` highest-scoring detections. Needs ``pred_boxes``, ``scores``,
    ``pred_classes``, ``pred_masks`` (N, H, W) and ``pred_embeds`` (N, D).
    """
    instances = instances.to("cpu")
    if len(instances) > max_dets:
        instances = instances[instances.scores.argsort(descending=True)[:max_dets]]
    return FrameDetections(
        boxes=instances.pred_boxes.tensor.numpy().astype(np.float32),
        scores=instances.scores.numpy().astype(np.float32),
        labels=instances.pred_classes.numpy().astype(np.int64),
        embeddings=instances.pred_embeds.float().numpy(),
        masks=encode_masks(instances.pred_masks.bool()),
    )


@torch.no_grad()
def cache_video_detections(model, video: Dict, max_dets: int) -> List[FrameDetections]:
    """Run ``model`` (eval mode) on every frame of ``video`` once, in order.

    Args:
        video: the test mapper's output: ``frames`` (a lazy sequence of model inputs
            ``{"image": (C,H,W), "height", "width"}``) and ``video_id``.
    Returns:
        one ``FrameDetections`` per frame.
    """
    frames = video["frames"]
    out = []
    for i in range(len(frames)):
        inst = model([frames[i]])[0]["instances"]
        out.append(instances_to_frame_detections(
            inst, max_dets, source=f"video {video.get('video_id')} frame {i}"))
    return out


def predict_video(model, video: Dict, cfg) -> List[Dict]:
    """Detections of every frame, tracked into per-track predictions
    (``{video_id, category_id (contiguous), score, segmentations}``), best first.

    ``cfg``: a config with ``MODEL.VIS.TRACKER``, a :class:`TrackerSettings` or a dict of its
    fields.
    """
    settings = tracker_settings(cfg)
    dets = cache_video_detections(model, video, settings.max_dets_per_frame)
    return track_cached_video(dets, video, settings)


def track_cached_video(dets: Sequence[FrameDetections], video: Dict, cfg) -> List[Dict]:
    """Tracking only (forward, or BiTrack when the settings say so) over cached detections.

    ``cfg``: a config with ``MODEL.VIS.TRACKER``, a :class:`TrackerSettings` or a dict of its
    fields.
    """
    settings = tracker_settings(cfg)
    tracklets = track_video(dets, settings.build_tracker(), bitrack=settings.bitrack,
                            iou_thresh=settings.bitrack_iou_thresh)
    return tracklets_to_predictions(
        tracklets, dets, video_id=video["video_id"], length=len(dets),
        label_voting=settings.label_voting, score_weighted=settings.label_vote_score_weighted,
        score_coverage_exp=settings.score_coverage_exp,
        track_nms_thresh=settings.track_nms_thresh,
    )


def inference_on_videos(model, data_loader, evaluator, cfg):
    """detectron2's ``inference_on_dataset`` for videos: each loader item is one video.

    ``cfg``: a config with ``MODEL.VIS.TRACKER``, a :class:`TrackerSettings` or a dict of its
    fields (resolved once, before the first video).
    Logs progress (videos done, frames per second, ETA) and returns ``evaluator.evaluate()``.
    """
    settings = tracker_settings(cfg)
    num_videos = len(data_loader)
    if evaluator is None:
        evaluator = DatasetEvaluators([])
    if isinstance(evaluator, (list, tuple)):
        evaluator = DatasetEvaluators(evaluator)
    evaluator.reset()
    logger.info(f"Start video inference on {num_videos} videos")
    frames_done, model_time, start = 0, 0.0, time.perf_counter()
    with inference_context(model), torch.no_grad():
        for idx, video in enumerate(data_loader):
            t0 = time.perf_counter()
            preds = predict_video(model, video, settings)
            model_time += time.perf_counter() - t0
            frames_done += video["length"]
            evaluator.process([video], [preds])
            elapsed = time.perf_counter() - start
            eta = elapsed / (idx + 1) * (num_videos - idx - 1)
            log_every_n_seconds(
                logging.INFO,
                f"Inference: video {idx + 1}/{num_videos}, {frames_done / max(elapsed, 1e-9):.1f} "
                f"frames/s, ETA {datetime.timedelta(seconds=int(eta))}",
                n=5,
            )
    total = time.perf_counter() - start
    logger.info(
        f"Video inference done: {num_videos} videos, {frames_done} frames in {total:.1f}s "
        f"({frames_done / max(total, 1e-9):.2f} frames/s on {comm.get_world_size()} process(es))"
    )
    results = evaluator.evaluate()
    return {} if results is None else results
