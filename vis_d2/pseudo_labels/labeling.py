"""Run an ensemble (or one model, at one or several scales) and the tracker over a registered
video split and keep the pseudo labels of every video (paper Sec. 3.5.3).

    lead_cfg, members = load_members(["A.yaml:a.pth", "B.yaml:b.pth"])
    ensemble = build_ensemble(lead_cfg, members)
    tracks, stats = label_split(ensemble, lead_cfg, "ytvis_2021_val")

The per-frame step is the ensemble's (:class:`~vis_d2.engine.frame_fusion.FusedFrameModel`:
boxes merged with the max score, masks and embeddings averaged), the tracker the lead config's
(``MODEL.VIS.TRACKER``, BiTrack included), the thresholds the lead config's
``TEST.VIS.PSEUDO`` (:class:`~vis_d2.pseudo_labels.selection.PseudoLabelFilter`).
"""
import contextlib
import logging
import time
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation.evaluator import inference_context

from ..data.build import build_vis_test_loader
from ..engine.frame_fusion import FusedFrameModel, FusionMember
from ..engine.video_inference import cache_video_detections
from ..tracking import VideoTracker
from .selection import PseudoLabelFilter, PseudoTrack

__all__ = ["LabelingStats", "check_split_classes", "split_has_ground_truth", "warn_if_leaks",
           "label_split"]

logger = logging.getLogger(__name__)


class LabelingStats(dict):
    """Counts of one labelling run: ``videos``, ``frames``, ``tracks`` (all the tracker made),
    ``kept_tracks``, ``boxes`` (of the kept tracks), ``videos_with_labels``, ``seconds``."""


def split_has_ground_truth(dataset_name: str, records: Optional[Sequence[dict]] = None) -> bool:
    """Whether the split has annotations: its records' ``has_gt`` (the loader sets it from the
    json) where given, else the metadata's ``has_gt``."""
    if records:
        return any(bool(r.get("has_gt", False)) for r in records)
    return bool(MetadataCatalog.get(dataset_name).get("has_gt", False))


def warn_if_leaks(dataset_name: str, records: Optional[Sequence[dict]] = None) -> bool:
    """Log a warning naming ``dataset_name`` when it has ground truth: pseudo labels of a split
    that is also evaluated put its videos into training, so its scores would leak. Returns
    whether it warned."""
    if not split_has_ground_truth(dataset_name, records):
        return False
    json_file = MetadataCatalog.get(dataset_name).get("json_file", None)
    logger.warning(
        f"dataset '{dataset_name}'{f' ({json_file})' if json_file else ''} has ground truth: "
        "training on its pseudo labels puts its videos into training, so evaluating on "
        f"'{dataset_name}' afterwards would leak. Pseudo-label an unlabeled split (the benchmark's "
        "valid set, or python -m vis_d2.pseudo_labels.unlabeled to strip a json's annotations) "
        "and evaluate elsewhere.")
    return True


def check_split_classes(dataset_name: str, member: FusionMember) -> List[int]:
    """The split's dataset category id of each of the model's contiguous classes.

    Raises:
        ValueError naming the model and the split when their class lists differ (names, where
        both have them, or dataset ids) or the split's metadata has no category map.
    """
    meta = MetadataCatalog.get(dataset_name)
    names = meta.get("thing_classes", None)
    id_map = meta.get("thing_dataset_id_to_contiguous_id", None)
    if not id_map:
        raise ValueError(f"dataset '{dataset_name}' has no thing_dataset_id_to_contiguous_id in "
                         "its metadata: the pseudo labels' category ids cannot be written")
    ids = [d for d, _ in sorted(id_map.items(), key=lambda kv: kv[1])]
    model_names, model_ids = member.classes if member.classes is not None else (None, None)
    if (model_ids is not None and list(model_ids) != ids) or (
            model_names is not None and names is not None and list(model_names) != list(names)):
        raise ValueError(
            f"model '{member.name}' predicts the classes {list(model_names or model_ids)}, but "
            f"dataset '{dataset_name}' has {list(names or ids)}: pseudo labels need the split's "
            "class list (set the models' DATASETS.TEST to a split of the same taxonomy)")
    return ids


@torch.no_grad()
def label_split(ensemble: FusedFrameModel, lead_cfg, dataset_name: str,
                pseudo_filter: Optional[PseudoLabelFilter] = None,
                tracker: Optional[VideoTracker] = None
                ) -> Tuple[Dict[int, List[PseudoTrack]], LabelingStats]:
    """Pseudo labels of every video of ``dataset_name``.

    Args:
        ensemble: the per-frame step (a FusedFrameModel of one or more models).
        lead_cfg: the lead model's config: test mapper, tracker and thresholds.
        dataset_name: a registered video split (warned about when it has ground truth).
        pseudo_filter, tracker: override the lead config's ``TEST.VIS.PSEUDO`` and
            ``MODEL.VIS.TRACKER``.

    Returns:
        ({video id: its kept tracks, best first} for every video, in the split's order;
        the run's :class:`LabelingStats`).
    """
    pseudo_filter = pseudo_filter or PseudoLabelFilter.from_config(lead_cfg)
    tracker = tracker or VideoTracker.from_config(lead_cfg)
    warn_if_leaks(dataset_name, DatasetCatalog.get(dataset_name))
    loader = build_vis_test_loader(lead_cfg, dataset_name)
    stats = LabelingStats(videos=0, frames=0, tracks=0, kept_tracks=0, boxes=0,
                          videos_with_labels=0)
    out: Dict[int, List[PseudoTrack]] = {}
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        for m in ensemble.models:
            stack.enter_context(inference_context(m))
        for video in loader:
            frames = cache_video_detections(ensemble, video, tracker)
            tracklets = tracker.track(frames)
            kept = pseudo_filter.select(tracklets, tracker)
            out[int(video["video_id"])] = kept
            stats["videos"] += 1
            stats["frames"] += len(frames)
            stats["tracks"] += sum(1 for t in tracklets if len(t))
            stats["kept_tracks"] += len(kept)
            stats["boxes"] += sum(len(t) for t in kept)
            stats["videos_with_labels"] += bool(kept)
            logger.info(f"pseudo labels: video {video['video_id']} ({len(frames)} frames): kept "
                        f"{len(kept)} of {sum(1 for t in tracklets if len(t))} tracks")
    stats["seconds"] = round(time.perf_counter() - start, 3)
    return out, stats
