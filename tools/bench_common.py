"""What the model benchmarks in tools/ share: load a model for evaluation from the command line,
and score contiguous-id predictions with the YouTube-VIS metric.

Imported by ``tools/bench_mask_nms.py`` and ``tools/bench_tracker.py`` (run as scripts, so this
folder is on ``sys.path``; they put the repository root there before importing this module).
"""
import os
import sys
from typing import Dict, List, Sequence, Tuple

from detectron2.data import MetadataCatalog

from vis_d2.config import get_vis_cfg
from vis_d2.engine import AtomicCheckpointer, VISTrainer
from vis_d2.evaluation import evaluate_ytvis

__all__ = ["load_eval_model", "score_predictions"]


def load_eval_model(tool: str, config_file: str, weights: str, opts: Sequence[str]) -> Tuple:
    """(cfg, model in eval mode with ``weights`` loaded) for ``config_file`` plus ``opts``.

    ``opts`` is argparse's REMAINDER: after a list option (``--thresholds 0 0.3``), "--" is
    what separates the config overrides from it, and argparse passes that "--" on; it is
    dropped here. A missing weights file exits with a message naming ``tool`` and the path.
    """
    opts = list(opts[1:] if list(opts[:1]) == ["--"] else opts)
    if not os.path.isfile(weights):
        sys.exit(f"{tool}: weights file {weights} does not exist")
    cfg = get_vis_cfg(config_file, ["MODEL.WEIGHTS", weights, *opts])
    model = VISTrainer.build_model(cfg)
    AtomicCheckpointer(model).load(weights)
    model.eval()
    return cfg, model


def score_predictions(dataset_name: str, predictions: List[Dict]) -> Dict[str, float]:
    """YouTube-VIS metrics of ``predictions`` (contiguous category ids, as the tracker gives
    them) against the ground truth of the registered ``dataset_name``."""
    meta = MetadataCatalog.get(dataset_name)
    to_json = {v: k for k, v in meta.thing_dataset_id_to_contiguous_id.items()}
    return evaluate_ytvis(meta.json_file, [dict(p, category_id=to_json[p["category_id"]])
                                           for p in predictions])
