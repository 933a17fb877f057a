#!/usr/bin/env python
"""AP of one model under several post-processing variants, side by side, from one model pass.

A variant is a JSON object of :class:`vis_d2.tracking.VideoTracker` fields
(``MODEL.VIS.TRACKER.X`` is field ``x``) and/or ``mask_nms_thresh``
(``MODEL.VIS.MASK_NMS_THRESH``); ``{}`` is the config as it is, and the first variant is the
one the dAP column compares with.

Each frame runs through the model once, with mask NMS off. For each mask-NMS threshold that a
variant uses, the frame's detections are filtered as the model would have filtered them
(:func:`vis_d2.modeling.mask_nms.mask_nms`) and cached with the largest per-frame cap of those
variants; each variant then caps every cached frame at its own ``max_dets_per_frame`` (the same
detections as capping once), tracks the videos and scores them with ``YTVISEvaluator``, as
``train_net.py --eval-only`` does.

    python tools/sweep_postprocess.py --weights output/demo/model_final.pth \
        [--config-file configs/synthvis/R18_demo.yaml] [--datasets synthvis_val] \
        [--variants '{}' '{"distance_weight": 0}' '{"mask_nms_thresh": 0}'] [-- opts ...]

``--datasets`` defaults to the config's ``DATASETS.TEST``. Other splits:
DETECTRON2_DATASETS=<root> makes ``synthvis_val`` the ``<root>/synthvis`` set (for example one
generated with another seed).
"""
import argparse
import dataclasses
import json
import numbers
import time
from typing import Dict, List, Sequence, Tuple

import torch

from detectron2.data import MetadataCatalog

from vis_d2.config import get_vis_cfg
from vis_d2.data.build import UnknownDatasetError, check_dataset_registered
from vis_d2.engine import AtomicCheckpointer, VISTrainer, check_weights_path
from vis_d2.engine.video_inference import instances_to_frame_detections
from vis_d2.evaluation.evaluator import YTVISEvaluator
from vis_d2.modeling.mask_nms import mask_nms
from vis_d2.tracking import FrameDetections, VideoTracker

__all__ = ["Variant", "parse_variants", "cap_frames", "sweep", "main"]

MASK_NMS_FIELD = "mask_nms_thresh"
METRICS = ("AP", "AP50", "AP75", "AR1", "AR10")
TRACKER_FIELDS = tuple(f.name for f in dataclasses.fields(VideoTracker))


@dataclasses.dataclass(frozen=True)
class Variant:
    """One post-processing setting: its label (the variant's JSON), the tracker, and the
    per-class mask NMS threshold (0: off)."""

    label: str
    tracker: VideoTracker
    mask_nms_thresh: float


def parse_variants(texts: Sequence[str], base: VideoTracker,
                   base_mask_nms_thresh: float) -> List[Variant]:
    """Variants from JSON objects of VideoTracker fields and/or ``mask_nms_thresh``.

    Args:
        texts: one JSON object per variant; a field it does not name keeps the config's value.
        base: the config's tracker (``VideoTracker.from_config(cfg)``).
        base_mask_nms_thresh: the config's ``MODEL.VIS.MASK_NMS_THRESH``.

    Raises:
        ValueError naming the variant when it is not JSON, not an object, names an unknown
        field, or gives a value the field does not take.
    """
    out = []
    for text in texts:
        try:
            change = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"variant {text!r} is not JSON: {e}") from None
        if not isinstance(change, dict):
            raise ValueError(f"variant {text!r} must be a JSON object, e.g. "
                             "'{\"distance_weight\": 0}'")
        unknown = sorted(set(change) - set(TRACKER_FIELDS) - {MASK_NMS_FIELD})
        if unknown:
            raise ValueError(f"variant {text!r} names unknown field(s) {unknown}; a variant "
                             f"takes {MASK_NMS_FIELD!r} and the VideoTracker fields "
                             f"{list(TRACKER_FIELDS)}")
        tracker_change = {k: v for k, v in change.items() if k != MASK_NMS_FIELD}
        thresh = change.get(MASK_NMS_FIELD, base_mask_nms_thresh)
        if (isinstance(thresh, bool) or not isinstance(thresh, numbers.Real)
                or not 0.0 <= thresh <= 1.0):
            raise ValueError(f"variant {text!r}: {MASK_NMS_FIELD} must be a number in [0, 1] "
                             f"(0: off), got {thresh!r}")
        try:
            tracker = dataclasses.replace(base, **tracker_change)
        except ValueError as e:
            raise ValueError(f"variant {text!r}: {e}") from None
        out.append(Variant(json.dumps(change) if change else "{} (the config)", tracker,
                           float(thresh)))
    return out


def cap_frames(frames: Sequence[FrameDetections],
               tracker: VideoTracker) -> List[FrameDetections]:
    """``frames`` with each one capped again by ``tracker.top_k``.

    Frames cached under a larger cap (or none) give the detections, in the order, that capping
    the model's output once with ``tracker`` gives: the cached frames hold the highest scores,
    best first whenever a cap cut them.
    """
    out = []
    for f in frames:
        keep = tracker.top_k(f.scores)
        if len(keep) == len(f):
            out.append(f)
            continue
        out.append(FrameDetections(boxes=f.boxes[keep], scores=f.scores[keep],
                                   labels=f.labels[keep], embeddings=f.embeddings[keep],
                                   masks=[f.masks[i] for i in keep], source=f.source))
    return out


def _cache_caps(variants: Sequence[Variant]) -> Dict[float, VideoTracker]:
    """{mask NMS threshold: a tracker whose ``top_k`` caches as many detections per frame as
    the most generous variant at that threshold tracks (0: all)}."""
    caps = {}
    for v in variants:
        t, k = v.mask_nms_thresh, v.tracker.max_dets_per_frame
        caps[t] = 0 if (k == 0 or caps.get(t) == 0) else max(k, caps.get(t, 0))
    return {t: dataclasses.replace(variants[0].tracker, max_dets_per_frame=k)
            for t, k in caps.items()}


@torch.no_grad()
def sweep(model, loader, dataset_name: str,
          variants: Sequence[Variant]) -> List[Tuple[Dict[str, float], float]]:
    """Score every variant on ``dataset_name`` from one pass of ``model`` over ``loader``.

    Args:
        model: the VIS model in eval mode; its ``mask_nms_thresh`` is set to 0 for the pass.
        loader: the test loader of ``dataset_name`` (video dicts of the test mapper).
        variants: from :func:`parse_variants`.

    Returns:
        per variant, its YouTube-VIS metrics (fractions), the mean number of detections per
        frame it tracked and the mean number of tracks per video it predicted.
    """
    model.mask_nms_thresh = 0.0
    caps = _cache_caps(variants)
    evaluators = [YTVISEvaluator(dataset_name, distributed=False) for _ in variants]
    tracked, tracks = [0] * len(variants), [0] * len(variants)
    num_frames = num_videos = 0
    for video in loader:
        cached = {t: [] for t in caps}
        frames = video["frames"]
        for i in range(len(frames)):
            inst = model([frames[i]])[0]["instances"]  # mask NMS runs on the model's device
            for t, cap in caps.items():
                cached[t].append(instances_to_frame_detections(
                    mask_nms(inst, t) if t > 0 else inst, cap,
                    source=f"video {video['video_id']} frame {i}")[1])
        num_frames += len(frames)
        num_videos += 1
        for j, v in enumerate(variants):
            dets = cap_frames(cached[v.mask_nms_thresh], v.tracker)
            tracked[j] += sum(len(d) for d in dets)
            preds = v.tracker.predict(dets, video["video_id"])
            tracks[j] += len(preds)
            evaluators[j].process([video], [preds])
    return [(e.evaluate().get("segm", {}), n / max(num_frames, 1), k / max(num_videos, 1))
            for e, n, k in zip(evaluators, tracked, tracks)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config-file", default="configs/synthvis/R18_demo.yaml")
    ap.add_argument("--weights", required=True)
    ap.add_argument("--datasets", nargs="+", help="registered video datasets "
                    "(default: the config's DATASETS.TEST)")
    ap.add_argument("--variants", nargs="+", default=["{}"],
                    help="JSON objects of VideoTracker fields and/or mask_nms_thresh, e.g. "
                         "'{\"distance_weight\": 0}'")
    ap.add_argument("opts", nargs=argparse.REMAINDER,
                    help="config overrides KEY VALUE ..., after '--'")
    args = ap.parse_args(argv)
    # After a list option, "--" separates the overrides from it and argparse passes it on.
    opts = args.opts[1:] if args.opts[:1] == ["--"] else args.opts
    try:
        check_weights_path(args.weights)
    except FileNotFoundError as e:
        ap.error(str(e))
    cfg = get_vis_cfg(args.config_file, ["MODEL.WEIGHTS", args.weights, *opts])
    try:
        variants = parse_variants(args.variants, VideoTracker.from_config(cfg),
                                  cfg.MODEL.VIS.MASK_NMS_THRESH)
    except ValueError as e:
        ap.error(str(e))
    names = args.datasets or list(cfg.DATASETS.TEST)
    for name in names:
        try:
            check_dataset_registered(name, "--datasets")
        except UnknownDatasetError as e:
            ap.error(str(e))
        meta = MetadataCatalog.get(name)
        if not meta.get("has_gt", meta.get("json_file") is not None):
            ap.error(f"dataset '{name}' has no ground truth to score against")
    model = VISTrainer.build_model(cfg)
    # strict: weights that do not fit the model would be scored as a partly random model
    AtomicCheckpointer(model, trust_pkl=cfg.MODEL.VIS.CHECKPOINT.TRUST_PKL,
                       strict=not cfg.MODEL.VIS.CHECKPOINT.ALLOW_PARTIAL).load(args.weights)
    model.eval()
    for name in names:
        start = time.perf_counter()
        loader = VISTrainer.build_test_loader(cfg, name)
        results = sweep(model, loader, name, variants)
        print(f"{name} ({MetadataCatalog.get(name).json_file}), {len(loader)} videos, "
              f"{time.perf_counter() - start:.0f} s")
        print("  " + " ".join(f"{k:>7s}" for k in METRICS) + f" {'dAP':>7s} {'dets/frame':>10s}"
              f" {'tracks/video':>12s}  variant")
        base = results[0][0]["AP"]
        for v, (m, per_frame, per_video) in zip(variants, results):
            print("  " + " ".join(f"{m[k]:7.4f}" for k in METRICS)
                  + f" {m['AP'] - base:+7.4f} {per_frame:10.2f} {per_video:12.1f}  {v.label}",
                  flush=True)


if __name__ == "__main__":
    main()
