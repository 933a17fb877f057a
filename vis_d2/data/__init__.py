"""Video data: the YouTube-VIS format loader, builtin dataset registrations, mappers, loaders.

Importing this package registers the builtin datasets (``builtin.py``). The command-line modules
``vis_d2.data.split`` and ``vis_d2.data.synthetic`` are not imported here so that
``python -m`` runs them cleanly.
"""
from ..quiet_import import import_quietly

import_quietly("fvcore.nn")  # it calls torch.jit.script at import

from .ytvis import (  # noqa: E402
    YTVISFormatError,
    categories_to_metadata,
    load_ytvis_json,
    register_ytvis_instances,
)
from .frames import VideoFrames, read_frame
from . import builtin  # noqa: F401  (registers the builtin datasets)
from .build import (
    PairDatasetMapper,
    UnknownDatasetError,
    build_vis_test_loader,
    build_vis_train_loader,
    get_dataset_dicts_by_name,
    get_vis_train_dataset_dicts,
    get_vis_train_sources,
    is_video_dataset,
    mix_training_sources,
    source_repeat_factors,
)
from .categories import ClassMap, get_class_map, register_class_map
from .copy_paste import CopyPaste
from .openimages import load_openimages, register_openimages
from .instance_recolor import InstanceRecolor
from .pseudo_pair_mapper import PseudoPairDatasetMapper
from .video_pair_mapper import VideoPairDatasetMapper
from .video_test_mapper import LazyVideoFrames, VideoTestDatasetMapper

# As detectron2.data: everything imported above.
__all__ = [k for k in globals().keys() if not k.startswith("_")]
