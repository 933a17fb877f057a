#!/usr/bin/env python
"""The data analysis of paper Sec. 3.1 (Fig. 2): how much the frames of a video set repeat.

Fig. 2a, the box IoU of the same object in adjacent annotated frames (see
:mod:`vis_d2.data.adjacent_iou` for how absent frames and crowd annotations are handled)::

    DETECTRON2_DATASETS=datasets python tools/analyze_data.py adjacent-iou \\
        --dataset synthvis_train [--output-dir output/data_analysis] \\
        [--name adjacent_iou_synthvis_train] [--bins 20] [--per-track]

writes ``<output-dir>/<name>.png`` (histogram) and ``<name>.csv`` (bin_lo, bin_hi, count, share)
and prints a summary: the number of pairs, mean, median, the shares above 0.5/0.7/0.8/0.9 and
what they say about the set. ``--per-track`` histograms one value per object instead (the mean
over its pairs, the paper's "average IoU score over the video").

Fig. 2b, the accuracy of models trained on N annotated frames per video
(``INPUT.VIS.FRAMES_PER_VIDEO``; 0 = all frames, N > 0 = N uniformly spread frames with pseudo
references, :class:`vis_d2.data.VideoPairDatasetMapper`)::

    python tools/analyze_data.py frames-per-video --frames 1 2 5 10 0 --seeds 0 1 --max-iter 500 \\
        [--config-file configs/synthvis/R18_A1_baseline.yaml] [--datasets more_test_sets ...] \\
        [--output-dir output/frames_per_video] [--figure docs/figures/fig2b_frames_per_video.png] \\
        [--skip-existing] [-- KEY VALUE ...]

trains one model per (N, seed) with ``projects/VIS_Ablation/sweep.py``'s machinery: each run is
its own ``train_net.py`` process in ``<output-dir>/frames<N|all>_seed<S>`` (log in train.log),
trained for exactly ``--max-iter`` iterations (LR steps and warm-up at the config's fractions,
``SOLVER.MAX_TRAIN_MINUTES`` 0: no wall-clock budget, so results do not depend on the machine's
load), then evaluated on the config's ``DATASETS.TEST`` plus ``--datasets``. Metrics are
recomputed from each run's ``results.json`` with the YouTube-VIS metric; the test set's are saved
atomically as the run's ``row_metrics.json``, which ``--skip-existing`` reuses. Outputs in
``<output-dir>``: ``frames_per_video.csv`` (AP, AP50, AP75, AR1, AR10 per run and test set),
``frames_per_video.json`` (the same, the per-N summary and the settings) and
``frames_per_video.png`` (AP against N: the mean over seeds with min-max bars), copied to
``--figure`` when given.
"""
import argparse
import csv
import importlib.util
import io
import logging
import os
import shutil
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, REPO)

from vis_d2.file_io import atomic_write_bytes, atomic_write_json  # noqa: E402

logger = logging.getLogger("vis_d2.analyze_data")

DEFAULT_CONFIG = os.path.join("configs", "synthvis", "R18_A1_baseline.yaml")
FRAMES_FILE = "frames_per_video"
# Set per run by frames-per-video, so the user's overrides must not set them.
RUN_KEYS = ("INPUT.VIS.FRAMES_PER_VIDEO", "SEED", "SOLVER.MAX_TRAIN_MINUTES", "SOLVER.MAX_ITER",
            "SOLVER.STEPS", "SOLVER.WARMUP_ITERS", "OUTPUT_DIR")


def _load_sweep():
    """``projects/VIS_Ablation/sweep.py`` as a module (a script folder, not a package)."""
    name = "vis_ablation_sweep"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(REPO, "projects", "VIS_Ablation", "sweep.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


sweep = _load_sweep()


class DataAnalysisError(ValueError):
    """Bad input to a subcommand; the message names the dataset, file or argument."""


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# ------------------------------------------------------------------------------------------
# adjacent-iou (Fig. 2a)
# ------------------------------------------------------------------------------------------
def load_video_dataset(name: str) -> List[dict]:
    """The records of registered video dataset ``name``; errors name the dataset."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from vis_d2.data.build import check_dataset_registered

    check_dataset_registered(name, "--dataset")
    records = DatasetCatalog.get(name)
    if not records:
        raise DataAnalysisError(f"dataset '{name}' has no videos")
    if not all(isinstance(r, dict) and "file_names" in r for r in records):
        raise DataAnalysisError(f"dataset '{name}' is not a video dataset (its records have no "
                                "'file_names'): an image has no adjacent frames")
    if MetadataCatalog.get(name).get("has_gt", True) is False:
        raise DataAnalysisError(f"dataset '{name}' has no ground truth (an unannotated split): "
                                "there are no boxes to compare")
    return records


def iou_histogram(values: np.ndarray, bins: int):
    """(edges float [bins + 1] over [0, 1], counts int [bins]); 1.0 falls in the last bin."""
    counts, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    return edges, counts


def histogram_csv(edges: np.ndarray, counts: np.ndarray) -> str:
    """bin_lo, bin_hi, count, share (of all values) per bin."""
    total = max(int(counts.sum()), 1)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["bin_lo", "bin_hi", "count", "share"])
    for lo, hi, c in zip(edges[:-1], edges[1:], counts):
        w.writerow([f"{lo:.4f}", f"{hi:.4f}", int(c), repr(float(c) / total)])
    return buf.getvalue()


def histogram_png(edges: np.ndarray, counts: np.ndarray, title: str, xlabel: str) -> bytes:
    """The histogram as bars of the share of values (%) per bin."""
    plt = _pyplot()
    share = 100.0 * counts / max(int(counts.sum()), 1)
    fig, ax = plt.subplots(figsize=(6.0, 3.8), dpi=100)
    try:
        ax.bar(edges[:-1], share, width=np.diff(edges), align="edge", edgecolor="black",
               linewidth=0.5)
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("share (%)")
        ax.set_title(title, fontsize=9)
        fig.tight_layout()
        return _png_bytes(fig)
    finally:
        plt.close(fig)


def reading(summary: Dict[str, float], unit: str) -> str:
    """What the shares say, in the paper's terms (Sec. 3.1: "IoU above 0.8 is dominant")."""
    share = summary["share_above_0.8"]
    if share > 0.5:
        return (f"IoU > 0.8 for {100 * share:.1f}% of the {unit}: as in the paper's YouTube-VIS "
                "2021 analysis, most objects barely move between adjacent annotated frames, so "
                "adjacent frames largely repeat each other and a few frames per video may carry "
                "most of the training signal (Fig. 2b, frames-per-video, tests this).")
    return (f"IoU > 0.8 for only {100 * share:.1f}% of the {unit}: unlike the paper's YouTube-VIS "
            "2021, objects move noticeably between adjacent annotated frames, so the frames of a "
            "video are less redundant here.")


def format_summary(head: str, summary: Dict[str, float], unit: str) -> str:
    """The printed summary: ``head`` (what was counted), then the numbers and their reading."""
    shares = ", ".join(f"> {k[len('share_above_'):]}: {100 * v:.1f}%"
                       for k, v in summary.items() if k.startswith("share_above_"))
    return "\n".join([
        head,
        f"  IoU mean {summary['mean']:.3f}, median {summary['median']:.3f}",
        f"  share with IoU {shares}",
        f"  reading: {reading(summary, unit)}",
    ])


def adjacent_iou(args) -> Dict[str, object]:
    """The adjacent-iou subcommand; returns {"summary", "paths", "text"}."""
    from vis_d2.data.adjacent_iou import adjacent_box_ious, summarize_ious

    records = load_video_dataset(args.dataset)
    try:
        pairs = adjacent_box_ious(records)
    except ValueError as e:
        raise DataAnalysisError(f"dataset '{args.dataset}': {e}") from e
    if len(pairs) == 0:
        raise DataAnalysisError(
            f"dataset '{args.dataset}': no object is in two adjacent annotated frames "
            f"({len(records)} videos), so there is no IoU to histogram")
    values = pairs.per_track_mean() if args.per_track else pairs.ious
    num_objects = len(values) if args.per_track else \
        len(set(zip(pairs.video_ids.tolist(), pairs.track_ids.tolist())))
    if args.per_track:
        unit = "objects"
        head = (f"{args.dataset}: {num_objects} objects in {len(records)} videos, each its mean "
                f"IoU over its pairs of adjacent annotated frames ({len(pairs)} pairs)")
    else:
        unit = "pairs of adjacent annotated frames"
        head = (f"{args.dataset}: {len(pairs)} {unit} ({num_objects} objects in {len(records)} "
                "videos)")
    summary = summarize_ious(values)
    text = format_summary(head, summary, unit)

    edges, counts = iou_histogram(values, args.bins)
    name = args.name or f"adjacent_iou_{args.dataset}"
    paths = {ext: os.path.join(args.output_dir, f"{name}.{ext}") for ext in ("csv", "png")}
    what = "object's mean box IoU over adjacent frames" if args.per_track else \
        "box IoU of an object in adjacent annotated frames"
    title = (f"{args.dataset}: {what} (n={summary['count']}, "
             f"{100 * summary['share_above_0.8']:.0f}% > 0.8)")
    atomic_write_bytes(paths["csv"], histogram_csv(edges, counts).encode("utf-8"))
    atomic_write_bytes(paths["png"], histogram_png(edges, counts, title, "IoU"))
    return {"summary": summary, "paths": paths, "text": text}


# ------------------------------------------------------------------------------------------
# frames-per-video (Fig. 2b)
# ------------------------------------------------------------------------------------------
def frames_label(n: int) -> str:
    return "all" if n == 0 else str(n)


def run_name(n: int, seed: int) -> str:
    """The run's folder in the output dir: ``frames<N|all>_seed<S>``."""
    return f"frames{frames_label(n)}_seed{seed}"


def frames_order(frames: Sequence[int]) -> List[int]:
    """Ascending, with 0 (all frames) last."""
    return sorted(frames, key=lambda n: (n == 0, n))


class FramesPerVideoSweep(sweep.Sweep):
    """The ablation sweep's runner over rows (N, seed) of one config, each row's overrides
    setting ``INPUT.VIS.FRAMES_PER_VIDEO`` and ``SEED``.

    ``test_sets``: every set the runs are evaluated on, the config's ``DATASETS.TEST`` first
    (the sweep scores and keeps the first one's metrics; the others are scored here).
    """

    def __init__(self, args, test_sets: Sequence[str]):
        self.config = os.path.abspath(args.config_file)
        self.test_sets = list(test_sets)
        rows = {}
        for n in frames_order(args.frames):
            for seed in args.seeds:
                opts = ("INPUT.VIS.FRAMES_PER_VIDEO", str(n), "SEED", str(seed),
                        "SOLVER.MAX_TRAIN_MINUTES", "0.0",
                        "DATASETS.TEST", repr(tuple(self.test_sets)))
                name = run_name(n, seed)
                rows[name] = sweep.RowSpec(
                    name, f"{frames_label(n)} frames per video, seed {seed}", tcis=False,
                    multitask=False, bitrack=False, yaml={}, lazy="", opts=opts)
        super().__init__(args, rows)

    def benchmark_overrides(self) -> List[str]:
        return []  # the config file and the user's overrides say everything

    def config_file(self, spec) -> str:
        return self.config

    def results_json(self, name: str, dataset: str) -> str:
        return os.path.join(self.row_dir(name), "inference", dataset, "results.json")

    def run_command(self, cmd: List[str], log_path: str, what: str) -> None:
        # The sweep clears the first test set's results; the others' must not be scored stale.
        name = os.path.basename(os.path.dirname(log_path))
        for ds in self.test_sets[1:]:
            shutil.rmtree(os.path.dirname(self.results_json(name, ds)), ignore_errors=True)
        super().run_command(cmd, log_path, what)

    def check(self) -> None:
        """Before any training: every test set is registered and has ground truth."""
        spec = next(iter(self.rows.values()))
        for ds in self.test_sets:
            self.check_test_set(spec, ds)

    def run_all(self) -> List[Dict[str, object]]:
        """Run (or reuse) every (N, seed); one dict per run and test set: frames, seed,
        dataset, run, and the TABLE_METRICS (fractions)."""
        from vis_d2.evaluation import evaluate_ytvis

        self.check()
        out = []
        for name, spec in self.rows.items():
            n = int(spec.opts[spec.opts.index("INPUT.VIS.FRAMES_PER_VIDEO") + 1])
            seed = int(spec.opts[spec.opts.index("SEED") + 1])
            result = self.run(name)
            per_set = {self.test_sets[0]: result.metrics}
            for ds in self.test_sets[1:]:
                res = self.results_json(name, ds)
                if not os.path.isfile(res):
                    raise DataAnalysisError(
                        f"run {name}: {res} is missing (the run was not evaluated on {ds}); "
                        "rerun without --skip-existing or remove its row_metrics.json")
                metrics = evaluate_ytvis(self.check_test_set(spec, ds), res)
                per_set[ds] = {m: float(metrics[m]) for m in sweep.TABLE_METRICS}
            for ds, metrics in per_set.items():
                out.append({"frames": n, "seed": seed, "dataset": ds, "run": name,
                            **{m: float(metrics[m]) for m in sweep.TABLE_METRICS}})
        return out


def summarize_runs(runs: Sequence[Dict[str, object]]) -> List[Dict[str, object]]:
    """Per (dataset, N): the seeds, the mean of each metric and AP's min and max over seeds."""
    groups: Dict[tuple, List[Dict[str, object]]] = {}
    for r in runs:
        groups.setdefault((r["dataset"], r["frames"]), []).append(r)
    datasets = list(dict.fromkeys(r["dataset"] for r in runs))
    out = []
    for ds in datasets:
        for n in frames_order({k[1] for k in groups if k[0] == ds}):
            rs = groups[(ds, n)]
            aps = [float(r["AP"]) for r in rs]
            row = {"dataset": ds, "frames": n, "seeds": [r["seed"] for r in rs]}
            row.update({m: float(np.mean([float(r[m]) for r in rs])) for m in sweep.TABLE_METRICS})
            row.update({"AP_min": min(aps), "AP_max": max(aps)})
            out.append(row)
    return out


def runs_csv(runs: Sequence[Dict[str, object]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["frames_per_video", "seed", "dataset", *sweep.TABLE_METRICS, "run"])
    for r in runs:
        w.writerow([frames_label(r["frames"]), r["seed"], r["dataset"],
                    *[repr(float(r[m])) for m in sweep.TABLE_METRICS], r["run"]])
    return buf.getvalue()


def summary_markdown(summary: Sequence[Dict[str, object]]) -> str:
    head = ["Test set", "Frames/video", "Seeds", "AP (mean)", "AP min-max", "AP50", "AP75",
            "AR1", "AR10"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for s in summary:
        cells = [s["dataset"], frames_label(s["frames"]), " ".join(map(str, s["seeds"])),
                 f"{s['AP']:.3f}", f"{s['AP_min']:.3f}-{s['AP_max']:.3f}"]
        cells += [f"{s[m]:.3f}" for m in sweep.TABLE_METRICS[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def frames_png(summary: Sequence[Dict[str, object]], title: str) -> bytes:
    """AP against N (evenly spaced, "all" last), one line per test set: mean over seeds with
    min-max bars."""
    plt = _pyplot()
    frames = frames_order({s["frames"] for s in summary})
    xs = {n: i for i, n in enumerate(frames)}
    fig, ax = plt.subplots(figsize=(6.0, 3.8), dpi=100)
    try:
        for ds in dict.fromkeys(s["dataset"] for s in summary):
            rows = [s for s in summary if s["dataset"] == ds]
            x = [xs[s["frames"]] for s in rows]
            mean = np.array([s["AP"] for s in rows])
            err = np.array([mean - [s["AP_min"] for s in rows],
                            np.array([s["AP_max"] for s in rows]) - mean])
            ax.errorbar(x, mean, yerr=err, marker="o", capsize=4, label=ds)
            for xi, m in zip(x, mean):
                ax.annotate(f"{m:.3f}", (xi, m), textcoords="offset points", xytext=(6, -10),
                            fontsize=7)
        ax.set_xticks(range(len(frames)))
        ax.set_xticklabels([frames_label(n) for n in frames])
        ax.set_xlabel("annotated frames per training video (N)")
        ax.set_ylabel("AP (YouTube-VIS, fraction)")
        # AP is in [0, 1]: from 0, with headroom for the labels
        ax.set_ylim(0.0, min(1.05, max(0.05, 1.2 * max(s["AP_max"] for s in summary))))
        ax.legend(fontsize=8, frameon=False)
        ax.set_title(title, fontsize=9)
        fig.tight_layout()
        return _png_bytes(fig)
    finally:
        plt.close(fig)


def config_test_sets(config_file: str, opts: Sequence[str]) -> List[str]:
    from vis_d2.config import get_vis_cfg

    cfg = get_vis_cfg(config_file, list(opts))
    if not cfg.DATASETS.TEST:
        raise DataAnalysisError(f"{config_file}: DATASETS.TEST is empty; the runs need a test set "
                                "with ground truth")
    return list(cfg.DATASETS.TEST)


def frames_per_video(args, runner: Optional[FramesPerVideoSweep] = None) -> Dict[str, object]:
    """The frames-per-video subcommand; returns {"runs", "summary", "paths", "text"}."""
    if runner is None:
        test_sets = config_test_sets(args.config_file, args.opts)
        test_sets += [d for d in args.datasets if d not in test_sets]
        runner = FramesPerVideoSweep(args, test_sets)
    runs = runner.run_all()
    summary = summarize_runs(runs)
    out_dir = runner.out_dir
    paths = {ext: os.path.join(out_dir, f"{FRAMES_FILE}.{ext}") for ext in ("csv", "json", "png")}
    config = os.path.relpath(runner.config, REPO)
    title = (f"{os.path.basename(config)}, {args.max_iter} iterations per run, "
             f"seeds {' '.join(map(str, args.seeds))}")
    png = frames_png(summary, title)
    atomic_write_bytes(paths["csv"], runs_csv(runs).encode("utf-8"))
    atomic_write_json(paths["json"], {
        "config": config, "max_iter": args.max_iter, "opts": list(args.opts),
        "test_sets": runner.test_sets, "runs": runs, "summary": summary}, indent=2)
    atomic_write_bytes(paths["png"], png)
    if args.figure:
        atomic_write_bytes(args.figure, png)
        paths["figure"] = args.figure
    return {"runs": runs, "summary": summary, "paths": paths, "text": summary_markdown(summary)}


# ------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    a = sub.add_parser("adjacent-iou", help="Fig. 2a: box IoU of an object in adjacent frames")
    a.add_argument("--dataset", required=True, help="a registered video dataset")
    a.add_argument("--output-dir", default=os.path.join("output", "data_analysis"))
    a.add_argument("--name", default=None,
                   help="file name of the PNG and CSV, without extension "
                        "(default adjacent_iou_<dataset>)")
    a.add_argument("--bins", type=int, default=20, help="histogram bins over [0, 1]")
    a.add_argument("--per-track", action="store_true",
                   help="one value per object (its mean IoU over its pairs) instead of per pair")

    f = sub.add_parser("frames-per-video", help="Fig. 2b: AP of models trained on N frames/video")
    f.add_argument("--frames", type=int, nargs="+", required=True, metavar="N",
                   help="INPUT.VIS.FRAMES_PER_VIDEO values; 0 = all frames")
    f.add_argument("--seeds", type=int, nargs="+", default=[0], help="SEED values (>= 0)")
    f.add_argument("--max-iter", type=int, required=True,
                   help="training iterations of every run (LR steps and warm-up scaled)")
    f.add_argument("--config-file", default=os.path.join(REPO, DEFAULT_CONFIG))
    f.add_argument("--datasets", nargs="+", default=[],
                   help="test sets to evaluate on besides the config's DATASETS.TEST")
    f.add_argument("--output-dir", default=os.path.join("output", "frames_per_video"))
    f.add_argument("--figure", default=None, help="also write the plot (PNG) to this path")
    f.add_argument("--skip-existing", action="store_true",
                   help="reuse runs whose metrics exist for the same settings; resume the others")
    f.add_argument("--num-gpus", type=int, default=1, help="processes per run (train_net's)")
    f.add_argument("opts", nargs=argparse.REMAINDER,
                   help="config overrides for every run, after --: KEY VALUE ...")

    args = ap.parse_args(argv)
    if args.command == "adjacent-iou":
        if args.bins < 1:
            a.error(f"--bins must be >= 1, got {args.bins}")
        return args
    bad = [n for n in args.frames if n < 0]
    if bad:
        f.error(f"--frames values must be >= 0 (0 = all frames), got {bad}")
    for key, values in (("--frames", args.frames), ("--seeds", args.seeds)):
        if len(set(values)) != len(values):
            f.error(f"{key} lists a value twice: {values}")
    if any(s < 0 for s in args.seeds):
        f.error(f"--seeds must be >= 0 (a negative SEED draws a random one), got {args.seeds}")
    if args.max_iter < 1:
        f.error(f"--max-iter must be >= 1, got {args.max_iter}")
    if not os.path.isfile(args.config_file):
        f.error(f"--config-file {args.config_file} does not exist")
    if args.opts and args.opts[0] == "--":
        args.opts = args.opts[1:]
    if len(args.opts) % 2:
        f.error(f"config overrides come as KEY VALUE pairs, got {len(args.opts)} items: "
                f"{args.opts}")
    taken = [k for k in args.opts[0::2] if k in RUN_KEYS]
    if taken:
        f.error(f"the overrides set {taken}, which frames-per-video sets for each run "
                "(--frames, --seeds, --max-iter, --output-dir)")
    args.lazy = False  # read by the ablation sweep's runner
    return args


def main(argv=None) -> Dict[str, object]:
    args = parse_args(argv)
    import vis_d2.data  # noqa: F401  (registers the datasets)

    if args.command == "adjacent-iou":
        out = adjacent_iou(args)
    else:
        out = frames_per_video(args)
    print(out["text"])
    for p in out["paths"].values():
        print(f"wrote {p}")
    return out


if __name__ == "__main__":
    from detectron2.utils.logger import setup_logger

    from vis_d2.data.build import UnknownDatasetError
    from vis_d2.data.ytvis import YTVISFormatError

    # Here, not in main(): setup_logger stops the "vis_d2" logger's propagation for the process.
    setup_logger(name="vis_d2")
    try:
        main()
    except (DataAnalysisError, sweep.SweepError, UnknownDatasetError, YTVISFormatError,
            FileNotFoundError) as e:
        sys.exit(f"analyze_data: {e}")
