"""Track head (MaskTrack R-CNN style, paper Sec. 2): RoI feature -> FCs -> embedding.

Training (key frame t, reference frame t'): for every positive key-frame proposal with embedding
e and the reference frame's ground-truth embeddings r_1..r_N, the logits are
``[0, e.r_1, ..., e.r_N]``; slot 0 means "this object is not in the reference frame". The loss is
the cross-entropy to the slot of the reference instance with the same track id (or slot 0).
Negative proposals do not count. The batch's loss is MaskTrack R-CNN's reduction: the mean over
each pair's positive proposals, then the mean over the pairs, so that every training pair weighs
the same whatever its number of positives (a pair with many objects does not outweigh the rest).
"""
from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
import fvcore.nn.weight_init as weight_init

__all__ = ["TrackHead", "track_embedding_loss"]


class TrackHead(nn.Module):
    """Flatten -> ``num_fc`` FC layers (ReLU between them, none after the last) -> (R, D).

    The last layer has no ReLU so that dot products between embeddings can be negative, which
    the softmax over reference instances needs to push non-matching pairs apart.
    """

    @configurable
    def __init__(self, input_shape: ShapeSpec, *, num_fc: int, fc_dim: int, embed_dim: int):
        super().__init__()
        if num_fc < 1:
            raise ValueError(f"MODEL.VIS.TRACK_HEAD.NUM_FC must be >= 1, got {num_fc}")
        in_dim = input_shape.channels * (input_shape.height or 1) * (input_shape.width or 1)
        dims = [fc_dim] * (num_fc - 1) + [embed_dim]
        self.fcs = nn.ModuleList()
        for d in dims:
            fc = nn.Linear(in_dim, d)
            weight_init.c2_xavier_fill(fc)
            self.fcs.append(fc)
            in_dim = d
        # Start the last layer small: logits are raw dot products of two embeddings, and with a
        # Xavier-sized last layer they start in the hundreds, which makes the first updates
        # of the softmax explode. Near-zero logits start the softmax uniform.
        nn.init.normal_(self.fcs[-1].weight, std=0.01)
        nn.init.zeros_(self.fcs[-1].bias)
        self.embed_dim = embed_dim

    @classmethod
    def from_config(cls, cfg, input_shape):
        c = cfg.MODEL.VIS.TRACK_HEAD
        return {"input_shape": input_shape, "num_fc": c.NUM_FC, "fc_dim": c.FC_DIM,
                "embed_dim": c.EMBED_DIM}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (R, C, H, W) pooled RoI features -> (R, embed_dim) embeddings."""
        x = x.flatten(1)
        for i, fc in enumerate(self.fcs):
            x = fc(x)
            if i < len(self.fcs) - 1:
                x = F.relu(x)
        return x


def track_targets(key_track_ids: torch.Tensor, ref_track_ids: torch.Tensor) -> torch.Tensor:
    """(P,) key track ids, (N,) reference track ids -> (P,) long targets in [0, N].

    Target j >= 1 means reference instance j-1 has the same track id; 0 means absent.
    """
    if ref_track_ids.numel() == 0:
        return torch.zeros_like(key_track_ids, dtype=torch.long)
    eq = key_track_ids[:, None] == ref_track_ids[None, :]  # (P, N)
    has = eq.any(dim=1)
    idx = eq.float().argmax(dim=1) + 1
    return torch.where(has, idx, torch.zeros_like(idx)).long()


def track_logits(key_embeds: torch.Tensor, ref_embeds: torch.Tensor) -> torch.Tensor:
    """(P, D), (N, D) -> (P, N + 1) logits ``[0, e.r_1, ..., e.r_N]``."""
    dots = key_embeds @ ref_embeds.t()
    return torch.cat([dots.new_zeros(dots.shape[0], 1), dots], dim=1)


def track_embedding_loss(
    key_embeds: List[torch.Tensor],
    key_track_ids: List[torch.Tensor],
    ref_embeds: List[torch.Tensor],
    ref_track_ids: List[torch.Tensor],
) -> torch.Tensor:
    """MaskTrack R-CNN's loss: per training pair the mean cross-entropy over its positive key
    proposals, then the mean over the pairs.

    A pair without positive proposals adds 0 and still counts in the number of pairs, as in
    MaskTrack R-CNN (it divides by the batch size).

    Args (one list entry per training pair):
        key_embeds: (P_i, D) embeddings of the positive key-frame proposals.
        key_track_ids: (P_i,) their matched ground-truth track ids.
        ref_embeds: (N_i, D) embeddings of the reference frame's ground-truth instances.
        ref_track_ids: (N_i,) their track ids.
    Returns:
        scalar loss. With no positive proposal at all it is ``0 * sum(embeddings)`` so every
        parameter still receives a (zero) gradient, which DDP requires.
    """
    losses = []
    for ke, kt, re, rt in zip(key_embeds, key_track_ids, ref_embeds, ref_track_ids):
        if ke.shape[0] == 0:
            continue
        logits = track_logits(ke, re)
        losses.append(F.cross_entropy(logits, track_targets(kt, rt), reduction="mean"))
    if not losses:
        return sum(e.sum() for e in key_embeds + ref_embeds) * 0.0
    return torch.stack(losses).sum() / len(key_embeds)
