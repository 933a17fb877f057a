"""Evaluate or run a model ensemble (paper Sec. 3.5.2), optionally multi-scale (Sec. 3.5.5).

    python -m vis_d2.ensemble --models A.yaml:a.pth B.yaml:b.pth --dataset synthvis_val \\
        --output out/ [--scales 0.7 1.0 1.3] [--greedy] [KEY VALUE ...]
    python -m vis_d2.ensemble --models A.yaml:a.pth B.yaml:b.pth --input clip.mp4 frames/ \\
        --output out/ [--confidence-threshold 0.3]

``--models`` takes ``CONFIG[:WEIGHTS]`` per model (without weights: the config's
``MODEL.WEIGHTS``); the first model's config is the lead (scales, fusion IoU, tracker, threshold:
:mod:`vis_d2.ensemble.members`); the trailing ``KEY VALUE`` pairs override every model's config.
One model with ``--scales`` is multi-scale testing alone.

* ``--dataset NAME`` (a registered video split): tracks every video, writes
  ``<output>/<NAME>/results.json`` and ``results.zip`` and, where the split has ground truth,
  prints its metrics.
* ``--greedy`` (with ``--dataset`` of a split with ground truth): chooses the models by greedy
  forward selection on that split (:mod:`vis_d2.ensemble.greedy`), prints every subset tried and
  its AP, and writes ``<output>/<NAME>/greedy.json`` (``selected``, ``ap``, ``path``).
* ``--input VIDEO ...`` (files, folders of frames, globs): ``<name>.json`` and ``<name>.mp4`` per
  video in ``--output``, as ``python -m vis_d2.predict`` writes them.

Fusing needs ``pip install 'vis_d2[ensemble]'`` (ensemble-boxes).
"""
import argparse
import logging
import os

# The package's __init__ has imported vis_d2.data and .modeling first (detectron2, quietly).
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.logger import setup_logger

from ..data.build import build_vis_test_loader
from ..engine.predictor import VISPredictor
from ..engine.video_inference import inference_on_videos
from ..evaluation.evaluator import YTVISEvaluator
from ..file_io import atomic_write_json
from ..predict import open_inputs, predict_video, split_config_overrides
from ..tracking import VideoTracker
from .greedy import format_path, greedy_selection
from .members import build_ensemble, load_members, parse_model_args

__all__ = ["main", "evaluate_split"]

logger = logging.getLogger("vis_d2.ensemble")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m vis_d2.ensemble", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", required=True, nargs="+", metavar="CONFIG[:WEIGHTS]",
                    help="the models, the lead first")
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--dataset", metavar="NAME", help="a registered video split")
    where.add_argument("--input", nargs="+", metavar="VIDEO",
                       help="video files, folders of frames, or globs of them")
    ap.add_argument("--output", required=True, metavar="DIR", help="folder for the outputs")
    ap.add_argument("--scales", nargs="+", type=float, metavar="S",
                    help="factors of the test size (default: the lead's TEST.VIS.SCALES)")
    ap.add_argument("--greedy", action="store_true",
                    help="choose the models greedily by AP on --dataset")
    ap.add_argument("--confidence-threshold", type=float, metavar="T",
                    help="with --input: keep tracks scoring at least T "
                         "(TEST.VIS.PREDICT_SCORE_THRESH)")
    ap.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                    help="config overrides for every model, e.g. MODEL.DEVICE cpu")
    return ap


def evaluate_split(ensemble, lead_cfg, dataset_name: str, output_dir=None) -> dict:
    """Track every video of ``dataset_name`` with ``ensemble`` and the lead's tracker; returns
    ``{"segm": {...}}`` where the split has ground truth, else ``{}`` (results written to
    ``output_dir`` if given)."""
    loader = build_vis_test_loader(lead_cfg, dataset_name)
    evaluator = YTVISEvaluator(dataset_name, output_dir=output_dir, distributed=False)
    return inference_on_videos(ensemble, loader, evaluator, VideoTracker.from_config(lead_cfg))


def _has_gt(dataset_name: str) -> bool:
    meta = MetadataCatalog.get(dataset_name)
    has_gt = meta.get("has_gt", None)
    return bool(meta.get("json_file", None)) if has_gt is None else bool(has_gt)


def main(argv=None):
    """The command line; returns the metrics (``--dataset``), the greedy result
    (``--greedy``) or the (video, json, tracks) of each input (``--input``)."""
    ap = build_parser()
    args = ap.parse_args(argv)
    args.models, args.opts = split_config_overrides(args.models, args.opts)
    if args.input is not None:
        args.input, args.opts = split_config_overrides(args.input, args.opts)
    setup_logger(name="vis_d2", abbrev_name="vis_d2")
    if len(args.opts) % 2:
        ap.error(f"config overrides come in KEY VALUE pairs, got {args.opts}")
    try:
        specs = parse_model_args(args.models, args.scales)
    except ValueError as e:
        ap.error(str(e))
    if args.greedy and args.dataset is None:
        ap.error("--greedy chooses models by their AP on a split: give --dataset")
    if args.dataset is not None:
        if args.dataset not in DatasetCatalog:
            ap.error(f"--dataset {args.dataset!r} is not registered; registered: "
                     f"{', '.join(sorted(DatasetCatalog))}")
        if args.greedy and not _has_gt(args.dataset):
            ap.error(f"--greedy needs ground truth, and --dataset {args.dataset!r} has none")
    videos = open_inputs(ap, args.input) if args.input is not None else []

    lead_cfg, members = load_members(specs, args.opts)
    if args.greedy:
        return _greedy(lead_cfg, members, args)
    ensemble = build_ensemble(lead_cfg, members, args.scales)
    logger.info(f"ensemble of {len(members)} model(s) at scales {ensemble.scales}: "
                + ", ".join(m.name for m in members))
    if args.dataset is not None:
        return evaluate_split(ensemble, lead_cfg, args.dataset,
                              os.path.join(args.output, args.dataset))
    cfg = lead_cfg.clone()
    cfg.defrost()
    if args.confidence_threshold is not None:
        cfg.TEST.VIS.PREDICT_SCORE_THRESH = args.confidence_threshold
    predictor = VISPredictor(cfg, frame_model=ensemble)
    done = []
    for video_id, frames in enumerate(videos, 1):
        done.append(predict_video(predictor, frames, video_id, args.output))
        logger.info(f"{frames.source}: {done[-1][2]} tracks -> {done[-1][1]}")
    return done


def _greedy(lead_cfg, members, args) -> dict:
    by_name = {m.name: m for m in members}

    def ap_of(names):
        ensemble = build_ensemble(lead_cfg, [by_name[n] for n in names], args.scales)
        ap = evaluate_split(ensemble, lead_cfg, args.dataset)["segm"]["AP"]
        logger.info(f"greedy: AP {ap:.4f} for {' + '.join(names)}")
        return ap

    selected, ap, path = greedy_selection([m.name for m in members], ap_of)
    print(f"Greedy ensemble on {args.dataset} (+ kept, - not kept):\n{format_path(path)}\n"
          f"selected: {' + '.join(selected)} (AP {ap:.4f})")
    result = {"selected": list(selected), "ap": ap,
              "path": [{"models": list(s.models), "ap": s.ap, "kept": s.kept} for s in path]}
    atomic_write_json(os.path.join(args.output, args.dataset, "greedy.json"), result, indent=1)
    return result


if __name__ == "__main__":
    main()
