"""Test-time mapping of a video record: the video's frames as lazily-read model inputs.

Inference runs frame by frame (forward, and backward for BiTrack), so a video is never decoded
as a whole: each frame is read from disk when the model asks for it.
"""
import logging
from collections.abc import Sequence

import numpy as np
import torch

from detectron2.config import configurable
from detectron2.data import transforms as T

from .frames import read_frame
from .video_record import check_video_record, video_name

__all__ = ["LazyVideoFrames", "VideoTestDatasetMapper"]

logger = logging.getLogger(__name__)


class LazyVideoFrames(Sequence):
    """
    The frames of one video as detectron2 model inputs, read from disk on access.

    ``frames[i]`` (any order, negative indices allowed) reads frame i, resizes it with
    ``augmentation`` (the test-time ResizeShortestEdge) and returns
    ``{"image": uint8 tensor CxH'xW', "height": video height, "width": video width}``,
    the input of a detectron2 model for one image (outputs are rescaled to height x width).
    ``frames.read(i)`` gives frame i at the video's size instead, in ``frames.image_format``
    (what multi-scale testing and ensembles resize themselves, per model and scale).
    Nothing is cached: reading a frame twice reads the file twice. Slicing returns a list.
    """

    def __init__(self, record: dict, augmentation: T.Augmentation, image_format: str):
        """
        Args:
            record: a video record (from ``load_ytvis_json``); its "annotations" are not needed.
            augmentation: deterministic resize applied to every frame.
            image_format: see :func:`detectron2.data.detection_utils.read_image`.
        """
        self._record = {
            k: record[k] for k in ("video_id", "file_names", "height", "width") if k in record
        }
        if "json_file" in record:
            self._record["json_file"] = record["json_file"]
        self._augmentation = augmentation
        self._image_format = image_format

    def __len__(self) -> int:
        return len(self._record["file_names"])

    @property
    def image_format(self) -> str:
        return self._image_format

    def read(self, idx: int) -> np.ndarray:
        """Frame ``idx`` (negative allowed) as (height, width, 3) uint8 in ``image_format``,
        not resized."""
        idx = int(idx)
        if idx < 0:
            idx += len(self)
        if not 0 <= idx < len(self):
            raise IndexError(
                f"frame {idx} out of range for {video_name(self._record)} with {len(self)} frames"
            )
        return read_frame(self._record, idx, self._image_format)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return [self[i] for i in range(*idx.indices(len(self)))]
        image = self.read(idx)
        image = self._augmentation.get_transform(image).apply_image(image)
        return {
            "image": torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "height": int(self._record["height"]),
            "width": int(self._record["width"]),
        }

    def __repr__(self) -> str:
        return f"LazyVideoFrames({video_name(self._record)}, {len(self)} frames)"


class VideoTestDatasetMapper:
    """
    Map a video record to
    ``{"video_id", "height", "width", "length", "file_names", "frames": LazyVideoFrames}``.

    No image is read here (the frames are read when indexed), so the mapper is cheap and the
    data loader's workers only pass the record along.
    """

    @configurable
    def __init__(self, *, augmentation: T.Augmentation, image_format: str):
        """
        Args:
            augmentation: deterministic test-time resize (ResizeShortestEdge with one size).
            image_format: see :func:`detectron2.data.detection_utils.read_image`.
        """
        self.augmentation = augmentation
        self.image_format = image_format

    @classmethod
    def from_config(cls, cfg):
        return {
            "augmentation": T.ResizeShortestEdge(
                cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, sample_style="choice"
            ),
            "image_format": cfg.INPUT.FORMAT,
        }

    def __call__(self, record: dict) -> dict:
        length = check_video_record(record, need_annotations=False)
        if length == 0:
            raise ValueError(f"{video_name(record)} has no frames")
        return {
            "video_id": record["video_id"],
            "height": int(record["height"]),
            "width": int(record["width"]),
            "length": length,
            "file_names": list(record["file_names"]),
            "frames": LazyVideoFrames(record, self.augmentation, self.image_format),
        }
