#!/usr/bin/env python
"""The paper's ablation (Table 1) as one command: train and evaluate each row once per seed, score
every model on the config's test set and on unseen-seed splits, then tabulate mean and spread.

    python projects/VIS_Ablation/sweep.py --seeds 0 1 --max-iter 800 \\
        --unseen-split s11=output/splits/s11@11 --skip-existing     # the whole synthetic table
    python projects/VIS_Ablation/sweep.py --rows A1 A5 --max-iter 300 --output-dir output/ablation
    python projects/VIS_Ablation/sweep.py --lazy              # the LazyConfig rows (configs/)
    python projects/VIS_Ablation/sweep.py --benchmark ytvis_2021 --num-gpus 8 \\
        -- MODEL.WEIGHTS /path/to/coco_mask_rcnn_R50_FPN.pkl MODEL.VIS.CHECKPOINT.TRUST_PKL True

Rows (paper Table 1, then the extra rows; ROWS below has each one's configs):

    A1           baseline, paper-faithful (the demo recipe's extras that the paper lacks are off)
    A2           + TCIS                      A3   + multi-task (SemSeg, multi-label, mask scoring)
    A4           + Multi-Source Data         A5   + BiTrack (Algorithm 2), no label voting
    A5+LV        A5 + label voting           A5-disjoint  A5 with vis_d2's "disjoint" merge
    A1-demo      the demo recipe (synthvis only), A1's extras on

A5, A5+LV and A5-disjoint change inference only: they are not trained, A4's checkpoint of the
same seed is evaluated with their tracker settings. ΔAP is taken against the row each row builds
on (``RowSpec.base``: A2 on A1, ..., A5+LV on A5, A1-demo on A1) when it is in the table, else
against the row above.

Each (row, seed) runs in its own ``train_net.py`` process (YAML configs, default) or this
project's ``train_net.py`` process (``--lazy``) with ``SEED k`` and ``OUTPUT_DIR =
<output-dir>/<row>/seed<k>``; logs go to ``{train,eval}.log`` there. The metrics are recomputed
here from the ``results.json`` the evaluator wrote, with the YouTube-VIS metric
(:func:`vis_d2.evaluation.evaluate_ytvis`), and saved atomically as ``row_metrics.json``.

``--unseen-split NAME=ROOT[@SEED]`` (repeatable) scores every (row, seed) model again on the
test set found under another ``DETECTRON2_DATASETS`` root (the eval process gets that
environment; its output goes to ``<row>/seed<k>/unseen_<NAME>/``). For the synthetic benchmark
ROOT's ``synthvis/valid.json`` is another generator seed's videos; with ``@SEED`` the sweep
generates it when missing (``python -m vis_d2.data.synthetic --out ROOT/synthvis --train-videos 0
--val-videos 40 --seed SEED --image-set-size 0 --msd-set-size 0``, the "s11" split of
docs/BENCHMARKS.md for SEED 11).

``--skip-existing`` does not rerun a (row, seed, split) whose metrics file exists for the same
settings, and resumes an unfinished training from its last checkpoint; a model retrained in this
sweep is scored again everywhere. ``--max-iter N`` shortens every trained row and keeps the LR
steps and warm-up at the same fractions of training.

Outputs in ``<output-dir>``: ``ablation.md`` (one table per split: mean ± half the range over
seeds per metric, ΔAP in AP points on the means, the per-seed APs, and the command),
``ablation.csv`` (every (row, seed, split) number) and ``ablation.png`` (AP mean per row with
min-max error bars, one bar group per split).
"""
import argparse
import csv
import dataclasses
import io
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Mapping, Optional, Sequence, Set, Tuple

from vis_d2.file_io import atomic_write_bytes, atomic_write_json

# The trainers run as subprocesses from the repository root, where the config paths start.
PROJECT = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(PROJECT))

logger = logging.getLogger("vis_d2.VIS_Ablation.sweep")

TABLE_METRICS = ("AP", "AP50", "AP75", "AR1", "AR10")
ROW_METRICS_FILE = "row_metrics.json"
# An unseen synthetic split is as large as docs/BENCHMARKS.md's "s11": 40 videos.
UNSEEN_VIDEOS = 40
# The generator seed of `make data`'s synthvis_train / synthvis_val: not unseen.
TRAIN_GENERATOR_SEED = 0


class SweepError(RuntimeError):
    """A row failed or the sweep was set up wrongly; the message says which and where."""


@dataclasses.dataclass(frozen=True)
class RowSpec:
    """One row of the ablation table.

    name: "A1"...; label: what the row adds; tcis / multitask / msd / bitrack / label_voting:
    the paper's columns (and label voting, which Table 1 does not have); yaml: benchmark -> YAML
    config (relative to the repo); lazy: the LazyConfig file; checkpoint_from: the row whose
    trained model (of the same seed) this row evaluates (None: the row trains its own); opts:
    config overrides of this row alone, after the sweep's (``tools/analyze_data.py
    frames-per-video`` makes one row per setting with them); base: the row this one adds to (ΔAP
    is taken against it).
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
    msd: bool = False
    label_voting: bool = False
    base: Optional[str] = None

    @property
    def note(self) -> str:
        if self.checkpoint_from:
            return f"not trained: {self.checkpoint_from}'s checkpoint (inference-only change)"
        return ""


def _row(name, label, flags, synthvis, ytvis_2021, lazy, base, checkpoint_from=None):
    """A RowSpec whose configs are ``configs/synthvis/<synthvis>.yaml``,
    ``configs/ytvis_2021/<ytvis_2021>.yaml`` (None: the row exists for synthvis only) and
    ``projects/VIS_Ablation/configs/<lazy>.py``; ``flags``: the components it has, of "tcis",
    "multitask", "msd", "bitrack", "lv"."""
    unknown = set(flags) - {"tcis", "multitask", "msd", "bitrack", "lv"}
    assert not unknown, unknown
    yaml = {"synthvis": f"configs/synthvis/{synthvis}.yaml"}
    if ytvis_2021:
        yaml["ytvis_2021"] = f"configs/ytvis_2021/{ytvis_2021}.yaml"
    return RowSpec(name, label, "tcis" in flags, "multitask" in flags, "bitrack" in flags, yaml,
                   f"projects/VIS_Ablation/configs/{lazy}.py", checkpoint_from, msd="msd" in flags,
                   label_voting="lv" in flags, base=base)


_MT = ("tcis", "multitask")
# Table order: the paper's chain A1..A5 (A2..A5 build on the paper-faithful A1; README.md says
# why), then the extra rows.
ROWS: Dict[str, RowSpec] = {r.name: r for r in [
    _row("A1", "baseline (paper-faithful)", (), "R18_A1_paper", "R50_FPN_baseline", "A1_paper",
         base=None),
    _row("A2", "+ TCIS", ("tcis",), "R18_A2_tcis", "R50_FPN_A2_tcis", "A2_tcis", base="A1"),
    _row("A3", "+ multi-task", _MT, "R18_A3_multitask", "R50_FPN_A3_multitask", "A3_multitask",
         base="A2"),
    _row("A4", "+ MSD", _MT + ("msd",), "R18_A4_msd", "R50_FPN_A4_msd", "A4_msd", base="A3"),
    _row("A5", "+ BiTrack", _MT + ("msd", "bitrack"), "R18_A5_bitrack", "R50_FPN_A5_bitrack",
         "A5_bitrack", base="A4", checkpoint_from="A4"),
    _row("A5+LV", "+ label voting", _MT + ("msd", "bitrack", "lv"), "R18_A5_lv", "R50_FPN_A5_lv",
         "A5_lv", base="A5", checkpoint_from="A4"),
    _row("A5-disjoint", "BiTrack, disjoint merge", _MT + ("msd", "bitrack"), "R18_A5_disjoint",
         "R50_FPN_A5_disjoint", "A5_disjoint", base="A5", checkpoint_from="A4"),
    _row("A1-demo", "demo recipe", (), "R18_A1_baseline", None, "A1_baseline", base="A1"),
]}


def default_rows(benchmark: str) -> List[str]:
    """The rows that have a config for ``benchmark``, in table order."""
    return [n for n, r in ROWS.items() if benchmark in r.yaml]


# Per benchmark: YAML overrides every row gets. The official YouTube-VIS 2021 valid split has no
# public ground truth, so the ablation trains on train_sub and scores valid_sub
# (python -m vis_d2.data.split --json datasets/ytvis_2021/train.json ...).
BENCHMARK_OVERRIDES = {
    "synthvis": [],
    "ytvis_2021": ["DATASETS.TRAIN", '("ytvis_2021_train_sub",)',
                   "DATASETS.TEST", '("ytvis_2021_valid_sub",)'],
}


@dataclasses.dataclass(frozen=True)
class UnseenSplit:
    """A test split under another datasets root: ``name`` (a folder name), ``root`` (absolute
    DETECTRON2_DATASETS for its evaluation), ``generator_seed`` (synthvis: generate it with this
    seed when missing; None: it must exist)."""

    name: str
    root: str
    generator_seed: Optional[int] = None


def parse_unseen_split(text: str) -> UnseenSplit:
    """``NAME=ROOT[@SEED]`` -> UnseenSplit (ROOT made absolute); ValueError says what is wrong."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise ValueError(f"--unseen-split {text!r}: expected NAME=ROOT or NAME=ROOT@SEED")
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"--unseen-split {text!r}: NAME {name!r} must be letters, digits, - or _ "
                         "(it names a folder)")
    root, at, seed = rest.rpartition("@") if "@" in rest else (rest, "", "")
    generator_seed = None
    if at:
        try:
            generator_seed = int(seed)
        except ValueError:
            raise ValueError(f"--unseen-split {text!r}: SEED {seed!r} is not an integer") from None
        if generator_seed < 0 or generator_seed == TRAIN_GENERATOR_SEED:
            raise ValueError(f"--unseen-split {text!r}: SEED must be >= 0 and not "
                             f"{TRAIN_GENERATOR_SEED}, the seed of the training videos")
    return UnseenSplit(name, os.path.abspath(os.path.expanduser(root)), generator_seed)


def synthvis_generate_command(split: UnseenSplit) -> List[str]:
    """The generator command that writes ``split``'s videos (no training videos, no image sets)."""
    return [sys.executable, "-m", "vis_d2.data.synthetic", "--out",
            os.path.join(split.root, "synthvis"), "--train-videos", "0", "--val-videos",
            str(UNSEEN_VIDEOS), "--seed", str(split.generator_seed), "--image-set-size", "0",
            "--msd-set-size", "0"]


@dataclasses.dataclass
class RowResult:
    """One finished (row, seed, split): its spec, the metrics (fractions) and where they came
    from. ``seed`` None: the config's own SEED; ``split``: the split's name (the test set's
    for the config's own)."""

    spec: RowSpec
    metrics: Dict[str, float]
    config: str = ""
    dataset: str = ""
    trained: bool = True
    seed: Optional[int] = None
    split: str = ""


# ------------------------------------------------------------------------------------------
# Summaries and table writers
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass
class RowSummary:
    """A row on one split over its seeds: the mean, minimum and maximum of each metric, the
    per-seed APs (in ``seeds`` order) and the AP change against ``delta_vs`` in AP points."""

    spec: RowSpec
    split: str
    seeds: List[Optional[int]]
    mean: Dict[str, float]
    low: Dict[str, float]
    high: Dict[str, float]
    aps: List[float]
    delta_ap: Optional[float] = None
    delta_vs: str = ""

    def half_range(self, metric: str) -> float:
        return (self.high[metric] - self.low[metric]) / 2.0


def _check_metrics(results: Sequence[RowResult]) -> None:
    for r in results:
        missing = [m for m in TABLE_METRICS if m not in r.metrics]
        if missing:
            raise SweepError(f"row {r.spec.name}: metrics {missing} missing (has "
                             f"{sorted(r.metrics)})")


def split_names(results: Sequence[RowResult]) -> List[str]:
    """The splits of ``results`` in order of first appearance."""
    return list(dict.fromkeys(r.split for r in results))


def summarize(results: Sequence[RowResult]) -> Dict[str, List[RowSummary]]:
    """Per split, one RowSummary per row (in the order the rows first appear) over its seeds;
    ΔAP (on the means) against the row's ``base`` where that row is in the table, else against
    the row above."""
    _check_metrics(results)
    out: Dict[str, List[RowSummary]] = {}
    for split in split_names(results):
        groups: Dict[str, List[RowResult]] = {}
        for r in results:
            if r.split == split:
                groups.setdefault(r.spec.name, []).append(r)
        rows = []
        for rs in groups.values():
            rs = sorted(rs, key=lambda r: (r.seed is None, r.seed or 0))
            seeds = [r.seed for r in rs]
            if len(set(seeds)) != len(seeds):
                raise SweepError(f"row {rs[0].spec.name}, split {split}: seed listed twice "
                                 f"({seeds})")
            vals = {m: [float(r.metrics[m]) for r in rs] for m in TABLE_METRICS}
            rows.append(RowSummary(rs[0].spec, split, seeds,
                                   {m: sum(v) / len(v) for m, v in vals.items()},
                                   {m: min(v) for m, v in vals.items()},
                                   {m: max(v) for m, v in vals.items()}, vals["AP"]))
        by_name = {s.spec.name: s for s in rows}
        for i, s in enumerate(rows):
            ref = by_name.get(s.spec.base) if s.spec.base else None
            if ref is None and i > 0:
                ref = rows[i - 1]
            if ref is not None:
                s.delta_ap = (s.mean["AP"] - ref.mean["AP"]) * 100.0
                s.delta_vs = ref.spec.name
        out[split] = rows
    return out


def _flags(spec: RowSpec) -> List[str]:
    mark = lambda b: "x" if b else ""  # noqa: E731
    return [mark(spec.tcis), mark(spec.multitask), mark(spec.msd), mark(spec.bitrack),
            mark(spec.label_voting)]


def format_markdown(results: Sequence[RowResult], title: str = "", command: str = "") -> str:
    """One Markdown table per split: per row the mean ± half the range over seeds of each metric
    (fractions, 3 decimals), ΔAP on the means in AP points and the row it is against, the
    per-seed APs; then the command that reproduces it."""
    summaries = summarize(results)
    head = (["Row", "Adds", "TCIS", "MultiTask", "MSD", "BiTrack", "LV"] + list(TABLE_METRICS)
            + ["ΔAP (vs)", "AP per seed", "Notes"])
    lines = [f"# {title}", ""] if title else []
    for split, rows in summaries.items():
        seeds = rows[0].seeds if rows else []
        lines += [f"## {split}", "",
                  "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        for s in rows:
            cells = [s.spec.name, s.spec.label] + _flags(s.spec)
            for m in TABLE_METRICS:
                spread = f" ±{s.half_range(m):.3f}" if len(s.seeds) > 1 else ""
                cells.append(f"{s.mean[m]:.3f}{spread}")
            cells.append("-" if s.delta_ap is None else f"{s.delta_ap:+.1f} ({s.delta_vs})")
            cells.append(" / ".join(f"{a:.3f}" for a in s.aps))
            note = s.spec.note
            if s.seeds != seeds:
                note = "; ".join(filter(None, [note, f"seeds {_seed_list(s.seeds)}"]))
            cells.append(note)
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", f"Seeds {_seed_list(seeds)}: each cell is the mean over seeds ± half the "
                  "range (max - min) / 2; \"AP per seed\" lists the seeds' APs in that order.", ""]
    lines += ["Metrics are fractions (YouTube-VIS AP/AR); ΔAP is the change of the mean AP "
              "against the row in brackets (the row it builds on, else the row above), in AP "
              "points. LV = label voting."]
    if command:
        lines += ["", "Reproduce:", "", "```bash", command, "```"]
    return "\n".join(lines) + "\n"


def _seed_list(seeds: Sequence[Optional[int]]) -> str:
    return ", ".join("config's" if s is None else str(s) for s in seeds)


def format_csv(results: Sequence[RowResult]) -> str:
    """Every (row, seed, split) at full precision; ``delta_AP`` is the row's ΔAP on the means of
    its split (AP points, empty for the first row), repeated on each of its seeds' lines."""
    summaries = summarize(results)
    deltas = {(s.split, s.spec.name): s for rows in summaries.values() for s in rows}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["row", "label", "tcis", "multitask", "msd", "bitrack", "label_voting", "seed",
                "split", "dataset", *TABLE_METRICS, "delta_AP", "delta_vs", "trained",
                "checkpoint_from", "config"])
    for r in results:
        s = deltas[(r.split, r.spec.name)]
        w.writerow([r.spec.name, r.spec.label, int(r.spec.tcis), int(r.spec.multitask),
                    int(r.spec.msd), int(r.spec.bitrack), int(r.spec.label_voting),
                    "" if r.seed is None else r.seed, r.split, r.dataset,
                    *[repr(float(r.metrics[m])) for m in TABLE_METRICS],
                    "" if s.delta_ap is None else repr(s.delta_ap), s.delta_vs, int(r.trained),
                    r.spec.checkpoint_from or "", r.config])
    return buf.getvalue()


def plot_png(results: Sequence[RowResult], title: str = "") -> bytes:
    """One bar chart: a bar group per split, in it one bar per row (the AP mean over seeds, its
    value above the error bar) with min-max error bars. PNG bytes."""
    summaries = summarize(results)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = list(summaries)
    names = list(dict.fromkeys(s.spec.name for rows in summaries.values() for s in rows))
    k = len(names)
    width = 0.8 / k
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 + len(splits) * (0.6 + 0.45 * k)), 4.2),
                           dpi=100)
    try:
        colors = plt.get_cmap("tab10")
        for j, name in enumerate(names):
            xs, means, highs, err = [], [], [], [[], []]
            for i, split in enumerate(splits):
                s = next((s for s in summaries[split] if s.spec.name == name), None)
                if s is None:
                    continue
                xs.append(i + (j - (k - 1) / 2) * width)
                means.append(s.mean["AP"])
                highs.append(s.high["AP"])
                err[0].append(s.mean["AP"] - s.low["AP"])
                err[1].append(s.high["AP"] - s.mean["AP"])
            bars = ax.bar(xs, means, width, yerr=err, capsize=3, label=name,
                          color=colors(j % 10))
            for b, m, h in zip(bars, means, highs):
                ax.annotate(f"{m:.3f}", (b.get_x() + b.get_width() / 2, h), ha="center",
                            va="bottom", fontsize=6, xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(range(len(splits)))
        ax.set_xticklabels(splits)
        ax.set_ylabel("AP (YouTube-VIS, fraction)")
        top = max([s.high["AP"] for rows in summaries.values() for s in rows] + [0.0])
        # headroom for the values and the legend; AP is at most 1
        ax.set_ylim(0.0, min(1.35, max(0.1, top * 1.35)))
        ax.legend(ncol=min(k, 8), fontsize=7, loc="upper center", frameon=False)
        ax.set_title((title + "\n" if title else "") + "AP mean over seeds, bars min-max",
                     fontsize=9)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    return buf.getvalue()


def write_tables(results: Sequence[RowResult], out_dir: str, title: str = "",
                 command: str = "") -> Dict[str, str]:
    """Write ``ablation.md``, ``ablation.csv`` and ``ablation.png`` atomically; returns paths."""
    if not results:
        raise SweepError("no row results to tabulate")
    paths = {ext: os.path.join(out_dir, f"ablation.{ext}") for ext in ("md", "csv", "png")}
    atomic_write_bytes(paths["md"], format_markdown(results, title, command).encode("utf-8"))
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


def datasets_root() -> str:
    """The DETECTRON2_DATASETS root of this process (vis_d2.data.builtin's)."""
    return os.path.abspath(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")))


class Sweep:
    """Runs (row, seed) units (each once per sweep, the row it evaluates first) and collects their
    results; ``seed`` None runs a row with its config's SEED in ``<output-dir>/<row>``.

    ``rows``: the rows it can run (name -> RowSpec), ROWS unless given.
    """

    def __init__(self, args, rows: Optional[Dict[str, RowSpec]] = None):
        self.args = args
        self.rows = ROWS if rows is None else rows
        self.out_dir = os.path.abspath(args.output_dir)
        self.lazy = bool(args.lazy)
        self.opts = self.benchmark_overrides() + list(args.opts)
        self.unseen: List[UnseenSplit] = list(getattr(args, "unseen_split", None) or [])
        self.done: Dict[Tuple[str, Optional[int]], RowResult] = {}  # run or skipped
        self.ran: Set[Tuple[str, Optional[int]]] = set()  # run (not skipped) in this sweep

    def benchmark_overrides(self) -> List[str]:
        """Overrides every row gets before the user's (BENCHMARK_OVERRIDES; none for --lazy)."""
        return [] if self.lazy else list(BENCHMARK_OVERRIDES[self.args.benchmark])

    # ---- per-row settings ----
    def config_file(self, spec: RowSpec) -> str:
        if self.lazy:
            return os.path.join(REPO, spec.lazy)
        if self.args.benchmark not in spec.yaml:
            raise SweepError(f"row {spec.name} has no {self.args.benchmark} config (it has "
                             f"{sorted(spec.yaml)})")
        return os.path.join(REPO, spec.yaml[self.args.benchmark])

    def row_dir(self, name: str, seed: Optional[int] = None) -> str:
        base = os.path.join(self.out_dir, name)
        return base if seed is None else os.path.join(base, f"seed{seed}")

    def overrides(self, spec: RowSpec, seed: Optional[int] = None,
                  out_dir: Optional[str] = None, eval_only: bool = False) -> List[str]:
        """Config overrides of a (row, seed) command: the user's, the row's own (``spec.opts``),
        the seed, the output folder (``out_dir``, default the unit's) and, for a command that
        trains (not ``eval_only``, not a row evaluating another's model), ``--max-iter`` with the
        LR schedule scaled to it."""
        out_dir = out_dir or self.row_dir(spec.name, seed)
        trains = not (eval_only or spec.checkpoint_from)
        max_iter = self.args.max_iter if trains else None
        opts = list(self.opts) + list(spec.opts)
        if self.lazy:
            # The LazyConfig schedule is a ParamScheduler over training progress: it scales.
            ret = opts + ([f"train.seed={seed}"] if seed is not None else [])
            ret += [f"train.output_dir={out_dir}"]
            return ret + ([f"train.max_iter={max_iter}"] if max_iter is not None else [])
        ret = opts + (["SEED", str(seed)] if seed is not None else []) + ["OUTPUT_DIR", out_dir]
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

    def settings_key(self, spec: RowSpec, seed: Optional[int] = None) -> Dict:
        """What the (row, seed)'s metrics depend on; --skip-existing reuses metrics only if it
        matches."""
        key = {"mode": "lazy" if self.lazy else "yaml",
               "config": os.path.relpath(self.config_file(spec), REPO), "opts": list(self.opts)}
        if seed is not None:
            key["seed"] = seed
        if spec.opts:
            key["row_opts"] = list(spec.opts)
        if spec.checkpoint_from:
            key["checkpoint_from"] = self.settings_key(self.rows[spec.checkpoint_from], seed)
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

    def unseen_gt(self, spec: RowSpec, split: UnseenSplit) -> str:
        """The ground-truth json of the row's test set under ``split.root``: the same path
        relative to the datasets root as this process's."""
        own = os.path.abspath(self.check_test_set(spec, self.test_set(spec)))
        rel = os.path.relpath(own, datasets_root())
        if rel.startswith(os.pardir):
            raise SweepError(f"split {split.name}: the test set's json {own} is not under the "
                             f"datasets root {datasets_root()} (DETECTRON2_DATASETS), so its "
                             f"place under {split.root} is unknown")
        gt = os.path.join(split.root, rel)
        if os.path.realpath(gt) == os.path.realpath(own):
            raise SweepError(f"split {split.name}: {gt} is the config's own test set; give the "
                             "root of another generator seed's videos")
        return gt

    def prepare_splits(self, spec: RowSpec) -> None:
        """Before any training: every unseen split's ground truth exists, generated first where
        the split names a generator seed (synthvis only)."""
        test_set = self.test_set(spec)
        for split in self.unseen:
            if split.name == test_set:
                raise SweepError(f"--unseen-split {split.name}: the config's test set has that "
                                 "name; give the split another")
            gt = self.unseen_gt(spec, split)
            if os.path.isfile(gt):
                continue
            synthvis_gt = os.path.join(split.root, "synthvis", "valid.json")
            if split.generator_seed is None or gt != synthvis_gt:
                example = synthvis_generate_command(dataclasses.replace(split, generator_seed=11))
                raise SweepError(
                    f"split {split.name}: {gt} is missing. For the synthetic benchmark give "
                    f"{split.name}={split.root}@SEED to generate it, or generate it yourself, "
                    f"e.g. with seed 11: {shlex.join(example)}")
            self.run_command(synthvis_generate_command(split),
                             os.path.join(split.root, "generate.log"),
                             f"split {split.name}: generate {UNSEEN_VIDEOS} videos of seed "
                             f"{split.generator_seed}")
            if not os.path.isfile(gt):
                raise SweepError(f"split {split.name}: the generator wrote no {gt}")

    # ---- running ----
    def run_command(self, cmd: List[str], log_path: str, what: str,
                    env: Optional[Mapping[str, str]] = None) -> None:
        """Run ``cmd`` from the repository root with its output in ``log_path`` (``env``: the
        process's environment, default this one's)."""
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        logger.info(f"{what}: {' '.join(cmd)}  (log: {log_path})")
        start = time.perf_counter()
        with open(log_path, "w") as log:
            proc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                  env=None if env is None else dict(env))
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

    def _base_command(self, spec: RowSpec) -> List[str]:
        return [sys.executable, self.trainer_script(), "--config-file", self.config_file(spec),
                "--num-gpus", str(self.args.num_gpus)]

    def _weights(self, spec: RowSpec, seed: Optional[int]) -> List[str]:
        """The overrides that load the final model of the row that trains ``spec``'s model."""
        owner = spec.checkpoint_from or spec.name
        weights = os.path.join(self.row_dir(owner, seed), "model_final.pth")
        if not os.path.isfile(weights):
            raise SweepError(f"row {spec.name}: {weights} (row {owner}) is missing")
        return [f"train.init_checkpoint={weights}"] if self.lazy else ["MODEL.WEIGHTS", weights]

    def load_existing(self, path: str, settings: Dict, what: str) -> Optional[Dict]:
        """The saved metrics file at ``path`` if it was written with ``settings``, else None."""
        if not os.path.isfile(path):
            return None
        try:
            with open(path) as f:
                data = json.load(f)
            data["metrics"] = {m: float(data["metrics"][m]) for m in TABLE_METRICS}
        except (OSError, ValueError, KeyError, TypeError) as e:
            logger.warning(f"{what}: ignoring unreadable {path} ({e!r}); rerunning")
            return None
        if data.get("settings") != settings:
            logger.warning(f"{what}: {path} was written with other settings; rerunning")
            return None
        return data

    def _model_is_fresh(self, spec: RowSpec, seed: Optional[int]) -> bool:
        """Whether the model this (row, seed) evaluates was trained in this sweep."""
        return (spec.checkpoint_from or spec.name, seed) in self.ran

    def run(self, name: str, seed: Optional[int] = None) -> RowResult:
        """Result of (row ``name``, ``seed``) on the config's test set, running it (and the row it
        evaluates) if needed."""
        key = (name, seed)
        if key in self.done:
            return self.done[key]
        spec = self.rows[name]
        if spec.checkpoint_from:
            # The model first: a row evaluating a checkpoint that was just (re)trained is stale.
            self.run(spec.checkpoint_from, seed)
        row_dir = self.row_dir(name, seed)
        what = f"row {name}" + ("" if seed is None else f" seed {seed}")
        fresh_model = spec.checkpoint_from is not None and self._model_is_fresh(spec, seed)
        if self.args.skip_existing and not fresh_model:
            data = self.load_existing(os.path.join(row_dir, ROW_METRICS_FILE),
                                      self.settings_key(spec, seed), what)
            if data is not None:
                trained = bool(data.get("trained", True))
                if trained and not os.path.isfile(os.path.join(row_dir, "model_final.pth")):
                    logger.info(f"{what}: metrics exist but model_final.pth does not")
                else:
                    logger.info(f"{what}: metrics exist, skipped")
                    dataset = data.get("dataset", "")
                    result = RowResult(spec, data["metrics"], data.get("config", ""), dataset,
                                       trained, seed, split=dataset)
                    self.done[key] = result
                    return result

        test_set = self.test_set(spec)
        gt_json = self.check_test_set(spec, test_set)
        results_json = os.path.join(row_dir, "inference", test_set, "results.json")
        # Never score a stale file from an earlier run; without it, an evaluation-only run
        # writes to inference/ again rather than beside it.
        shutil.rmtree(os.path.dirname(results_json), ignore_errors=True)
        if (not spec.checkpoint_from and not self.args.skip_existing
                and os.path.isfile(os.path.join(row_dir, "last_checkpoint"))):
            raise SweepError(f"{what}: {row_dir} holds the checkpoints of an earlier run; "
                             "add --skip-existing to resume it, or give another --output-dir")
        base = self._base_command(spec)
        if spec.checkpoint_from:
            self.run_command(base + ["--eval-only"] + self.overrides(spec, seed)
                             + self._weights(spec, seed), os.path.join(row_dir, "eval.log"),
                             f"{what}: evaluate {spec.checkpoint_from}'s model")
        else:
            # The training run ends with an evaluation on the test set (results.json).
            resume = ["--resume"] if self.args.skip_existing else []
            self.run_command(base + resume + self.overrides(spec, seed),
                             os.path.join(row_dir, "train.log"), f"{what}: train + evaluate")
        result = self._score(spec, seed, gt_json, results_json, test_set, split=test_set)
        atomic_write_json(os.path.join(row_dir, ROW_METRICS_FILE), {
            "row": name, "seed": seed, "label": spec.label, "config": result.config,
            "dataset": test_set, "trained": result.trained,
            "checkpoint_from": spec.checkpoint_from, "metrics": result.metrics,
            "results": os.path.relpath(results_json, self.out_dir),
            "settings": self.settings_key(spec, seed),
        }, indent=2)
        self.done[key] = result
        self.ran.add(key)
        return result

    def _score(self, spec, seed, gt_json, results_json, test_set, split) -> RowResult:
        if not os.path.isfile(results_json):
            raise SweepError(f"row {spec.name}: the run finished but wrote no {results_json}")
        from vis_d2.evaluation import evaluate_ytvis

        metrics = dict(evaluate_ytvis(gt_json, results_json))
        result = RowResult(spec, {m: float(metrics[m]) for m in TABLE_METRICS},
                           os.path.relpath(self.config_file(spec), REPO), test_set,
                           trained=spec.checkpoint_from is None, seed=seed, split=split)
        logger.info(f"row {spec.name} seed {seed} on {split}: "
                    + ", ".join(f"{m} {result.metrics[m]:.3f}" for m in TABLE_METRICS))
        return result

    def split_dir(self, name: str, seed: Optional[int], split: UnseenSplit) -> str:
        return os.path.join(self.row_dir(name, seed), f"unseen_{split.name}")

    def run_unseen(self, name: str, seed: Optional[int], split: UnseenSplit) -> RowResult:
        """Result of (row ``name``, ``seed``)'s model on ``split``: an evaluation-only run of its
        model (A4's for A5...) with DETECTRON2_DATASETS=split.root; the row runs first."""
        main = self.run(name, seed)
        spec = self.rows[name]
        out = self.split_dir(name, seed, split)
        what = f"row {name}" + ("" if seed is None else f" seed {seed}") + f" on {split.name}"
        settings = {"unit": self.settings_key(spec, seed), "split": split.name,
                    "root": split.root}
        metrics_file = os.path.join(out, ROW_METRICS_FILE)
        if self.args.skip_existing and not self._model_is_fresh(spec, seed):
            data = self.load_existing(metrics_file, settings, what)
            if data is not None:
                logger.info(f"{what}: metrics exist, skipped")
                return RowResult(spec, data["metrics"], main.config, main.dataset, main.trained,
                                 seed, split.name)
        test_set = self.test_set(spec)
        gt_json = self.unseen_gt(spec, split)
        results_json = os.path.join(out, "inference", test_set, "results.json")
        shutil.rmtree(os.path.dirname(results_json), ignore_errors=True)
        # The split's root holds the test videos only: no training set to check.
        no_train = (["dataloader.train.dataset.names=[]"] if self.lazy
                    else ["DATASETS.TRAIN", "()"])
        cmd = (self._base_command(spec) + ["--eval-only"]
               + self.overrides(spec, seed, out, eval_only=True)
               + no_train + self._weights(spec, seed))
        self.run_command(cmd, os.path.join(out, "eval.log"), f"{what}: evaluate",
                         env=dict(os.environ, DETECTRON2_DATASETS=split.root))
        result = self._score(spec, seed, gt_json, results_json, test_set, split.name)
        result.trained = main.trained
        atomic_write_json(metrics_file, {
            "row": name, "seed": seed, "split": split.name, "root": split.root,
            "dataset": test_set, "metrics": result.metrics,
            "results": os.path.relpath(results_json, self.out_dir), "settings": settings,
        }, indent=2)
        return result


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmark", choices=sorted(BENCHMARK_OVERRIDES), default="synthvis",
                    help="which YAML rows (configs/synthvis R18 or configs/ytvis_2021 R50)")
    ap.add_argument("--rows", nargs="+", default=None, metavar="ROW",
                    help="rows to run and tabulate (table order whatever the order given; "
                         "default: every row with a config for the benchmark: "
                         f"{' '.join(ROWS)})")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="K",
                    help="train every trained row once per seed (SEED K, folder <row>/seed<K>); "
                         "default 0")
    ap.add_argument("--unseen-split", action="append", default=[], metavar="NAME=ROOT[@SEED]",
                    help="also score every model on the test set under DETECTRON2_DATASETS=ROOT; "
                         "@SEED generates a synthvis split of that generator seed if missing "
                         "(repeatable)")
    ap.add_argument("--output-dir", default=None,
                    help="default output/ablation_<benchmark>[_lazy]")
    ap.add_argument("--max-iter", type=int, default=None,
                    help="override every trained row's iterations (SOLVER.MAX_ITER / "
                         "train.max_iter); LR steps and warm-up keep their fractions")
    ap.add_argument("--skip-existing", action="store_true",
                    help="do not rerun (row, seed, split)s whose metrics file exists; resume "
                         "unfinished training")
    ap.add_argument("--lazy", action="store_true",
                    help="run the LazyConfig rows of projects/VIS_Ablation (synthvis only)")
    ap.add_argument("--num-gpus", type=int, default=1, help="processes per row (train_net's)")
    ap.add_argument("opts", nargs=argparse.REMAINDER,
                    help="config overrides for every row: KEY VALUE ... (YAML) or key=value "
                         "... (--lazy)")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(argv)
    args.argv = argv
    if args.lazy and args.benchmark != "synthvis":
        ap.error("--lazy rows exist for the synthvis benchmark only")
    available = default_rows(args.benchmark)
    if args.rows is None:
        args.rows = available
    unknown = [r for r in args.rows if r not in ROWS]
    if unknown:
        ap.error(f"unknown row(s) {unknown}; the rows are {list(ROWS)} (config overrides go "
                 "after --, e.g. --rows A1 A5 -- MODEL.DEVICE cpu)")
    missing = [r for r in args.rows if r not in available]
    if missing:
        ap.error(f"row(s) {missing} have no {args.benchmark} config; its rows are {available}")
    for flag, values in (("--rows", args.rows), ("--seeds", args.seeds)):
        if len(set(values)) != len(values):
            ap.error(f"{flag} lists a value twice: {values}")
    if any(s < 0 for s in args.seeds):
        ap.error(f"--seeds must be >= 0 (a negative SEED draws a random one), got {args.seeds}")
    try:
        args.unseen_split = [parse_unseen_split(s) for s in args.unseen_split]
    except ValueError as e:
        ap.error(str(e))
    names = [s.name for s in args.unseen_split]
    if len(set(names)) != len(names):
        ap.error(f"--unseen-split names a split twice: {names}")
    if args.max_iter is not None and args.max_iter < 1:
        ap.error(f"--max-iter must be >= 1, got {args.max_iter}")
    if args.opts and args.opts[0] == "--":
        args.opts = args.opts[1:]
    if args.output_dir is None:
        args.output_dir = os.path.join(
            "output", f"ablation_{args.benchmark}" + ("_lazy" if args.lazy else ""))
    return args


def reproduce_command(args) -> str:
    """The shell command that runs this sweep again (the arguments it was given)."""
    return "python projects/VIS_Ablation/sweep.py " + shlex.join(getattr(args, "argv", []))


def run_sweep(args, sweep: Optional[Sweep] = None) -> Dict[str, str]:
    """Run (or reuse) every (row, seed) of ``args`` and score it on every split, seed by seed
    with the rows in table order; write the tables and return their paths."""
    sweep = sweep if sweep is not None else Sweep(args)
    rows = [r for r in ROWS if r in args.rows]  # table order
    sweep.prepare_splits(sweep.rows[rows[0]])
    results: List[RowResult] = []
    for seed in args.seeds:
        for name in rows:
            results.append(sweep.run(name, seed))
            results += [sweep.run_unseen(name, seed, s) for s in sweep.unseen]
    title = (f"Ablation on {args.benchmark} ({'LazyConfig' if args.lazy else 'YAML'} rows"
             + (f", {args.max_iter} iterations" if args.max_iter else "") + ")")
    return write_tables(results, sweep.out_dir, title, reproduce_command(args))


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
