"""How good pseudo labels are, where the labelled videos' ground truth is known.

    python -m vis_d2.pseudo_labels.quality PSEUDO.json GT.json \\
        [--lengths 1 3] [--scores 0 0.25 0.35 0.5] [--iou 0.5]

Pseudo labels are written for videos without ground truth, so their thresholds
(``TEST.VIS.PSEUDO.*``) cannot be checked on the split they label. On videos whose ground truth
exists (a synthetic split, or a held-out part of a training set) this says what each
(minimum track length, minimum track score) pair keeps. Label once with both thresholds at their
lowest (``TEST.VIS.PSEUDO.MIN_TRACK_LENGTH 1 TEST.VIS.PSEUDO.MIN_TRACK_SCORE 0.0``); each row
then keeps the tracks of at least that many boxes and that score, as the labeller would.

A kept box is *correct* where it overlaps a ground-truth box of its category in the same frame
at IoU >= ``--iou`` (crowd boxes count for neither side); precision is the share of kept boxes
that are correct, recall the share of ground-truth boxes that some correct kept box overlaps.
"""
import argparse
import json
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from pycocotools import mask as mask_util

__all__ = ["label_quality", "format_table", "main"]


def _load(path: str, what: str) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{what} {path}: cannot read it as json ({e})") from None
    for key in ("videos", "annotations"):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise ValueError(f"{what} {path}: not a YouTube-VIS json (no '{key}' list)")
    return data


def _frame_boxes(data: dict, path: str, with_crowd: bool
                 ) -> Dict[Tuple[int, int], List[Tuple[int, List[float], float]]]:
    """{(video id, frame): [(category id, [x, y, w, h], score)]} of the non-crowd annotations
    (``with_crowd``: the crowd ones instead)."""
    out: Dict[Tuple[int, int], List[Tuple[int, List[float], float]]] = {}
    for i, ann in enumerate(data["annotations"]):
        if bool(ann.get("iscrowd", 0)) != with_crowd:
            continue
        boxes = ann.get("bboxes")
        if not isinstance(boxes, list):
            raise ValueError(f"{path}: annotation #{i} (video {ann.get('video_id')}) has no "
                             "'bboxes' list")
        for t, box in enumerate(boxes):
            if box is not None:
                out.setdefault((ann["video_id"], t), []).append(
                    (int(ann["category_id"]), [float(v) for v in box],
                     float(ann.get("score", 1.0))))
    return out


def _check_same_videos(pseudo: dict, gt: dict, pseudo_path: str, gt_path: str) -> None:
    gt_videos = {v["id"]: v for v in gt["videos"]}
    for v in pseudo["videos"]:
        g = gt_videos.get(v["id"])
        if g is None:
            raise ValueError(f"{pseudo_path}: video {v['id']} is not in {gt_path}")
        if list(g.get("file_names", [])) != list(v.get("file_names", [])):
            raise ValueError(f"{pseudo_path}: video {v['id']}'s file_names differ from "
                             f"{gt_path}'s: not the same videos")


def _correct(boxes: List[Tuple[int, List[float], float]],
             gt_boxes: List[Tuple[int, List[float], float]], iou_thresh: float) -> np.ndarray:
    """(K, G) bool: kept box k overlaps ground-truth box g of its category at >= iou_thresh."""
    if not boxes or not gt_boxes:
        return np.zeros((len(boxes), len(gt_boxes)), dtype=bool)
    ious = np.asarray(mask_util.iou([b[1] for b in boxes], [g[1] for g in gt_boxes],
                                    [0] * len(gt_boxes))).reshape(len(boxes), len(gt_boxes))
    same = np.array([[b[0] == g[0] for g in gt_boxes] for b in boxes])
    return (ious >= iou_thresh) & same


def label_quality(pseudo: dict, gt: dict, lengths: Sequence[int], scores: Sequence[float],
                  iou_thresh: float = 0.5, pseudo_path: str = "pseudo labels",
                  gt_path: str = "ground truth") -> List[Dict[str, float]]:
    """One row per (minimum length, minimum score): tracks and boxes kept, precision, recall.

    Args:
        pseudo: a pseudo-label json (:mod:`vis_d2.pseudo_labels.writer`), labelled with the
            lowest thresholds.
        gt: the same videos' YouTube-VIS json with their annotations.
        lengths, scores: the thresholds to try (all pairs).
        iou_thresh: box IoU at which a kept box is correct.

    Returns:
        dicts with min_length, min_score, tracks, boxes, correct, precision, recall, gt_boxes.
    """
    if not 0.0 < iou_thresh <= 1.0:
        raise ValueError(f"--iou must be in (0, 1], got {iou_thresh}")
    _check_same_videos(pseudo, gt, pseudo_path, gt_path)
    gt_frames = _frame_boxes(gt, gt_path, with_crowd=False)
    crowd_frames = _frame_boxes(gt, gt_path, with_crowd=True)
    n_gt = sum(len(v) for v in gt_frames.values())
    rows = []
    for min_len in lengths:
        for min_score in scores:
            kept = [a for a in pseudo["annotations"]
                    if sum(b is not None for b in a["bboxes"]) >= min_len
                    and float(a.get("score", 0.0)) >= min_score]
            frames = _frame_boxes({"annotations": kept}, pseudo_path, with_crowd=False)
            n_boxes = n_correct = n_found = 0
            for key, boxes in frames.items():
                hits = _correct(boxes, gt_frames.get(key, []), iou_thresh)
                on_crowd = _correct(boxes, crowd_frames.get(key, []), iou_thresh).any(1)
                n_boxes += int((~on_crowd | hits.any(1)).sum())
                n_correct += int(hits.any(1).sum())
                n_found += int(hits.any(0).sum())
            rows.append({"min_length": int(min_len), "min_score": float(min_score),
                         "tracks": len(kept), "boxes": n_boxes, "correct": n_correct,
                         "precision": n_correct / n_boxes if n_boxes else float("nan"),
                         "recall": n_found / n_gt if n_gt else float("nan"),
                         "gt_boxes": n_gt})
    return rows


def format_table(rows: Sequence[Dict[str, float]]) -> str:
    """The rows as a markdown table."""
    lines = ["| MIN_TRACK_LENGTH | MIN_TRACK_SCORE | tracks kept | boxes | precision | recall |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['min_length']} | {r['min_score']:g} | {r['tracks']} | {r['boxes']} | "
                     f"{r['precision']:.3f} | {r['recall']:.3f} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> List[Dict[str, float]]:
    ap = argparse.ArgumentParser(prog="python -m vis_d2.pseudo_labels.quality",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pseudo", help="pseudo labels (python -m vis_d2.pseudo_labels, lowest "
                                   "thresholds)")
    ap.add_argument("gt", help="the labelled videos' YouTube-VIS json with annotations")
    ap.add_argument("--lengths", type=int, nargs="+", default=[1, 3],
                    help="minimum track lengths to try")
    ap.add_argument("--scores", type=float, nargs="+", default=[0.0, 0.25, 0.35, 0.5],
                    help="minimum track scores to try")
    ap.add_argument("--iou", type=float, default=0.5, help="box IoU of a correct box")
    args = ap.parse_args(argv)
    try:
        rows = label_quality(_load(args.pseudo, "pseudo labels"), _load(args.gt, "ground truth"),
                             args.lengths, args.scores, args.iou, args.pseudo, args.gt)
    except ValueError as e:
        ap.error(str(e))
    print(f"{rows[0]['gt_boxes']} ground-truth boxes; a kept box is correct at IoU >= "
          f"{args.iou:g} with one of its category")
    print(format_table(rows))
    return rows


if __name__ == "__main__":
    main()
