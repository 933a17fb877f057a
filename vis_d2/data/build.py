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
from typing import Callable, List, Optional, Sequence, Union

import torch.utils.data as torchdata

from detectron2.config import configurable
from detectron2.data import (
    DatasetCatalog,
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
)
from detectron2.data.samplers import InferenceSampler, TrainingSampler

from .copy_paste import CopyPaste
from .pair_utils import annotated_frame_indices
from .pseudo_pair_mapper import PseudoPairDatasetMapper
from .video_pair_mapper import VideoPairDatasetMapper
from .video_test_mapper import VideoTestDatasetMapper

__all__ = [
    "UnknownDatasetError",
    "check_dataset_registered",
    "verify_datasets",
    "get_dataset_dicts_by_name",
    "is_video_dataset",
    "get_vis_train_dataset_dicts",
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
            "registered by `import vis_d2`)"
        )


def verify_datasets(cfg) -> None:
    """Check every name in DATASETS.TRAIN and DATASETS.TEST before any work starts."""
    for field in ("TRAIN", "TEST"):
        for name in cfg.DATASETS.get(field):
            check_dataset_registered(name, f"DATASETS.{field}")


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


def _has_annotated_instance(d: dict, is_video: bool) -> bool:
    if is_video:
        return len(annotated_frame_indices(d)) > 0
    return any(a.get("iscrowd", 0) == 0 for a in d.get("annotations", ()))


def get_vis_train_dataset_dicts(names: Sequence[str]) -> List[dict]:
    """
    Records of the training datasets ``names`` (video records and/or COCO image dicts), without
    the videos/images that have no non-crowd instance (they cannot give a pair).

    Raises:
        UnknownDatasetError for a name that is not registered;
        ValueError "training set X has no annotated instance" when nothing of X is left.
    """
    if isinstance(names, str):
        names = [names]
    if len(names) == 0:
        raise ValueError("DATASETS.TRAIN is empty")
    all_dicts = []
    for name in names:
        dicts = get_dataset_dicts_by_name(name)
        video = is_video_dataset(name, dicts)
        kept = [d for d in dicts if _has_annotated_instance(d, video)]
        kind = "videos" if video else "images"
        if len(kept) < len(dicts):
            logger.info(
                f"Removed {len(dicts) - len(kept)} of {len(dicts)} {kind} of '{name}' that have "
                "no annotated non-crowd instance."
            )
        if not kept:
            raise ValueError(
                f"training set '{name}' has no annotated instance (none of its {len(dicts)} "
                f"{kind} has a non-crowd annotation; is it a split without ground truth?)"
            )
        logger.info(f"Training on {len(kept)} {kind} of '{name}'.")
        all_dicts.extend(kept)
    return all_dicts


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
    ):
        """
        Args:
            video_mapper, image_mapper: map a video record / an image dict to a pair.
            copy_paste: optional pair -> pair augmentation applied to every mapped pair
                (:class:`~vis_d2.data.copy_paste.CopyPaste`, ``INPUT.VIS.COPY_PASTE``).
        """
        self.video_mapper = video_mapper
        self.image_mapper = image_mapper
        self.copy_paste = copy_paste

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        return {
            "video_mapper": VideoPairDatasetMapper(cfg, is_train),
            "image_mapper": PseudoPairDatasetMapper(cfg, is_train),
            "copy_paste": CopyPaste(cfg) if cfg.INPUT.VIS.COPY_PASTE.ENABLED else None,
        }

    @staticmethod
    def is_video(dataset_dict: dict) -> bool:
        return "file_names" in dataset_dict

    def __call__(self, dataset_dict: dict) -> dict:
        if self.is_video(dataset_dict):
            pair = self.video_mapper(dataset_dict)
        else:
            pair = self.image_mapper(dataset_dict)
        return pair if self.copy_paste is None else self.copy_paste(pair)


def _train_loader_from_config(cfg, mapper=None, sampler=None):
    """``build_vis_train_loader(cfg[, mapper, sampler])`` -> its explicit arguments."""
    dicts = get_vis_train_dataset_dicts(cfg.DATASETS.TRAIN)
    if mapper is None:
        mapper = PairDatasetMapper(cfg, True)
    if sampler is None and cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
        raise ValueError(
            f"DATALOADER.SAMPLER_TRAIN='{cfg.DATALOADER.SAMPLER_TRAIN}' is not supported by "
            "build_vis_train_loader; use 'TrainingSampler' or pass sampler="
        )
    return {
        "dataset": dicts,
        "mapper": mapper,
        "sampler": sampler,
        "total_batch_size": cfg.SOLVER.IMS_PER_BATCH,
        "aspect_ratio_grouping": cfg.DATALOADER.ASPECT_RATIO_GROUPING,
        "num_workers": cfg.DATALOADER.NUM_WORKERS,
    }


@configurable(from_config=_train_loader_from_config)
def build_vis_train_loader(
    dataset: Sequence[dict],
    *,
    mapper: Callable[[dict], dict],
    sampler: Optional[torchdata.Sampler] = None,
    total_batch_size: int,
    aspect_ratio_grouping: bool = True,
    num_workers: int = 0,
):
    """
    The training loader over video and/or image records; one item of a batch is one pair.

    Two call forms (detectron2's ``@configurable``, as ``build_detection_train_loader``):

    * ``build_vis_train_loader(cfg, mapper=None, sampler=None)``: the records of
      ``cfg.DATASETS.TRAIN`` (:func:`get_vis_train_dataset_dicts`), mapper
      :class:`PairDatasetMapper` (cfg), batch ``cfg.SOLVER.IMS_PER_BATCH``, workers and aspect
      ratio grouping from ``cfg.DATALOADER``;
    * explicit arguments (LazyConfig): ``build_vis_train_loader(dataset=records, mapper=...,
      total_batch_size=16, ...)``.

    Args:
        dataset: training records (e.g. ``get_vis_train_dataset_dicts(names)``).
        mapper: maps one record to one pair (e.g. :class:`PairDatasetMapper`).
        sampler: indices into ``dataset``; default detectron2's infinite
            :class:`TrainingSampler` (the hook for repeat-factor / multi-source sampling).
        total_batch_size: pairs per iteration over all processes (the paper's batch of 16 is
            16 pairs).
        aspect_ratio_grouping, num_workers: as ``build_detection_train_loader``.

    Returns:
        an infinite iterable; each item is a list of ``total_batch_size / world size`` pair
        dicts.
    """
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
