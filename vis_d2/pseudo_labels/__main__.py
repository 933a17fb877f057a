"""Pseudo-label an unlabeled video split (paper Sec. 3.5.3).

    python -m vis_d2.pseudo_labels --models A.yaml:a.pth B.yaml:b.pth --dataset ytvis_2021_val \\
        --output datasets/ytvis_2021/pseudo_valid.json [--scales 0.7 1.0 1.3] [KEY VALUE ...]

Runs the ensemble of ``--models`` (``CONFIG[:WEIGHTS]`` each, the lead first; one model is an
ensemble of one; ``--scales`` or the lead's ``TEST.VIS.SCALES`` for multi-scale) and the lead's
tracker over every video of ``--dataset``, keeps the boxes of the tracks that pass the lead's
``TEST.VIS.PSEUDO`` thresholds and writes them as a box-only YouTube-VIS json (atomically), with
the models, scales and thresholds in its ``info``. The trailing ``KEY VALUE`` pairs override
every model's config, e.g. ``TEST.VIS.PSEUDO.MIN_TRACK_SCORE 0.6 MODEL.DEVICE cpu``.

A split with ground truth is labelled with a warning: evaluating on it after training on its
pseudo labels would leak. The builtin pseudo-label sets (``ytvis_2021_val_pseudo`` reads
``<datasets>/ytvis_2021/pseudo_valid.json``, ...) register on the next import when the file
exists; any other file registers with ``vis_d2.data.ytvis.register_pseudo_labels``.
"""
import argparse
import logging
import os

# The package's __init__ has imported vis_d2.data and .modeling first (detectron2, quietly).
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.logger import setup_logger

from ..data.builtin import builtin_pseudo_label_name
from ..ensemble import build_ensemble, load_members, parse_model_args
from ..file_io import atomic_write_json
from ..predict import split_config_overrides
from .labeling import check_split_classes, label_split
from .selection import PseudoLabelFilter
from .writer import pseudo_label_json, read_split_json

__all__ = ["main"]

logger = logging.getLogger("vis_d2.pseudo_labels")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m vis_d2.pseudo_labels", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", required=True, nargs="+", metavar="CONFIG[:WEIGHTS]",
                    help="the models, the lead first")
    ap.add_argument("--dataset", required=True, metavar="NAME",
                    help="a registered video split to label (one without ground truth)")
    ap.add_argument("--output", required=True, metavar="JSON", help="the json to write")
    ap.add_argument("--scales", nargs="+", type=float, metavar="S",
                    help="factors of the test size (default: the lead's TEST.VIS.SCALES)")
    ap.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                    help="config overrides for every model, e.g. MODEL.DEVICE cpu")
    return ap


def main(argv=None) -> dict:
    """The command line; returns the written json."""
    ap = build_parser()
    args = ap.parse_args(argv)
    args.models, args.opts = split_config_overrides(args.models, args.opts)
    setup_logger(name="vis_d2", abbrev_name="vis_d2")
    if len(args.opts) % 2:
        ap.error(f"config overrides come in KEY VALUE pairs, got {args.opts}")
    if not args.output.endswith(".json"):
        ap.error(f"--output {args.output!r}: the pseudo labels are a json file (name.json)")
    try:
        specs = parse_model_args(args.models, args.scales)
    except ValueError as e:
        ap.error(str(e))
    if args.dataset not in DatasetCatalog:
        ap.error(f"--dataset {args.dataset!r} is not registered; registered: "
                 f"{', '.join(sorted(DatasetCatalog))}")
    json_file = MetadataCatalog.get(args.dataset).get("json_file", None)
    if not json_file:
        ap.error(f"--dataset {args.dataset!r} has no json_file in its metadata: only YouTube-VIS "
                 "json splits can be pseudo-labelled")
    split = read_split_json(json_file)

    lead_cfg, members = load_members(specs, args.opts)
    dataset_ids = check_split_classes(args.dataset, members[0])
    pseudo_filter = PseudoLabelFilter.from_config(lead_cfg)
    ensemble = build_ensemble(lead_cfg, members, args.scales)
    logger.info(f"pseudo-labelling '{args.dataset}' with {len(members)} model(s) at scales "
                f"{ensemble.scales}, thresholds {pseudo_filter.config_summary()}")
    tracks, stats = label_split(ensemble, lead_cfg, args.dataset, pseudo_filter)
    info = {
        "description": f"vis_d2 pseudo labels (boxes only) of {args.dataset}",
        "source_dataset": args.dataset,
        "source_json": os.path.abspath(json_file),
        "models": [m.name for m in members],
        "scales": list(ensemble.scales),
        "thresholds": {f"TEST.VIS.PSEUDO.{k}": v
                       for k, v in pseudo_filter.config_summary().items()},
        "tracker": {f"MODEL.VIS.TRACKER.{k}": v for k, v in lead_cfg.MODEL.VIS.TRACKER.items()},
        "config_overrides": list(args.opts),
        "stats": dict(stats),
    }
    out = pseudo_label_json(split, tracks, dataset_ids, info)
    atomic_write_json(args.output, out)
    root = os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))
    name = builtin_pseudo_label_name(args.output, root)
    where = (f"registered as '{name}' on the next import" if name else
             "register it with vis_d2.data.ytvis.register_pseudo_labels(name, json, "
             f"'{MetadataCatalog.get(args.dataset).get('image_root', '')}')")
    print(f"wrote {args.output}: {stats['kept_tracks']} of {stats['tracks']} tracks kept "
          f"({stats['boxes']} boxes) in {stats['videos_with_labels']} of {stats['videos']} "
          f"videos; {where}")
    return out


if __name__ == "__main__":
    main()
