"""Split a YouTube-VIS train json by video into ``train_sub.json`` and ``valid_sub.json``.

The official valid/test jsons carry no ground truth, so a local score needs a held-out part of
the train set. Usage::

    python -m vis_d2.data.split --json datasets/ytvis_2021/train.json --ratio 0.1 --seed 0

writes ``train_sub.json`` / ``valid_sub.json`` beside the json (or in ``--out-dir``); at the next
import of vis_d2 they are registered as ``ytvis_2021_train_sub`` / ``ytvis_2021_valid_sub``
(likewise for ytvis_2019 and synthvis) when they sit in the builtin dataset directory.
"""
import argparse
import json
import os
import sys
from typing import Optional, Tuple

import numpy as np

from detectron2.utils.file_io import PathManager

from ..file_io import atomic_write_json
from .ytvis import YTVISFormatError

__all__ = ["split_videos", "split_ytvis_json", "write_json_atomic", "main"]


def split_videos(
    data: dict, ratio: float, seed: int, json_file: str = "<json>"
) -> Tuple[dict, dict]:
    """
    Split a YouTube-VIS dataset dict by video.

    Args:
        data: the loaded json (with "videos" and "annotations").
        ratio: fraction of the videos that go to the valid split, in (0, 1). The valid split
            gets round(ratio * num_videos) videos, clamped so each side has at least one.
        seed: the same seed gives the same split.
        json_file: used in error messages.

    Returns:
        (train, valid): dicts with the input's other top-level keys (info, licenses,
        categories, ...) unchanged, and each video's annotations following it. Videos keep
        their json order within each split.
    """
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"{json_file}: --ratio must be in (0, 1), got {ratio}")
    if not isinstance(data, dict) or not isinstance(data.get("videos"), list):
        raise YTVISFormatError(f"{json_file}: the json has no 'videos' list")
    videos = data["videos"]
    num = len(videos)
    if num < 2:
        raise ValueError(f"{json_file}: cannot split {num} video(s); need at least 2")
    if not data.get("annotations"):
        raise YTVISFormatError(
            f"{json_file}: the json has no 'annotations' (a valid/test split without ground "
            "truth?); split the train json instead"
        )
    video_ids = []
    for i, v in enumerate(videos):
        if not isinstance(v, dict) or "id" not in v:
            raise YTVISFormatError(f"{json_file}: videos[{i}] has no 'id' key")
        video_ids.append(v["id"])
    if len(set(video_ids)) != num:
        raise YTVISFormatError(f"{json_file}: duplicate video ids")

    num_valid = min(max(int(round(ratio * num)), 1), num - 1)
    perm = np.random.RandomState(seed).permutation(num)
    valid_ids = {video_ids[i] for i in perm[:num_valid]}

    train_annos, valid_annos = [], []
    known = set(video_ids)
    for i, a in enumerate(data["annotations"]):
        if not isinstance(a, dict) or "video_id" not in a:
            raise YTVISFormatError(f"{json_file}: annotations[{i}] has no 'video_id' key")
        if a["video_id"] not in known:
            raise YTVISFormatError(
                f"{json_file}: annotation {a.get('id', f'[{i}]')}: unknown video_id {a['video_id']}"
            )
        (valid_annos if a["video_id"] in valid_ids else train_annos).append(a)

    rest = {k: v for k, v in data.items() if k not in ("videos", "annotations")}
    train_videos = [v for v in videos if v["id"] not in valid_ids]
    valid_videos = [v for v in videos if v["id"] in valid_ids]
    train = dict(rest, videos=train_videos, annotations=train_annos)
    valid = dict(rest, videos=valid_videos, annotations=valid_annos)
    return train, valid


def write_json_atomic(obj, path: str) -> None:
    """Write `obj` as json to `path` atomically (:func:`vis_d2.file_io.atomic_write_json`), so a
    reader never sees a partial file."""
    atomic_write_json(path, obj)


def split_ytvis_json(
    json_file: str, ratio: float = 0.1, seed: int = 0, out_dir: Optional[str] = None
) -> Tuple[str, str, dict]:
    """
    Split `json_file` by video and write ``train_sub.json`` / ``valid_sub.json``.

    Args:
        json_file: a YouTube-VIS format json with annotations.
        ratio, seed: see :func:`split_videos`.
        out_dir: output directory; default: the json's directory.

    Returns:
        (train_path, valid_path, counts) with counts
        ``{"train": (num_videos, num_annotations), "valid": (...)}``.
    """
    with PathManager.open(json_file, "r") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise YTVISFormatError(f"{json_file}: not valid json: {e}") from e
    train, valid = split_videos(data, ratio, seed, json_file)
    out_dir = out_dir if out_dir is not None else os.path.dirname(os.path.abspath(json_file))
    paths = (os.path.join(out_dir, "train_sub.json"), os.path.join(out_dir, "valid_sub.json"))
    if os.path.abspath(json_file) in map(os.path.abspath, paths):
        raise ValueError(f"{json_file}: the output would overwrite the input; use --out-dir")
    write_json_atomic(train, paths[0])
    write_json_atomic(valid, paths[1])
    counts = {
        "train": (len(train["videos"]), len(train["annotations"])),
        "valid": (len(valid["videos"]), len(valid["annotations"])),
    }
    return paths[0], paths[1], counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vis_d2.data.split",
        description="Split a YouTube-VIS json by video into train_sub.json and valid_sub.json.",
    )
    parser.add_argument("--json", required=True, help="YouTube-VIS format json with annotations")
    parser.add_argument("--ratio", type=float, default=0.1, help="fraction of videos in valid_sub")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default=None, help="default: the json's directory")
    args = parser.parse_args(argv)
    try:
        train_path, valid_path, counts = split_ytvis_json(
            args.json, args.ratio, args.seed, args.out_dir
        )
    except (ValueError, OSError) as e:
        parser.error(str(e))
    for split, path in (("train", train_path), ("valid", valid_path)):
        print(f"{split}_sub: {counts[split][0]} videos, {counts[split][1]} annotations -> {path}")
        if counts[split][1] == 0:
            # Such a json loads as "no ground truth" (see load_ytvis_json).
            print(f"warning: {split}_sub has no annotations; try another --seed or --ratio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
