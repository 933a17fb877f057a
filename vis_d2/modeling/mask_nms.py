"""Per-class mask NMS of one frame's detections, after pasting and rescoring.

detectron2's per-class box NMS (``MODEL.ROI_HEADS.NMS_THRESH_TEST``, 0.5) keeps detections whose
boxes overlap another detection's by less than the threshold. On the synthetic demo most such
survivors are partial boxes on an object already detected: two or more detections of the right
class cover the object with overlapping masks while their boxes overlap by less than the
threshold. The tracker links them into concurrent tracks of one object that take detections from
each other, so the object's best track misses frames and its spatio-temporal IoU drops. Their
masks overlap far more than their boxes do, so NMS on the masks removes them.
It also runs after the mask-shape classifier has rescored the detections
(``MODEL.VIS.MASK_CLASS``), so the survivor of each group is the one the final score prefers.

Detections of different classes never suppress each other: with class-agnostic box and mask
heads one RoI yields the same mask for every class it may be, and those class hypotheses are the
hedge the video-level metric rewards when the class is uncertain.
"""
import torch

from detectron2.structures import Instances

__all__ = ["pairwise_mask_iou", "mask_nms"]

# Pixels per chunk of the intersection product: memory stays at N x chunk floats whatever the
# frame size (100 masks of a 720p frame would take 370 MB as one float matrix).
_CHUNK = 1 << 16


def pairwise_mask_iou(masks: torch.Tensor, chunk: int = _CHUNK) -> torch.Tensor:
    """(N, N) float32 IoU between N masks.

    Args:
        masks: (N, H, W) bool (or 0/1) masks of one image.
        chunk: pixels per step of the intersection product (memory, not result).
    Returns:
        IoU; 0 where both masks are empty.
    """
    if masks.dim() != 3:
        raise ValueError(f"pairwise_mask_iou expects (N, H, W) masks, got {tuple(masks.shape)}")
    flat = masks.reshape(masks.shape[0], -1)
    n = flat.shape[0]
    inter = torch.zeros(n, n, dtype=torch.float32, device=masks.device)
    for start in range(0, flat.shape[1], chunk):
        part = flat[:, start:start + chunk].to(torch.float32)
        inter += part @ part.T
    area = inter.diagonal().clone()
    union = area[:, None] + area[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-9), torch.zeros_like(inter))


def mask_nms(instances: Instances, thresh: float) -> Instances:
    """Greedy per-class NMS on mask IoU: in score order, a detection is dropped where its mask
    overlaps an already kept detection of the same class by IoU > ``thresh``.

    Args:
        instances: one image's postprocessed detections with ``pred_masks`` (N, H, W) bool at
            the image's size, ``scores`` (N,) and ``pred_classes`` (N,).
        thresh: IoU threshold in (0, 1].
    Returns:
        the kept detections, in their input order (all fields kept).
    """
    if not 0.0 < float(thresh) <= 1.0:
        raise ValueError(f"mask_nms: the IoU threshold (MODEL.VIS.MASK_NMS_THRESH) must be in "
                         f"(0, 1], got {thresh}")
    if len(instances) <= 1:
        return instances
    for field in ("pred_masks", "scores", "pred_classes"):
        if not instances.has(field):
            raise ValueError(f"mask_nms: the detections have no '{field}'")
    masks = instances.pred_masks
    if masks.dim() != 3:
        raise ValueError(f"mask_nms needs pasted (N, H, W) masks, got pred_masks of shape "
                         f"{tuple(masks.shape)} (run it after detector_postprocess)")
    iou = pairwise_mask_iou(masks > 0.5 if masks.is_floating_point() else masks)
    classes = instances.pred_classes
    suppresses = (iou > float(thresh)) & (classes[:, None] == classes[None, :])
    order = torch.sort(instances.scores, descending=True, stable=True).indices.tolist()
    keep = torch.zeros(len(instances), dtype=torch.bool, device=masks.device)
    dropped = torch.zeros_like(keep)
    for i in order:
        if dropped[i]:
            continue
        keep[i] = True
        dropped |= suppresses[i]
    return instances[keep]
