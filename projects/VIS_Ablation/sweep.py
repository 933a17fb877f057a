#!/usr/bin/env python
"""The paper's ablation (Table 1) as one command: train and evaluate each row, then tabulate.

    python projects/VIS_Ablation/sweep.py                    # synthvis, rows A1 A2 A3 A5
    python projects/VIS_Ablation/sweep.py --rows A1 A5 --max-iter 300 --output-dir output/ablation
    python projects/VIS_Ablation/sweep.py --skip-existing    # resume an interrupted sweep
    python projects/VIS_Ablation/sweep.py --lazy             # the LazyConfig rows (configs/)
    python projects/VIS_Ablation/sweep.py --benchmark ytvis_2021 --num-gpus 8 \\
        -- MODEL.WEIGHTS /path/to/coco_mask_rcnn_R50_FPN.pkl MODEL.VIS.CHECKPOINT.TRUST_PKL True

Rows (paper Table 1; A4 = Multi-Source Data is not part of this sweep):

    A1  baseline                 A2  + TCIS               A3  + multi-task (SemSeg, multi-label,
    A5  + BiTrack + label voting (on top of A3)                        mask scoring)

A5 changes inference only, so it is not trained: A3's checkpoint is evaluated with A5's tracker
settings (the table says so). Each row runs in its own ``train_net.py`` process (YAML configs,
default) or this project's ``train_net.py`` process (``--lazy``) with
``OUTPUT_DIR = <output-dir>/<row>``; its log goes to ``<output-dir>/<row>/{train,eval}.log``. The
row's metrics are recomputed here from the ``results.json`` the evaluator wrote, with the same
YouTube-VIS metric, and saved atomically as ``<output-dir>/<row>/row_metrics.json``;
``--skip-existing`` does not rerun a row whose metrics file exists for the same settings (and
resumes a row's training from its last checkpoint). ``--max-iter N`` shortens every trained row
and keeps the LR steps and warm-up at the same fractions of training.

Outputs in ``<output-dir>``: ``ablation.md`` (Markdown table), ``ablation.csv`` and
``ablation.png`` (bar chart) with AP, AP50, AP75, AR1, AR10 and the change in AP against the row
above (in AP points, as the paper's "Delta mAP (%)").
"""
import argparse
import csv
import dataclasses
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Set, Tuple

from vis_d2.file_io import atomic_write_bytes, atomic_write_json

# The trainers run as subprocesses from the repository root, where the config paths start.
PROJECT = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(PROJECT))

logger = logging.getLogger("vis_d2.VIS_Ablation.sweep")

TABLE_METRICS = ("AP", "AP50", "AP75", "AR1", "AR10")
ROW_METRICS_FILE = "row_metrics.json"


class SweepError(RuntimeError):
    """A row failed or the sweep was set up wrongly; the message says which and where."""


@dataclasses.dataclass(frozen=True)
class RowSpec:
    """One row of the ablation table.

    name: "A1"...; label: short description; tcis / multitask / bitrack: the paper's columns
    (bitrack includes label voting); yaml: benchmark -> YAML config (relative to the repo);
    lazy: the LazyConfig file; checkpoint_from: the row whose trained model this row evaluates
    (None: the row trains its own); opts: config overrides of this row alone, after the sweep's
    (``tools/analyze_data.py frames-per-video`` makes one row per setting with them).
    """

    name: str
    label: str
    tcis: bool
    multitask: bool
    bitrack: bool
    yaml: Dict[str, str]
    lazy: str
    checkpoint_from: Optional[str] = None
    opts: Tuple[str, ...] = ()

    @property
    def note(self) -> str:
        if self.checkpoint_from:
            return (f"not trained: {self.checkpoint_from}'s checkpoint evaluated with BiTrack + "
                    "label voting (inference-only change)")
        return ""


def _row(name, label, tcis, multitask, bitrack, synthvis, ytvis_2021, lazy, checkpoint_from=None):
    """A RowSpec whose configs are ``configs/synthvis/<synthvis>.yaml``,
    ``configs/ytvis_2021/<ytvis_2021>.yaml`` and ``projects/VIS_Ablation/configs/<lazy>.py``."""
    yaml = {"synthvis": f"configs/synthvis/{synthvis}.yaml",
            "ytvis_2021": f"configs/ytvis_2021/{ytvis_2021}.yaml"}
    return RowSpec(name, label, tcis, multitask, bitrack, yaml,
                   f"projects/VIS_Ablation/configs/{lazy}.py", checkpoint_from)


ROWS: Dict[str, RowSpec] = {r.name: r for r in [
    _row("A1", "baseline", False, False, False, "R18_A1_baseline", "R50_FPN_baseline",
         "A1_baseline"),
    _row("A2", "+ TCIS", True, False, False, "R18_A2_tcis", "R50_FPN_A2_tcis", "A2_tcis"),
    _row("A3", "+ multi-task", True, True, False, "R18_A3_multitask", "R50_FPN_A3_multitask",
         "A3_multitask"),
    _row("A5", "+ BiTrack + label voting", True, True, True, "R18_A5_bitrack",
         "R50_FPN_A5_noMSD", "A5_bitrack", checkpoint_from="A3"),
]}


# Per benchmark: YAML overrides every row gets. The official YouTube-VIS 2021 valid split has no
# public ground truth, so the ablation trains on train_sub and scores valid_sub
# (python -m vis_d2.data.split --json datasets/ytvis_2021/train.json ...).
BENCHMARK_OVERRIDES = {
    "synthvis": [],
    "ytvis_2021": ["DATASETS.TRAIN", '("ytvis_2021_train_sub",)',
                   "DATASETS.TEST", '("ytvis_2021_valid_sub",)'],
}


@dataclasses.dataclass
class RowResult:
    """A finished row: its spec, the metrics (fractions) and where they came from."""

    spec: RowSpec
    metrics: Dict[str, float]
    config: str = ""
    dataset: str = ""
    trained: bool = True


# ------------------------------------------------------------------------------------------
# Table writers
# ------------------------------------------------------------------------------------------
def ap_deltas(results: Sequence[RowResult]) -> List[Optional[float]]:
    """AP change against the row above, in AP points (x100); None for the first row."""
    out: List[Optional[float]] = [None]
    for prev, cur in zip(results, results[1:]):
        out.append((cur.metrics["AP"] - prev.metrics["AP"]) * 100.0)
    return out


def _check_metrics(results: Sequence[RowResult]) -> None:
    for r in results:
        missing = [m for m in TABLE_METRICS if m not in r.metrics]
        if missing:
            raise SweepError(f"row {r.spec.name}: metrics {missing} missing (has "
                             f"{sorted(r.metrics)})")


def format_markdown(results: Sequence[RowResult], title: str = "") -> str:
    """The ablation table in Markdown: one line per row, metrics with 3 decimals (fractions,
    like the paper), the AP change against the row above in points (``+2.2``)."""
    _check_metrics(results)
    mark = lambda b: "x" if b else ""  # noqa: E731
    head = (["Row", "TCIS", "MultiTask", "BiTrack"] + list(TABLE_METRICS)
            + ["ΔAP (%)", "Notes"])
    lines = []
    if title:
        lines += [f"# {title}", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r, d in zip(results, ap_deltas(results)):
        cells = [r.spec.name, mark(r.spec.tcis), mark(r.spec.multitask), mark(r.spec.bitrack)]
        cells += [f"{r.metrics[m]:.3f}" for m in TABLE_METRICS]
        cells += ["-" if d is None else f"{d:+.1f}", r.spec.note]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Metrics are fractions (YouTube-VIS AP/AR); ΔAP is the change in AP against "
              "the row above, in AP points. BiTrack includes label voting. Multi-Source Data "
              "(paper row A4) is not part of this sweep."]
    return "\n".join(lines) + "\n"


def format_csv(results: Sequence[RowResult]) -> str:
    """The same table as CSV, full precision; ``delta_AP`` in AP points (empty for row 1)."""
    _check_metrics(results)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["row", "label", "tcis", "multitask", "bitrack", *TABLE_METRICS, "delta_AP",
                "trained", "checkpoint_from", "dataset", "config", "notes"])
    for r, d in zip(results, ap_deltas(results)):
        w.writerow([r.spec.name, r.spec.label, int(r.spec.tcis), int(r.spec.multitask),
                    int(r.spec.bitrack), *[repr(float(r.metrics[m])) for m in TABLE_METRICS],
                    "" if d is None else repr(d), int(r.trained), r.spec.checkpoint_from or "",
                    r.dataset, r.config, r.spec.note])
    return buf.getvalue()


def plot_png(results: Sequence[RowResult], title: str = "") -> bytes:
    """A grouped bar chart (one group per row, one bar per metric) as PNG bytes."""
    _check_metrics(results)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, k = len(results), len(TABLE_METRICS)
    width = 0.8 / k
    fig, ax = plt.subplots(figsize=(max(6.0, 1.5 + 1.5 * n), 4.2), dpi=100)
    try:
        for j, m in enumerate(TABLE_METRICS):
            xs = [i + (j - (k - 1) / 2) * width for i in range(n)]
            bars = ax.bar(xs, [r.metrics[m] for r in results], width, label=m)
            if m == "AP":  # the table's headline number above each AP bar
                for b, r in zip(bars, results):
                    ax.annotate(f"{r.metrics[m]:.3f}", (b.get_x() + b.get_width() / 2,
                                                       b.get_height()),
                                ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(n))
        ax.set_xticklabels([f"{r.spec.name}\n{r.spec.label}" for r in results], fontsize=8)
        ax.set_ylabel("YouTube-VIS metric (fraction)")
        top = max([r.metrics[m] for r in results for m in TABLE_METRICS] + [0.0])
        # headroom for the legend above the bars; metrics are at most 1
        ax.set_ylim(0.0, min(1.3, max(0.1, top * 1.3)))
        ax.legend(ncol=k, fontsize=8, loc="upper center", frameon=False)
        if title:
            ax.set_title(title, fontsize=10)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    return buf.getvalue()


def write_tables(results: Sequence[RowResult], out_dir: str, title: str = "") -> Dict[str, str]:
    """Write ``ablation.md``, ``ablation.csv`` and ``ablation.png`` atomically; returns paths."""
    if not results:
        raise SweepError("no row results to tabulate")
    paths = {ext: os.path.join(out_dir, f"ablation.{ext}") for ext in ("md", "csv", "png")}
    atomic_write_bytes(paths["md"], format_markdown(results, title).encode("utf-8"))
    atomic_write_bytes(paths["csv"], format_csv(results).encode("utf-8"))
    atomic_write_bytes(paths["png"], plot_png(results, title))
    return paths


# ------------------------------------------------------------------------------------------
# Running rows
# ------------------------------------------------------------------------------------------
def scale_schedule(max_iter: int, steps: Sequence[int], warmup_iters: int, new_max_iter: int):
    """The LR steps and warm-up of a ``max_iter`` schedule moved to ``new_max_iter`` at the same
    fractions of training (as a LazyConfig ParamScheduler does), so that a short sweep still
    drops the LR. Steps that land on 0, on the last iteration or on an earlier step are dropped.

    Returns:
        (steps as a tuple, warm-up iterations).
    """
    if max_iter < 1 or new_max_iter < 1:
        raise SweepError(f"scale_schedule: iterations must be >= 1, got {max_iter} and "
                         f"{new_max_iter}")
    out: List[int] = []
    for s in steps:
        t = int(round(s * new_max_iter / max_iter))
        if 0 < t < new_max_iter and (not out or t > out[-1]):
            out.append(t)
    warmup = int(round(warmup_iters * new_max_iter / max_iter))
    return tuple(out), warmup


class Sweep:
    """Runs rows (each once per sweep, dependencies first) and collects their results.

    ``rows``: the rows it can run (name -> RowSpec), ROWS unless given.
    """

    def __init__(self, args, rows: Optional[Dict[str, RowSpec]] = None):
        self.args = args
        self.rows = ROWS if rows is None else rows
        self.out_dir = os.path.abspath(args.output_dir)
        self.lazy = bool(args.lazy)
        self.opts = self.benchmark_overrides() + list(args.opts)
        self.done: Dict[str, RowResult] = {}  # rows finished in this sweep (run or skipped)
        self.ran: Set[str] = set()  # rows run (not skipped) in this sweep

    def benchmark_overrides(self) -> List[str]:
        """Overrides every row gets before the user's (BENCHMARK_OVERRIDES; none for --lazy)."""
        return [] if self.lazy else list(BENCHMARK_OVERRIDES[self.args.benchmark])

    # ---- per-row settings ----
    def config_file(self, spec: RowSpec) -> str:
        if self.lazy:
            return os.path.join(REPO, spec.lazy)
        return os.path.join(REPO, spec.yaml[self.args.benchmark])

    def row_dir(self, name: str) -> str:
        return os.path.join(self.out_dir, name)

    def overrides(self, spec: RowSpec) -> List[str]:
        """Config overrides of this row's command: the user's, the row's own (``spec.opts``), then
        the row's output folder and (for a row that trains) ``--max-iter`` with the LR schedule
        scaled to it."""
        row_dir = self.row_dir(spec.name)
        max_iter = None if spec.checkpoint_from else self.args.max_iter
        opts = list(self.opts) + list(spec.opts)
        if self.lazy:
            # The LazyConfig schedule is a ParamScheduler over training progress: it scales.
            ret = opts + [f"train.output_dir={row_dir}"]
            return ret + ([f"train.max_iter={max_iter}"] if max_iter is not None else [])
        ret = opts + ["OUTPUT_DIR", row_dir]
        if max_iter is None:
            return ret
        from vis_d2.config import get_vis_cfg

        cfg = get_vis_cfg(self.config_file(spec), opts)
        steps, warmup = scale_schedule(cfg.SOLVER.MAX_ITER, cfg.SOLVER.STEPS,
                                       cfg.SOLVER.WARMUP_ITERS, max_iter)
        return ret + ["SOLVER.MAX_ITER", str(max_iter), "SOLVER.STEPS", str(steps),
                      "SOLVER.WARMUP_ITERS", str(warmup)]

    def test_set(self, spec: RowSpec) -> str:
        """The (first) test set of the row's config with the sweep's overrides."""
        if self.lazy:
            from detectron2.config import LazyConfig

            cfg = LazyConfig.apply_overrides(LazyConfig.load(self.config_file(spec)),
                                             self.overrides(spec))
            return str(cfg.dataloader.test.dataset)
        from vis_d2.config import get_vis_cfg

        cfg = get_vis_cfg(self.config_file(spec), self.overrides(spec))
        if not cfg.DATASETS.TEST:
            raise SweepError(f"{self.config_file(spec)}: DATASETS.TEST is empty; the ablation "
                             "needs a test set with ground truth")
        return cfg.DATASETS.TEST[0]

    def settings_key(self, spec: RowSpec) -> Dict:
        """What the row's metrics depend on; --skip-existing reuses metrics only if it matches."""
        key = {"mode": "lazy" if self.lazy else "yaml",
               "config": os.path.relpath(self.config_file(spec), REPO), "opts": list(self.opts)}
        if spec.opts:
            key["row_opts"] = list(spec.opts)
        if spec.checkpoint_from:
            key["checkpoint_from"] = self.settings_key(self.rows[spec.checkpoint_from])
        else:
            key["max_iter"] = self.args.max_iter
        return key

    # ---- checks ----
    def check_test_set(self, spec: RowSpec, name: str) -> str:
        """The ground-truth json of test set ``name`` (errors name the row and the set)."""
        from detectron2.data import MetadataCatalog

        from vis_d2.data.build import check_dataset_registered

        check_dataset_registered(name, f"the test set of row {spec.name}")
        meta = MetadataCatalog.get(name)
        if not meta.get("has_gt", False) or not meta.get("json_file", None):
            raise SweepError(
                f"row {spec.name}: test set '{name}' has no ground truth, so it cannot be scored; "
                "use a split with annotations (e.g. <name>_valid_sub from python -m "
                "vis_d2.data.split)")
        return meta.json_file

    # ---- running ----
    def run_command(self, cmd: List[str], log_path: str, what: str) -> None:
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        logger.info(f"{what}: {' '.join(cmd)}  (log: {log_path})")
        start = time.perf_counter()
        with open(log_path, "w") as log:
            proc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            with open(log_path) as f:
                tail = f.read()[-3000:]
            raise SweepError(f"{what} failed (exit code {proc.returncode}); see {log_path}. "
                             f"Last lines:\n{tail}")
        logger.info(f"{what}: done in {time.perf_counter() - start:.0f}s")

    def trainer_script(self) -> str:
        if self.lazy:
            return os.path.join(PROJECT, "train_net.py")
        return os.path.join(REPO, "train_net.py")

    def load_existing(self, spec: RowSpec) -> Optional[RowResult]:
        path = os.path.join(self.row_dir(spec.name), ROW_METRICS_FILE)
        if not os.path.isfile(path):
            return None
        try:
            with open(path) as f:
                data = json.load(f)
            metrics = {m: float(data["metrics"][m]) for m in TABLE_METRICS}
        except (OSError, ValueError, KeyError, TypeError) as e:
            logger.warning(f"row {spec.name}: ignoring unreadable {path} ({e!r}); rerunning")
            return None
        if data.get("settings") != self.settings_key(spec):
            logger.warning(f"row {spec.name}: {path} was written with other settings; rerunning")
            return None
        return RowResult(spec, metrics, data.get("config", ""), data.get("dataset", ""),
                         bool(data.get("trained", True)))

    def run(self, name: str) -> RowResult:
        """Result of row ``name``, running it (and the row it depends on) if needed."""
        if name in self.done:
            return self.done[name]
        spec = self.rows[name]
        if spec.checkpoint_from:
            # The model first: a row evaluating a checkpoint that was just (re)trained is stale.
            self.run(spec.checkpoint_from)
        fresh_model = spec.checkpoint_from in self.ran
        if self.args.skip_existing and not fresh_model:
            existing = self.load_existing(spec)
            if existing is not None:
                ckpt_ok = os.path.isfile(os.path.join(self.row_dir(name), "model_final.pth"))
                if existing.trained and not ckpt_ok:
                    logger.info(f"row {name}: metrics exist but model_final.pth does not")
                else:
                    logger.info(f"row {name}: metrics exist, skipped")
                    self.done[name] = existing
                    return existing

        config = self.config_file(spec)
        test_set = self.test_set(spec)
        gt_json = self.check_test_set(spec, test_set)
        row_dir = self.row_dir(name)
        results_json = os.path.join(row_dir, "inference", test_set, "results.json")
        # Never score a stale file from an earlier run; without it, an evaluation-only run
        # writes to inference/ again rather than beside it.
        shutil.rmtree(os.path.dirname(results_json), ignore_errors=True)
        if (not spec.checkpoint_from and not self.args.skip_existing
                and os.path.isfile(os.path.join(row_dir, "last_checkpoint"))):
            raise SweepError(f"row {name}: {row_dir} holds the checkpoints of an earlier run; "
                             "add --skip-existing to resume it, or give another --output-dir")
        base = [sys.executable, self.trainer_script(), "--config-file", config,
                "--num-gpus", str(self.args.num_gpus)]
        if spec.checkpoint_from:
            weights = os.path.join(self.row_dir(spec.checkpoint_from), "model_final.pth")
            if not os.path.isfile(weights):
                raise SweepError(f"row {name}: {weights} (row {spec.checkpoint_from}) is missing")
            extra = ([f"train.init_checkpoint={weights}"] if self.lazy
                     else ["MODEL.WEIGHTS", weights])
            self.run_command(base + ["--eval-only"] + self.overrides(spec) + extra,
                             os.path.join(row_dir, "eval.log"),
                             f"row {name}: evaluate {spec.checkpoint_from}'s model")
        else:
            # The training run ends with an evaluation on the test set (results.json).
            resume = ["--resume"] if self.args.skip_existing else []
            self.run_command(base + resume + self.overrides(spec),
                             os.path.join(row_dir, "train.log"), f"row {name}: train + evaluate")
        if not os.path.isfile(results_json):
            raise SweepError(f"row {name}: the run finished but wrote no {results_json}")

        from vis_d2.evaluation import evaluate_ytvis

        metrics = dict(evaluate_ytvis(gt_json, results_json))
        result = RowResult(spec, {m: float(metrics[m]) for m in TABLE_METRICS},
                           os.path.relpath(config, REPO), test_set,
                           trained=spec.checkpoint_from is None)
        atomic_write_json(os.path.join(row_dir, ROW_METRICS_FILE), {
            "row": name, "label": spec.label, "config": result.config, "dataset": test_set,
            "trained": result.trained, "checkpoint_from": spec.checkpoint_from,
            "metrics": metrics, "results": os.path.relpath(results_json, self.out_dir),
            "settings": self.settings_key(spec),
        }, indent=2)
        logger.info(f"row {name}: " + ", ".join(f"{m} {result.metrics[m]:.3f}"
                                                 for m in TABLE_METRICS))
        self.done[name] = result
        self.ran.add(name)
        return result


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmark", choices=sorted(BENCHMARK_OVERRIDES), default="synthvis",
                    help="which YAML rows (configs/synthvis R18 or configs/ytvis_2021 R50)")
    ap.add_argument("--rows", nargs="+", default=list(ROWS), metavar="ROW",
                    help=f"rows to run and tabulate, in table order (default: {' '.join(ROWS)})")
    ap.add_argument("--output-dir", default=None,
                    help="default output/ablation_<benchmark>[_lazy]")
    ap.add_argument("--max-iter", type=int, default=None,
                    help="override every trained row's iterations (SOLVER.MAX_ITER / "
                         "train.max_iter); LR steps and warm-up keep their fractions")
    ap.add_argument("--skip-existing", action="store_true",
                    help="do not rerun rows whose metrics file exists; resume unfinished training")
    ap.add_argument("--lazy", action="store_true",
                    help="run the LazyConfig rows of projects/VIS_Ablation (synthvis only)")
    ap.add_argument("--num-gpus", type=int, default=1, help="processes per row (train_net's)")
    ap.add_argument("opts", nargs=argparse.REMAINDER,
                    help="config overrides for every row: KEY VALUE ... (YAML) or key=value "
                         "... (--lazy)")
    args = ap.parse_args(argv)
    unknown = [r for r in args.rows if r not in ROWS]
    if unknown:
        ap.error(f"unknown row(s) {unknown}; the rows are {list(ROWS)} (config overrides go "
                 "after --, e.g. --rows A1 A5 -- MODEL.DEVICE cpu)")
    if len(set(args.rows)) != len(args.rows):
        ap.error(f"--rows lists a row twice: {args.rows}")
    if args.lazy and args.benchmark != "synthvis":
        ap.error("--lazy rows exist for the synthvis benchmark only")
    if args.max_iter is not None and args.max_iter < 1:
        ap.error(f"--max-iter must be >= 1, got {args.max_iter}")
    if args.opts and args.opts[0] == "--":
        args.opts = args.opts[1:]
    if args.output_dir is None:
        args.output_dir = os.path.join(
            "output", f"ablation_{args.benchmark}" + ("_lazy" if args.lazy else ""))
    return args


def run_sweep(args, sweep: Optional[Sweep] = None) -> Dict[str, str]:
    """Run (or reuse) the rows of ``args`` in table order and write the tables; returns paths."""
    sweep = sweep if sweep is not None else Sweep(args)
    rows = [r for r in ROWS if r in args.rows]  # table order
    results = [sweep.run(r) for r in rows]
    title = (f"Ablation on {args.benchmark} ({'LazyConfig' if args.lazy else 'YAML'} rows"
             + (f", {args.max_iter} iterations" if args.max_iter else "") + ")")
    return write_tables(results, sweep.out_dir, title)


def main(argv=None) -> Dict[str, str]:
    args = parse_args(argv)
    from detectron2.utils.logger import setup_logger

    import vis_d2.data  # noqa: F401  (registers the datasets whose ground truth scores the rows)

    setup_logger(name="vis_d2")
    paths = run_sweep(args)
    with open(paths["md"], encoding="utf-8") as f:
        print(f.read())
    for p in paths.values():
        print(f"wrote {p}")
    return paths


if __name__ == "__main__":
    from vis_d2.data.build import UnknownDatasetError

    try:
        main()
    except (SweepError, UnknownDatasetError, FileNotFoundError) as e:
        sys.exit(f"sweep: {e}")
