"""Builtin dataset registrations (imported by ``vis_d2``).

All paths are under the ``DETECTRON2_DATASETS`` environment variable (default ``./datasets``);
see ``datasets/README.md`` for the expected layout. Registration is lazy: the real benchmarks'
jsons are read only on ``DatasetCatalog.get``; their metadata comes from ``categories.py`` so it
is known even when the files are absent. The synthetic benchmark and the ``_sub`` splits are
registered only when their jsons exist at import time. Re-importing (or calling
:func:`register_all_ytvis` again with the same root) is a no-op.
"""
import json
import logging
import os
from typing import List, Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.utils.file_io import PathManager

from .categories import OVIS_CATEGORIES, YTVIS_2019_CATEGORIES, YTVIS_2021_CATEGORIES
from .ytvis import categories_to_metadata, register_ytvis_instances

__all__ = ["register_all_ytvis"]

logger = logging.getLogger(__name__)

# name: (json file, image root, categories, has_gt); paths relative to the datasets root.
# The official valid/test jsons carry no ground truth (scores come from the CodaLab servers).
_PREDEFINED_VIDEO_SPLITS = {
    "ytvis_2019_train": (
        "ytvis_2019/train.json", "ytvis_2019/train/JPEGImages", YTVIS_2019_CATEGORIES, True
    ),
    "ytvis_2019_val": (
        "ytvis_2019/valid.json", "ytvis_2019/valid/JPEGImages", YTVIS_2019_CATEGORIES, False
    ),
    "ytvis_2021_train": (
        "ytvis_2021/train.json", "ytvis_2021/train/JPEGImages", YTVIS_2021_CATEGORIES, True
    ),
    "ytvis_2021_val": (
        "ytvis_2021/valid.json", "ytvis_2021/valid/JPEGImages", YTVIS_2021_CATEGORIES, False
    ),
    "ytvis_2021_test": (
        "ytvis_2021/test.json", "ytvis_2021/test/JPEGImages", YTVIS_2021_CATEGORIES, False
    ),
    # YouTube-VIS 2022 only adds a validation set (long videos); it uses the 2021 categories.
    "ytvis_2022_val": (
        "ytvis_2022/valid.json", "ytvis_2022/valid/JPEGImages", YTVIS_2021_CATEGORIES, False
    ),
    "ovis_train": ("ovis/annotations_train.json", "ovis/train", OVIS_CATEGORIES, True),
    "ovis_val": ("ovis/annotations_valid.json", "ovis/valid", OVIS_CATEGORIES, False),
}

# Synthetic benchmark written by ``python -m vis_d2.data.synthetic --out datasets/synthvis``.
# Its categories are whatever the generator wrote, so they are read from the json.
_SYNTHVIS_VIDEO_SPLITS = {
    "synthvis_train": ("synthvis/train.json", "synthvis/JPEGImages"),
    "synthvis_val": ("synthvis/valid.json", "synthvis/JPEGImages"),
}
_SYNTHVIS_IMAGE_SPLITS = {  # COCO format
    "synthvis_images_train": ("synthvis/images_train.json", "synthvis/images"),
    "synthvis_images_train_boxonly": ("synthvis/images_train_boxonly.json", "synthvis/images"),
}

# Sources of the local train_sub/valid_sub splits written by ``python -m vis_d2.data.split``:
# prefix: (train json whose directory holds the splits, train image root, categories or None to
# read them from the json). Both splits are cut from the train set, so both use its images.
_SUB_SPLIT_SOURCES = {
    "ytvis_2019": ("ytvis_2019/train.json", "ytvis_2019/train/JPEGImages", YTVIS_2019_CATEGORIES),
    "ytvis_2021": ("ytvis_2021/train.json", "ytvis_2021/train/JPEGImages", YTVIS_2021_CATEGORIES),
    "synthvis": ("synthvis/train.json", "synthvis/JPEGImages", None),
}


def _already_registered(name: str, metadata: dict) -> bool:
    """True if `name` is registered with exactly this metadata; otherwise drop any stale entry."""
    if name not in DatasetCatalog:
        # Metadata without a dataset: ``MetadataCatalog.get`` creates an entry for any name it is
        # asked about, registered or not, and a later registration with other categories would
        # fail detectron2's "cannot be set to a different value" check.
        if name in MetadataCatalog:
            MetadataCatalog.remove(name)
        return False
    meta = MetadataCatalog.get(name)
    if all(meta.get(k) == v for k, v in metadata.items()):
        return True
    # Registered before with other paths/categories (e.g. another root): replace it.
    logger.info(f"Re-registering dataset '{name}' ({metadata.get('json_file')})")
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)
    return False


def _register_video(name, json_file, image_root, categories, has_gt) -> None:
    metadata = dict(categories_to_metadata(categories), has_gt=has_gt)
    full = dict(metadata, json_file=json_file, image_root=image_root, evaluator_type="ytvis")
    if not _already_registered(name, full):
        register_ytvis_instances(name, metadata, json_file, image_root)


def _register_coco(name, json_file, image_root, categories) -> None:
    metadata = categories_to_metadata(categories)
    full = dict(metadata, json_file=json_file, image_root=image_root, evaluator_type="coco")
    if not _already_registered(name, full):
        register_coco_instances(name, metadata, json_file, image_root)


def _read_json_header(json_file: str) -> Optional[dict]:
    """
    Read a synthetic json's categories and whether it has ground truth, or None (with a warning)
    if it cannot be read: a broken optional dataset must not break ``import vis_d2.data`` (which is
    also how one regenerates it).
    """
    try:
        with PathManager.open(json_file, "r") as f:
            data = json.load(f)
        categories = data["categories"]
        categories_to_metadata(categories)  # raises KeyError/TypeError if malformed
    except (OSError, ValueError, KeyError, TypeError) as e:
        logger.warning(f"Not registering {json_file}: cannot read its categories ({e!r})")
        return None
    # An empty list is no ground truth, as load_ytvis_json reads it.
    return {"categories": categories, "has_gt": bool(data.get("annotations"))}


def register_all_ytvis(root: str) -> List[str]:
    """
    Register every builtin video dataset (and the synthetic COCO-format image sets) under `root`.

    Returns:
        list[str]: the names registered (or found already registered) by this call.
    """
    names = []
    for name, (json_rel, image_rel, categories, has_gt) in _PREDEFINED_VIDEO_SPLITS.items():
        json_file, image_root = os.path.join(root, json_rel), os.path.join(root, image_rel)
        _register_video(name, json_file, image_root, categories, has_gt)
        names.append(name)

    for name, (json_rel, image_rel) in _SYNTHVIS_VIDEO_SPLITS.items():
        json_file = os.path.join(root, json_rel)
        header = PathManager.exists(json_file) and _read_json_header(json_file)
        if header:
            image_root = os.path.join(root, image_rel)
            _register_video(name, json_file, image_root, header["categories"], header["has_gt"])
            names.append(name)

    for name, (json_rel, image_rel) in _SYNTHVIS_IMAGE_SPLITS.items():
        json_file = os.path.join(root, json_rel)
        header = PathManager.exists(json_file) and _read_json_header(json_file)
        if header:
            _register_coco(name, json_file, os.path.join(root, image_rel), header["categories"])
            names.append(name)

    for prefix, (train_rel, image_rel, categories) in _SUB_SPLIT_SOURCES.items():
        split_dir = os.path.dirname(os.path.join(root, train_rel))
        jsons = {s: os.path.join(split_dir, f"{s}_sub.json") for s in ("train", "valid")}
        if not all(PathManager.exists(j) for j in jsons.values()):
            continue
        for split, json_file in jsons.items():
            cats = categories
            if cats is None:
                header = _read_json_header(json_file)
                if not header:
                    continue
                cats = header["categories"]
            name = f"{prefix}_{split}_sub"
            _register_video(name, json_file, os.path.join(root, image_rel), cats, True)
            names.append(name)
    return names


if __name__.endswith(".builtin"):
    # Like detectron2's own builtin datasets: registered on import, paths under DETECTRON2_DATASETS.
    _root = os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))
    register_all_ytvis(_root)
