"""Builtin dataset registrations (imported by ``vis_d2``).

All paths are under the ``DETECTRON2_DATASETS`` environment variable (default ``./datasets``);
see ``datasets/README.md`` for the expected layout. Registration is lazy: the real benchmarks'
jsons are read only on ``DatasetCatalog.get``; their metadata comes from ``categories.py`` so it
is known even when the files are absent. The synthetic benchmark, the ``_sub`` splits and the
pseudo-label sets (``_pseudo``) are registered only when their jsons exist at import time.
Re-importing (or calling :func:`register_all_ytvis` again with the same root) is a no-op.
"""
import json
import logging
import os
from typing import List, Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.utils.file_io import PathManager

from .categories import OVIS_CATEGORIES, YTVIS_2019_CATEGORIES, YTVIS_2021_CATEGORIES
from .openimages import register_openimages
from .ytvis import categories_to_metadata, register_pseudo_labels, register_ytvis_instances

__all__ = ["register_all_ytvis", "register_all_openimages", "builtin_pseudo_label_name"]

logger = logging.getLogger(__name__)

# name: (json file, image root, categories, has_gt); paths relative to the datasets root.
# The official valid/test jsons carry no ground truth (scores come from the CodaLab servers).
# Each dataset's metadata names its taxonomy (``categories.py``: the class maps between them).
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
    # Unlabeled videos to pseudo-label (docs/INFERENCE.md, "Pseudo labels"): the generator's
    # videos of another seed, in a folder of their own, with the annotations stripped.
    "synthvis_unlabeled": ("synthvis_unlabeled/unlabeled.json", "synthvis_unlabeled/JPEGImages"),
}

# Pseudo labels written by ``python -m vis_d2.pseudo_labels`` (paper Sec. 3.5.3): name: (json,
# the split they label). Each has that split's image root and taxonomy and weak segmentation
# (box-only: no mask trains from them).
_PSEUDO_LABEL_SPLITS = {
    "ytvis_2019_val_pseudo": ("ytvis_2019/pseudo_valid.json", "ytvis_2019_val"),
    "ytvis_2021_val_pseudo": ("ytvis_2021/pseudo_valid.json", "ytvis_2021_val"),
    "synthvis_unlabeled_pseudo": ("synthvis_unlabeled/pseudo_unlabeled.json",
                                  "synthvis_unlabeled"),
}
# COCO format: name: (json, image root, taxonomy, weak segmentation).
_SYNTHVIS_IMAGE_SPLITS = {
    "synthvis_images_train": ("synthvis/images_train.json", "synthvis/images", "synthvis_images",
                              False),
    "synthvis_images_train_boxonly": ("synthvis/images_train_boxonly.json", "synthvis/images",
                                      "synthvis_images", False),
    # The second source with a taxonomy of its own: exact masks, and noisy or missing ones.
    "synthvis_msd_train": ("synthvis/msd_train.json", "synthvis/msd_images", "synthvis_msd",
                           False),
    "synthvis_msd_weak_train": ("synthvis/msd_weak_train.json", "synthvis/msd_images",
                                "synthvis_msd", True),
}

# detectron2's own COCO registrations (on ``import detectron2.data``) get the taxonomy of their
# category list, so the class maps find them.
_COCO_NAMES = ("coco_2017_train", "coco_2017_val", "coco_2017_val_100", "coco_2014_train",
               "coco_2014_val", "coco_2014_minival", "coco_2014_valminusminival")

# OpenImages V6/V7 in the official layout under <root>/openimages (openimages.py): name: (split,
# the video taxonomy whose shared classes an image must hold, or None for every image). The
# "_ytvis_2021" train set is the paper's 14k-image subset. Their masks are not used (weak
# segmentation, paper Sec. 3.2); register_openimages(..., weak_segmentation=False) uses them.
_OPENIMAGES_SPLITS = {
    "openimages_train": ("train", None),
    "openimages_val": ("val", None),
    "openimages_train_ytvis_2021": ("train", "ytvis_2021"),
    "openimages_train_ytvis_2019": ("train", "ytvis_2019"),
    "openimages_val_ytvis_2021": ("val", "ytvis_2021"),
    "openimages_val_ytvis_2019": ("val", "ytvis_2019"),
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
    logger.info(f"Re-registering dataset '{name}' "
                f"({metadata.get('json_file') or metadata.get('openimages_root')})")
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)
    return False


def _taxonomy(categories) -> str:
    """The taxonomy of a builtin category list (``categories.py``)."""
    return {id(YTVIS_2019_CATEGORIES): "ytvis_2019", id(YTVIS_2021_CATEGORIES): "ytvis_2021",
            id(OVIS_CATEGORIES): "ovis"}[id(categories)]


def _register_video(name, json_file, image_root, categories, has_gt, taxonomy) -> None:
    metadata = dict(categories_to_metadata(categories), has_gt=has_gt, taxonomy=taxonomy)
    full = dict(metadata, json_file=json_file, image_root=image_root, evaluator_type="ytvis")
    if not _already_registered(name, full):
        register_ytvis_instances(name, metadata, json_file, image_root)


def _register_pseudo(name, json_file, image_root, categories, taxonomy) -> None:
    metadata = dict(categories_to_metadata(categories), has_gt=True, taxonomy=taxonomy)
    full = dict(metadata, json_file=json_file, image_root=image_root, evaluator_type="ytvis",
                weak_segmentation=True, pseudo_labels=True)
    if not _already_registered(name, full):
        register_pseudo_labels(name, json_file, image_root, metadata)


def _labelled_split(source: str):
    """(image root relative to the datasets root, taxonomy) of a builtin video split."""
    if source in _PREDEFINED_VIDEO_SPLITS:
        _, image_rel, categories, _ = _PREDEFINED_VIDEO_SPLITS[source]
        return image_rel, _taxonomy(categories)
    return _SYNTHVIS_VIDEO_SPLITS[source][1], "synthvis"


def builtin_pseudo_label_name(json_file: str, root: str) -> Optional[str]:
    """The builtin dataset name that registers ``json_file`` as the pseudo labels of its split
    when the datasets root is ``root`` (e.g. ``ytvis_2021_val_pseudo`` for
    ``<root>/ytvis_2021/pseudo_valid.json``), or None."""
    target = os.path.realpath(json_file)
    for name, (json_rel, _) in _PSEUDO_LABEL_SPLITS.items():
        if os.path.realpath(os.path.join(root, json_rel)) == target:
            return name
    return None


def _register_coco(name, json_file, image_root, categories, taxonomy, weak) -> None:
    metadata = dict(categories_to_metadata(categories), taxonomy=taxonomy,
                    weak_segmentation=weak)
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
        _register_video(name, json_file, image_root, categories, has_gt, _taxonomy(categories))
        names.append(name)

    for name, (json_rel, image_rel) in _SYNTHVIS_VIDEO_SPLITS.items():
        json_file = os.path.join(root, json_rel)
        header = PathManager.exists(json_file) and _read_json_header(json_file)
        if header:
            image_root = os.path.join(root, image_rel)
            _register_video(name, json_file, image_root, header["categories"], header["has_gt"],
                            "synthvis")
            names.append(name)

    for name, (json_rel, image_rel, taxonomy, weak) in _SYNTHVIS_IMAGE_SPLITS.items():
        json_file = os.path.join(root, json_rel)
        header = PathManager.exists(json_file) and _read_json_header(json_file)
        if header:
            _register_coco(name, json_file, os.path.join(root, image_rel), header["categories"],
                           taxonomy, weak)
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
            _register_video(name, json_file, os.path.join(root, image_rel), cats, True, prefix)
            names.append(name)

    for name, (json_rel, source) in _PSEUDO_LABEL_SPLITS.items():
        json_file = os.path.join(root, json_rel)
        header = PathManager.exists(json_file) and _read_json_header(json_file)
        if header:
            image_rel, taxonomy = _labelled_split(source)
            _register_pseudo(name, json_file, os.path.join(root, image_rel),
                             header["categories"], taxonomy)
            names.append(name)
    return names


def register_all_openimages(root: str) -> List[str]:
    """
    Register the OpenImages splits of ``_OPENIMAGES_SPLITS`` under ``root``/openimages (lazily:
    nothing is read until ``DatasetCatalog.get``).

    Returns:
        list[str]: the names registered (or found already registered) by this call.
    """
    oi_root = os.path.join(root, "openimages")
    for name, (split, shared_with) in _OPENIMAGES_SPLITS.items():
        metadata = {"taxonomy": "openimages", "weak_segmentation": True,
                    "openimages_root": oi_root, "split": split, "shared_with": shared_with}
        if not _already_registered(name, metadata):
            register_openimages(name, oi_root, split, shared_with, weak_segmentation=True)
    return list(_OPENIMAGES_SPLITS)


if __name__.endswith(".builtin"):
    # Like detectron2's own builtin datasets: registered on import, paths under DETECTRON2_DATASETS.
    _root = os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))
    register_all_ytvis(_root)
    register_all_openimages(_root)
    for _name in _COCO_NAMES:
        if _name in DatasetCatalog:
            MetadataCatalog.get(_name).set(taxonomy="coco")
