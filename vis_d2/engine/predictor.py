"""``VISPredictor``: DefaultPredictor-style video inference for notebooks and scripts.

    cfg = get_vis_cfg("configs/synthvis/R18_demo.yaml", ["MODEL.WEIGHTS", "output/demo/model_final.pth"])
    predictor = VISPredictor(cfg)
    predictions = predictor("clip.mp4")        # a video file or a folder of frames, read lazily
    predictions = predictor(frames)            # or an iterable of BGR (H, W, 3) uint8 arrays

Each prediction is one track: ``{"video_id", "category_id", "category_name", "score",
"segmentations": [RLE or None per frame]}``, sorted by score, only the tracks scoring at least
``TEST.VIS.PREDICT_SCORE_THRESH``.

Category ids are the dataset's (those of its json, as in a YouTube-VIS results file), read
from the metadata of ``DATASETS.TEST[0]`` (else ``DATASETS.TRAIN[0]``):
``thing_dataset_id_to_contiguous_id`` maps them to the model's contiguous class indices
0..C-1 and ``thing_classes`` names them. Where that dataset is not registered or its metadata
has no id map, the ids are the contiguous indices themselves (with a warning at construction),
and a category without a name in the metadata is named ``"category <id>"``.

Each frame runs at every scale of ``TEST.VIS.SCALES`` (multi-scale testing, fused by
:class:`~vis_d2.engine.frame_fusion.FusedFrameModel`; a model ensemble is given as
``VISPredictor(cfg, frame_model=...)``, see :mod:`vis_d2.ensemble`).

Memory stays flat in the video's length: frames are decoded and run through the model one at
a time, and each frame's tracking record (:class:`~vis_d2.tracking.FrameDetections`: boxes,
scores, labels, embeddings, one RLE per detection) goes to a temporary file, from which
tracking, BiTrack and track NMS read it back frame by frame. Only the tracks scoring at least
the threshold get their per-frame masks gathered and go through track NMS.

``predictor.tracker`` (a :class:`~vis_d2.tracking.VideoTracker` from ``MODEL.VIS.TRACKER``)
holds the tracking settings. For streaming use, ``predictor.track_stream(frames)`` yields, per
frame, the frame's ``Instances`` with ``track_ids`` and ``category_ids`` fields (online
tracking, forward only).
"""
import collections
import dataclasses
import logging
import math
import operator
import os
import pickle
import tempfile
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Union

import numpy as np
import torch

from detectron2.modeling import build_model

from ..data.frames import VideoFrames
from ..tracking import FrameDetections, VideoTracker
from .checkpoint import AtomicCheckpointer, check_weights_path
from .frame_fusion import FusedFrameModel
from .model_categories import model_categories
from .video_inference import instances_to_frame_detections

__all__ = ["VISPredictor", "FrameCache", "check_frame", "load_model"]

logger = logging.getLogger(__name__)

Video = Union[str, os.PathLike, VideoFrames, Iterable[np.ndarray]]


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


def _checked_frames(frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """``frames`` one by one, each checked (:func:`check_frame`) and of frame 0's size."""
    size = None
    for i, f in enumerate(frames):
        check_frame(f, f"frame {i}")
        if size is None:
            size = f.shape[:2]
        elif f.shape[:2] != size:
            raise ValueError(f"frame {i} is {f.shape[:2]}, frame 0 is {size}: "
                             "frames of one video must share a size")
        yield f


class FrameCache(Sequence):
    """A video's :class:`~vis_d2.tracking.FrameDetections`, frame ``t`` at index ``t``, kept in
    an anonymous temporary file (deleted when the cache is closed or collected) and read back
    on access, with the last ``recent`` frames read kept in memory; what the tracker reads
    while it walks the video (forward, backward, track by track).
    """

    def __init__(self, recent: int = 64):
        self._file = tempfile.TemporaryFile()
        self._spans: List[tuple] = []  # (offset, size) of each frame's record in the file
        self._recent: "collections.OrderedDict[int, FrameDetections]" = collections.OrderedDict()
        self._keep = recent

    def append(self, frame: FrameDetections) -> None:
        # The file is this process's own, so reading it back with pickle runs nothing foreign.
        data = pickle.dumps((frame.boxes, frame.scores, frame.labels, frame.embeddings,
                             frame.masks, frame.source), protocol=pickle.HIGHEST_PROTOCOL)
        offset = self._file.seek(0, os.SEEK_END)
        self._file.write(data)
        self._spans.append((offset, len(data)))

    def __len__(self) -> int:
        return len(self._spans)

    def __getitem__(self, t: int) -> FrameDetections:
        t = operator.index(t)  # a frame number; no slices
        offset, size = self._spans[t]  # IndexError past the end, as iteration needs
        t %= len(self._spans)
        frame = self._recent.get(t)
        if frame is None:
            self._file.seek(offset)
            boxes, scores, labels, embeddings, masks, source = pickle.loads(self._file.read(size))
            frame = FrameDetections(boxes, scores, labels, embeddings, masks, source)
            self._recent[t] = frame
            if len(self._recent) > self._keep:
                self._recent.popitem(last=False)
        else:
            self._recent.move_to_end(t)
        return frame

    def close(self) -> None:
        self._recent.clear()
        self._file.close()


def load_model(cfg) -> torch.nn.Module:
    """The model of ``cfg`` in eval mode with ``MODEL.WEIGHTS`` loaded (random weights when
    empty): every weight in its shape unless ``MODEL.VIS.CHECKPOINT.ALLOW_PARTIAL``."""
    model = build_model(cfg)
    model.eval()
    check_weights_path(cfg.MODEL.WEIGHTS)
    if cfg.MODEL.WEIGHTS:
        # strict: weights that do not fit the model would predict from a partly random one
        AtomicCheckpointer(model, trust_pkl=cfg.MODEL.VIS.CHECKPOINT.TRUST_PKL,
                           strict=not cfg.MODEL.VIS.CHECKPOINT.ALLOW_PARTIAL,
                           ).load(cfg.MODEL.WEIGHTS)
    return model


class VISPredictor:
    """Builds the model from ``cfg``, loads ``cfg.MODEL.WEIGHTS`` and tracks whole videos.

    The weights must hold every weight of the model in its shape
    (:class:`~vis_d2.engine.checkpoint.IncompatibleCheckpointError` otherwise) unless
    ``MODEL.VIS.CHECKPOINT.ALLOW_PARTIAL``; a ``.pkl`` needs ``MODEL.VIS.CHECKPOINT.TRUST_PKL``.

    Attributes:
        frame_model: the per-frame step (:class:`~vis_d2.engine.frame_fusion.FusedFrameModel`):
            the model at each scale of ``TEST.VIS.SCALES``, or the ensemble given.
        model: its first model.
        class_names: the model's C class names by contiguous index (None without metadata).
        category_ids: (C,) the dataset category id of each contiguous index.
        category_names: ``{dataset category id: name}``.
        score_thresh: ``TEST.VIS.PREDICT_SCORE_THRESH``; :meth:`__call__` drops tracks below it.
        tracker: the :class:`~vis_d2.tracking.VideoTracker` of ``MODEL.VIS.TRACKER``.
    """

    def __init__(self, cfg, frame_model: Optional[FusedFrameModel] = None):
        """
        Args:
            cfg: the model's config; also the tracker's, the categories' and the threshold's.
            frame_model: the per-frame step, e.g. a model ensemble
                (:func:`vis_d2.ensemble.build_ensemble`); None builds ``cfg``'s model, loads
                ``MODEL.WEIGHTS`` and runs it at ``TEST.VIS.SCALES``.
        """
        self.cfg = cfg.clone()
        if cfg.INPUT.FORMAT not in ("RGB", "BGR"):
            raise ValueError(f"INPUT.FORMAT must be RGB or BGR, got {cfg.INPUT.FORMAT}")
        if frame_model is None:
            frame_model = FusedFrameModel.from_config(self.cfg, load_model(self.cfg),
                                                      name=cfg.MODEL.WEIGHTS or "model")
        self.frame_model = frame_model
        self.model = frame_model.models[0]
        thresh = cfg.TEST.VIS.PREDICT_SCORE_THRESH
        if isinstance(thresh, bool) or not isinstance(thresh, (int, float)) \
                or not math.isfinite(thresh) or thresh < 0:
            raise ValueError(f"TEST.VIS.PREDICT_SCORE_THRESH must be a number >= 0, got {thresh!r}")
        self.score_thresh = float(thresh)
        self.class_names, self.category_ids = model_categories(cfg)
        self.category_names: Dict[int, str] = {
            cid: (self.class_names[k] if self.class_names else f"category {cid}")
            for k, cid in enumerate(self.category_ids)}
        self.tracker = VideoTracker.from_config(self.cfg)

    @torch.no_grad()
    def predict_frame(self, image_bgr: np.ndarray):
        """One BGR (H, W, 3) uint8 frame -> Instances at the frame's size, with pred_embeds
        (``pred_classes`` are contiguous indices), from :attr:`frame_model`."""
        check_frame(image_bgr)
        return self.frame_model(image_bgr, "BGR")

    def detect(self, video: Video) -> FrameCache:
        """Run the model on every frame of ``video`` once, in order, keeping only each frame's
        tracking record: one :class:`~vis_d2.tracking.FrameDetections` per frame, of the
        detections the tracker reads (the ``tracker.top_k`` best, scoring at least
        ``MODEL.VIS.TRACKER.SCORE_THRESH``), in a :class:`FrameCache` on disk.

        Args:
            video: a video file or folder of frames (str or path, read by
                :class:`~vis_d2.data.frames.VideoFrames`), or any iterable (a list, a
                generator) of BGR (H, W, 3) uint8 frames of one size. Frames are taken one at
                a time; none is kept.
        """
        if isinstance(video, (str, os.PathLike)):
            video = VideoFrames(video)
        # The tracker never reads detections below its score threshold: not caching them keeps
        # the same tracks and saves their embeddings and masks.
        online = self.tracker.online()
        dets = FrameCache()
        for i, f in enumerate(_checked_frames(video)):
            frame = instances_to_frame_detections(self.predict_frame(f), self.tracker,
                                                  source=f"frame {i}")[1]
            keep = online.kept_detections(frame)
            if len(keep) < len(frame):
                frame = FrameDetections(
                    boxes=frame.boxes[keep], scores=frame.scores[keep],
                    labels=frame.labels[keep], embeddings=frame.embeddings[keep],
                    masks=[frame.masks[k] for k in keep], source=frame.source)
            dets.append(frame)
        if not dets:
            raise ValueError("the video has no frames")
        return dets

    def __call__(self, video: Video, video_id: int = 0) -> List[dict]:
        """Track one video (see :meth:`detect` for ``video``): BiTrack and track NMS as
        ``MODEL.VIS.TRACKER`` says.

        Returns:
            ``[{"video_id", "category_id" (the dataset's id), "category_name", "score",
            "segmentations": [compressed RLE with str counts, or None] * T}]``, sorted by score
            descending, scores >= ``TEST.VIS.PREDICT_SCORE_THRESH``. Predictions of one object
            in several categories (track NMS) share one ``segmentations`` list.
        """
        frames = self.detect(video)
        try:
            tracks = self.tracker.track(frames)
            if self.score_thresh > 0:
                tracks = self._tracks_scoring_above(tracks, frames, video_id)
            return self.dataset_predictions(self.tracker.predictions(tracks, frames, video_id))
        finally:
            frames.close()

    def _tracks_scoring_above(self, tracks, frames, video_id):
        """The tracks whose own prediction scores at least ``score_thresh``.

        Track NMS gives each prediction the score of a track of its group, and a track never
        changes the groups of the tracks scoring above it; so these tracks alone predict what
        all tracks predict at or above the threshold, without T masks per low-scoring track or
        a (tracks x tracks) IoU matrix of them in memory."""
        scorer = dataclasses.replace(self.tracker, track_nms_thresh=0.0)
        return [trk for trk in tracks if len(trk) and
                scorer.predictions([trk], frames, video_id)[0]["score"] >= self.score_thresh]

    def dataset_predictions(self, predictions: List[dict]) -> List[dict]:
        """The tracker's predictions (contiguous ``category_id``) with the dataset's category
        ids and names, those scoring below ``score_thresh`` left out."""
        out = []
        for p in predictions:
            if p["score"] >= self.score_thresh:
                cid = self.category_ids[p["category_id"]]
                out.append({"video_id": p["video_id"], "category_id": cid,
                            "category_name": self.category_names[cid], "score": p["score"],
                            "segmentations": p["segmentations"]})
        return out

    def track_stream(self, frames: Video) -> Iterator:
        """Online tracking over a stream (a path or an iterable, as :meth:`detect`): yields
        each frame's Instances with ``track_ids`` (-1 for detections the tracker dropped) and
        ``category_ids`` (the dataset's ids of ``pred_classes``). Per-frame detection scores
        are not filtered by ``score_thresh``, which applies to whole tracks."""
        if isinstance(frames, (str, os.PathLike)):
            frames = VideoFrames(frames)
        online = self.tracker.online()
        to_dataset = torch.as_tensor(self.category_ids, dtype=torch.long)
        for i, f in enumerate(_checked_frames(frames)):
            inst, dets = instances_to_frame_detections(
                self.predict_frame(f), self.tracker, source=f"frame {i}")
            inst.track_ids = torch.as_tensor(online.step(i, dets), dtype=torch.long)
            inst.category_ids = to_dataset[inst.pred_classes]
            yield inst
