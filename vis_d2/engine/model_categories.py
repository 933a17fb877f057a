"""``model_categories(cfg)``: the dataset categories a model of ``cfg`` predicts, by its
contiguous class index, from the metadata of ``DATASETS.TEST[0]`` (else ``DATASETS.TRAIN[0]``)."""
import logging
from typing import List, Optional, Tuple

from detectron2.data import MetadataCatalog

__all__ = ["model_categories"]

logger = logging.getLogger(__name__)


def model_categories(cfg) -> Tuple[Optional[List[str]], List[int]]:
    """(class names by contiguous index or None, dataset id of each contiguous index) from the
    metadata of ``DATASETS.TEST[0]`` or, without a test set, ``DATASETS.TRAIN[0]``."""
    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    names = cfg.DATASETS.TEST or cfg.DATASETS.TRAIN
    name = names[0] if names else None
    # Only read: MetadataCatalog.get would create an empty entry for an unregistered name.
    meta = MetadataCatalog.get(name) if name and name in MetadataCatalog else None
    classes = meta.get("thing_classes", None) if meta is not None else None
    id_map = meta.get("thing_dataset_id_to_contiguous_id", None) if meta is not None else None
    if classes is not None and len(classes) != num_classes:
        raise ValueError(f"dataset '{name}' has {len(classes)} categories but the model "
                         f"(MODEL.ROI_HEADS.NUM_CLASSES) has {num_classes}")
    if not id_map:
        why = (f"dataset '{name}' is not registered" if meta is None and name else
               "DATASETS.TEST and DATASETS.TRAIN are empty" if not name else
               f"the metadata of '{name}' has no thing_dataset_id_to_contiguous_id")
        logger.warning(f"{why}; category ids are the model's class indices "
                       f"0..{num_classes - 1}")
        return classes, list(range(num_classes))
    to_dataset = {int(c): int(d) for d, c in id_map.items()}
    if sorted(to_dataset) != list(range(num_classes)):
        raise ValueError(f"dataset '{name}': thing_dataset_id_to_contiguous_id maps to "
                         f"{sorted(to_dataset)}, not to the model's 0..{num_classes - 1}")
    return classes, [to_dataset[k] for k in range(num_classes)]
