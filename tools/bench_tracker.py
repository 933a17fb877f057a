#!/usr/bin/env python
"""AP of one model under several tracker settings, side by side, from one pass of the model
over each video.

Each frame runs through the model once (the config's detections, mask NMS included); the
cached detections (vis_d2.engine.video_inference.cache_video_detections) are then tracked
with the config's tracker settings changed as each variant says, and scored with the
YouTube-VIS metric, as ``train_net.py --eval-only`` does. A variant is a JSON object of
:class:`vis_d2.tracking.TrackerSettings` fields (``MODEL.VIS.TRACKER.X`` is field ``x``);
``{}`` is the config's own tracker, and the first variant is the one the dAP column compares
with.

    .venv/bin/python tools/bench_tracker.py --weights output/demo/model_final.pth \
        [--config-file configs/synthvis/R18_demo.yaml] [--datasets synthvis_val] \
        [--variants '{"distance_weight": 0}' '{}' '{"distance_weight": 1}'] [-- opts ...]

Other splits: DETECTRON2_DATASETS=<root> makes ``synthvis_val`` the ``<root>/synthvis`` set
(for example one generated with another seed).
"""
import argparse
import dataclasses
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from detectron2.data import MetadataCatalog  # noqa: E402

import vis_d2  # noqa: E402,F401
from bench_common import load_eval_model, score_predictions  # noqa: E402
from vis_d2.engine import VISTrainer  # noqa: E402
from vis_d2.engine.video_inference import (  # noqa: E402
    cache_video_detections,
    track_cached_video,
)
from vis_d2.tracking.settings import TrackerSettings, tracker_settings  # noqa: E402


def parse_variants(texts, base: TrackerSettings):
    """[(label, TrackerSettings)] from JSON objects of TrackerSettings fields; exits naming the
    variant that is not valid JSON, not an object, or names an unknown field."""
    fields = {f.name for f in dataclasses.fields(TrackerSettings)}
    out = []
    for text in texts:
        try:
            change = json.loads(text)
        except json.JSONDecodeError as e:
            sys.exit(f"bench_tracker: variant {text!r} is not JSON: {e}")
        if not isinstance(change, dict):
            sys.exit(f"bench_tracker: variant {text!r} must be a JSON object of tracker fields")
        unknown = sorted(set(change) - fields)
        if unknown:
            sys.exit(f"bench_tracker: variant {text!r} names unknown field(s) {unknown}; the "
                     f"fields are {sorted(fields)}")
        out.append((json.dumps(change) if change else "config", dataclasses.replace(base, **change)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config-file", default="configs/synthvis/R18_demo.yaml")
    ap.add_argument("--weights", required=True)
    ap.add_argument("--datasets", nargs="+", default=["synthvis_val"])
    ap.add_argument("--variants", nargs="+", default=["{}"],
                    help="JSON objects of TrackerSettings fields, e.g. '{\"distance_weight\": 0}'")
    ap.add_argument("opts", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cfg, model = load_eval_model("bench_tracker", args.config_file, args.weights, args.opts)
    variants = parse_variants(args.variants, tracker_settings(cfg))
    # Cache as many detections per frame as the most generous variant tracks (0: all of them).
    per_frame = [s.max_dets_per_frame for _, s in variants]
    max_dets = 0 if 0 in per_frame else max(per_frame)
    for name in args.datasets:
        start = time.perf_counter()
        loader = VISTrainer.build_test_loader(cfg, name)
        cached = [(video, cache_video_detections(model, video, max_dets)) for video in loader]
        meta = MetadataCatalog.get(name)
        print(f"{name} ({meta.json_file}), {len(cached)} videos, model pass "
              f"{time.perf_counter() - start:.0f} s")
        print(f"  {'AP':>7s} {'AP50':>7s} {'AP75':>7s} {'AR1':>7s} {'AR10':>7s} {'dAP':>7s}  variant")
        base = None
        for label, settings in variants:
            preds = []
            for video, dets in cached:
                preds += track_cached_video(dets, video, settings)
            m = score_predictions(name, preds)
            base = m["AP"] if base is None else base
            print(f"  {m['AP']:7.4f} {m['AP50']:7.4f} {m['AP75']:7.4f} {m['AR1']:7.4f} "
                  f"{m['AR10']:7.4f} {m['AP'] - base:+7.4f}  {label}", flush=True)


if __name__ == "__main__":
    main()
