#!/usr/bin/env python
"""Speed of vis_d2 on this machine's CPU, one subcommand per measurement.

    python tools/benchmark.py train   [--iters 10] [--weights W]    # s/iter: R18 demo vs R50-FPN
    python tools/benchmark.py infer   [--frames 40] [--weights W]   # frames/s: the same two models
    python tools/benchmark.py fusion  [--frames 20] [--weights W1 W2]   # multi-scale, ensemble
    python tools/benchmark.py scaling [--lengths 30 300]            # time, peak memory vs length
    python tools/benchmark.py bitrack [--videos 10] [--weights W]   # BiTrack's extra time per video
    python tools/benchmark.py bitrack --synthetic [--frames 36 --dets 10 --dim 1024]
    python tools/benchmark.py clip    [--iters 40]   # AdamW step: detectron2's vs one-pass clipping
    python tools/benchmark.py bf16    [--iters 20]   # training step: float32 vs bfloat16 autocast
    python tools/benchmark.py profile [--iters 10]   # training step: the ops that take the time
    python tools/benchmark.py ytvis_eval [--videos 1000] [--naive-videos 200]   # the VIS metric
    python tools/benchmark.py ytvis_eval --videos 0 --command-gt datasets/synthvis/valid.json
    python tools/benchmark.py predict_memory [--cases 640x360:150 640x360:1500] [--min-size 96]

Each subcommand measures its variants in the same run and prints them side by side with ratios.
The model subcommands read synthvis (``make data``) and use random weights unless ``--weights``
gives the demo's checkpoint (timing depends on the weights mostly through the number of
detections, which trained weights make realistic).
"""
import argparse
import copy
import dataclasses
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor

import cv2
import numpy as np
import pycocotools.mask as mask_util
import torch

# vis_d2's first: they register its datasets and model components, and import detectron2
# without the FutureWarnings of its import-time torch.jit.script calls (vis_d2/quiet_import.py).
import vis_d2.data  # noqa: F401
import vis_d2.modeling  # noqa: F401
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.solver.build import maybe_add_gradient_clipping
from detectron2.utils.events import EventStorage

from vis_d2.config import get_vis_cfg
from vis_d2.data.build import build_vis_train_loader
from vis_d2.data.synthetic import SynthConfig, generate
from vis_d2.data.video_test_mapper import VideoTestDatasetMapper
from vis_d2.data.ytvis import load_ytvis_json
from vis_d2.engine import AtomicCheckpointer, VISTrainer, cache_video_detections
from vis_d2.engine.frame_fusion import FusedFrameModel, FusionMember
from vis_d2.evaluation.ytvis_eval import (
    YTVISEval,
    YTVISGroundTruth,
    _video_ious,
    format_metrics_table,
    load_predictions,
)
from vis_d2.tracking import FrameDetections, VideoTracker

DEMO_CONFIG = "configs/synthvis/R18_demo.yaml"
# The demo's structure at the widths and input size of a standard R50-FPN Mask R-CNN.
R50_OPTS = [
    "MODEL.RESNETS.DEPTH", "50", "MODEL.RESNETS.STEM_OUT_CHANNELS", "64",
    "MODEL.RESNETS.RES2_OUT_CHANNELS", "256",
    "MODEL.RESNETS.STRIDE_IN_1X1", "True", "MODEL.FPN.OUT_CHANNELS", "256",
    "MODEL.ROI_BOX_HEAD.FC_DIM", "1024", "MODEL.ROI_MASK_HEAD.CONV_DIM", "256",
    "MODEL.ROI_MASK_HEAD.NUM_CONV", "4", "MODEL.VIS.TRACK_HEAD.FC_DIM", "1024",
    "MODEL.VIS.TRACK_HEAD.EMBED_DIM", "1024",
    "INPUT.MIN_SIZE_TRAIN", "(360,)", "INPUT.MAX_SIZE_TRAIN", "640",
    "INPUT.MIN_SIZE_TEST", "360", "INPUT.MAX_SIZE_TEST", "640",
]
DEMO = "R18 demo (192 short side)"
MODELS = {DEMO: [], "R50-FPN 360x640": R50_OPTS}


def _cfg(opts=(), weights=""):
    """The demo config with ``opts``, on the CPU, loading in the main process."""
    return get_vis_cfg(DEMO_CONFIG, [*opts, "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", weights,
                                     "DATALOADER.NUM_WORKERS", "0"])


def _model(cfg):
    """The model of ``cfg`` with ``MODEL.WEIGHTS`` loaded (random weights when empty)."""
    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        AtomicCheckpointer(model, trust_pkl=cfg.MODEL.VIS.CHECKPOINT.TRUST_PKL,
                           strict=not cfg.MODEL.VIS.CHECKPOINT.ALLOW_PARTIAL).load(cfg.MODEL.WEIGHTS)
    return model


def _mean_step_seconds(model, batches, opt, warmup, bf16=False):
    """Mean seconds of a training step (forward, backward, ``opt.step``) over
    ``batches[warmup:]``; with ``bf16`` the forward runs under CPU bfloat16 autocast."""
    times = []
    with EventStorage(0):
        for i, b in enumerate(batches):
            t = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = sum(model(b).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i >= warmup:
                times.append(time.perf_counter() - t)
    return sum(times) / len(times)


def _demo_training_setup(weights, n_batches):
    """The demo config, its model (in training mode), the model's initial weights and
    ``n_batches`` training batches."""
    cfg = _cfg(weights=weights)
    model = _model(cfg)
    model.train()
    loader = iter(build_vis_train_loader(cfg))
    batches = [next(loader) for _ in range(n_batches)]
    return cfg, model, copy.deepcopy(model.state_dict()), batches


def bench_train(args):
    rows = []
    for name, opts in MODELS.items():
        cfg = _cfg([*opts, "SOLVER.IMS_PER_BATCH", str(args.batch)],
                   args.weights if name == DEMO else "")
        model = _model(cfg)
        model.train()
        loader = iter(build_vis_train_loader(cfg))
        batches = [next(loader) for _ in range(args.iters + 2)]
        opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
        sec = _mean_step_seconds(model, batches, opt, warmup=2)
        rows.append((name, sec, tuple(batches[-1][0]["image"].shape[1:])))
    base = rows[0][1]
    print(f"training, {args.batch} pairs/iter, {torch.get_num_threads()} threads, "
          f"mean of {args.iters} iters")
    for name, s, size in rows:
        print(f"  {name:28s} {s:7.3f} s/iter  (input e.g. {size})  x{s / base:.2f}")


def bench_infer(args):
    rows = []
    for name, opts in MODELS.items():
        cfg = _cfg(opts, args.weights if name == DEMO else "")
        model = _model(cfg)
        model.eval()
        mapper = VideoTestDatasetMapper(cfg)
        inputs = []
        for v in DatasetCatalog.get("synthvis_val"):
            frames = mapper(v)["frames"]
            inputs.extend(frames[i] for i in range(len(frames)))
            if len(inputs) >= args.frames + 2:
                break
        with torch.no_grad():
            for x in inputs[:2]:
                model([x])
            t = time.perf_counter()
            for x in inputs[2:args.frames + 2]:
                model([x])
            dt = time.perf_counter() - t
        rows.append((name, args.frames / dt, tuple(inputs[2]["image"].shape[1:])))
    base = rows[0][1]
    print(f"per-frame inference, {torch.get_num_threads()} threads, {args.frames} frames of "
          "synthvis_val")
    for name, fps, size in rows:
        print(f"  {name:28s} {fps:7.2f} frames/s  (input {size})  x{fps / base:.2f}")


def bench_fusion(args):
    """Per-frame time of multi-scale testing (0.7/1.0/1.3) and of a 2-model ensemble against one
    model at one scale, on frames of synthvis_val read at their own size (the FusedFrameModel
    path of every inference command). Random weights draw seeds 0 and 1 for the two models."""
    weights = (list(args.weights) + ["", ""])[:2]
    members = []
    for seed, w in enumerate(weights):
        cfg = _cfg(weights=w)
        torch.manual_seed(seed)
        members.append(FusionMember.from_config(cfg, _model(cfg).eval(), f"model {seed}",
                                                 with_classes=False))
    frames, fmt = [], cfg.INPUT.FORMAT
    for v in DatasetCatalog.get("synthvis_val"):
        video = VideoTestDatasetMapper(cfg)(v)["frames"]
        frames.extend(video.read(i) for i in range(len(video)))
        if len(frames) >= args.frames + 2:
            break
    frames = frames[:args.frames + 2]
    iou, cap = cfg.TEST.VIS.FUSION_IOU_THRESH, cfg.TEST.DETECTIONS_PER_IMAGE
    variants = [("1 model, scale 1.0", FusedFrameModel(members[:1], (1.0,), iou, cap)),
                ("1 model, scales 0.7/1.0/1.3",
                 FusedFrameModel(members[:1], (0.7, 1.0, 1.3), iou, cap)),
                ("2 models, scale 1.0", FusedFrameModel(members, (1.0,), iou, cap))]
    rows = []
    with torch.no_grad():
        for name, fused in variants:
            for f in frames[:2]:
                fused(f, fmt)
            dets, t = 0, time.perf_counter()
            for f in frames[2:]:
                dets += len(fused(f, fmt))
            rows.append((name, (time.perf_counter() - t) / args.frames, dets / args.frames))
    base = rows[0][1]
    print(f"per-frame inference, {torch.get_num_threads()} threads, {args.frames} frames of "
          f"synthvis_val ({frames[0].shape[1]}x{frames[0].shape[0]}), test size "
          f"{cfg.INPUT.MIN_SIZE_TEST} short side, weights: {weights[0] or 'random'}, "
          f"{weights[1] or 'random'}")
    for name, sec, d in rows:
        print(f"  {name:28s} {sec * 1000:7.1f} ms/frame  {d:5.1f} detections/frame  "
              f"x{sec / base:.2f}")


def _scaling_worker(length, weights):
    """Video inference (BiTrack on) of one synthetic video of ``length`` frames; run in a
    fresh process so that its peak memory is this video's."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = generate(tmp, train_videos=0, val_videos=1, seed=3, image_set_size=0,
                         config=SynthConfig(length_range=(length, length)))
        video = load_ytvis_json(paths["valid_json"], paths["video_root"])[0]
        cfg = _cfg(["MODEL.VIS.TRACKER.BITRACK", "True"], weights)
        model = _model(cfg)
        model.eval()
        tracker = VideoTracker.from_config(cfg)
        inp = VideoTestDatasetMapper(cfg)(video)
        with torch.no_grad():
            model([inp["frames"][0]])  # warm-up
        base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.perf_counter()
        dets = cache_video_detections(model, inp, tracker)
        preds = tracker.predict(dets, inp["video_id"])
        dt = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"length": length, "seconds": dt, "rss_before_mb": base_rss / 1024,
            "rss_peak_mb": peak / 1024, "detections": int(sum(len(d) for d in dets)),
            "tracks": len(preds)}


def bench_scaling(args):
    rows = []
    for length in args.lengths:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            rows.append(pool.submit(_scaling_worker, length, args.weights).result())
    base = rows[0]
    print("video inference (R18 demo, BiTrack on) vs video length, one process per length")
    for r in rows:
        print(f"  {r['length']:4d} frames: {r['seconds']:7.2f} s "
              f"({r['seconds'] / r['length'] * 1000:6.1f} ms/frame, time "
              f"x{r['seconds'] / base['seconds']:.2f} for x{r['length'] / base['length']:.0f} "
              f"frames), peak RSS {r['rss_peak_mb']:.0f} MB (growth during inference "
              f"{r['rss_peak_mb'] - r['rss_before_mb']:.0f} MB), {r['detections']} detections, "
              f"{r['tracks']} tracks")


def synthetic_cache(num_frames, num_dets, dim, seed):
    """A cached video without a model: ``num_dets`` objects on random walks (a tenth missed
    per frame), noisy ``dim``-d embeddings around one prototype per object, 40 classes."""
    rng = np.random.RandomState(seed)
    centers = rng.uniform(100, 540, size=(num_dets, 2))
    half = rng.uniform(20, 80, size=(num_dets, 2))
    protos = rng.randn(num_dets, dim).astype(np.float32)
    # The tracker never reads the masks; a placeholder RLE keeps the cache well-formed.
    rle = {"size": [480, 640], "counts": "PPYo0"}
    frames = []
    for t in range(num_frames):
        centers += rng.randn(num_dets, 2) * 5
        present = rng.rand(num_dets) > 0.1
        c, h = centers[present], half[present]
        boxes = np.concatenate([c - h, c + h], axis=1).astype(np.float32)
        emb = protos[present] + 0.3 * rng.randn(int(present.sum()), dim).astype(np.float32)
        frames.append(FrameDetections(
            boxes=boxes, scores=rng.uniform(0.1, 1.0, len(boxes)).astype(np.float32),
            labels=rng.randint(0, 40, len(boxes)), embeddings=emb,
            masks=[rle] * len(boxes), source=f"synthetic frame {t}"))
    return frames


def _median_seconds(fn, repeats):
    """Median seconds of ``fn()`` over ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_bitrack(args):
    """Per-video tracking time (association, track scoring, track NMS) with the forward pass
    only and with BiTrack (forward, backward and merge), on the same cached detections."""
    if args.synthetic:
        tracker = VideoTracker() if args.max_age is None else VideoTracker(max_age=args.max_age)
        videos = [(0, synthetic_cache(args.frames, args.dets, args.dim, args.seed))]
        model_s = None
        what = (f"one synthetic video, {args.frames} frames of {args.dets} random {args.dim}-d "
                f"detections, VideoTracker(max_age={tracker.max_age})")
    else:
        cfg = _cfg(weights=args.weights)
        model = _model(cfg)
        model.eval()
        tracker = VideoTracker.from_config(cfg)
        mapper = VideoTestDatasetMapper(cfg)
        videos, model_s = [], 0.0
        for v in DatasetCatalog.get("synthvis_val")[:args.videos]:
            inp = mapper(v)
            t = time.perf_counter()
            videos.append((inp["video_id"], cache_video_detections(model, inp, tracker)))
            model_s += time.perf_counter() - t
        what = (f"{len(videos)} synthvis_val videos ({sum(len(d) for _, d in videos)} frames), "
                "R18 demo")
    seconds = {}
    for name, bi in (("forward", False), ("bitrack", True)):
        trk = dataclasses.replace(tracker, bitrack=bi)
        seconds[name] = _median_seconds(
            lambda: [trk.predict(dets, vid) for vid, dets in videos], args.repeats)
    fwd, bi = seconds["forward"], seconds["bitrack"]
    print(f"{what}, CPU, median of {args.repeats} repeats")
    if model_s is not None:
        print(f"  model passes (cached once):   {model_s:8.3f} s")
    print(f"  tracking forward only:        {fwd:8.4f} s")
    print(f"  BiTrack (fwd + bwd + merge):  {bi:8.4f} s  (+{1000 * (bi - fwd) / len(videos):.2f} "
          "ms per video)")
    if model_s is not None:
        print(f"  BiTrack overhead on per-video inference time: "
              f"{100 * (bi - fwd) / (model_s + fwd):.2f}%")


def bench_clip(args):
    """The demo's AdamW step with per-parameter norm clipping (SOLVER.CLIP_GRADIENTS) by
    detectron2's wrapper and by vis_d2's one-pass version (what VISTrainer.build_optimizer
    uses), on the gradients of one real training step, two interleaved rounds."""
    cfg, model, _, batches = _demo_training_setup(args.weights, 1)
    with EventStorage(0):
        sum(model(batches[0]).values()).backward()
    params = [p for p in model.parameters() if p.grad is not None]
    grads = [p.grad.clone() for p in params]
    ours = VISTrainer.build_optimizer(cfg, model)
    # The same parameter groups (each holds its own lr, betas and weight decay).
    theirs = maybe_add_gradient_clipping(cfg, torch.optim.AdamW)(
        [dict(g, params=list(g["params"])) for g in ours.param_groups],
        fused=ours.defaults["fused"])
    rows = {}
    for name, opt in [("detectron2 (clip_grad_norm_ per parameter)", theirs),
                      ("vis_d2 grad_clip (one foreach pass)", ours)] * 2:
        times = []
        for i in range(args.iters + 3):
            for p, g in zip(params, grads):
                p.grad.copy_(g)
            t = time.perf_counter()
            opt.step()
            if i >= 3:
                times.append(time.perf_counter() - t)
        rows.setdefault(name, []).append(statistics.median(times))
    print(f"AdamW step of the R18 demo ({len(grads)} parameters), {torch.get_num_threads()} "
          f"threads, median of {args.iters} steps, best of two interleaved rounds")
    base = min(next(iter(rows.values())))
    for name, ts in rows.items():
        print(f"  {name:44s} {1000 * min(ts):7.2f} ms  x{min(ts) / base:.2f}")


def bench_bf16(args):
    """The demo's whole training step (forward, backward, AdamW with clipping) in float32 and
    under CPU bfloat16 autocast (SOLVER.CPU_BF16), on the same batches from the same weights,
    two interleaved rounds."""
    from vis_d2.engine.cpu_short_run import cpu_has_bf16

    cfg, model, start, batches = _demo_training_setup(args.weights, args.iters + 3)
    rows = {}
    for name, bf16 in [("float32", False), ("bfloat16 autocast", True)] * 2:
        model.load_state_dict(start)
        opt = VISTrainer.build_optimizer(cfg, model)
        rows.setdefault(name, []).append(_mean_step_seconds(model, batches, opt, 3, bf16))
    print(f"R18 demo training step, {cfg.SOLVER.IMS_PER_BATCH} pairs, {torch.get_num_threads()} "
          f"threads, mean of {args.iters} steps, best of two interleaved rounds; CPU bfloat16 "
          f"instructions: {cpu_has_bf16()}")
    base = min(rows["float32"])
    for name, ts in rows.items():
        print(f"  {name:20s} {min(ts):7.3f} s/iter  x{min(ts) / base:.2f}")


def bench_profile(args):
    """torch.profiler over ``--iters`` float32 training steps of the demo model (after 3
    warm-up steps): the 25 ops with the most self CPU time, and the 15 heaviest
    (op, input shapes) pairs, which name the layers."""
    from torch.profiler import ProfilerActivity, profile

    cfg, model, _, batches = _demo_training_setup(args.weights, args.iters + 3)
    opt = VISTrainer.build_optimizer(cfg, model)
    _mean_step_seconds(model, batches[:3], opt, 0)  # warm-up, outside the profile
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        _mean_step_seconds(model, batches[3:], opt, 0)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    print(prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=15, max_shapes_column_width=80))


# ---- predict_memory: peak RSS of python -m vis_d2.predict vs video length ----

def moving_shapes_video(path, num_frames, width, height, fps=30):
    """An H.264 mp4 (PyAV) of ``num_frames`` frames: three shapes bouncing over a gradient."""
    from vis_d2.visualization import open_video_writer

    yy, xx = np.mgrid[0:height, 0:width]
    background = np.stack([60 + 60 * xx / width, 80 + 40 * yy / height,
                           np.full_like(xx, 90.0)], axis=2).astype(np.uint8)
    rng = np.random.RandomState(0)
    pos = rng.uniform(0.2, 0.8, (3, 2)) * (width, height)
    vel = rng.uniform(-1, 1, (3, 2)) * min(width, height) / 60
    r = min(width, height) // 10
    with open_video_writer(path, fps) as write:
        for _ in range(num_frames):
            pos += vel
            out = (pos < r) | (pos > np.array([width, height]) - r)
            vel[out] *= -1
            pos = np.clip(pos, r, np.array([width, height]) - r)
            frame = background.copy()
            (x0, y0), (x1, y1), (x2, y2) = pos.astype(int)
            cv2.rectangle(frame, (x0 - r, y0 - r), (x0 + r, y0 + r), (40, 40, 220), -1)
            cv2.circle(frame, (x1, y1), r, (40, 200, 40), -1)
            tri = np.array([[x2, y2 - r], [x2 - r, y2 + r], [x2 + r, y2 + r]], np.int32)
            cv2.fillPoly(frame, [tri], (220, 160, 30))
            write(frame)


def _predict_memory_worker(video, out_dir, opts):
    """``python -m vis_d2.predict`` on ``video`` in this (fresh) process: its peak RSS."""
    from vis_d2 import predict

    torch.manual_seed(0)  # the same random model in every run
    t = time.perf_counter()
    [(_, _, tracks)] = predict.main(["--config-file", DEMO_CONFIG, "--input", video, "--output",
                                     out_dir, *opts])
    return {"seconds": time.perf_counter() - t, "tracks": tracks,
            "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def bench_predict_memory(args):
    """Peak RSS of the whole predict command (model pass, tracking and track NMS, drawing pass,
    H.264 writing) on a short and a long video of each size, each run in a fresh process; the
    demo config with random weights (seed 0) on the CPU."""
    opts = (["--bitrack"] if args.bitrack else []) + (
        ["--confidence-threshold", str(args.threshold)] if args.threshold is not None else [])
    opts += ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu"]
    if args.min_size:
        opts += ["INPUT.MIN_SIZE_TEST", str(args.min_size),
                 "INPUT.MAX_SIZE_TEST", str(args.min_size * 2)]
    print(f"python -m vis_d2.predict --config-file {DEMO_CONFIG} {' '.join(map(repr, opts))}",
          flush=True)
    first = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            size, length = case.split(":")
            width, height = (int(v) for v in size.split("x"))
            video = f"{tmp}/{width}x{height}_{length}.mp4"
            moving_shapes_video(video, int(length), width, height)
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                r = pool.submit(_predict_memory_worker, video, f"{tmp}/out", opts).result()
            os.remove(video)
            base = first.setdefault(size, dict(r, length=int(length)))
            print(f"  {size:>9s} {int(length):5d} frames: peak RSS {r['rss_peak_mb']:6.0f} MB "
                  f"(x{r['rss_peak_mb'] / base['rss_peak_mb']:.3f} of {base['length']} frames), "
                  f"{r['seconds']:6.0f} s, {int(length) / r['seconds']:5.1f} frames/s, "
                  f"{r['tracks']} tracks", flush=True)


# ---- ytvis_eval: the metric on a large synthetic set, built in memory ----

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
    """(ground-truth json dict, predictions list) of ``num_videos`` videos: 1-4 moving elliptic
    objects each (some entering late or leaving early, of all three size classes), 1-2 noisy
    predictions per object (shifted, resized, jittered, frames dropped, some of another
    category) and ``min_fp``..``max_fp`` false positives."""
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


def gt_as_results(gt_path, out_path):
    """Write the annotations of the ground truth ``gt_path`` as a results file (compressed RLE,
    scores 1.0, 0.99, ... in file order, repeating): results the metric scores fully."""
    gt = YTVISGroundTruth.load(gt_path)
    results = []
    for tracks in gt.tracks.values():
        for t in tracks:
            segs = [None if not p else {"size": m["size"], "counts": m["counts"].decode()
                                        if isinstance(m["counts"], bytes) else m["counts"]}
                    for m, p in zip(t.masks, t.present.tolist())]
            results.append({"video_id": t.video_id, "category_id": t.category_id,
                            "score": 1.0 - 0.01 * (len(results) % 50), "segmentations": segs})
    with open(out_path, "w") as f:
        json.dump(results, f)


# Runs `python -m vis_d2.evaluation ARGS` and then prints its peak RSS (VmHWM: the memory
# high-water mark of this process since its exec; ru_maxrss would include the parent's pages).
_MEASURED_COMMAND = """
import runpy, sys
sys.argv[0] = "vis_d2.evaluation"
try:
    runpy.run_module("vis_d2.evaluation", run_name="__main__", alter_sys=True)
finally:
    hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:")][0]
    print("peak_kib", hwm.split()[1], file=sys.stderr)
"""


def time_command(gt_path, repeats):
    """Median wall time and peak RSS of ``python -m vis_d2.evaluation`` on ``gt_path`` and its
    annotations as results, each run in a fresh process (imports included; Linux)."""
    with tempfile.TemporaryDirectory() as tmp:
        results = os.path.join(tmp, "results.json")
        gt_as_results(gt_path, results)
        walls, rss = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", _MEASURED_COMMAND, "--gt", gt_path,
                                  "--results", results, "--json"], capture_output=True, text=True)
            walls.append(time.perf_counter() - start)
            if out.returncode != 0:
                sys.exit(f"python -m vis_d2.evaluation failed:\n{out.stderr}")
            rss.append(int(out.stderr.split("peak_kib")[-1].split()[0]) / 1024)
        ap = json.loads(out.stdout)["AP"]
    print(f"python -m vis_d2.evaluation on {gt_path} (its annotations as results: AP {ap:.4f}), "
          f"{repeats} fresh processes: median wall {statistics.median(walls):.2f}s "
          f"(min {min(walls):.2f}s), peak RSS {statistics.median(rss):.0f} MiB")


def bench_ytvis_eval(args):
    """The YouTube-VIS metric (vis_d2.evaluation.ytvis_eval) on ``--videos`` synthetic videos:
    videos per second end to end; with ``--naive-videos`` also against the per-pair,
    per-frame merge of the official evaluator, checking that both give the same IoUs; with
    ``--command-gt`` the wall time and peak memory of its command line on that ground truth."""
    if args.command_gt:
        time_command(args.command_gt, args.repeats)
    if args.videos == 0:
        return
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


def _int(default, help_=None):
    return dict(type=int, default=default, help=help_)


WEIGHTS = ("--weights", dict(default="", help="checkpoint of the R18 demo (realistic "
                                              "detections); default random weights"))
# subcommand -> (function, one-line help, its options as (flag, add_argument keywords)).
SECTIONS = {
    "train": (bench_train, "training s/iter: R18 demo vs R50-FPN 360x640", [
        ("--iters", _int(10)), ("--batch", _int(2, "pairs per iteration (the demo's 2)")),
        WEIGHTS]),
    "infer": (bench_infer, "per-frame inference frames/s: R18 demo vs R50-FPN 360x640", [
        ("--frames", _int(40)), WEIGHTS]),
    "fusion": (bench_fusion, "per-frame time: 1 scale vs 3 scales vs a 2-model ensemble", [
        ("--frames", _int(20)),
        ("--weights", dict(nargs="*", default=[], metavar="W",
                           help="checkpoints of the two models (default: random weights)"))]),
    "scaling": (bench_scaling, "video inference time and peak memory vs video length", [
        ("--lengths", dict(type=int, nargs="+", default=[30, 300])), WEIGHTS]),
    "bitrack": (bench_bitrack, "BiTrack's extra tracking time per video", [
        ("--videos", _int(10, "synthvis_val videos to cache")),
        ("--synthetic", dict(action="store_true", help="time a synthetic cached video instead "
                                                       "of the model's detections")),
        ("--frames", _int(36, "with --synthetic: frames")),
        ("--dets", _int(10, "with --synthetic: objects per frame")),
        ("--dim", _int(1024, "with --synthetic: embedding dimension")),
        ("--max-age", dict(type=int, help="with --synthetic: MAX_AGE (default: the tracker's)")),
        ("--seed", _int(0)), ("--repeats", _int(5, "times each pass is timed (median)")), WEIGHTS]),
    "clip": (bench_clip, "AdamW step: detectron2's vs one-pass gradient clipping", [
        ("--iters", _int(40)), WEIGHTS]),
    "bf16": (bench_bf16, "demo training step: float32 vs bfloat16 autocast", [
        ("--iters", _int(20)), WEIGHTS]),
    "profile": (bench_profile, "demo training step: the ops that take the time", [
        ("--iters", _int(10)), WEIGHTS]),
    "predict_memory": (bench_predict_memory, "peak RSS of vis_d2.predict vs video length", [
        ("--cases", dict(nargs="+", metavar="WxH:FRAMES",
                         default=["640x360:150", "640x360:1500", "1280x720:300",
                                  "1280x720:3000"],
                         help="videos to make and track; each size's first is the baseline")),
        ("--min-size", _int(0, "INPUT.MIN_SIZE_TEST (MAX_SIZE_TEST twice it); 0: the "
                               "config's")),
        ("--bitrack", dict(action="store_true", help="track with BiTrack")),
        ("--threshold", dict(type=float, help="--confidence-threshold (default: the "
                                              "config's TEST.VIS.PREDICT_SCORE_THRESH)"))]),
    "ytvis_eval": (bench_ytvis_eval, "speed of the YouTube-VIS metric", [
        ("--videos", _int(1000)), ("--frames", _int(36)), ("--height", _int(720)),
        ("--width", _int(1280)), ("--categories", _int(40)), ("--seed", _int(0)),
        ("--false-positives", dict(type=int, nargs=2, default=[2, 6], metavar=("MIN", "MAX"),
                                   help="false-positive tracks per video")),
        ("--naive-videos", _int(0, "also time the plain per-frame merge IoU on this many "
                                   "videos")),
        ("--command-gt", dict(default="", help="also time `python -m vis_d2.evaluation` on this "
                                               "ground truth, its annotations as results")),
        ("--repeats", _int(5, "with --command-gt: runs (median)"))]),
}


def build_parser():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="section", required=True, metavar="section")
    for name, (fn, help_, options) in SECTIONS.items():
        p = sub.add_parser(name, help=help_, description=fn.__doc__ or help_)
        p.set_defaults(fn=fn)
        for flag, kwargs in options:
            p.add_argument(flag, **kwargs)
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
