"""Dataset fusion with auxiliary classes (the paper's Algorithm 1, Sec. 3.2).

An image source such as COCO has classes the video set lacks. Training them as background
would teach the model that COCO's 58 other classes are "nothing", training each as a class of
its own would shift its attention away from the video set's classes; instead they share K
auxiliary classes whose meaning the network picks itself. The ROI heads' class layout, with C
the video set's classes (``MODEL.ROI_HEADS.NUM_CLASSES``) and K = ``MODEL.VIS.MSD.NUM_AUX_CLASSES``,
is detectron2's with K more foreground outputs:

    [0, C)       the video set's classes,
    [C, C + K)   the auxiliary classes,
    C + K        background.

The data gives every auxiliary object (``gt_aux`` True) the label C. Each training step, every
sampled proposal matched to one is relabelled (:func:`relabel_auxiliary`): to the arg-max of
its detached class scores over all C + K + 1 outputs where that is an auxiliary output ("it is
doing correct"), else to one of the K drawn uniformly, so that no one output takes them all (the
paper's argument against K = 1).

At inference the auxiliary classes never leave the model (:func:`drop_auxiliary_outputs`): the
softmax runs over all C + K + 1 outputs and the K auxiliary columns are dropped before the score
threshold, NMS and top-k, without renormalising, so that an object the model takes for an
auxiliary one keeps low scores for the video set's classes rather than being promoted to one.
"""
from typing import List, Optional, Sequence, Tuple

import torch

__all__ = ["NUM_AUX_CLASSES_KEY", "check_num_aux_classes", "relabel_auxiliary",
           "drop_auxiliary_outputs"]

NUM_AUX_CLASSES_KEY = "MODEL.VIS.MSD.NUM_AUX_CLASSES"


def check_num_aux_classes(num_aux_classes) -> int:
    """K itself where it is an integer >= 0, else a ValueError naming the config key."""
    if isinstance(num_aux_classes, bool) or not isinstance(num_aux_classes, int) \
            or num_aux_classes < 0:
        raise ValueError(f"{NUM_AUX_CLASSES_KEY} must be an integer >= 0 (0: the objects of "
                         "classes the video set does not have are dropped from the data), got "
                         f"{num_aux_classes!r}")
    return num_aux_classes


def relabel_auxiliary(
    gt_classes: torch.Tensor,
    is_aux: torch.Tensor,
    class_scores: torch.Tensor,
    num_classes: int,
    num_aux_classes: int,
    generator: Optional[torch.Generator] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Algorithm 1 on R sampled proposals.

    Args:
        gt_classes: (R,) long labels of the proposals (background = C + K).
        is_aux: (R,) bool, True for the foreground proposals matched to an auxiliary object.
        class_scores: (R, C + K + 1) class logits (or probabilities: only the arg-max is read)
            of the same proposals; read detached.
        num_classes: C, the video set's classes.
        num_aux_classes: K; must be >= 1 where ``is_aux`` has a True.
        generator: the RNG of the uniform draw (default: torch's global one).
    Returns:
        labels: (R,) long, ``gt_classes`` with each auxiliary proposal's label in [C, C + K);
        from_scores: (R,) bool, True where that label is the arg-max rather than drawn.
        Without an auxiliary proposal both come back without drawing a random number.
    """
    labels = gt_classes.clone()
    from_scores = torch.zeros_like(is_aux, dtype=torch.bool)
    if not bool(is_aux.any()):
        return labels, from_scores
    c, k = num_classes, num_aux_classes
    if k < 1:
        raise ValueError(f"{int(is_aux.sum())} proposals are matched to auxiliary objects "
                         f"(gt_aux True) but {NUM_AUX_CLASSES_KEY} is {k}: with 0 the data must "
                         "drop them")
    if class_scores.shape != (len(gt_classes), c + k + 1):
        raise ValueError(f"relabel_auxiliary: class scores {tuple(class_scores.shape)} for "
                         f"{len(gt_classes)} proposals, expected (R, C + K + 1) = "
                         f"({len(gt_classes)}, {c + k + 1})")
    pred = class_scores.detach()[is_aux].argmax(dim=1)
    hit = (pred >= c) & (pred < c + k)
    new = pred.clone()
    n_draw = int((~hit).sum())
    if n_draw:
        draw_device = generator.device if generator is not None else pred.device
        new[~hit] = torch.randint(c, c + k, (n_draw,), generator=generator,
                                  device=draw_device).to(pred.device)
    labels[is_aux] = new.to(labels.dtype)
    from_scores[is_aux] = hit
    return labels, from_scores


def drop_auxiliary_outputs(
    boxes: Sequence[torch.Tensor],
    probs: Sequence[torch.Tensor],
    num_classes: int,
    num_aux_classes: int,
    box_dim: int = 4,
) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """The box predictor's per-image inference outputs without the auxiliary classes.

    Args:
        boxes: per image, (R_i, (C + K) * box_dim) class-specific or (R_i, box_dim)
            class-agnostic predicted boxes (``FastRCNNOutputLayers.predict_boxes``).
        probs: per image, (R_i, C + K + 1) class probabilities, background last
            (``predict_probs``).
        num_classes, num_aux_classes: C and K.
    Returns:
        per image, boxes (R_i, C * box_dim) or (R_i, box_dim) and probabilities (R_i, C + 1):
        the video set's columns and the background, the probabilities as they were (not
        renormalised). With K = 0 the inputs themselves.
    """
    if num_aux_classes == 0:
        return list(boxes), list(probs)
    c, k = num_classes, num_aux_classes
    out_boxes, out_probs = [], []
    for b, p in zip(boxes, probs):
        if p.shape[1] != c + k + 1:
            raise ValueError(f"drop_auxiliary_outputs: {p.shape[1]} class probabilities, "
                             f"expected C + K + 1 = {c + k + 1}")
        if b.shape[1] == (c + k) * box_dim:
            b = b[:, : c * box_dim]
        elif b.shape[1] != box_dim:
            raise ValueError(f"drop_auxiliary_outputs: boxes of width {b.shape[1]}, expected "
                             f"{(c + k) * box_dim} (class-specific) or {box_dim}")
        out_boxes.append(b)
        out_probs.append(torch.cat([p[:, :c], p[:, c + k:]], dim=1))
    return out_boxes, out_probs
