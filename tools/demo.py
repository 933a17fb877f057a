#!/usr/bin/env python
"""`make demo`: train the R18 demo on the synthetic benchmark, evaluate it with tracking, and
render one validation video.

    python tools/demo.py [--config-file configs/synthvis/R18_demo.yaml] [--fresh] [opts ...]

Writes under OUTPUT_DIR (default output/demo): the checkpoints, `results.json` (YouTube-VIS
format), `demo_metrics.json` (AP/AR and wall time; detectron2's own `metrics.json` keeps the
training events), `<video>.gif` (every frame with coloured masks, boxes and track ids) and
`<video>_sheet.png` (a contact sheet of a few frames). Re-running resumes from the last
checkpoint (a finished run goes straight to evaluation); `--fresh` starts over.

Time budget (`--max-train-minutes`, default 14.5): the run sets SOLVER.MAX_TRAIN_MINUTES to it,
so where this machine is too slow for the config's schedule, training ends earlier, on a
compressed LR schedule, and gives steps back while the LR is flat if the pace picks up
(vis_d2.engine.cpu_short_run; a resumed run keeps the decision and counts the minutes spent).
The schedule is never lengthened beyond the config's. A SOLVER.MAX_ITER given on the command
line, or `--max-train-minutes 0`, turns it off.
"""
import argparse
import json
import logging
import os
import shutil
import time

import yaml

# vis_d2's first: they register its datasets and model components, and import detectron2
# without the FutureWarnings of its import-time torch.jit.script calls (vis_d2/quiet_import.py).
import vis_d2.data  # noqa: F401
import vis_d2.modeling  # noqa: F401
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import default_setup
from detectron2.utils.logger import setup_logger

from vis_d2.config import get_vis_cfg
from vis_d2.data.build import verify_datasets
from vis_d2.data.frames import read_frame
from vis_d2.engine import VISTrainer
from vis_d2.engine.output_dir import claim_output_dir, keep_earlier_config
from vis_d2.evaluation.ytvis_eval import format_metrics_table
from vis_d2.file_io import atomic_write_json
from vis_d2.visualization import contact_sheet, render_video

logger = logging.getLogger("vis_d2.demo")


def render_one_video(cfg, results, out_dir):
    """Draw the tracked predictions of the validation video with the most ground-truth tracks."""
    name = cfg.DATASETS.TEST[0]
    records = DatasetCatalog.get(name)
    meta = MetadataCatalog.get(name)
    record = max(records, key=lambda r: (len({a["track_id"] for f in r["annotations"] for a in f}), -r["video_id"]))
    json_to_contiguous = meta.thing_dataset_id_to_contiguous_id
    preds = [dict(p, category_id=json_to_contiguous[p["category_id"]])
             for p in results if p["video_id"] == record["video_id"]
             and p["score"] >= cfg.TEST.VIS.PREDICT_SCORE_THRESH]
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


def with_time_budget(cfg, opts, max_minutes):
    """``cfg`` with SOLVER.MAX_TRAIN_MINUTES set to ``max_minutes`` where a budget applies:
    ``max_minutes`` > 0, and ``opts`` (KEY VALUE ...) set neither SOLVER.MAX_ITER (a schedule
    asked for is trained whole) nor SOLVER.MAX_TRAIN_MINUTES itself."""
    keys = opts[::2]
    if max_minutes > 0 and "SOLVER.MAX_ITER" not in keys and "SOLVER.MAX_TRAIN_MINUTES" not in keys:
        cfg = cfg.clone()
        cfg.SOLVER.MAX_TRAIN_MINUTES = float(max_minutes)
        logger.info(f"demo: training within {max_minutes:g} minutes (SOLVER.MAX_TRAIN_MINUTES): "
                    f"the {cfg.SOLVER.MAX_ITER}-step schedule ends earlier, compressed, where "
                    "this machine is too slow for it")
    return cfg


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config-file", default="configs/synthvis/R18_demo.yaml")
    ap.add_argument("--fresh", action="store_true", help="delete OUTPUT_DIR and train from scratch")
    ap.add_argument("--max-train-minutes", type=float, default=14.5,
                    help="end training within this many minutes, on a compressed schedule (0: no limit)")
    ap.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    args = ap.parse_args(argv)

    start = time.perf_counter()
    cfg = get_vis_cfg(args.config_file, args.opts)
    if args.fresh and os.path.isdir(cfg.OUTPUT_DIR):
        shutil.rmtree(cfg.OUTPUT_DIR)
    claim_output_dir(cfg.OUTPUT_DIR)  # two demos into one folder would mix their runs
    setup_logger(cfg.OUTPUT_DIR, name="vis_d2")  # time budget, inference progress, evaluation
    verify_datasets(cfg)
    cfg = with_time_budget(cfg, args.opts, args.max_train_minutes)
    check_resumable(cfg, cfg.OUTPUT_DIR)
    cfg.freeze()
    with keep_earlier_config(cfg.OUTPUT_DIR):
        default_setup(cfg, argparse.Namespace(config_file=args.config_file, opts=args.opts,
                                              eval_only=False))

    trainer = VISTrainer(cfg)
    trainer.resume_or_load(resume=True)
    metrics = trainer.train()  # ends with an evaluation on DATASETS.TEST (detectron2's EvalHook)
    wall = time.perf_counter() - start

    name = cfg.DATASETS.TEST[0]
    src = os.path.join(cfg.OUTPUT_DIR, "inference", name, "results.json")
    with open(src) as f:
        results = json.load(f)
    atomic_write_json(os.path.join(cfg.OUTPUT_DIR, "results.json"), results)
    atomic_write_json(os.path.join(cfg.OUTPUT_DIR, "demo_metrics.json"),
                      {"dataset": name, "wall_seconds": round(wall, 1), "iterations": trainer.max_iter,
                       "precision": trainer.precision,
                       **metrics.get("segm", {})}, indent=2)
    anim, sheet, n = render_one_video(cfg, results, cfg.OUTPUT_DIR)

    print("\n" + "=" * 72)
    print(f"vis_d2 demo: {cfg.MODEL.META_ARCHITECTURE} R{cfg.MODEL.RESNETS.DEPTH}-FPN on {name} "
          f"({cfg.MODEL.DEVICE}, {trainer.precision}), {trainer.max_iter} iterations"
          + (f" (the time budget cut {cfg.SOLVER.MAX_ITER})" if trainer.max_iter < cfg.SOLVER.MAX_ITER else "")
          + f", wall time {wall / 60:.1f} min")
    print(format_metrics_table(metrics["segm"]) if metrics.get("segm") else "no metrics")
    print(f"results: {os.path.join(cfg.OUTPUT_DIR, 'results.json')}")
    print(f"video:   {anim} ({n} tracks drawn)\nsheet:   {sheet}")
    print("=" * 72)
    return metrics


if __name__ == "__main__":
    main()
