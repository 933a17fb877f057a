"""Render tracked predictions on a video: coloured masks, boxes and one label per object.

Writes an animation (an H.264 MP4 frame by frame, or a GIF) and a PNG contact sheet of a few
frames, so a person can look at what the model and the tracker did.

One object, one label: track NMS (``MODEL.VIS.TRACKER.TRACK_NMS_THRESH``) keeps an object once
per category it may be, as predictions that share the object's masks. Predictions with
identical segmentations are drawn as one object, labelled with its best category and score;
its other categories follow in smaller text.
"""
import contextlib
import fractions
import logging
import os
import tempfile
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence

import cv2
import numpy as np
import pycocotools.mask as mask_util

from .file_io import atomic_open, atomic_write_bytes

__all__ = ["track_colour", "group_objects", "TrackDrawer", "draw_tracks", "open_video_writer",
           "render_video", "contact_sheet"]

logger = logging.getLogger(__name__)

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def track_colour(track_idx: int) -> tuple:
    """A distinct, stable BGR colour per track index (golden-ratio hue walk)."""
    hue = int((track_idx * 0.618033988749895 % 1.0) * 179)
    hsv = np.uint8([[[hue, 220, 255]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def _segmentation_key(segmentations: Sequence[Optional[Dict]]) -> tuple:
    """A hashable key equal for equal per-frame segmentations (RLE counts as str, bytes or a
    list)."""
    return tuple(None if s is None else
                 (tuple(s["size"]), tuple(s["counts"]) if isinstance(s["counts"], list)
                  else s["counts"]) for s in segmentations)


def group_objects(predictions: Sequence[Dict]) -> List[List[int]]:
    """Indices of ``predictions`` grouped by object: predictions with identical
    ``segmentations`` are one object.

    Returns:
        one list per object, its predictions by score descending; objects ordered by their best
        score (ties keep the input order).
    """
    groups: Dict[tuple, List[int]] = {}
    for i, p in enumerate(predictions):
        groups.setdefault(_segmentation_key(p["segmentations"]), []).append(i)
    objects = [sorted(g, key=lambda i: -float(predictions[i]["score"])) for g in groups.values()]
    objects.sort(key=lambda g: -float(predictions[g[0]]["score"]))
    return objects


class TrackDrawer:
    """Draws one video's predictions on its frames; objects are grouped once
    (:func:`group_objects`).

    Object ``k`` (in order of best score) gets colour ``track_colour(k)``, a box around its mask
    and one label ``#k name score`` on a filled box in its colour, inside the frame; the
    object's other categories (``name score``) follow on a second, smaller line.

    Args:
        predictions: one video's predictions: ``category_id``, ``score``, ``segmentations``
            (T RLEs or None), and ``category_name`` where known.
        class_names: names by ``category_id``, for predictions without ``category_name``.
        alpha: opacity of the mask colour.
    """

    def __init__(self, predictions: Sequence[Dict], class_names: Optional[List[str]] = None,
                 alpha: float = 0.5):
        self.predictions = list(predictions)
        self.objects = group_objects(self.predictions)
        self.class_names = class_names
        self.alpha = alpha

    def _name(self, pred: Dict) -> str:
        if pred.get("category_name"):
            return str(pred["category_name"])
        cat = pred["category_id"]
        names = self.class_names
        return names[cat] if names and 0 <= cat < len(names) else str(cat)

    def __call__(self, image: np.ndarray, frame_idx: int) -> np.ndarray:
        """A drawn copy of the BGR (H, W, 3) uint8 ``image``, frame ``frame_idx`` of the video."""
        out = image.copy()
        labels = []
        for k, members in enumerate(self.objects):
            lead = self.predictions[members[0]]
            rle = lead["segmentations"][frame_idx]
            if rle is None:
                continue
            m = mask_util.decode(rle).astype(bool)
            if m.shape != out.shape[:2]:
                raise ValueError(f"mask of object {k} at frame {frame_idx} is {m.shape}, frame "
                                 f"is {out.shape[:2]}")
            if not m.any():
                continue
            colour = track_colour(k)
            out[m] = (out[m] * (1 - self.alpha) + np.float32(colour) * self.alpha).astype(np.uint8)
            box = [int(v) for v in mask_util.toBbox(rle)]
            cv2.rectangle(out, (box[0], box[1]), (box[0] + box[2], box[1] + box[3]), colour, 1)
            others = ", ".join(f"{self._name(self.predictions[i])} "
                               f"{self.predictions[i]['score']:.2f}" for i in members[1:])
            labels.append((f"#{k} {self._name(lead)} {lead['score']:.2f}", others, box, colour))
        for label in labels:  # over every mask, so that no object's colour covers a label
            _draw_label(out, *label)
        return out


def _draw_label(out: np.ndarray, text: str, small: str, box: List[int], colour: tuple) -> None:
    """Write ``text`` (and ``small`` under it, smaller, if any) on a filled box of ``colour``
    above ``box`` (x, y, w, h), or inside its top where there is no room, kept in the frame."""
    h, w = out.shape[:2]
    scale = max(0.35, min(h, w) / 1000)  # about 1/50 of the shorter side, and never unreadable
    lines = [(text, scale)] + ([(small, 0.8 * scale)] if small else [])
    sizes = []
    for t, s in lines:
        thick = max(1, round(1.5 * s))
        (tw, th), base = cv2.getTextSize(t, _FONT, s, thick)
        sizes.append((tw, th, base, thick))
    pad = max(1, round(3 * scale))
    block_w = max(tw for tw, _, _, _ in sizes) + 2 * pad
    block_h = sum(th + base + pad for _, th, base, _ in sizes) + pad
    x0 = min(max(box[0], 0), max(w - block_w, 0))
    y0 = box[1] - block_h if box[1] - block_h >= 0 else box[1]
    y0 = min(max(y0, 0), max(h - block_h, 0))
    cv2.rectangle(out, (x0, y0), (x0 + block_w, y0 + block_h), colour, cv2.FILLED)
    # dark text on light colours, white on dark ones (BT.601 luma)
    ink = (0, 0, 0) if 0.114 * colour[0] + 0.587 * colour[1] + 0.299 * colour[2] > 140 \
        else (255, 255, 255)
    y = y0 + pad
    for (t, s), (_, th, base, thick) in zip(lines, sizes):
        y += th
        cv2.putText(out, t, (x0 + pad, y), _FONT, s, ink, thick, cv2.LINE_AA)
        y += base + pad


def draw_tracks(image: np.ndarray, frame_idx: int, predictions: Sequence[Dict],
                class_names: Optional[List[str]] = None, alpha: float = 0.5) -> np.ndarray:
    """:class:`TrackDrawer` for one frame (to draw many frames, build the drawer once)."""
    return TrackDrawer(predictions, class_names, alpha)(image, frame_idx)


def _import_av():
    try:
        import av
    except ImportError:
        return None
    return av


@contextlib.contextmanager
def open_video_writer(path: str, fps: float) -> Iterator[Callable[[np.ndarray], None]]:
    """Write an MP4 at ``path`` frame by frame; yields ``write(frame)`` for BGR (H, W, 3) uint8
    frames, all of one size. The file appears complete on leaving the block, or not at all.

    Encoded as H.264 in yuv420p (what browsers play) by PyAV, where an odd width or height
    gains one replicated border column or row (yuv420p halves the colour resolution); without
    PyAV (the ``video`` extra), OpenCV's MPEG-4 Part 2 (``mp4v``), which browsers do not play,
    with a warning.
    """
    av = _import_av()
    if av is None:
        logger.warning(f"PyAV is not installed: writing {path} as OpenCV's mp4v, which browsers "
                       "do not play; pip install 'vis_d2[video]' for H.264")
        with _opencv_writer(path, fps) as write:
            yield write
        return
    with atomic_open(path) as f:
        container = av.open(f, "w", format="mp4")
        try:
            state = {}

            def write(frame: np.ndarray) -> None:
                if "stream" not in state:
                    state["size"] = frame.shape[:2]
                    stream = container.add_stream(
                        "libx264", rate=fractions.Fraction(fps).limit_denominator(1001))
                    stream.height, stream.width = (s + s % 2 for s in frame.shape[:2])
                    stream.pix_fmt = "yuv420p"
                    stream.options = {"crf": "23", "preset": "veryfast"}
                    state["stream"] = stream
                elif frame.shape[:2] != state["size"]:
                    raise ValueError(f"{path}: frame of size {frame.shape[:2]} in a video of "
                                     f"{state['size']}")
                h, w = frame.shape[:2]
                if h % 2 or w % 2:
                    frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
                packets = state["stream"].encode(av.VideoFrame.from_ndarray(frame, format="bgr24"))
                container.mux(packets)

            yield write
            if "stream" not in state:
                raise ValueError(f"{path}: no frames to write")
            container.mux(state["stream"].encode(None))  # flush the encoder's delayed frames
        except BaseException:
            # the original error matters, not a failure to finish the half-written file
            with contextlib.suppress(Exception):
                container.close()
            raise
        container.close()


@contextlib.contextmanager
def _opencv_writer(path: str, fps: float) -> Iterator[Callable[[np.ndarray], None]]:
    """:func:`open_video_writer` through OpenCV: written in a temporary folder next to
    ``path`` (OpenCV writes only to a path), then moved over ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".tmp_video_") as tmp_dir:
        tmp = os.path.join(tmp_dir, os.path.basename(path))
        state = {}

        def write(frame: np.ndarray) -> None:
            if "writer" not in state:
                h, w = frame.shape[:2]
                state["writer"] = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                if not state["writer"].isOpened():
                    raise RuntimeError(f"OpenCV cannot write {path} (no mp4v encoder); "
                                       "pip install 'vis_d2[video]'")
            state["writer"].write(frame)

        try:
            yield write
        finally:
            if "writer" in state:
                state["writer"].release()
        if "writer" not in state:
            raise ValueError(f"{path}: no frames to write")
        os.replace(tmp, path)


def render_video(frames_bgr: Iterable[np.ndarray], predictions: Sequence[Dict], out_path: str,
                 class_names: Optional[List[str]] = None, fps: float = 6) -> str:
    """Draw every frame (:class:`TrackDrawer`) and write ``out_path``: an ``.mp4`` frame by
    frame (:func:`open_video_writer`; ``frames_bgr`` may be a lazy iterable) or a ``.gif``
    (held whole, for short clips). Returns the path."""
    draw = TrackDrawer(predictions, class_names)
    if out_path.endswith(".mp4"):
        with open_video_writer(out_path, fps) as write:
            for i, f in enumerate(frames_bgr):
                write(draw(f, i))
    elif out_path.endswith(".gif"):
        import imageio.v2 as imageio

        drawn = [cv2.cvtColor(draw(f, i), cv2.COLOR_BGR2RGB) for i, f in enumerate(frames_bgr)]
        with atomic_open(out_path) as out:
            imageio.mimsave(out, drawn, format="GIF", duration=1.0 / fps, loop=0)
    else:
        raise ValueError(f"unsupported animation format: {out_path} (use .mp4 or .gif)")
    return out_path


def contact_sheet(frames_bgr: Sequence[np.ndarray], predictions: Sequence[Dict], out_path: str,
                  num: int = 6, cols: int = 3, class_names: Optional[List[str]] = None) -> str:
    """A PNG grid of ``num`` evenly spaced drawn frames. Returns the path."""
    draw = TrackDrawer(predictions, class_names)
    idx = np.unique(np.linspace(0, len(frames_bgr) - 1, min(num, len(frames_bgr))).round().astype(int))
    tiles = [draw(frames_bgr[i], int(i)) for i in idx]
    for t, i in zip(tiles, idx):
        cv2.putText(t, f"frame {i}", (4, t.shape[0] - 6), _FONT, 0.4, (255, 255, 255), 1)
    h, w = tiles[0].shape[:2]
    rows = (len(tiles) + cols - 1) // cols
    sheet = np.zeros((rows * h, cols * w, 3), dtype=np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = cv2.resize(t, (w, h))
    ok, buf = cv2.imencode(".png", sheet)
    if not ok:
        raise RuntimeError(f"could not encode {out_path}")
    atomic_write_bytes(out_path, buf.tobytes())
    return out_path
