#!/usr/bin/env python
"""A GPU check, ready to run where CUDA is present:

    python tools/gpu_check.py --output gpu_check.json [--frames 50]
    python tools/gpu_check.py --device cpu --dry-run --output dry.json   # the same steps, tiny

1. one AMP (float16) training step of the R50 TCIS config
   (configs/ytvis_2021/R50_FPN_A2_tcis.yaml, ``MODEL.WEIGHTS ""``, its ResNet with GroupNorm: see
   ``_cfg``) on a synthetic pair of 360x640 frames, through detectron2's AMPTrainer as
   ``train_net.py`` runs it with ``SOLVER.AMP.ENABLED True``: the losses must be finite and a step
   must be applied (the grad scaler skips steps whose gradients overflow and lowers its scale, so
   up to 5 steps are run until one is applied);
2. torchvision's ``deform_conv2d`` (TCIS's deformable conv) on the device against an exact
   reference, ``conv2d`` with zero offsets, and, on CUDA, against the CPU with random offsets,
   forward and backward: max abs difference over the output's max abs value, below 1e-4;
3. inference frames/s at 360x640 of the R50 config with random weights: one scale, scales
   0.7/1.0/1.3 and a 2-model ensemble (``FusedFrameModel``, the per-frame step of every inference
   path). ``ROI_HEADS.SCORE_THRESH_TEST`` 0 makes random weights give a full
   ``TEST.DETECTIONS_PER_IMAGE`` of detections, so the mask and track heads run on as many boxes
   as a trained model gives at most: an upper bound on the per-frame time.

The numbers go to ``--output`` as json (atomically) and are printed. Without CUDA (and no
``--device cpu``) it says so and exits 0. ``--dry-run`` runs every step at 96x160 with 2 timed
frames and a thin ResNet-18 (``DRY_OPTS``), a check of the script rather than a measurement.
Exit status 1 when a check fails.
"""
import argparse
import itertools
import json
import os
import platform
import sys
import time

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# vis_d2's first: they register its components and import detectron2 quietly.
import vis_d2.data  # noqa: E402,F401  # isort: skip
import vis_d2.modeling  # noqa: E402,F401  # isort: skip
from detectron2.modeling import build_model  # noqa: E402
from detectron2.structures import BitMasks, Boxes, Instances  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402
from torchvision.ops import deform_conv2d  # noqa: E402

from vis_d2.config import get_vis_cfg  # noqa: E402
from vis_d2.engine.cpu_short_run import select_step_trainer  # noqa: E402
from vis_d2.engine.frame_fusion import FusedFrameModel, FusionMember  # noqa: E402
from vis_d2.engine.trainer import VISTrainer  # noqa: E402
from vis_d2.file_io import atomic_write_json  # noqa: E402

CONFIG = os.path.join(REPO, "configs", "ytvis_2021", "R50_FPN_A2_tcis.yaml")
FULL_SIZE, DRY_SIZE = (360, 640), (96, 160)
# --dry-run checks the script, not the numbers: the same model class and steps with a thin
# ResNet-18 and 10 detections per frame, so that it runs in seconds on a CPU.
DRY_OPTS = ["MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.STEM_OUT_CHANNELS", "32",
            "MODEL.RESNETS.RES2_OUT_CHANNELS", "32", "MODEL.RESNETS.STRIDE_IN_1X1", "False",
            "MODEL.FPN.OUT_CHANNELS", "32", "MODEL.ROI_BOX_HEAD.FC_DIM", "64",
            "MODEL.ROI_MASK_HEAD.CONV_DIM", "32", "MODEL.VIS.TRACK_HEAD.FC_DIM", "32",
            "MODEL.VIS.TRACK_HEAD.EMBED_DIM", "32", "MODEL.VIS.TCIS.BOTTLENECK_CHANNELS", "16",
            "TEST.DETECTIONS_PER_IMAGE", "10"]
# deform_conv2d: max |a - b| / max |reference| allowed; float32 sums of 576 products differ by
# ~1e-6 of the output's scale between devices, a wrong kernel by far more than 1e-4.
DEFORM_TOLERANCE = 1e-4
MAX_AMP_STEPS = 5


def _cfg(device: str, size, dry_run: bool, *opts):
    h, w = size
    return get_vis_cfg(CONFIG, (DRY_OPTS if dry_run else []) + [
        "MODEL.DEVICE", device, "MODEL.WEIGHTS", "", "INPUT.MASK_FORMAT", "bitmask",
        # Random weights under FrozenBN's identity statistics double the activations' variance
        # in each of R50's 16 residual blocks, past float16's range; GroupNorm keeps them at the
        # scale trained weights give (at a few % more time than FrozenBN's affine op).
        "MODEL.RESNETS.NORM", "GN",
        "INPUT.MIN_SIZE_TRAIN", f"({h},)", "INPUT.MAX_SIZE_TRAIN", str(w),
        "INPUT.MIN_SIZE_TEST", str(h), "INPUT.MAX_SIZE_TEST", str(w),
        "SOLVER.IMS_PER_BATCH", "2", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", *opts])


def _instances(size, boxes, classes, ids):
    inst = Instances(size)
    masks = torch.zeros((len(boxes),) + tuple(size), dtype=torch.bool)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        masks[k, y0:y1, x0:x1] = True
    inst.gt_masks = BitMasks(masks)
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    inst.gt_classes = torch.tensor(classes, dtype=torch.int64)
    inst.gt_track_ids = torch.tensor(ids, dtype=torch.int64)
    return inst


def synthetic_pair(size, seed: int = 0) -> dict:
    """A training pair of two (h, w) frames: two box-shaped objects, the first moved 6% of the
    width between the frames."""
    h, w = size
    g = torch.Generator().manual_seed(seed)
    img = torch.randint(0, 255, (3, h, w), dtype=torch.uint8, generator=g)
    a = (w // 10, h // 8, w // 3, h // 2)
    b = (w // 2, h // 3, 4 * w // 5, 5 * h // 6)
    shift = w * 6 // 100
    moved = (a[0] + shift, a[1], a[2] + shift, a[3])
    return {"image": img, "instances": _instances(size, [a, b], [1, 2], [1, 2]),
            "ref_image": torch.roll(img, shift, dims=2),
            "ref_instances": _instances(size, [moved, b], [1, 2], [1, 2])}


def amp_training_step(device: str, size, dry_run: bool = False) -> dict:
    """Training steps of the R50 TCIS config (AMP on CUDA, float32 elsewhere) until one is
    applied; its losses, the grad scaler's scale and how many parameters moved."""
    amp = device.startswith("cuda")
    cfg = _cfg(device, size, dry_run, "SOLVER.AMP.ENABLED", str(amp))
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    optimizer = VISTrainer.build_optimizer(cfg, model)
    trainer_type, amp = select_step_trainer(device, amp, False)
    batch = [synthetic_pair(size, 0), synthetic_pair(size, 1)]
    trainer = trainer_type(model, itertools.repeat(batch), optimizer)
    before = [p.detach().clone() for p in model.parameters()]
    steps, losses, t0 = 0, {}, time.perf_counter()
    with EventStorage(0) as storage:
        for steps in range(1, MAX_AMP_STEPS + 1):
            trainer.iter = storage.iter = steps - 1
            trainer.run_step()
            losses = {k: float(v[0]) for k, v in storage.latest().items()
                      if k.startswith("loss_") or k == "total_loss"}
            moved = sum(not torch.equal(b, p.detach()) for b, p in zip(before, model.parameters()))
            if moved:
                break
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    finite = all(np.isfinite(v) for v in losses.values())
    scaler = getattr(trainer, "grad_scaler", None)
    return {"precision": "float16 AMP" if amp else "float32", "trainer": trainer_type.__name__,
            "steps_run": steps, "parameters_moved": int(moved),
            "parameters": len(before), "losses": losses, "losses_finite": bool(finite),
            "grad_scale": float(scaler.get_scale()) if scaler is not None and amp else None,
            "has_loss_tcis": "loss_tcis" in losses,
            "seconds": round(time.perf_counter() - t0, 3),
            "ok": bool(finite and moved > 0 and "loss_tcis" in losses)}


def _rel_diff(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a.double().cpu() - ref.double().cpu()).abs().max()
                 / ref.double().abs().max().clamp_min(1e-12))


def deform_conv_check(device: str, dry_run: bool) -> dict:
    """deform_conv2d on ``device``: zero offsets against conv2d; on CUDA, random offsets against
    the CPU (output and the gradients of input, offsets and weight)."""
    g = torch.Generator().manual_seed(0)
    n, c, h, w = (1, 16, 12, 20) if dry_run else (2, 64, 46, 80)
    x = torch.randn(n, c, h, w, generator=g)
    weight = torch.randn(c, c, 3, 3, generator=g) * 0.05
    offset = torch.randn(n, 18, h, w, generator=g) * 2.0
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        xd, wd = x.to(device), weight.to(device)
        zero = deform_conv2d(xd, torch.zeros_like(offset).to(device), wd, padding=1)
        plain = torch.nn.functional.conv2d(xd, wd, padding=1)
        out = {"zero_offsets_vs_conv2d": _rel_diff(zero, plain)}
        if device.startswith("cuda"):
            grads = {}
            for dev in ("cpu", device):
                xi, oi, wi = (t.to(dev).requires_grad_() for t in (x, offset, weight))
                y = deform_conv2d(xi, oi, wi, padding=1)
                (y * torch.linspace(-1, 1, y.numel(), device=dev).view_as(y)).sum().backward()
                grads[dev] = (y.detach(), xi.grad, oi.grad, wi.grad)
            for name, a, b in zip(("output", "grad_input", "grad_offset", "grad_weight"),
                                  grads[device], grads["cpu"]):
                out[f"cuda_vs_cpu_{name}"] = _rel_diff(a, b)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    out = {"max_rel_diff": out, "tolerance": DEFORM_TOLERANCE,
           "shape": [n, c, h, w], "cross_device": device.startswith("cuda")}
    out["ok"] = all(v <= DEFORM_TOLERANCE for v in out["max_rel_diff"].values())
    return out


def inference_speed(device: str, size, frames: int, dry_run: bool = False) -> dict:
    """Frames/s of the R50 config at ``size``: 1 scale, 3 scales, a 2-model ensemble."""
    cfg = _cfg(device, size, dry_run)
    members = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = build_model(cfg)
        model.eval()
        members.append(FusionMember.from_config(cfg, model, f"seed {seed}",
                                                with_classes=False))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, size + (3,), dtype=np.uint8) for _ in range(frames + 2)]
    iou, cap = cfg.TEST.VIS.FUSION_IOU_THRESH, cfg.TEST.DETECTIONS_PER_IMAGE
    variants = {"single scale": FusedFrameModel(members[:1], (1.0,), iou, cap),
                "scales 0.7/1.0/1.3": FusedFrameModel(members[:1], (0.7, 1.0, 1.3), iou, cap),
                "2-model ensemble": FusedFrameModel(members, (1.0,), iou, cap)}
    out = {}
    with torch.no_grad():
        for name, fused in variants.items():
            for img in images[:2]:  # warm-up: cuDNN autotuning, allocator
                fused(img, cfg.INPUT.FORMAT)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            dets, t0 = 0, time.perf_counter()
            for img in images[2:]:
                dets += len(fused(img, cfg.INPUT.FORMAT))
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            sec = time.perf_counter() - t0
            out[name] = {"frames_per_s": round(frames / sec, 3),
                         "ms_per_frame": round(1000 * sec / frames, 2),
                         "detections_per_frame": round(dets / frames, 1)}
    return {"model": "thin R18-FPN (dry run)" if dry_run else "R50-FPN (GN), TCIS config",
            "size": list(size), "frames": frames, "weights": "random (seeds 0 and 1)",
            "detections_cap": cap, "variants": out}


def environment(device: str) -> dict:
    import torchvision
    env = {"device": device, "torch": torch.__version__, "torchvision": torchvision.__version__,
           "python": platform.python_version(), "cpu_threads": torch.get_num_threads()}
    if device.startswith("cuda"):
        env.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version())
    return env


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python tools/gpu_check.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", required=True, metavar="JSON", help="where the numbers go")
    ap.add_argument("--device", default="cuda",
                    help="cuda (default), cuda:N or cpu (cpu: with --dry-run, a script check)")
    ap.add_argument("--frames", type=int, default=50, help="timed frames per variant")
    ap.add_argument("--dry-run", action="store_true",
                    help="every step at 96x160 with 2 timed frames and a thin R18: a script check")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device on this machine (torch {torch.__version__}, "
              f"torch.cuda.is_available() False): nothing to check. Run it where there is a GPU, "
              "or with --device cpu --dry-run to check the script.")
        return 0
    if args.frames < 1:
        build_parser().error(f"--frames must be >= 1, got {args.frames}")
    size = DRY_SIZE if args.dry_run else FULL_SIZE
    frames = 2 if args.dry_run else args.frames
    result = {"environment": environment(args.device), "dry_run": bool(args.dry_run)}
    result["amp_training_step"] = amp_training_step(args.device, size, args.dry_run)
    result["deform_conv2d"] = deform_conv_check(args.device, args.dry_run)
    result["inference"] = inference_speed(args.device, size, frames, args.dry_run)
    result["ok"] = bool(result["amp_training_step"]["ok"] and result["deform_conv2d"]["ok"])
    atomic_write_json(args.output, result, indent=1)
    print(json.dumps(result, indent=1))
    print(f"gpu_check: {'all checks passed' if result['ok'] else 'A CHECK FAILED'}; "
          f"numbers in {args.output}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
