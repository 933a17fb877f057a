"""Reading video frames from disk: every frame and image vis_d2 reads goes through this module.

* :func:`read_frame`: frame ``i`` of a video record (training pairs, test-time frames, renders).
* :func:`read_video_frames`: all frames of a video file or of a folder of images (the predictor),
  the folder's files in natural order (``2.jpg`` before ``10.jpg``).

Images are decoded by detectron2's :func:`~detectron2.data.detection_utils.read_image`.

Size policy: every frame of a video is returned at the video's size, which is the record's
"height" x "width" for a video record and the first frame's size for a folder of images. A frame
file of another size is resized to it (bilinear, detectron2's ``ResizeTransform``) with a warning
naming the file, because annotations and predictions are in the video's coordinates.
A missing file raises ``FileNotFoundError`` and a file that is not a readable image (unknown
format, truncated) ``ValueError``, both naming the file.
"""
import glob
import logging
import os
import re
import struct
from typing import List, Tuple

import cv2
import numpy as np
from PIL import Image

from detectron2.data import transforms as T
from detectron2.data import detection_utils as utils

from .video_record import video_name

__all__ = ["IMAGE_EXTENSIONS", "natural_key", "read_image_file", "read_frame", "read_video_frames"]

logger = logging.getLogger(__name__)

# What PIL raises on a corrupt or truncated file: OSError for most, SyntaxError for a broken PNG
# chunk, ValueError / struct.error / EOFError from some header parsers, and
# DecompressionBombError for a header claiming a huge size.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error,
                  Image.DecompressionBombError)

# The file extensions read_video_frames takes from a folder of frames.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def natural_key(path: str) -> Tuple:
    """Sort key of a file name that compares its runs of digits as numbers, so that frames
    ``1.jpg ... 11.jpg`` come in that order (zero-padded names sort as before)."""
    parts = re.split(r"(\d+)", os.path.basename(path))
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts), path


def read_image_file(file_name: str, format: str = "BGR", where: str = "") -> np.ndarray:
    """
    Args:
        file_name: an image file (any PathManager path).
        format: an image format of :func:`detectron2.data.detection_utils.read_image`.
        where: what the file is (e.g. "video 3 (train.json), frame 7"), put first in errors.

    Used for the frames of videos and for the images of image datasets (pseudo pairs).

    Returns:
        np.ndarray (H, W, 3) uint8 for "BGR"/"RGB", the file's own size.

    Raises:
        FileNotFoundError: the file does not exist; ValueError: it is not a readable image.
    """
    prefix = f"{where}: " if where else ""
    try:
        return utils.read_image(file_name, format=format)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{prefix}file '{file_name}' does not exist") from e
    except _DECODE_ERRORS as e:
        raise ValueError(f"{prefix}file '{file_name}' is not a readable image: {e}") from e


def _fit_to_size(image: np.ndarray, size: Tuple[int, int], file_name: str, where: str):
    """``image`` resized to ``size`` (H, W) with a warning when its size differs."""
    if tuple(image.shape[:2]) == tuple(size):
        return image
    logger.warning(
        f"{where}: frame file '{file_name}' is {image.shape[0]}x{image.shape[1]} (HxW) but the "
        f"video is {size[0]}x{size[1]}; resizing it to the video size."
    )
    return T.ResizeTransform(image.shape[0], image.shape[1], *size).apply_image(image)


def read_frame(record: dict, frame_idx: int, format: str = "BGR") -> np.ndarray:
    """
    Read one frame of a video record.

    Args:
        record: a video record (see :mod:`vis_d2.data.video_record`); reads its "file_names",
            "height", "width" and, for messages, "video_id" and "json_file".
        frame_idx: index into ``record["file_names"]``.
        format: an image format of :func:`detectron2.data.detection_utils.read_image`.

    Returns:
        np.ndarray (height, width, 3) uint8 for "BGR"/"RGB" (the size policy of this module).

    Raises:
        IndexError: ``frame_idx`` out of range. FileNotFoundError / ValueError: a missing /
        unreadable file, naming the file, the video and the frame index.
    """
    n = len(record["file_names"])
    if not 0 <= frame_idx < n:
        raise IndexError(f"{video_name(record)}: frame index {frame_idx} out of range [0, {n})")
    file_name = record["file_names"][frame_idx]
    where = f"{video_name(record)}, frame {frame_idx}"
    image = read_image_file(file_name, format, where)
    return _fit_to_size(image, (int(record["height"]), int(record["width"])), file_name, where)


def read_video_frames(source: str) -> List[np.ndarray]:
    """
    All frames of a video file (decoded by OpenCV) or of a folder of images (in the natural order
    of their names, :func:`natural_key`; only the files ending in :data:`IMAGE_EXTENSIONS`).

    Returns:
        list of (H, W, 3) uint8 BGR arrays, all of the first frame's size (the size policy of
        this module).

    Raises:
        FileNotFoundError: ``source`` does not exist, or names the missing frame file.
        ValueError: no frames, or a frame file that is not a readable image.
    """
    if os.path.isdir(source):
        files = sorted(
            (f for f in glob.glob(os.path.join(source, "*")) if f.lower().endswith(IMAGE_EXTENSIONS)),
            key=natural_key,
        )
        if not files:
            raise ValueError(f"folder {source} holds no frames ({', '.join(IMAGE_EXTENSIONS)})")
        frames = []
        for i, f in enumerate(files):
            where = f"folder {source}, frame {i}"
            image = read_image_file(f, "BGR", where)
            size = frames[0].shape[:2] if frames else image.shape[:2]
            frames.append(_fit_to_size(image, size, f, where))
        return frames
    if not os.path.isfile(source):
        raise FileNotFoundError(f"video not found: {source}")
    cap = cv2.VideoCapture(source)
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    if not frames:
        raise ValueError(f"video {source} has no readable frames")
    return frames
