#!/usr/bin/env python
"""`make demo`: train the R18 demo on the synthetic benchmark, evaluate it with tracking, and
render one validation video.

    python tools/demo.py [--config-file configs/synthvis/R18_demo.yaml] [--fresh] [opts ...]

Writes under OUTPUT_DIR (default output/demo): the checkpoints, `results.json` (YouTube-VIS
format), `demo_metrics.json` (AP/AR and wall time; detectron2's own `metrics.json` keeps the
training events), `<video>.gif` (every frame with coloured masks, boxes and track ids) and
`<video>_sheet.png` (a contact sheet of a few frames). Re-running resumes from the last
checkpoint (a finished run goes straight to evaluation); `--fresh` starts over.

Time budget (`--max-train-minutes`, default 14.5), in two parts:
- before a fresh run, 30 training steps are timed (after 10 to warm up). Where the config's
  schedule would train for longer than the budget on this machine, SOLVER.MAX_ITER and
  SOLVER.STEPS are scaled down by one factor to fit, and `demo_schedule.json` records it (a
  resumed run keeps that schedule);
- during the run, SOLVER.MAX_TRAIN_MINUTES (set to the budget) ends training early, on a
  compressed schedule, where the machine slows down (vis_d2.engine.time_budget).
The schedule is never lengthened. A SOLVER.MAX_ITER given on the command line, or
`--max-train-minutes 0`, turns both off.
"""
import argparse
import json
import logging
import os
import shutil
import sys
import time

import numpy as np
import torch
import yaml

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import default_setup
from detectron2.utils.events import EventStorage
from detectron2.utils.logger import setup_logger

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import vis_d2  # noqa: E402,F401
from vis_d2.config import get_vis_cfg  # noqa: E402
from vis_d2.data.build import verify_datasets  # noqa: E402
from vis_d2.data.ytvis import read_frame  # noqa: E402
from vis_d2.engine import VISTrainer  # noqa: E402
from vis_d2.engine.trainer import select_step_trainer  # noqa: E402
from vis_d2.evaluation.ytvis_eval import format_metrics_table  # noqa: E402
from vis_d2.file_io import atomic_write_json  # noqa: E402
from vis_d2.visualization import contact_sheet, render_video  # noqa: E402

logger = logging.getLogger("vis_d2.demo")


def render_one_video(cfg, results, out_dir):
    """Draw the tracked predictions of the validation video with the most ground-truth tracks."""
    name = cfg.DATASETS.TEST[0]
    records = DatasetCatalog.get(name)
    meta = MetadataCatalog.get(name)
    record = max(records, key=lambda r: (len({a["track_id"] for f in r["annotations"] for a in f}), -r["video_id"]))
    json_to_contiguous = meta.thing_dataset_id_to_contiguous_id
    preds = [dict(p, category_id=json_to_contiguous[p["category_id"]])
             for p in results if p["video_id"] == record["video_id"] and p["score"] >= 0.3]
    preds.sort(key=lambda p: -p["score"])
    frames = [read_frame(record, i) for i in range(record["length"])]
    stem = os.path.join(out_dir, os.path.basename(os.path.dirname(record["file_names"][0])))
    anim = render_video(frames, preds, stem + ".gif", class_names=meta.thing_classes)
    sheet = contact_sheet(frames, preds, stem + "_sheet.png", class_names=meta.thing_classes)
    return anim, sheet, len(preds)


def check_resumable(cfg, output_dir):
    """Refuse to resume a run of another model or schedule in ``output_dir``.

    A checkpoint from an earlier demo recipe would be loaded with its mismatched layers skipped
    (detectron2 only warns) and trained on from its iteration: a silently wrong demo.
    Raises SystemExit naming the folder and the differing keys.
    """
    prev = os.path.join(output_dir, "config.yaml")
    if not (os.path.isfile(prev) and os.path.isfile(os.path.join(output_dir, "last_checkpoint"))):
        return
    old = get_vis_cfg(prev)
    diffs = []
    for section in ("MODEL", "SOLVER", "INPUT"):
        a, b = old[section].clone(), cfg[section].clone()
        if section == "MODEL":  # where it runs and where it starts from do not matter here
            for c in (a, b):
                c.DEVICE, c.WEIGHTS = "", ""
        # compared as plain YAML data: a reloaded config has lists where the defaults have tuples
        if yaml.safe_load(a.dump()) != yaml.safe_load(b.dump()):
            diffs.append(section)
    if diffs:
        raise SystemExit(
            f"error: {output_dir} holds a run with a different {'/'.join(diffs)} config ({prev}); "
            "run with --fresh to start over, or give another OUTPUT_DIR")


# A whole run's mean step time over measure_step_seconds' median. Later steps carry more
# foreground RoIs (the RPN has learned) and the trainer's hooks (weight EMA, logging) run each
# step, where the measured steps start from fresh weights. On 2 cores here, runs took 1.04x to
# 1.27x the median of the check made at their start, and 1.49x once while the shared machine
# slowed down (docs/BENCHMARKS.md, rounds 8-10). The plan allows for 1.1x; where a run turns out
# slower, SOLVER.MAX_TRAIN_MINUTES ends it within the budget on a compressed schedule.
LATER_STEPS_FACTOR = 1.1
SCHEDULE_FILE = "demo_schedule.json"


def measure_step_seconds(cfg, steps=30, warmup=10):
    """Median seconds of a training step of ``cfg`` here: the model, optimizer, loader and
    precision the trainer would use, from fresh weights (which are then thrown away). The
    median, as a few steps of a short run are slow for reasons of their own (allocations, the
    loader's first reads)."""
    model = VISTrainer.build_model(cfg)
    optimizer = VISTrainer.build_optimizer(cfg, model)
    step_type, _ = select_step_trainer(cfg.MODEL.DEVICE, cfg.SOLVER.AMP.ENABLED, cfg.SOLVER.CPU_BF16)
    step = step_type(model, VISTrainer.build_train_loader(cfg), optimizer)
    cuda = cfg.MODEL.DEVICE.startswith("cuda")
    times = []
    with EventStorage(0) as storage:
        step.storage = storage
        for i in range(warmup + steps):
            if cuda:
                torch.cuda.synchronize()
            t = time.perf_counter()
            step.iter = i
            step.run_step()
            if cuda:
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - t)
            storage.step()
    return float(np.median(times))


def estimated_train_minutes(cfg, seconds_per_step):
    """Minutes that SOLVER.MAX_ITER steps of ``cfg`` train for at ``seconds_per_step`` (a
    measure_step_seconds figure) x LATER_STEPS_FACTOR."""
    return cfg.SOLVER.MAX_ITER * seconds_per_step * LATER_STEPS_FACTOR / 60.0


def fit_schedule(cfg, seconds_per_step, max_minutes):
    """``cfg`` with SOLVER.MAX_ITER and SOLVER.STEPS scaled by one factor f <= 1 so that the run,
    at ``seconds_per_step`` x LATER_STEPS_FACTOR per step, trains in ``max_minutes``; ``cfg``
    itself where it already does. Returns (cfg, f)."""
    need = estimated_train_minutes(cfg, seconds_per_step)
    if need <= max_minutes:
        return cfg, 1.0
    f = max_minutes / need
    cfg = cfg.clone()
    cfg.SOLVER.MAX_ITER = max(1, int(cfg.SOLVER.MAX_ITER * f))
    cfg.SOLVER.STEPS = tuple(max(1, int(s * f)) for s in cfg.SOLVER.STEPS)
    return cfg, f


def saved_schedule(cfg, output_dir):
    """``cfg`` with the schedule that a time-budgeted earlier run in ``output_dir`` trains with
    (its ``demo_schedule.json``), so that resuming it continues the same schedule."""
    path = os.path.join(output_dir, SCHEDULE_FILE)
    if not os.path.isfile(path):
        return cfg
    with open(path) as f:
        saved = json.load(f)
    cfg = cfg.clone()
    cfg.SOLVER.MAX_ITER = int(saved["max_iter"])
    cfg.SOLVER.STEPS = tuple(int(s) for s in saved["steps"])
    return cfg


def apply_time_budget(cfg, max_minutes):
    """Time training steps here and fit the schedule into ``max_minutes`` of training (fit_schedule);
    a scaled schedule is written to OUTPUT_DIR/demo_schedule.json and logged."""
    sec = measure_step_seconds(cfg)
    fitted, f = fit_schedule(cfg, sec, max_minutes)
    est = estimated_train_minutes(cfg, sec)
    if f == 1.0:
        path = os.path.join(cfg.OUTPUT_DIR, SCHEDULE_FILE)
        if os.path.isfile(path):  # from an earlier attempt in this folder that never checkpointed
            os.remove(path)
        logger.info(f"demo: {sec:.3f} s per step here: {cfg.SOLVER.MAX_ITER} iterations fit the "
                    f"{max_minutes:g}-minute budget (about {est:.1f} min)")
        return cfg
    logger.warning(
        f"demo: {sec:.3f} s per step here: {cfg.SOLVER.MAX_ITER} iterations would take about "
        f"{est:.1f} min, over the {max_minutes:g}-minute budget; training {fitted.SOLVER.MAX_ITER} "
        f"iterations with STEPS {tuple(fitted.SOLVER.STEPS)} (x{f:.3g}). Expect a lower AP than "
        "the full schedule's; --max-train-minutes 0 or SOLVER.MAX_ITER on the command line "
        "trains the config's schedule")
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    atomic_write_json(os.path.join(cfg.OUTPUT_DIR, SCHEDULE_FILE), {
        "max_iter": fitted.SOLVER.MAX_ITER, "steps": list(fitted.SOLVER.STEPS),
        "config_max_iter": cfg.SOLVER.MAX_ITER, "seconds_per_step": round(sec, 4),
        "max_train_minutes": max_minutes})
    return fitted


def schedule_for_run(cfg, opts, max_minutes):
    """``cfg`` with the schedule this run trains: a resumed run's saved one, else, under a
    budget, the one fitted to it (apply_time_budget); and under a budget SOLVER.MAX_TRAIN_MINUTES
    set to it (unless ``opts`` set it), which ends the run early if the machine slows down. A
    budget applies where ``max_minutes`` > 0 and ``opts`` (KEY VALUE ...) do not set
    SOLVER.MAX_ITER."""
    keys = opts[::2]
    budgeted = max_minutes > 0 and "SOLVER.MAX_ITER" not in keys
    if os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint")):
        cfg = saved_schedule(cfg, cfg.OUTPUT_DIR)  # resuming: the schedule it started with
    elif budgeted:
        cfg = apply_time_budget(cfg, max_minutes)
    if budgeted and "SOLVER.MAX_TRAIN_MINUTES" not in keys:
        cfg = cfg.clone()
        cfg.SOLVER.MAX_TRAIN_MINUTES = float(max_minutes)
    return cfg


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config-file", default="configs/synthvis/R18_demo.yaml")
    ap.add_argument("--fresh", action="store_true", help="delete OUTPUT_DIR and train from scratch")
    ap.add_argument("--max-train-minutes", type=float, default=14.5,
                    help="scale the schedule down where it would train longer here (0: never)")
    ap.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    args = ap.parse_args(argv)

    start = time.perf_counter()  # the wall time includes the time-budget check
    cfg = get_vis_cfg(args.config_file, args.opts)
    if args.fresh and os.path.isdir(cfg.OUTPUT_DIR):
        shutil.rmtree(cfg.OUTPUT_DIR)
    setup_logger(cfg.OUTPUT_DIR, name="vis_d2")  # time budget, inference progress, evaluation
    verify_datasets(cfg)
    cfg = schedule_for_run(cfg, args.opts, args.max_train_minutes)
    check_resumable(cfg, cfg.OUTPUT_DIR)
    cfg.freeze()
    default_setup(cfg, argparse.Namespace(config_file=args.config_file, opts=args.opts, eval_only=False))

    trainer = VISTrainer(cfg)
    trainer.resume_or_load(resume=True)
    trainer.train()  # ends with an evaluation on DATASETS.TEST (detectron2's EvalHook)
    metrics = trainer._last_eval_results
    wall = time.perf_counter() - start

    name = cfg.DATASETS.TEST[0]
    src = os.path.join(cfg.OUTPUT_DIR, "inference", name, "results.json")
    with open(src) as f:
        results = json.load(f)
    atomic_write_json(os.path.join(cfg.OUTPUT_DIR, "results.json"), results)
    atomic_write_json(os.path.join(cfg.OUTPUT_DIR, "demo_metrics.json"),
                      {"dataset": name, "wall_seconds": round(wall, 1), "iterations": trainer.max_iter,
                       **metrics.get("segm", {})}, indent=2)
    anim, sheet, n = render_one_video(cfg, results, cfg.OUTPUT_DIR)

    print("\n" + "=" * 72)
    print(f"vis_d2 demo: {cfg.MODEL.META_ARCHITECTURE} R{cfg.MODEL.RESNETS.DEPTH}-FPN on {name} "
          f"({cfg.MODEL.DEVICE}), {trainer.max_iter} iterations"
          + (f" (the time budget cut {cfg.SOLVER.MAX_ITER})" if trainer.max_iter < cfg.SOLVER.MAX_ITER else "")
          + f", wall time {wall / 60:.1f} min")
    print(format_metrics_table(metrics["segm"]) if metrics.get("segm") else "no metrics")
    print(f"results: {os.path.join(cfg.OUTPUT_DIR, 'results.json')}")
    print(f"video:   {anim} ({n} tracks drawn)\nsheet:   {sheet}")
    print("=" * 72)
    return metrics


if __name__ == "__main__":
    main()
