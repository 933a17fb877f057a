#!/usr/bin/env python
"""Training and inference speed on this machine, and how video inference scales with length.

    python tools/bench_speed.py train  [--iters 10]            # s/iter: R18 demo vs R50-FPN 360x640
    python tools/bench_speed.py infer  [--frames 40]           # frames/s: R18 demo vs R50-FPN 360x640
    python tools/bench_speed.py scaling [--lengths 30 300]     # time and peak memory vs video length
    python tools/bench_speed.py bitrack [--videos 10]          # per-video time, forward vs BiTrack
    python tools/bench_speed.py clip   [--iters 40]            # AdamW step: detectron2's vs one-pass clipping
    python tools/bench_speed.py bf16   [--iters 20]            # demo training step: float32 vs bfloat16 autocast
    python tools/bench_speed.py layout [--iters 10]            # demo training step: contiguous vs channels-last
    python tools/bench_speed.py profile [--iters 10]           # demo training step: the ops that take the time

Each section measures its variants in the same run and prints them side by side with ratios.
Datasets: synthvis (make data). Weights: random unless --weights (timing does not depend on
them much, except through the number of detections, which --weights makes realistic).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CONFIGS = {
    "R18 demo (192 short side)": ("configs/synthvis/R18_demo.yaml", []),
    "R50-FPN 360x640": ("configs/synthvis/R18_demo.yaml", [
        "MODEL.RESNETS.DEPTH", "50", "MODEL.RESNETS.STEM_OUT_CHANNELS", "64",
        "MODEL.RESNETS.RES2_OUT_CHANNELS", "256",
        "MODEL.RESNETS.STRIDE_IN_1X1", "True", "MODEL.FPN.OUT_CHANNELS", "256",
        "MODEL.ROI_BOX_HEAD.FC_DIM", "1024", "MODEL.ROI_MASK_HEAD.CONV_DIM", "256",
        "MODEL.ROI_MASK_HEAD.NUM_CONV", "4", "MODEL.VIS.TRACK_HEAD.FC_DIM", "1024",
        "MODEL.VIS.TRACK_HEAD.EMBED_DIM", "1024",
        "INPUT.MIN_SIZE_TRAIN", "(360,)", "INPUT.MAX_SIZE_TRAIN", "640",
        "INPUT.MIN_SIZE_TEST", "360", "INPUT.MAX_SIZE_TEST", "640"]),
}


def _cfg(path, opts, weights=""):
    from vis_d2.config import get_vis_cfg

    return get_vis_cfg(path, list(opts) + ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", weights,
                                           "DATALOADER.NUM_WORKERS", "0"])


def _model(cfg):
    from detectron2.modeling import build_model

    from vis_d2.engine import AtomicCheckpointer

    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        AtomicCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    return model


def _mean_step_seconds(model, batches, opt, warmup, bf16=False):
    """Mean seconds of a training step (forward, backward, ``opt.step``) over
    ``batches[warmup:]``; with ``bf16`` the forward runs under CPU bfloat16 autocast."""
    from detectron2.utils.events import EventStorage

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


def bench_train(args):
    from vis_d2.data.build import build_vis_train_loader

    rows = []
    for name, (path, opts) in CONFIGS.items():
        cfg = _cfg(path, opts + ["SOLVER.IMS_PER_BATCH", str(args.batch)])
        model = _model(cfg)
        model.train()
        loader = iter(build_vis_train_loader(cfg))
        batches = [next(loader) for _ in range(args.iters + 2)]
        opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
        sec = _mean_step_seconds(model, batches, opt, warmup=2)
        size = tuple(batches[-1][0]["image"].shape[1:])
        rows.append((name, sec, size))
    base = rows[0][1]
    print(f"training, {args.batch} pairs/iter, {torch.get_num_threads()} threads, mean of {args.iters} iters")
    for name, s, size in rows:
        print(f"  {name:28s} {s:7.3f} s/iter  (input e.g. {size})  x{s / base:.2f}")


def bench_infer(args):
    from detectron2.data import DatasetCatalog

    from vis_d2.data.video_test_mapper import VideoTestDatasetMapper

    rows = []
    for name, (path, opts) in CONFIGS.items():
        cfg = _cfg(path, opts, args.weights if name.startswith("R18") else "")
        model = _model(cfg)
        model.eval()
        mapper = VideoTestDatasetMapper(cfg)
        videos = DatasetCatalog.get("synthvis_val")
        inputs = []
        for v in videos:
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
    print(f"per-frame inference, {torch.get_num_threads()} threads, {args.frames} frames of synthvis_val")
    for name, fps, size in rows:
        print(f"  {name:28s} {fps:7.2f} frames/s  (input {size})  x{fps / base:.2f}")


def _scaling_worker(length, weights, out):
    """Run in a subprocess: one synthetic video of `length` frames, tracked; report time/memory."""
    from detectron2.data import detection_utils

    from vis_d2.data.synthetic import SynthConfig, generate
    from vis_d2.data.video_test_mapper import VideoTestDatasetMapper
    from vis_d2.data.ytvis import load_ytvis_json
    from vis_d2.engine.video_inference import cache_video_detections, track_cached_video

    tmp = tempfile.mkdtemp()
    paths = generate(tmp, train_videos=0, val_videos=1, seed=3, image_set_size=0,
                     config=SynthConfig(length_range=(length, length)))
    video = load_ytvis_json(paths["valid_json"], paths["video_root"])[0]
    cfg = _cfg("configs/synthvis/R18_demo.yaml", ["MODEL.VIS.TRACKER.BITRACK", "True"], weights)
    model = _model(cfg)
    model.eval()
    inp = VideoTestDatasetMapper(cfg)(video)
    detection_utils.read_image(video["file_names"][0])
    with torch.no_grad():
        model([inp["frames"][0]])  # warm-up
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    with torch.no_grad():
        dets = cache_video_detections(model, inp, cfg.MODEL.VIS.TRACKER.MAX_DETS_PER_FRAME)
    preds = track_cached_video(dets, inp, cfg)
    dt = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    json.dump({"length": length, "seconds": dt, "rss_before_mb": base_rss / 1024,
               "rss_peak_mb": peak / 1024, "detections": int(sum(len(d) for d in dets)),
               "tracks": len(preds)}, open(out, "w"))


def bench_scaling(args):
    rows = []
    for length in args.lengths:
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            subprocess.run([sys.executable, __file__, "_scaling_worker", str(length), args.weights or "",
                            f.name], check=True)
            rows.append(json.load(open(f.name)))
    base = rows[0]
    print("video inference (R18 demo, BiTrack on) vs video length, one process per length")
    for r in rows:
        print(f"  {r['length']:4d} frames: {r['seconds']:7.2f} s ({r['seconds'] / r['length'] * 1000:6.1f} ms/frame,"
              f" time x{r['seconds'] / base['seconds']:.2f} for x{r['length'] / base['length']:.0f} frames),"
              f" peak RSS {r['rss_peak_mb']:.0f} MB (growth during inference "
              f"{r['rss_peak_mb'] - r['rss_before_mb']:.0f} MB), {r['detections']} detections, {r['tracks']} tracks")


def bench_bitrack(args):
    from detectron2.data import DatasetCatalog

    from vis_d2.data.video_test_mapper import VideoTestDatasetMapper
    from vis_d2.engine.video_inference import cache_video_detections, track_cached_video

    cfg = _cfg("configs/synthvis/R18_demo.yaml", [], args.weights)
    model = _model(cfg)
    model.eval()
    mapper = VideoTestDatasetMapper(cfg)
    fwd_cfg = cfg.clone()
    bi_cfg = cfg.clone()
    bi_cfg.MODEL.VIS.TRACKER.BITRACK = True
    t_model = t_fwd = t_bi = 0.0
    frames = 0
    for v in DatasetCatalog.get("synthvis_val")[: args.videos]:
        inp = mapper(v)
        t = time.perf_counter()
        with torch.no_grad():
            dets = cache_video_detections(model, inp, cfg.MODEL.VIS.TRACKER.MAX_DETS_PER_FRAME)
        t_model += time.perf_counter() - t
        t = time.perf_counter()
        track_cached_video(dets, inp, fwd_cfg)
        t_fwd += time.perf_counter() - t
        t = time.perf_counter()
        track_cached_video(dets, inp, bi_cfg)
        t_bi += time.perf_counter() - t
        frames += len(dets)
    per_fwd = t_model + t_fwd
    per_bi = t_model + t_bi
    print(f"{args.videos} synthvis_val videos ({frames} frames), R18 demo, CPU")
    print(f"  model passes (cached once):   {t_model:8.3f} s")
    print(f"  tracking forward only:        {t_fwd:8.3f} s -> video inference total {per_fwd:8.3f} s")
    print(f"  BiTrack (fwd + bwd + merge):  {t_bi:8.3f} s -> video inference total {per_bi:8.3f} s")
    print(f"  BiTrack overhead on per-video inference time: {100 * (per_bi - per_fwd) / per_fwd:.2f}%")


def bench_clip(args):
    """The demo's AdamW step (fused, per-parameter norm clipping at SOLVER.CLIP_GRADIENTS) with
    detectron2's clipping wrapper and with vis_d2's one-pass version, on the gradients of one
    real training step of the R18 demo."""
    from detectron2.solver.build import maybe_add_gradient_clipping
    from detectron2.utils.events import EventStorage

    import vis_d2.engine.trainer as trainer
    from vis_d2.data.build import build_vis_train_loader
    from vis_d2.engine import VISTrainer

    path, opts = CONFIGS["R18 demo (192 short side)"]
    cfg = _cfg(path, opts, args.weights)
    model = _model(cfg)
    model.train()
    with EventStorage(0):
        sum(model(next(iter(build_vis_train_loader(cfg)))).values()).backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    ours = trainer.maybe_add_per_parameter_clipping
    rows = {}
    for name, wrapper in [("detectron2 (clip_grad_norm_ per parameter)", maybe_add_gradient_clipping),
                          ("vis_d2 grad_clip (one foreach pass)", ours)] * 2:
        trainer.maybe_add_per_parameter_clipping = wrapper  # what build_optimizer calls
        try:
            opt = VISTrainer.build_optimizer(cfg, model)
        finally:
            trainer.maybe_add_per_parameter_clipping = ours
        params = [p for p in model.parameters() if p.grad is not None]
        times = []
        for i in range(args.iters + 3):
            for p, g in zip(params, grads):
                p.grad.copy_(g)
            t = time.perf_counter()
            opt.step()
            if i >= 3:
                times.append(time.perf_counter() - t)
        rows.setdefault(name, []).append(sorted(times)[len(times) // 2])
    print(f"AdamW step of the R18 demo ({len(grads)} parameters), {torch.get_num_threads()} threads, "
          f"median of {args.iters} steps, two interleaved rounds")
    base = min(next(iter(rows.values())))
    for name, ts in rows.items():
        print(f"  {name:44s} {1000 * min(ts):7.2f} ms  x{min(ts) / base:.2f}")


def _demo_training_setup(args, n_batches):
    """The demo config, its model (in training mode), the model's initial weights and
    ``n_batches`` training batches."""
    import copy

    from vis_d2.data.build import build_vis_train_loader

    path, opts = CONFIGS["R18 demo (192 short side)"]
    cfg = _cfg(path, opts, args.weights)
    model = _model(cfg)
    model.train()
    loader = iter(build_vis_train_loader(cfg))
    batches = [next(loader) for _ in range(n_batches)]
    return cfg, model, copy.deepcopy(model.state_dict()), batches


def bench_bf16(args):
    """The demo's whole training step (forward, backward, AdamW with clipping) in float32 and
    under CPU bfloat16 autocast (SOLVER.CPU_BF16), on the same batches from the same weights,
    two interleaved rounds."""
    from vis_d2.engine import VISTrainer
    from vis_d2.engine.cpu_short_run import cpu_has_bf16

    cfg, model, start, batches = _demo_training_setup(args, args.iters + 3)
    rows = {}
    for name, bf16 in [("float32", False), ("bfloat16 autocast", True)] * 2:
        model.load_state_dict(start)
        opt = VISTrainer.build_optimizer(cfg, model)
        rows.setdefault(name, []).append(_mean_step_seconds(model, batches, opt, 3, bf16))
    print(f"R18 demo training step, {cfg.SOLVER.IMS_PER_BATCH} pairs, {torch.get_num_threads()} threads, "
          f"mean of {args.iters} steps, best of two interleaved rounds; CPU bfloat16 "
          f"instructions: {cpu_has_bf16()}")
    base = min(rows["float32"])
    for name, ts in rows.items():
        print(f"  {name:20s} {min(ts):7.3f} s/iter  x{min(ts) / base:.2f}")


def bench_layout(args):
    """The demo's float32 training step with the default (contiguous) memory layout and with
    channels-last weights and input, same batches and weights, two interleaved rounds."""
    from vis_d2.engine import VISTrainer

    cfg, model, start, batches = _demo_training_setup(args, args.iters + 3)
    preprocess = model.preprocess_image

    def channels_last_input(*a, **k):
        images = preprocess(*a, **k)
        images.tensor = images.tensor.contiguous(memory_format=torch.channels_last)
        return images

    rows = {}
    for name, layout in [("contiguous", torch.contiguous_format),
                         ("channels-last", torch.channels_last)] * 2:
        model.load_state_dict(start)
        model.to(memory_format=layout)
        model.preprocess_image = channels_last_input if layout is torch.channels_last else preprocess
        rows.setdefault(name, []).append(_mean_step_seconds(
            model, batches, VISTrainer.build_optimizer(cfg, model), 3))
    print(f"R18 demo training step, float32, {torch.get_num_threads()} threads, mean of "
          f"{args.iters} steps, best of two interleaved rounds")
    base = min(rows["contiguous"])
    for name, ts in rows.items():
        print(f"  {name:14s} {min(ts):7.3f} s/iter  x{min(ts) / base:.2f}")


def bench_profile(args):
    """torch.profiler over ``--iters`` float32 training steps of the demo model (after 3
    warm-up steps): the 25 ops with the most self CPU time, and the 15 heaviest
    (op, input shapes) pairs, which name the layers."""
    from torch.profiler import ProfilerActivity, profile

    from vis_d2.engine import VISTrainer

    cfg, model, _, batches = _demo_training_setup(args, args.iters + 3)
    opt = VISTrainer.build_optimizer(cfg, model)
    _mean_step_seconds(model, batches[:3], opt, 0)  # warm-up, outside the profile
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        _mean_step_seconds(model, batches[3:], opt, 0)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    print(prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=15, max_shapes_column_width=80))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "_scaling_worker":
        import vis_d2  # noqa: F401

        _scaling_worker(int(sys.argv[2]), sys.argv[3], sys.argv[4])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("section", choices=["train", "infer", "scaling", "bitrack", "clip", "bf16",
                                        "layout", "profile"])
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--batch", type=int, default=2)  # pairs per iteration, as the demo
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--videos", type=int, default=10)
    ap.add_argument("--lengths", type=int, nargs="+", default=[30, 300])
    ap.add_argument("--weights", default="", help="checkpoint of the R18 demo (realistic detections)")
    args = ap.parse_args()
    import vis_d2  # noqa: F401

    {"train": bench_train, "infer": bench_infer, "scaling": bench_scaling, "bitrack": bench_bitrack,
     "clip": bench_clip, "bf16": bench_bf16, "layout": bench_layout,
     "profile": bench_profile}[args.section](args)


if __name__ == "__main__":
    main()
