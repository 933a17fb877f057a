"""Pseudo labels as a YouTube-VIS json, boxes only ("detection only", paper Sec. 3.5.3).

The labelled split's ``videos`` and ``categories`` are copied as they are (its ``file_names``
stay relative to its image root, so the json registers with that root); each kept track is one
annotation::

    {"id", "video_id", "category_id" (the split's id), "iscrowd": 0, "score": track score,
     "segmentations": [null] * length, "bboxes": [[x, y, w, h] | null] * length,
     "areas": [w * h | null] * length}

Null segmentations are the format's "no mask in this frame", so the YouTube-VIS loader reads the
instances without a mask (:mod:`vis_d2.data.ytvis`). ``info`` names the split, the models, the
scales and the thresholds.
"""
import datetime
import json
from typing import Dict, List, Sequence

import numpy as np

from detectron2.utils.file_io import PathManager

from .selection import PseudoTrack

__all__ = ["read_split_json", "pseudo_label_json"]


def read_split_json(json_file: str) -> dict:
    """The labelled split's json (its ``videos`` and ``categories`` are copied)."""
    with PathManager.open(json_file, "r") as f:
        data = json.load(f)
    for key in ("videos", "categories"):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise ValueError(f"{json_file}: not a YouTube-VIS json (no '{key}' list)")
    return data


def _xywh(box: np.ndarray, width: int, height: int):
    """An XYXY box clipped to the frame as json [x, y, w, h] (0.01 px), or None if empty."""
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    w, h = round(x2 - x1, 2), round(y2 - y1, 2)
    if w <= 0 or h <= 0:
        return None
    return [round(x1, 2), round(y1, 2), w, h]


def pseudo_label_json(split: dict, tracks: Dict[int, List[PseudoTrack]],
                      dataset_ids: Sequence[int], info: dict) -> dict:
    """The pseudo-label json of a split.

    Args:
        split: the labelled split's json (``videos``, ``categories``).
        tracks: {video id: kept tracks} (:func:`~vis_d2.pseudo_labels.labeling.label_split`);
            a video of the split that is missing here gets no annotation.
        dataset_ids: the split's category id of each contiguous class.
        info: the json's ``info`` (e.g. models, thresholds).

    Returns:
        the json dict; annotations in the split's video order, each video's best track first.

    Raises:
        ValueError naming the video when ``tracks`` has a video the split does not, or a
        track's frame lies outside its video.
    """
    videos = {v["id"]: v for v in split["videos"]}
    unknown = sorted(set(tracks) - set(videos))
    if unknown:
        raise ValueError(f"pseudo labels of videos {unknown}, which the split does not have")
    annotations = []
    for vid, video in videos.items():
        length, width, height = video["length"], video["width"], video["height"]
        for trk in tracks.get(vid, ()):
            bboxes = [None] * length
            for t, box in trk.boxes.items():
                if not 0 <= t < length:
                    raise ValueError(f"video {vid}: a pseudo-label track has frame {t}, the video "
                                     f"has {length} frames")
                bboxes[t] = _xywh(box, width, height)
            if not any(b is not None for b in bboxes):
                continue
            annotations.append({
                "id": len(annotations) + 1, "video_id": vid,
                "category_id": int(dataset_ids[trk.category]), "iscrowd": 0,
                "score": round(float(trk.score), 5),
                "segmentations": [None] * length, "bboxes": bboxes,
                "areas": [None if b is None else round(b[2] * b[3], 2) for b in bboxes],
            })
    info = dict(info)
    info.setdefault("date_created", datetime.datetime.now().isoformat(timespec="seconds"))
    return {"info": info, "licenses": split.get("licenses", []), "videos": split["videos"],
            "categories": split["categories"], "annotations": annotations}
