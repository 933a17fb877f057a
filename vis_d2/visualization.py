"""Render tracked predictions on a video: coloured masks, boxes and track ids.

Writes an animation (GIF through imageio, or MP4 through OpenCV) and a PNG contact sheet of a few
frames, so a person can look at what the model and the tracker did.
"""
import os
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
import pycocotools.mask as mask_util

from .file_io import atomic_write_bytes

__all__ = ["track_colour", "draw_tracks", "render_video", "contact_sheet"]


def track_colour(track_idx: int) -> tuple:
    """A distinct, stable BGR colour per track index (golden-ratio hue walk)."""
    hue = int((track_idx * 0.618033988749895 % 1.0) * 179)
    hsv = np.uint8([[[hue, 220, 255]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def draw_tracks(image: np.ndarray, frame_idx: int, predictions: Sequence[Dict],
                class_names: Optional[List[str]] = None, alpha: float = 0.5) -> np.ndarray:
    """Overlay every prediction's mask at ``frame_idx`` on a BGR ``image`` (H, W, 3) uint8.

    Track ``k`` (its index in ``predictions``) gets colour ``track_colour(k)``, a box around its
    mask and the label ``#k name score``.
    """
    out = image.copy()
    for k, pred in enumerate(predictions):
        rle = pred["segmentations"][frame_idx]
        if rle is None:
            continue
        m = mask_util.decode(rle).astype(bool)
        if m.shape != out.shape[:2]:
            raise ValueError(f"mask of track {k} at frame {frame_idx} is {m.shape}, frame is {out.shape[:2]}")
        if not m.any():
            continue
        colour = np.array(track_colour(k), dtype=np.float32)
        out[m] = (out[m] * (1 - alpha) + colour * alpha).astype(np.uint8)
        x, y, w, h = (int(v) for v in mask_util.toBbox(rle))
        cv2.rectangle(out, (x, y), (x + w, y + h), track_colour(k), 1)
        cat = pred["category_id"]
        name = class_names[cat] if class_names and 0 <= cat < len(class_names) else str(cat)
        label = f"#{k} {name} {pred['score']:.2f}"
        cv2.putText(out, label, (x, max(y - 3, 9)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 2)
        cv2.putText(out, label, (x, max(y - 3, 9)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1)
    return out


def render_video(frames_bgr: Sequence[np.ndarray], predictions: Sequence[Dict], out_path: str,
                 class_names: Optional[List[str]] = None, fps: int = 6) -> str:
    """Draw every frame and write ``out_path`` (``.gif`` or ``.mp4``). Returns the path."""
    drawn = [draw_tracks(f, i, predictions, class_names) for i, f in enumerate(frames_bgr)]
    os.makedirs(os.path.dirname(os.path.abspath(out_path)) or ".", exist_ok=True)
    tmp = out_path + ".tmp" + os.path.splitext(out_path)[1]
    if out_path.endswith(".gif"):
        import imageio.v2 as imageio

        imageio.mimsave(tmp, [cv2.cvtColor(d, cv2.COLOR_BGR2RGB) for d in drawn],
                        duration=1.0 / fps, loop=0)
    elif out_path.endswith(".mp4"):
        h, w = drawn[0].shape[:2]
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV cannot write {out_path} (no mp4v encoder); use a .gif path")
        for d in drawn:
            writer.write(d)
        writer.release()
    else:
        raise ValueError(f"unsupported animation format: {out_path} (use .gif or .mp4)")
    os.replace(tmp, out_path)
    return out_path


def contact_sheet(frames_bgr: Sequence[np.ndarray], predictions: Sequence[Dict], out_path: str,
                  num: int = 6, cols: int = 3, class_names: Optional[List[str]] = None) -> str:
    """A PNG grid of ``num`` evenly spaced drawn frames. Returns the path."""
    idx = np.unique(np.linspace(0, len(frames_bgr) - 1, min(num, len(frames_bgr))).round().astype(int))
    tiles = [draw_tracks(frames_bgr[i], int(i), predictions, class_names) for i in idx]
    for t, i in zip(tiles, idx):
        cv2.putText(t, f"frame {i}", (4, t.shape[0] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
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
