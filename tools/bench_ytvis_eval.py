#!/usr/bin/env python
"""Speed of the YouTube-VIS metric (``vis_d2.evaluation.ytvis_eval``) on a large synthetic set.

Builds, in memory, a YouTube-VIS ground truth of ``--videos`` videos of ``--frames`` frames at
``--height`` x ``--width`` (720p by default, as YouTube-VIS), each with a few moving elliptic
objects (some leaving / entering the view, of all three size classes), and predictions: noisy
copies of the objects (jittered outlines, shifted, resized, some missing frames, some with
another category) plus random false positives. Then times the evaluation and prints videos per
second. ``--naive-videos N`` also times, on the first N videos, the plain way to get the IoUs
and areas (per pair and frame a ``pycocotools`` merge, per frame an area, as the official
evaluator does), checks it gives the same IoUs, and prints both speeds.

    python tools/bench_ytvis_eval.py --videos 1000 --frames 36
"""
import argparse
import os
import sys
import time
from collections import defaultdict

import numpy as np
import pycocotools.mask as mask_util

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from vis_d2.evaluation.ytvis_eval import (  # noqa: E402
    YTVISEval,
    YTVISGroundTruth,
    _video_ious,
    format_metrics_table,
    load_predictions,
)


def ellipse_counts(h, w, cx, cy, rx, ry, rng=None, jitter=0):
    """Uncompressed (column-major) RLE counts of a filled ellipse, its outline optionally
    jittered by up to ``jitter`` pixels per column (noisy predicted masks)."""
    x = np.arange(max(0, int(np.ceil(cx - rx))), min(w, int(np.floor(cx + rx)) + 1))
    if x.size == 0:
        return [h * w]
    half = ry * np.sqrt(np.clip(1.0 - ((x - cx) / rx) ** 2, 0.0, None))
    top, bot = cy - half, cy + half
    if jitter:
        top = top + rng.integers(-jitter, jitter + 1, x.size)
        bot = bot + rng.integers(-jitter, jitter + 1, x.size)
    top = np.clip(np.round(top), 0, h).astype(np.int64)
    bot = np.clip(np.round(bot), 0, h).astype(np.int64)
    keep = bot > top
    x, top, bot = x[keep], top[keep], bot[keep]
    if x.size == 0:
        return [h * w]
    # Transitions of the column-major pixel sequence; runs touching across columns merge.
    starts, ends = x * h + top, x * h + bot
    touch = ends[:-1] == starts[1:]
    starts = np.concatenate([starts[:1], starts[1:][~touch]])
    ends = np.concatenate([ends[:-1][~touch], ends[-1:]])
    edges = np.empty(2 * starts.size + 2, dtype=np.int64)
    edges[0], edges[-1] = 0, h * w
    edges[1:-1:2], edges[2:-1:2] = starts, ends
    return np.diff(edges).tolist()


def to_rles(counts_list, h, w):
    """Uncompressed counts -> compressed RLEs with str counts (as a results file holds)."""
    rles = mask_util.frPyObjects([{"size": [h, w], "counts": c} for c in counts_list], h, w)
    for r in rles:
        r["counts"] = r["counts"].decode("ascii")
    return rles


def build_synthetic(num_videos, num_frames, h, w, num_categories, rng, min_fp=2, max_fp=6):
    """Returns (ground-truth json dict, predictions list). Each video gets 1-4 objects, 1-2
    predictions per object and ``min_fp``..``max_fp`` false positives."""
    videos, annotations, predictions = [], [], []
    ann_id = 1
    for v in range(1, num_videos + 1):
        videos.append({"id": v, "height": h, "width": w, "length": num_frames,
                       "file_names": [f"{v:05d}/{f:05d}.jpg" for f in range(num_frames)]})
        for _ in range(int(rng.integers(1, 5))):
            cat = int(rng.integers(1, num_categories + 1))
            # Size class: small / medium / large objects (mean areas ~ pi * rx * ry).
            r0 = rng.choice([rng.uniform(15, 60), rng.uniform(75, 130), rng.uniform(150, 300)])
            rx0, ry0 = r0 * rng.uniform(0.7, 1.3), r0 * rng.uniform(0.7, 1.3)
            c0 = rng.uniform([0.2 * w, 0.2 * h], [0.8 * w, 0.8 * h])
            vel = rng.normal(0, 4, 2)
            t = np.arange(num_frames)
            cx, cy = c0[0] + vel[0] * t, c0[1] + vel[1] * t
            rx = rx0 * (1 + 0.1 * np.sin(t / 5.0))
            ry = ry0 * (1 + 0.1 * np.cos(t / 7.0))
            # Objects enter late / leave early sometimes: frames without a mask.
            first = int(rng.integers(0, num_frames // 4)) if rng.random() < 0.3 else 0
            last = num_frames - (int(rng.integers(0, num_frames // 4)) if rng.random() < 0.3 else 0)
            visible = (t >= first) & (t < last)
            gt_counts = [ellipse_counts(h, w, cx[f], cy[f], rx[f], ry[f]) for f in t if visible[f]]
            gt_rles = iter(to_rles(gt_counts, h, w))
            segs, areas = [], []
            for f in t:
                if visible[f]:
                    r = next(gt_rles)
                    segs.append(r)
                    areas.append(int(mask_util.area(r)))
                else:
                    segs.append(None)
                    areas.append(None)
            annotations.append({"id": ann_id, "video_id": v, "category_id": cat, "iscrowd": 0,
                                "segmentations": segs, "areas": areas})
            ann_id += 1
            # 1-2 predictions per object: shifted, resized, jittered outlines, dropped frames.
            for k in range(int(rng.integers(1, 3))):
                shift = rng.normal(0, 0.08 * r0, 2)
                scale = rng.uniform(0.85, 1.15)
                pvis = visible & (rng.random(num_frames) > 0.05)
                counts = [ellipse_counts(h, w, cx[f] + shift[0], cy[f] + shift[1],
                                         rx[f] * scale, ry[f] * scale, rng, jitter=3)
                          for f in t if pvis[f]]
                rles = iter(to_rles(counts, h, w))
                pcat = (cat if (k == 0 or rng.random() < 0.5)
                        else int(rng.integers(1, num_categories + 1)))
                predictions.append({
                    "video_id": v, "category_id": pcat,
                    "score": float(rng.uniform(0.5, 1.0) if k == 0 else rng.uniform(0.1, 0.7)),
                    "segmentations": [next(rles) if pvis[f] else None for f in t],
                })
        # Random false positives, half of them of a category present in the video.
        video_cats = sorted({a["category_id"] for a in annotations if a["video_id"] == v})
        for _ in range(int(rng.integers(min_fp, max_fp + 1))):
            r0 = rng.uniform(15, 200)
            c0 = rng.uniform([0, 0], [w, h])
            counts = [ellipse_counts(h, w, c0[0] + 2 * f, c0[1], r0, r0 * 0.8, rng, jitter=2)
                      for f in range(num_frames)]
            cat = (int(rng.choice(video_cats)) if rng.random() < 0.5
                   else int(rng.integers(1, num_categories + 1)))
            predictions.append({
                "video_id": v, "category_id": cat,
                "score": float(rng.uniform(0.0, 0.6)),
                "segmentations": to_rles(counts, h, w),
            })
    gt = {
        "videos": videos,
        "categories": [{"id": c, "name": f"class{c}"} for c in range(1, num_categories + 1)],
        "annotations": annotations,
    }
    return gt, predictions


def naive_track_iou(d_masks, g_masks):
    """The spatio-temporal IoU the plain way: per frame, pycocotools merge + area."""
    inter = union = 0.0
    for d, g in zip(d_masks, g_masks):
        if d is not None and g is not None:
            inter += float(mask_util.area(mask_util.merge([d, g], intersect=True)))
            union += float(mask_util.area(mask_util.merge([d, g], intersect=False)))
        elif d is not None:
            union += float(mask_util.area(d))
        elif g is not None:
            union += float(mask_util.area(g))
    return inter / union if union > 0 else 0.0


def compare_naive(gt_dict, predictions, gt, num_videos):
    """On the first ``num_videos`` videos: the time of the plain way's IoUs and areas alone
    (no matching: a lower bound of an evaluation done that way) and of the whole batched
    evaluation, and whether both give the same IoUs."""
    vids = list(gt.videos)[:num_videos]
    chosen = set(vids)
    preds = [p for p in predictions if p["video_id"] in chosen]
    anns = defaultdict(list)
    for a in gt_dict["annotations"]:
        if a["video_id"] in chosen:
            anns[(a["video_id"], a["category_id"])].append(a)

    start = time.perf_counter()
    naive = {}
    by_key = defaultdict(list)
    for p in preds:
        # Per-frame areas of every prediction (its size), as the official loader does.
        _ = [mask_util.area(m) for m in p["segmentations"] if m is not None]
        by_key[(p["video_id"], p["category_id"])].append(p)
    for key, ps in by_key.items():
        for i, p in enumerate(ps):
            for j, a in enumerate(anns.get(key, [])):
                naive[key + (i, j)] = naive_track_iou(p["segmentations"], a["segmentations"])
    naive_s = time.perf_counter() - start

    sub_gt = YTVISGroundTruth(dict(gt_dict, videos=[v for v in gt_dict["videos"]
                                                    if v["id"] in chosen],
                                   annotations=[a for a in gt_dict["annotations"]
                                                if a["video_id"] in chosen]))
    start = time.perf_counter()
    YTVISEval(sub_gt, preds).evaluate()
    fast_s = time.perf_counter() - start

    tracks = load_predictions(preds, gt)
    fast = {}
    for vid in vids:
        dets_by_cat, gts_by_cat = defaultdict(list), defaultdict(list)
        for d in tracks.get(vid, ()):
            dets_by_cat[d.category_id].append(d)
        for g in gt.tracks[vid]:
            gts_by_cat[g.category_id].append(g)
        for c, dets in dets_by_cat.items():
            if gts_by_cat.get(c):
                ious = _video_ious(dets, gts_by_cat[c], gt.videos[vid])
                for i in range(len(dets)):
                    for j in range(len(gts_by_cat[c])):
                        fast[(vid, c, i, j)] = ious[i, j]
    same = naive.keys() == fast.keys() and all(naive[k] == fast[k] for k in naive)
    return naive_s, fast_s, len(naive), same


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=36)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--categories", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--false-positives", type=int, nargs=2, default=[2, 6],
                        metavar=("MIN", "MAX"), help="false-positive tracks per video")
    parser.add_argument("--naive-videos", type=int, default=0,
                        help="also time the plain per-frame merge IoU on this many videos")
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    gt_dict, predictions = build_synthetic(args.videos, args.frames, args.height, args.width,
                                           args.categories, rng, *args.false_positives)
    print(f"built {args.videos} videos x {args.frames} frames ({args.height}x{args.width}), "
          f"{len(gt_dict['annotations'])} ground-truth tracks, {len(predictions)} predictions "
          f"in {time.perf_counter() - t0:.1f}s")

    t0 = time.perf_counter()
    gt = YTVISGroundTruth(gt_dict, source="<synthetic>")
    t_gt = time.perf_counter() - t0
    t0 = time.perf_counter()
    ytvis_eval = YTVISEval(gt, predictions, source="<synthetic predictions>")
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    metrics = ytvis_eval.evaluate()
    t_eval = time.perf_counter() - t0
    total = t_gt + t_load + t_eval
    print(format_metrics_table(metrics))
    print(f"ground truth parse {t_gt:.2f}s, predictions check {t_load:.2f}s, "
          f"match + accumulate {t_eval:.2f}s; total {total:.2f}s")
    print(f"SPEED: {args.videos / total:.1f} videos/s "
          f"({args.videos * args.frames / total:.0f} frames/s) end to end, "
          f"{args.videos / t_eval:.1f} videos/s for matching + accumulation")

    if args.naive_videos:
        naive_s, fast_s, pairs, same = compare_naive(gt_dict, predictions, gt, args.naive_videos)
        n = min(args.naive_videos, args.videos)
        print(f"first {n} videos ({pairs} same-category pairs): plain per-frame merge IoUs + "
              f"areas alone {n / naive_s:.1f} videos/s; whole batched evaluation "
              f"{n / fast_s:.1f} videos/s (x{naive_s / fast_s:.1f}); identical IoUs: {same}")
        if not same:
            sys.exit(1)


if __name__ == "__main__":
    main()
