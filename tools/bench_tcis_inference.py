#!/usr/bin/env python
"""Check that TCIS (paper Sec. 3.3) adds no work at inference.

Builds the same model with ``MODEL.VIS.TCIS.ENABLED`` False and True, loads the SAME weights into
both (the TCIS-only parameters are the only keys the TCIS-off checkpoint lacks), runs per-frame
inference on the same random frames, and prints the time per frame of each, their ratio, and
whether the outputs (boxes, scores, classes, masks, embeddings) are identical.

    .venv/bin/python tools/bench_tcis_inference.py [--frames 10] [--repeats 3] [--threads 1] \
        [--config configs/synthvis/R18_demo.yaml] [--opts KEY VALUE ...]
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from detectron2.modeling import build_model  # noqa: E402

import vis_d2  # noqa: E402,F401
from vis_d2.config import get_vis_cfg  # noqa: E402

_FIELDS = ("scores", "pred_classes", "pred_masks", "pred_embeds")


def _build(config, opts, tcis: bool):
    cfg = get_vis_cfg(config, ["MODEL.DEVICE", "cpu", *opts, "MODEL.VIS.TCIS.ENABLED", str(tcis)])
    model = build_model(cfg)
    model.eval()
    return cfg, model


def _interleaved_times(off, on, frames, repeats):
    """Per-frame seconds of both models, measured frame by frame in alternating order.

    Interleaving makes load from other processes hit both models alike. Returns
    ``(times_off, times_on, outputs_off, outputs_on)``: times are (repeats * frames) lists,
    outputs are those of the last round.
    """
    times = {"off": [], "on": []}
    outs = {}
    models = {"off": off, "on": on}
    with torch.no_grad():
        for m in (off, on):
            m([frames[0]])  # warm-up (allocator, lazy init)
        for r in range(repeats):
            outs = {"off": [], "on": []}
            for i, f in enumerate(frames):
                order = ("off", "on") if (r + i) % 2 == 0 else ("on", "off")
                for name in order:
                    start = time.perf_counter()
                    out = models[name]([f])[0]["instances"]
                    times[name].append(time.perf_counter() - start)
                    outs[name].append(out)
    return times["off"], times["on"], outs["off"], outs["on"]


def _identical(a, b) -> bool:
    for x, y in zip(a, b):
        if len(x) != len(y) or not torch.equal(x.pred_boxes.tensor, y.pred_boxes.tensor):
            return False
        if not all(torch.equal(x.get(f), y.get(f)) for f in _FIELDS):
            return False
    return len(a) == len(b)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/synthvis/R18_demo.yaml")
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--width", type=int, default=352)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1 is steadiest on a shared machine)")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="extra config KEY VALUE pairs")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.repeats < 1:
        parser.error("--frames and --repeats must be >= 1")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    _, off = _build(args.config, args.opts, tcis=False)
    _, on = _build(args.config, args.opts, tcis=True)
    result = on.load_state_dict(off.state_dict(), strict=False)
    extra = [k for k in result.missing_keys if not k.startswith("roi_heads.tcis.")]
    if result.unexpected_keys or extra or not result.missing_keys:
        raise RuntimeError(f"weights do not transfer as expected: missing {result.missing_keys}, "
                           f"unexpected {result.unexpected_keys}")
    n_tcis = sum(p.numel() for p in on.roi_heads.tcis.parameters())

    gen = torch.Generator().manual_seed(args.seed)
    frames = [{"image": torch.randint(0, 255, (3, args.height, args.width), generator=gen,
                                      dtype=torch.uint8)} for _ in range(args.frames)]
    times_off, times_on, out_off, out_on = _interleaved_times(off, on, frames, args.repeats)
    t_off, t_on = statistics.median(times_off), statistics.median(times_on)
    ratios = [b / a for a, b in zip(times_off, times_on)]

    print(f"config {args.config}, {args.frames} frames of {args.height}x{args.width}, "
          f"{args.repeats} rounds, torch threads {torch.get_num_threads()}, device cpu")
    print(f"TCIS parameters skipped at inference: {n_tcis} "
          f"({len(result.missing_keys)} tensors)")
    print(f"detections per frame: {sum(len(x) for x in out_off) / len(out_off):.1f}")
    for name, t, ts in (("off", t_off, times_off), ("on ", t_on, times_on)):
        print(f"TCIS {name}: {1000 * t:.1f} ms/frame (median; mean "
              f"{1000 * statistics.mean(ts):.1f})")
    print(f"ratio on/off: {t_on / t_off:.3f} (median of per-frame ratios "
          f"{statistics.median(ratios):.3f})")
    print(f"outputs identical: {_identical(out_off, out_on)}")


if __name__ == "__main__":
    main()
