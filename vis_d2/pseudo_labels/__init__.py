"""Pseudo labels (paper Sec. 3.5.3): an ensemble and the tracker label an unlabeled video split
with the boxes of the confident tracks the tracker could follow; training on train + those
boxes ("detection only", weak segmentation: no mask loss from them) retrains the models.

* :mod:`.selection`: which tracks are kept (``TEST.VIS.PSEUDO``);
* :mod:`.labeling`: the ensemble and tracker over a registered split;
* :mod:`.writer`: the box-only YouTube-VIS json;
* ``python -m vis_d2.pseudo_labels``: label a split and write the json;
* ``python -m vis_d2.pseudo_labels.unlabeled``: a json's videos without its annotations.

The written json registers as a weakly segmented training set
(:func:`vis_d2.data.ytvis.register_pseudo_labels`; builtin names such as
``ytvis_2021_val_pseudo``: :mod:`vis_d2.data.builtin`).
"""
# vis_d2's packages first: they import detectron2 without its import-time FutureWarnings, which
# every command of this package would print otherwise.
from .. import data, modeling  # noqa: F401  # isort: skip
from .labeling import check_split_classes, label_split, split_has_ground_truth, warn_if_leaks
from .selection import PseudoLabelFilter, PseudoTrack
from .writer import pseudo_label_json, read_split_json

__all__ = ["PseudoLabelFilter", "PseudoTrack", "check_split_classes", "label_split",
           "split_has_ground_truth", "warn_if_leaks", "pseudo_label_json", "read_split_json"]
