#!/usr/bin/env python
"""AP of one model with per-class mask NMS (MODEL.VIS.MASK_NMS_THRESH) off and at several
thresholds, side by side, from one pass of the model over each video.

Each frame runs through the model once with mask NMS off; every threshold then filters those same
detections (vis_d2.modeling.mask_nms), and the tracker and the YouTube-VIS metric run on each
result with the config's tracker settings, as ``train_net.py --eval-only`` does.

    .venv/bin/python tools/bench_mask_nms.py --weights output/demo/model_final.pth \
        [--config-file configs/synthvis/R18_demo.yaml] [--datasets synthvis_val] \
        [--thresholds 0 0.3 0.5] [-- opts ...]

Other splits: DETECTRON2_DATASETS=<root> makes ``synthvis_val`` the ``<root>/synthvis`` set
(for example one generated with another seed).
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from detectron2.data import MetadataCatalog  # noqa: E402

import vis_d2  # noqa: E402,F401
from bench_common import load_eval_model, score_predictions  # noqa: E402
from vis_d2.engine import VISTrainer  # noqa: E402
from vis_d2.engine.video_inference import (  # noqa: E402
    instances_to_frame_detections,
    track_cached_video,
)
from vis_d2.modeling.mask_nms import mask_nms  # noqa: E402
from vis_d2.tracking.settings import tracker_settings  # noqa: E402


def predictions_by_threshold(model, loader, settings, thresholds):
    """{threshold: contiguous-id predictions of every video}, and the mean detections per frame
    left at each threshold."""
    preds = {t: [] for t in thresholds}
    kept = {t: 0 for t in thresholds}
    frames_seen = 0
    with torch.no_grad():
        for video in loader:
            frames = video["frames"]
            outputs = [model([frames[i]])[0]["instances"].to("cpu") for i in range(len(frames))]
            frames_seen += len(outputs)
            for t in thresholds:
                dets = []
                for i, inst in enumerate(outputs):
                    dets.append(instances_to_frame_detections(
                        mask_nms(inst, t) if t > 0 else inst, settings.max_dets_per_frame,
                        source=f"video {video['video_id']} frame {i}"))
                    kept[t] += len(dets[-1].scores)  # what the tracker is given
                preds[t] += track_cached_video(dets, video, settings)
    return preds, {t: kept[t] / max(frames_seen, 1) for t in thresholds}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config-file", default="configs/synthvis/R18_demo.yaml")
    ap.add_argument("--weights", required=True)
    ap.add_argument("--datasets", nargs="+", default=["synthvis_val"])
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.0, 0.3, 0.5])
    ap.add_argument("opts", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cfg, model = load_eval_model("bench_mask_nms", args.config_file, args.weights, args.opts)
    thresholds = sorted(set(args.thresholds))
    model.mask_nms_thresh = 0.0  # every threshold filters the same unfiltered detections
    settings = tracker_settings(cfg)
    for name in args.datasets:
        start = time.perf_counter()
        loader = VISTrainer.build_test_loader(cfg, name)
        preds, per_frame = predictions_by_threshold(model, loader, settings, thresholds)
        meta = MetadataCatalog.get(name)
        print(f"{name} ({meta.json_file}), {len(loader)} videos, "
              f"{time.perf_counter() - start:.0f} s")
        print(f"  {'MASK_NMS_THRESH':>15s} {'dets/frame':>10s} {'AP':>7s} {'AP50':>7s} "
              f"{'AP75':>7s} {'AR10':>7s} {'dAP':>7s}")
        base = None
        for t in thresholds:
            m = score_predictions(name, preds[t])
            base = m["AP"] if base is None else base
            label = "off" if t == 0 else f"{t:g}"
            print(f"  {label:>15s} {per_frame[t]:10.2f} {m['AP']:7.4f} {m['AP50']:7.4f} "
                  f"{m['AP75']:7.4f} {m['AR10']:7.4f} {m['AP'] - base:+7.4f}")


if __name__ == "__main__":
    main()
