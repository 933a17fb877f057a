"""Reading video frames from disk: every frame and image vis_d2 reads goes through this module.

* :func:`read_frame`: frame ``i`` of a video record (training pairs, test-time frames, renders).
* :class:`VideoFrames`: the frames of a video file or of a folder of images (the predictor and
  ``python -m vis_d2.predict``), decoded lazily, one at a time; a folder's files in natural
  order (``2.jpg`` before ``10.jpg``).

Images are decoded by detectron2's :func:`~detectron2.data.detection_utils.read_image`, video
files by PyAV (the ``video`` extra) or, without it, OpenCV.

Size policy: every frame of a video is returned at the video's size, which is the record's
"height" x "width" for a video record and the first frame's size for a folder of images or a
video file. A frame of another size is resized to it (bilinear, detectron2's ``ResizeTransform``) with a warning
naming the file, because annotations and predictions are in the video's coordinates.
A missing file raises ``FileNotFoundError`` and a file that is not a readable image (unknown
format, truncated) ``ValueError``, both naming the file.
"""
import contextlib
import glob
import logging
import os
import re
import struct
from typing import Iterator, Optional, Tuple, Union

import cv2
import numpy as np
from PIL import Image

from detectron2.data import transforms as T
from detectron2.data import detection_utils as utils

from .video_record import video_name

__all__ = ["IMAGE_EXTENSIONS", "VideoFrames", "natural_key", "read_image_file", "read_frame"]

logger = logging.getLogger(__name__)

# What PIL raises on a corrupt or truncated file: OSError for most, SyntaxError for a broken PNG
# chunk, ValueError / struct.error / EOFError from some header parsers, and
# DecompressionBombError for a header claiming a huge size.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error,
                  Image.DecompressionBombError)

# The file extensions VideoFrames takes from a folder of frames.
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


class VideoFrames:
    """The frames of a video file or of a folder of images, decoded lazily, one at a time.

    Iterating yields (H, W, 3) uint8 BGR frames in order; each iteration decodes again from the
    first frame, so a caller can make a second pass without any frame being kept in memory.
    A folder's frames are the files ending in :data:`IMAGE_EXTENSIONS`, in the natural order of
    their names (:func:`natural_key`); a video file is decoded by PyAV where it is installed
    (the ``video`` extra), else by OpenCV. Every frame comes at the first frame's size (the size
    policy of this module).

    Attributes:
        source: the path given.
        name: the file name without its extension, or the folder's name.
        num_frames: the number of frames (for a video file, as its header states; None where
            the header has no count). Only for progress bars: iteration yields what is decoded.
        fps: the frame rate the video file states, None for a folder or where it has none.

    Raises (on construction):
        FileNotFoundError: ``source`` does not exist. ValueError: a folder without frames, or a
        file that is not a readable video. While iterating, a frame file that is missing or not
        a readable image raises as :func:`read_image_file`, naming it and its index.
    """

    def __init__(self, source: Union[str, os.PathLike]):
        self.source = os.fspath(source)
        self.name = self.name_of(self.source)
        self.fps: Optional[float] = None
        if os.path.isdir(self.source):
            self._files = sorted(
                (f for f in glob.glob(os.path.join(self.source, "*"))
                 if f.lower().endswith(IMAGE_EXTENSIONS)), key=natural_key)
            if not self._files:
                raise ValueError(
                    f"folder {self.source} holds no frames ({', '.join(IMAGE_EXTENSIONS)})")
            self.num_frames: Optional[int] = len(self._files)
            return
        if not os.path.isfile(self.source):
            raise FileNotFoundError(f"video not found: {self.source}")
        self._files = None
        av = _import_av()
        if av is not None:
            with self._open_av(av) as container:
                stream = container.streams.video[0]
                self.num_frames = int(stream.frames) or None
                rate = stream.average_rate or stream.guessed_rate
                self.fps = float(rate) if rate else None
        else:
            cap = cv2.VideoCapture(self.source)
            try:
                if not cap.isOpened():
                    raise ValueError(f"video {self.source} has no readable frames "
                                     "(OpenCV cannot open it)")
                self.num_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
                self.fps = float(cap.get(cv2.CAP_PROP_FPS)) or None
            finally:
                cap.release()

    @staticmethod
    def name_of(source: Union[str, os.PathLike]) -> str:
        """The name of a video: its file name without the extension, or its folder's name."""
        path = os.path.normpath(os.fspath(source))
        return os.path.basename(path) if os.path.isdir(path) else \
            os.path.splitext(os.path.basename(path))[0]

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._files is not None:
            yield from self._iter_folder()
            return
        av = _import_av()
        frames = self._iter_av(av) if av is not None else self._iter_cv2()
        size = None
        count = 0
        for count, image in enumerate(frames, 1):
            size = size or image.shape[:2]
            yield _fit_to_size(image, size, self.source, f"video {self.source}, frame {count - 1}")
        if count == 0:
            raise ValueError(f"video {self.source} has no readable frames")

    def _iter_folder(self) -> Iterator[np.ndarray]:
        size = None
        for i, f in enumerate(self._files):
            where = f"folder {self.source}, frame {i}"
            image = read_image_file(f, "BGR", where)
            size = size or image.shape[:2]
            yield _fit_to_size(image, size, f, where)

    @contextlib.contextmanager
    def _open_av(self, av):
        try:
            container = av.open(self.source)
        except av.error.FFmpegError as e:
            raise ValueError(f"video {self.source} has no readable frames ({e})") from e
        try:
            if not container.streams.video:
                raise ValueError(f"video {self.source} has no video stream")
            yield container
        finally:
            container.close()

    def _iter_av(self, av) -> Iterator[np.ndarray]:
        with self._open_av(av) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame- and slice-threaded decoding
            i = 0
            try:
                for frame in container.decode(stream):
                    yield frame.to_ndarray(format="bgr24")
                    i += 1
            except av.error.FFmpegError as e:
                raise ValueError(f"video {self.source}: frame {i} cannot be decoded ({e})") from e

    def _iter_cv2(self) -> Iterator[np.ndarray]:
        cap = cv2.VideoCapture(self.source)
        try:
            while True:
                ok, image = cap.read()
                if not ok:
                    return
                yield image
        finally:
            cap.release()

    def __repr__(self) -> str:
        return f"VideoFrames({self.source!r}, num_frames={self.num_frames}, fps={self.fps})"


def _import_av():
    """The ``av`` module (PyAV, the ``video`` extra), or None where it is not installed."""
    try:
        import av
    except ImportError:
        return None
    return av
