"""Data loaders of vis_d2: training pairs from video and image datasets, test videos.

Training (:func:`build_vis_train_loader`): every dataset of ``cfg.DATASETS.TRAIN`` is either a
video dataset (records with "file_names", metadata ``evaluator_type == "ytvis"``) or a COCO-format
image dataset; one item of the loader is one (key, reference) PAIR, video pair or pseudo pair
(:class:`PairDatasetMapper` dispatches), so ``cfg.SOLVER.IMS_PER_BATCH`` counts pairs (the paper's
batch of 16 is 16 pairs).

Test (:func:`build_vis_test_loader`): one item per video, a dict with lazily read frames
(:class:`VideoTestDatasetMapper`).

Both loaders are detectron2 ``@configurable`` functions: ``build_vis_train_loader(cfg)`` /
``build_vis_test_loader(cfg, name)`` read a yacs config, and the same functions take explicit
arguments (dataset, mapper, batch size, ...) for LazyConfig files.
"""
import difflib
import logging
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
import torch.utils.data as torchdata

from detectron2.config import configurable
from detectron2.data import (
    DatasetCatalog,
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
)
from detectron2.data.samplers import (
    InferenceSampler,
    RepeatFactorTrainingSampler,
    TrainingSampler,
)

from .copy_paste import CopyPaste
from .instance_recolor import InstanceRecolor
from .mixing import SourceStats, check_video_set_classes, mix_source, source_class_mapping
from .pseudo_pair_mapper import PseudoPairDatasetMapper
from .video_pair_mapper import VideoPairDatasetMapper
from .video_test_mapper import VideoTestDatasetMapper

__all__ = [
    "UnknownDatasetError",
    "check_dataset_registered",
    "check_num_classes",
    "verify_datasets",
    "get_dataset_dicts_by_name",
    "is_video_dataset",
    "mix_training_sources",
    "get_vis_train_sources",
    "get_vis_train_dataset_dicts",
    "source_repeat_factors",
    "PairDatasetMapper",
    "build_vis_train_loader",
    "build_vis_test_loader",
]

logger = logging.getLogger(__name__)


class UnknownDatasetError(KeyError, ValueError):
    """An unregistered dataset name (a KeyError like detectron2's, with a readable message)."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


def check_dataset_registered(name: str, field: str = "") -> None:
    """Raise :class:`UnknownDatasetError` listing the closest registered names when ``name``
    is not registered (``field``, e.g. "DATASETS.TRAIN", says where the name came from)."""
    registered = DatasetCatalog.list()
    if name not in registered:
        close = difflib.get_close_matches(name, registered, n=5, cutoff=0.5)
        hint = (
            f"did you mean one of {close}?"
            if close
            else f"no registered name is close to it ({len(registered)} datasets are registered)"
        )
        where = f" (in {field})" if field else ""
        raise UnknownDatasetError(
            f"Dataset '{name}'{where} is not registered; {hint} (vis_d2's datasets are "
            "registered by `import vis_d2.data`)"
        )


def _num_categories(name: str) -> Optional[int]:
    """The number of ``thing_classes`` of a registered dataset, loading it when its metadata
    does not say (loaders set them); None when even the loaded dataset does not tell."""
    classes = MetadataCatalog.get(name).get("thing_classes", None)
    if classes is None:
        DatasetCatalog.get(name)
        classes = MetadataCatalog.get(name).get("thing_classes", None)
    return None if classes is None else len(classes)


def check_num_classes(num_classes: int, train_names: Sequence[str], test_names: Sequence[str],
                      key: str = "MODEL.ROI_HEADS.NUM_CLASSES") -> None:
    """
    Raise ValueError naming the dataset, both numbers and ``key`` when the model's class count
    differs from the categories of the first training set or of a test set (fewer classes end
    in an IndexError inside detectron2's losses, more in an evaluation that cannot map the
    predicted classes). Later training sets are exempt: their categories are mapped onto the
    first's (:func:`mix_training_sources`).
    """
    for kind, names in (("training set", list(train_names)[:1]),
                        ("test set", list(test_names))):
        for name in names:
            check_dataset_registered(name, kind)
            n = _num_categories(name)
            if n is not None and n != num_classes:
                raise ValueError(
                    f"{key} is {num_classes} but the {kind} '{name}' has {n} categories; "
                    f"set {key} to {n}"
                )


def verify_datasets(cfg) -> None:
    """Check every name in DATASETS.TRAIN and DATASETS.TEST before any work starts: registered
    (:func:`check_dataset_registered`) and with MODEL.ROI_HEADS.NUM_CLASSES categories
    (:func:`check_num_classes`)."""
    for field in ("TRAIN", "TEST"):
        for name in cfg.DATASETS.get(field):
            check_dataset_registered(name, f"DATASETS.{field}")
    check_num_classes(cfg.MODEL.ROI_HEADS.NUM_CLASSES, cfg.DATASETS.TRAIN, cfg.DATASETS.TEST)


def get_dataset_dicts_by_name(name: str) -> List[dict]:
    """
    ``DatasetCatalog.get(name)``, but an unknown name raises :class:`UnknownDatasetError` that
    lists the registered names closest to it.
    """
    check_dataset_registered(name)
    return DatasetCatalog.get(name)


def is_video_dataset(name: str, dicts: Sequence[dict]) -> bool:
    """
    Whether ``name`` is a video dataset (records with "file_names") or an image dataset.

    Raises:
        ValueError naming the dataset when its records mix both kinds, or its metadata says
        ``evaluator_type="ytvis"`` but the records are not video records.
    """
    n_video = sum("file_names" in d for d in dicts)
    if 0 < n_video < len(dicts):
        raise ValueError(
            f"Dataset '{name}' mixes {n_video} video records and {len(dicts) - n_video} image "
            "records; register them as separate datasets"
        )
    if MetadataCatalog.get(name).get("evaluator_type") == "ytvis" and dicts and n_video == 0:
        raise ValueError(
            f"Dataset '{name}' has evaluator_type 'ytvis' but its records have no 'file_names'"
        )
    return n_video > 0


def _num_aux_classes(value) -> int:
    """K = MODEL.VIS.MSD.NUM_AUX_CLASSES as an int >= 0 (ValueError naming the key)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"MODEL.VIS.MSD.NUM_AUX_CLASSES must be an int >= 0, got {value!r}")
    return value


def mix_training_sources(names: Sequence[str], mask_on: bool = False, num_aux_classes: int = 0
                         ) -> Tuple[List[List[dict]], List[SourceStats]]:
    """
    The records of each training dataset of ``names`` in the classes of the first one, and what
    mixing did to each (:mod:`vis_d2.data.mixing`): video records or COCO image dicts without the
    videos/images that have no non-crowd instance left (they cannot give a pair).

    The first dataset's ``thing_classes`` are the model's C classes and its annotations must lie
    in them. A later dataset with other classes is mapped by the class map between the two
    taxonomies (or by name, when it opted in); its other classes are auxiliary: category id C
    and ``"aux": True`` with ``num_aux_classes`` K > 0, dropped with K = 0. A dataset with
    ``weak_segmentation`` metadata trains no mask (``"mask_valid": False``). One log line per
    source gives the records kept and the instances mapped, auxiliary and dropped.

    Args:
        names: registered dataset names (cfg.DATASETS.TRAIN).
        mask_on: the model has a mask head (cfg.MODEL.MASK_ON); then at least one instance of
            the training sets must have a usable mask.
        num_aux_classes: K, cfg.MODEL.VIS.MSD.NUM_AUX_CLASSES.

    Returns:
        (one list of records per name, one :class:`~vis_d2.data.mixing.SourceStats` per name),
        in the order of ``names``.

    Raises:
        UnknownDatasetError for a name that is not registered;
        ValueError naming the json when a video set has no annotations (a split for inference);
        naming the annotation when the first set has an id outside its classes or an auxiliary
        one; naming both datasets when a source's classes cannot be mapped
        (:func:`~vis_d2.data.mixing.source_class_mapping`); "training set X has no annotated
        instance" when nothing of X is left; with ``mask_on``, when no instance has a mask.
    """
    if isinstance(names, str):
        names = [names]
    if len(names) == 0:
        raise ValueError("DATASETS.TRAIN is empty")
    num_aux_classes = _num_aux_classes(num_aux_classes)
    sources, all_stats = [], []
    num_masked = 0
    for i, name in enumerate(names):
        dicts = get_dataset_dicts_by_name(name)
        video = is_video_dataset(name, dicts)
        meta = MetadataCatalog.get(name)
        if video and dicts and not any(d.get("has_gt", True) for d in dicts):
            json_file = dicts[0].get("json_file") or meta.get("json_file")
            raise ValueError(
                f"training set '{name}' ({json_file}) has no annotations: cannot train on it "
                "(a split without ground truth is for inference only)"
            )
        if i == 0:
            target_classes = meta.get("thing_classes", None)
            num_classes = None if target_classes is None else len(target_classes)
            if num_classes is not None:
                check_video_set_classes(name, dicts, video, num_classes)
            mapping, how = None, "the video set's classes"
        elif target_classes is not None:
            mapping, how = source_class_mapping(name, names[0], target_classes)
        else:
            mapping, how = None, "ids kept: the first training set has no thing_classes"
        kept, stats = mix_source(name, dicts, video, mapping, num_classes or 0, num_aux_classes,
                                 bool(meta.get("weak_segmentation", False)), how)
        logger.info(stats.summary(num_aux_classes))
        if not kept:
            raise ValueError(
                f"training set '{name}' has no annotated instance (none of its {len(dicts)} "
                f"{stats.kind} has a non-crowd annotation"
                + (" of a kept class" if stats.dropped else "")
                + "; is it a split without ground truth?)"
            )
        total = stats.mapped + stats.auxiliary
        num_masked += total - stats.without_mask
        if stats.without_mask and not stats.weak_segmentation:
            logger.warning(
                f"training set '{name}': {stats.without_mask} of its {total} non-crowd instances "
                f"({'per frame' if video else 'per image'}) have no mask; they train no mask "
                "loss."
            )
        sources.append(kept)
        all_stats.append(stats)
    if mask_on and num_masked == 0:
        raise ValueError(
            f"MODEL.MASK_ON is True but no instance of the training sets {list(names)} has a "
            "mask (box-only annotations or weak segmentation): the mask head would never train. "
            "Set MODEL.MASK_ON False or add a training set with masks."
        )
    return sources, all_stats


def get_vis_train_sources(names: Sequence[str], mask_on: bool = False,
                          num_aux_classes: int = 0) -> List[List[dict]]:
    """The records of :func:`mix_training_sources` (``names``, ``mask_on``,
    ``num_aux_classes``): one list per name."""
    return mix_training_sources(names, mask_on, num_aux_classes)[0]


def get_vis_train_dataset_dicts(names: Sequence[str], mask_on: bool = False,
                                num_aux_classes: int = 0) -> List[dict]:
    """The records of :func:`get_vis_train_sources` (same arguments) in one list."""
    return [d for source in get_vis_train_sources(names, mask_on, num_aux_classes)
            for d in source]


def source_repeat_factors(sizes: Sequence[int], weights: Sequence[float]) -> torch.Tensor:
    """
    Per-record repeat factors for detectron2's ``RepeatFactorTrainingSampler`` that draw
    source i (``sizes[i]`` consecutive records) with probability ``weights[i] / sum(weights)``.

    The least-drawn record gets factor 1, so every record is seen at least once an epoch.

    Returns:
        float tensor (sum(sizes),).
    """
    if len(sizes) != len(weights):
        raise ValueError(f"DATALOADER.VIS.SOURCE_WEIGHTS has {len(weights)} weights for "
                         f"{len(sizes)} training sets")
    if any(n <= 0 for n in sizes):
        raise ValueError(f"every training source needs a record, got sizes {list(sizes)}")
    if any(not w > 0 for w in weights):
        raise ValueError(f"DATALOADER.VIS.SOURCE_WEIGHTS must all be > 0, got {list(weights)}")
    per_record = [w / n for w, n in zip(weights, sizes)]
    low = min(per_record)
    return torch.cat([torch.full((n,), p / low) for p, n in zip(per_record, sizes)])


class PairDatasetMapper:
    """
    Map any training record to a pair: video records (with "file_names") go to the video pair
    mapper, image dicts to the pseudo pair mapper. Both return the same keys.
    """

    @configurable
    def __init__(
        self,
        *,
        video_mapper: Callable[[dict], dict],
        image_mapper: Callable[[dict], dict],
        copy_paste: Optional[Callable[[dict], dict]] = None,
        recolor: Optional[Callable[[dict], dict]] = None,
    ):
        """
        Args:
            video_mapper, image_mapper: map a video record / an image dict to a pair.
            copy_paste: optional pair -> pair augmentation applied to every mapped pair
                (:class:`~vis_d2.data.copy_paste.CopyPaste`, ``INPUT.VIS.COPY_PASTE``).
            recolor: optional pair -> pair augmentation applied after it
                (:class:`~vis_d2.data.instance_recolor.InstanceRecolor`,
                ``INPUT.VIS.INSTANCE_RECOLOR``), so pasted objects are recoloured too.
        """
        self.video_mapper = video_mapper
        self.image_mapper = image_mapper
        self.copy_paste = copy_paste
        self.recolor = recolor

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        return {
            "video_mapper": VideoPairDatasetMapper(cfg, is_train),
            "image_mapper": PseudoPairDatasetMapper(cfg, is_train),
            "copy_paste": CopyPaste(cfg) if cfg.INPUT.VIS.COPY_PASTE.ENABLED else None,
            "recolor": InstanceRecolor(cfg) if cfg.INPUT.VIS.INSTANCE_RECOLOR.ENABLED else None,
        }

    @staticmethod
    def is_video(dataset_dict: dict) -> bool:
        return "file_names" in dataset_dict

    def __call__(self, dataset_dict: dict) -> dict:
        if self.is_video(dataset_dict):
            pair = self.video_mapper(dataset_dict)
        else:
            pair = self.image_mapper(dataset_dict)
        if self.copy_paste is not None:
            pair = self.copy_paste(pair)
        return pair if self.recolor is None else self.recolor(pair)


def _train_loader_from_config(cfg, mapper=None, sampler=None):
    """``build_vis_train_loader(cfg[, mapper, sampler])`` -> its explicit arguments."""
    sources = get_vis_train_sources(cfg.DATASETS.TRAIN, cfg.MODEL.MASK_ON,
                                    cfg.MODEL.VIS.MSD.NUM_AUX_CLASSES)
    weights = list(cfg.DATALOADER.VIS.SOURCE_WEIGHTS)
    if mapper is None:
        mapper = PairDatasetMapper(cfg, True)
    if sampler is None and cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
        raise ValueError(
            f"DATALOADER.SAMPLER_TRAIN='{cfg.DATALOADER.SAMPLER_TRAIN}' is not supported by "
            "build_vis_train_loader; use 'TrainingSampler' or pass sampler="
        )
    if weights:
        logger.info("Pairs drawn from " + ", ".join(
            f"'{n}' {w / sum(weights):.0%}" for n, w in zip(cfg.DATASETS.TRAIN, weights)))
    return {
        # One list per source when the weights need to know which record is whose.
        "dataset": sources if weights else [d for source in sources for d in source],
        "source_weights": weights or None,
        "mapper": mapper,
        "sampler": sampler,
        "total_batch_size": cfg.SOLVER.IMS_PER_BATCH,
        "aspect_ratio_grouping": cfg.DATALOADER.ASPECT_RATIO_GROUPING,
        "num_workers": cfg.DATALOADER.NUM_WORKERS,
    }


@configurable(from_config=_train_loader_from_config)
def build_vis_train_loader(
    dataset: Union[Sequence[dict], Sequence[Sequence[dict]]],
    *,
    mapper: Callable[[dict], dict],
    sampler: Optional[torchdata.Sampler] = None,
    source_weights: Optional[Sequence[float]] = None,
    total_batch_size: int,
    aspect_ratio_grouping: bool = True,
    num_workers: int = 0,
):
    """
    The training loader over video and/or image records; one item of a batch is one pair.

    Two call forms (detectron2's ``@configurable``, as ``build_detection_train_loader``):

    * ``build_vis_train_loader(cfg, mapper=None, sampler=None)``: the records of
      ``cfg.DATASETS.TRAIN`` (:func:`get_vis_train_sources`), drawn by
      ``cfg.DATALOADER.VIS.SOURCE_WEIGHTS`` if set, mapper :class:`PairDatasetMapper` (cfg),
      batch ``cfg.SOLVER.IMS_PER_BATCH``, workers and aspect ratio grouping from
      ``cfg.DATALOADER``;
    * explicit arguments (LazyConfig): ``build_vis_train_loader(dataset=records, mapper=...,
      total_batch_size=16, ...)``.

    Args:
        dataset: training records (e.g. ``get_vis_train_dataset_dicts(names)``), or with
            `source_weights` one list of records per source (``get_vis_train_sources(names)``).
        mapper: maps one record to one pair (e.g. :class:`PairDatasetMapper`).
        sampler: indices into ``dataset``; default detectron2's infinite
            :class:`TrainingSampler`.
        source_weights: the share of the pairs drawn from each source of `dataset` (detectron2's
            ``RepeatFactorTrainingSampler`` with :func:`source_repeat_factors`); needs
            ``sampler=None``.
        total_batch_size: pairs per iteration over all processes (the paper's batch of 16 is
            16 pairs).
        aspect_ratio_grouping, num_workers: as ``build_detection_train_loader``.

    Returns:
        an infinite iterable; each item is a list of ``total_batch_size / world size`` pair
        dicts.
    """
    if source_weights:
        if sampler is not None:
            raise ValueError("build_vis_train_loader: source_weights "
                             "(DATALOADER.VIS.SOURCE_WEIGHTS) and a sampler exclude each other: "
                             "the weights build the sampler")
        if any(isinstance(d, dict) for d in dataset):
            raise TypeError("build_vis_train_loader: with source_weights, dataset must hold one "
                            "list of records per source (get_vis_train_sources)")
        sizes = [len(source) for source in dataset]
        sampler = RepeatFactorTrainingSampler(source_repeat_factors(sizes, source_weights))
        dataset = [d for source in dataset for d in source]
    if len(dataset) == 0:
        raise ValueError("build_vis_train_loader: the training dataset has no record")
    if sampler is None:
        sampler = TrainingSampler(len(dataset))
    return build_detection_train_loader(
        dataset=dataset,
        mapper=mapper,
        sampler=sampler,
        total_batch_size=total_batch_size,
        aspect_ratio_grouping=aspect_ratio_grouping,
        num_workers=num_workers,
    )


def _single_item(batch: list):
    """collate_fn for batch size 1: the video dict itself, not a list of one."""
    return batch[0]


def _test_loader_from_config(cfg, dataset_name: str, mapper=None):
    """``build_vis_test_loader(cfg, dataset_name[, mapper])`` -> its explicit arguments."""
    if mapper is None:
        mapper = VideoTestDatasetMapper(cfg)
    return {"dataset": dataset_name, "mapper": mapper, "num_workers": cfg.DATALOADER.NUM_WORKERS}


@configurable(from_config=_test_loader_from_config)
def build_vis_test_loader(
    dataset: Union[str, Sequence[dict]],
    *,
    mapper: Callable[[dict], dict],
    num_workers: int = 0,
):
    """
    A loader over the videos of one test set: each item is one mapped video dict (with
    :class:`VideoTestDatasetMapper`: frames read lazily). Batch size 1; detectron2's
    :class:`InferenceSampler` shards the videos across processes.

    Two call forms: ``build_vis_test_loader(cfg, dataset_name, mapper=None)`` (mapper
    :class:`VideoTestDatasetMapper` (cfg), workers ``cfg.DATALOADER.NUM_WORKERS``), or explicit
    arguments (LazyConfig): ``build_vis_test_loader(dataset="synthvis_val", mapper=...)``.

    Args:
        dataset: a registered video dataset's name, or its video records.
        mapper: maps one video record to the model's video input.
        num_workers: data loader workers.

    Raises:
        UnknownDatasetError for an unregistered name; ValueError if it has no videos or its
        records are not video records.
    """
    if isinstance(dataset, str):
        records = get_dataset_dicts_by_name(dataset)
        if not records:
            raise ValueError(f"Test set '{dataset}' has no videos")
        if not is_video_dataset(dataset, records):
            raise ValueError(
                f"Test set '{dataset}' is not a video dataset (its records have no 'file_names')"
            )
    else:
        records = list(dataset)
        if not records:
            raise ValueError("build_vis_test_loader: the given test records are empty")
        missing = [i for i, r in enumerate(records) if "file_names" not in r]
        if missing:
            raise ValueError(
                f"build_vis_test_loader: test record #{missing[0]} (video_id "
                f"{records[missing[0]].get('video_id')}) is not a video record (no 'file_names')"
            )
    return build_detection_test_loader(
        dataset=records,
        mapper=mapper,
        sampler=InferenceSampler(len(records)),
        batch_size=1,
        num_workers=num_workers,
        collate_fn=_single_item,
    )
