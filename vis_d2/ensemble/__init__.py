"""Model ensembles (paper Sec. 3.5.2): several models' detections of each frame merged with the
paper's box rule, their masks and embeddings averaged, then one tracker
(:mod:`vis_d2.engine.frame_fusion` does the per-frame work, for multi-scale testing too).

* :mod:`.members`: load the models (config + weights each) into one ``FusedFrameModel``;
* :mod:`.greedy`: choose which models to merge, greedily by AP on a split;
* ``python -m vis_d2.ensemble``: evaluate on a split or predict videos.
"""
# vis_d2's packages first: they import detectron2 without its import-time FutureWarnings, which
# this package's command would print otherwise.
from .. import data, modeling  # noqa: F401  # isort: skip
from .greedy import GreedyStep, format_path, greedy_selection
from .members import ModelSpec, build_ensemble, load_members, parse_model_args, parse_model_spec

__all__ = ["GreedyStep", "format_path", "greedy_selection", "ModelSpec", "build_ensemble",
           "load_members", "parse_model_args", "parse_model_spec"]
