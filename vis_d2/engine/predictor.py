"""``VISPredictor``: DefaultPredictor-style video inference for notebooks and scripts.

    cfg = get_vis_cfg("configs/synthvis/R18_demo.yaml", ["MODEL.WEIGHTS", "output/demo/model_final.pth"])
    predictor = VISPredictor(cfg)
    predictions = predictor(frames)            # list of BGR (H, W, 3) uint8 arrays
    predictions = predictor("clip.mp4")        # or a video file, or a folder of frames

Each prediction is one track: ``{"video_id", "category_id" (contiguous), "score",
"segmentations": [RLE or None per frame]}``; ``predictor.class_names`` names the categories and
``predictor.tracker`` (a :class:`~vis_d2.tracking.VideoTracker` from ``MODEL.VIS.TRACKER``)
holds the tracking settings.
For streaming use, ``predictor.track_stream(frames)`` yields, per frame, the frame's
``Instances`` with a ``track_ids`` field (online tracking, forward only).
"""
import os
from typing import Iterable, Iterator, List, Sequence, Union

import numpy as np
import torch

from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T
from detectron2.modeling import build_model

from ..data.frames import read_video_frames
from ..tracking import VideoTracker
from .checkpoint import AtomicCheckpointer, check_weights_path
from .video_inference import instances_to_frame_detections

__all__ = ["VISPredictor", "read_video_frames"]


def check_frame(frame, where: str = "") -> None:
    """Raise naming ``where`` (e.g. "frame 3") unless ``frame`` is a (H, W, 3) uint8 array."""
    prefix = f"{where}: " if where else ""
    if not isinstance(frame, np.ndarray):
        raise TypeError(f"{prefix}expected a frame as a numpy array, got {type(frame).__name__}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"{prefix}expected an (H, W, 3) BGR frame, got shape {frame.shape}")
    if frame.dtype != np.uint8:
        # A float frame in [0, 1] would be read as a nearly black 0-255 image.
        raise ValueError(f"{prefix}expected a uint8 frame (0-255), got dtype {frame.dtype}; "
                         "convert with (frame * 255).round().astype(np.uint8) if it is in [0, 1]")


class VISPredictor:
    """Builds the model from ``cfg``, loads ``cfg.MODEL.WEIGHTS`` and tracks whole videos.

    The weights must hold every weight of the model in its shape
    (:class:`~vis_d2.engine.checkpoint.IncompatibleCheckpointError` otherwise) unless
    ``MODEL.VIS.CHECKPOINT.ALLOW_PARTIAL``; a ``.pkl`` needs ``MODEL.VIS.CHECKPOINT.TRUST_PKL``.
    """

    def __init__(self, cfg):
        self.cfg = cfg.clone()
        self.model = build_model(self.cfg)
        self.model.eval()
        check_weights_path(cfg.MODEL.WEIGHTS)
        if cfg.MODEL.WEIGHTS:
            # strict: weights that do not fit the model would predict from a partly random one
            AtomicCheckpointer(self.model, trust_pkl=cfg.MODEL.VIS.CHECKPOINT.TRUST_PKL,
                               strict=not cfg.MODEL.VIS.CHECKPOINT.ALLOW_PARTIAL,
                               ).load(cfg.MODEL.WEIGHTS)
        self.aug = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
        self.input_format = cfg.INPUT.FORMAT
        if self.input_format not in ("RGB", "BGR"):
            raise ValueError(f"INPUT.FORMAT must be RGB or BGR, got {self.input_format}")
        names = cfg.DATASETS.TEST or cfg.DATASETS.TRAIN
        # Only read: MetadataCatalog.get would create an empty entry for an unregistered name.
        meta = MetadataCatalog.get(names[0]) if names and names[0] in MetadataCatalog else None
        self.class_names = meta.get("thing_classes", None) if meta is not None else None
        self.tracker = VideoTracker.from_config(self.cfg)

    @torch.no_grad()
    def predict_frame(self, image_bgr: np.ndarray):
        """One BGR (H, W, 3) uint8 frame -> Instances at the frame's size, with pred_embeds."""
        check_frame(image_bgr)
        img = image_bgr[:, :, ::-1] if self.input_format == "RGB" else image_bgr
        h, w = img.shape[:2]
        resized = self.aug.get_transform(img).apply_image(img)
        tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))
        return self.model([{"image": tensor, "height": h, "width": w}])[0]["instances"]

    def __call__(self, video: Union[str, os.PathLike, Sequence[np.ndarray]],
                 video_id: int = 0) -> List[dict]:
        """Track one video: a video file or folder of frames (str or path), or a sequence of
        BGR (H, W, 3) uint8 frames of one size."""
        if isinstance(video, (str, os.PathLike)):
            frames = read_video_frames(os.fspath(video))
        else:
            frames = list(video)
        if not frames:
            raise ValueError("the video has no frames")
        dets = []
        for i, f in enumerate(frames):
            check_frame(f, f"frame {i}")
            if f.shape[:2] != frames[0].shape[:2]:
                raise ValueError(f"frame {i} is {f.shape[:2]}, frame 0 is {frames[0].shape[:2]}: "
                                 "frames of one video must share a size")
            dets.append(instances_to_frame_detections(
                self.predict_frame(f), self.tracker, source=f"frame {i}")[1])
        return self.tracker.predict(dets, video_id)

    def track_stream(self, frames: Iterable[np.ndarray]) -> Iterator:
        """Online tracking over a stream: yields each frame's Instances with ``track_ids``
        (-1 for detections the tracker dropped)."""
        online = self.tracker.online()
        for i, f in enumerate(frames):
            inst, dets = instances_to_frame_detections(
                self.predict_frame(f), self.tracker, source=f"frame {i}")
            inst.track_ids = torch.as_tensor(online.step(i, dets), dtype=torch.long)
            yield inst
