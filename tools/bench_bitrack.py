#!/usr/bin/env python
"""Micro-benchmark: association and BiTrack time on a synthetic cached video.

Builds T frames of ~N detections (random-walk boxes of N objects, noisy D-dim embeddings,
a few misses), then times, on the same cache:

* forward: one OnlineTracker pass (what the baseline does per video);
* bitrack: forward + backward passes + merge (what BiTrack does per video).

The difference is BiTrack's whole extra cost; no model runs (the cache is reused).

    .venv/bin/python tools/bench_bitrack.py --frames 36 --dets 10 --dim 1024
"""
import argparse
import statistics
import time

import numpy as np

from vis_d2.tracking import FrameDetections, OnlineTracker, bitrack


def synthetic_video(num_frames: int, num_dets: int, dim: int, seed: int):
    rng = np.random.RandomState(seed)
    centers = rng.uniform(100, 540, size=(num_dets, 2))
    half = rng.uniform(20, 80, size=(num_dets, 2))
    protos = rng.randn(num_dets, dim).astype(np.float32)
    # Masks are never read by the tracker; a placeholder RLE keeps the cache well-formed.
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


def timed(fn, repeats):
    fn()  # warm-up (imports, first torch call)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - start) * 1e3)
    return out, statistics.median(times), min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=36)
    parser.add_argument("--dets", type=int, default=10, help="objects (detections) per frame")
    parser.add_argument("--dim", type=int, default=1024, help="embedding dimension")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iou-thresh", type=float, default=0.5)
    args = parser.parse_args()

    frames = synthetic_video(args.frames, args.dets, args.dim, args.seed)
    total = sum(len(f) for f in frames)
    tracker = OnlineTracker()
    fwd, fwd_med, fwd_min = timed(lambda: tracker.track(frames), args.repeats)
    bi, bi_med, bi_min = timed(lambda: bitrack(frames, tracker, args.iou_thresh), args.repeats)
    print(f"video: {args.frames} frames, {total} detections, embedding dim {args.dim}")
    print(f"forward only : median {fwd_med:.2f} ms (min {fwd_min:.2f}), {len(fwd)} tracks")
    print(f"bitrack      : median {bi_med:.2f} ms (min {bi_min:.2f}), {len(bi)} tracks")
    print(f"bitrack extra: {bi_med - fwd_med:.2f} ms per video")


if __name__ == "__main__":
    main()
