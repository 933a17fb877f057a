"""Video-level inference: run the per-frame model once over a video, cache its detections, then
track them with a :class:`~vis_d2.tracking.VideoTracker` (forward, or BiTrack's forward and
backward passes over the same cache).

The cache keeps, per frame, only boxes/scores/labels/embeddings and one RLE per detection, so
memory grows with the number of detections, not with the frames' pixels.

The per-frame step is a bare model on the test mapper's resized input, or a
:class:`~vis_d2.engine.frame_fusion.FusedFrameModel` (multi-scale testing, ensembles) on the
frame at its own size; either way the tracker gets one ``FrameDetections`` per frame.
"""
import contextlib
import datetime
import logging
import time
from typing import Dict, List, Tuple, Union

import numpy as np
import pycocotools.mask as mask_util
import torch
from torch import nn

from detectron2.evaluation import DatasetEvaluators
from detectron2.evaluation.evaluator import inference_context
from detectron2.structures import Instances
from detectron2.utils import comm
from detectron2.utils.logger import log_every_n_seconds

from ..tracking import FrameDetections, VideoTracker
from .frame_fusion import FusedFrameModel

__all__ = [
    "instances_to_frame_detections",
    "frame_instances",
    "cache_video_detections",
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


def instances_to_frame_detections(instances: Instances, tracker: VideoTracker,
                                  source: str = "") -> Tuple[Instances, FrameDetections]:
    """One frame's postprocessed ``Instances`` (at the video's size) -> the detections cached
    for tracking, capped by ``tracker.top_k``.

    Args:
        instances: N detections with ``pred_boxes``, ``scores``, ``pred_classes``,
            ``pred_masks`` (N, H, W) and ``pred_embeds`` (N, D).
        tracker: whose ``top_k`` picks the K <= N detections kept.
        source: names the video and frame in error messages.

    Returns:
        the K kept ``Instances`` on the CPU, and their FrameDetections (same order).
    """
    instances = instances.to("cpu")
    keep = tracker.top_k(instances.scores.numpy())
    if len(keep) < len(instances):
        instances = instances[torch.as_tensor(keep)]
    return instances, FrameDetections(
        boxes=instances.pred_boxes.tensor.numpy().astype(np.float32),
        scores=instances.scores.numpy().astype(np.float32),
        labels=instances.pred_classes.numpy().astype(np.int64),
        embeddings=instances.pred_embeds.float().numpy(),
        masks=encode_masks(instances.pred_masks.bool()),
        source=source,
    )


def frame_instances(model: Union[nn.Module, FusedFrameModel], frames, i: int) -> Instances:
    """Frame ``i`` of the test mapper's ``frames`` through ``model`` -> Instances at the video's
    size: a bare model reads ``frames[i]`` (resized by the mapper), a FusedFrameModel reads
    ``frames.read(i)`` (the frame at its own size) and resizes it per model and scale."""
    if isinstance(model, FusedFrameModel):
        if not hasattr(frames, "read"):
            raise TypeError(f"a FusedFrameModel reads frames at their own size: video['frames'] "
                            f"must be the test mapper's LazyVideoFrames, got "
                            f"{type(frames).__name__}")
        return model(frames.read(i), frames.image_format)
    return model([frames[i]])[0]["instances"]


@torch.no_grad()
def cache_video_detections(model: Union[nn.Module, FusedFrameModel], video: Dict,
                           tracker: VideoTracker) -> List[FrameDetections]:
    """Run ``model`` (eval mode) on every frame of ``video`` once, in order.

    Args:
        model: a detectron2 model, or a FusedFrameModel (several scales or models).
        video: the test mapper's video dict: ``frames`` (a lazy sequence of model inputs
            ``{"image": (C,H,W), "height", "width"}``, :class:`~vis_d2.data.LazyVideoFrames`)
            and ``video_id``.
        tracker: caps each frame's detections (``tracker.top_k``).

    Returns:
        one ``FrameDetections`` per frame.
    """
    frames = video["frames"]
    out = []
    for i in range(len(frames)):
        inst = frame_instances(model, frames, i)
        out.append(instances_to_frame_detections(
            inst, tracker, source=f"video {video.get('video_id')} frame {i}")[1])
    return out


def inference_on_videos(model: Union[nn.Module, FusedFrameModel], data_loader, evaluator,
                        tracker: VideoTracker):
    """detectron2's ``inference_on_dataset`` for videos: each loader item is one video dict of
    the test mapper, tracked by ``tracker``; the evaluator gets ``process([video], [preds])``.
    ``model`` is a detectron2 model or a FusedFrameModel (its models all run in eval mode).

    Logs progress (videos done, frames per second, ETA) and returns ``evaluator.evaluate()``.
    """
    if not isinstance(tracker, VideoTracker):
        raise TypeError(f"inference_on_videos: tracker must be a VideoTracker (e.g. "
                        f"VideoTracker.from_config(cfg)), got {type(tracker).__name__}")
    num_videos = len(data_loader)
    if evaluator is None:
        evaluator = DatasetEvaluators([])
    if isinstance(evaluator, (list, tuple)):
        evaluator = DatasetEvaluators(evaluator)
    evaluator.reset()
    logger.info(f"Start video inference on {num_videos} videos")
    frames_done, model_time, start = 0, 0.0, time.perf_counter()
    modules = model.models if isinstance(model, FusedFrameModel) else [model]
    with contextlib.ExitStack() as stack, torch.no_grad():
        for m in modules:
            stack.enter_context(inference_context(m))
        for idx, video in enumerate(data_loader):
            t0 = time.perf_counter()
            dets = cache_video_detections(model, video, tracker)
            preds = tracker.predict(dets, video["video_id"])
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
