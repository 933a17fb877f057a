"""Ablation row A1 (paper Table 1): the baseline, VideoRCNN as in ``base.py``.

The LazyConfig twin of ``configs/synthvis/R18_A1_baseline.yaml``.
"""
from .base import dataloader, lr_multiplier, model, optimizer, tracker, train

train.output_dir = "output/vis_ablation/A1_baseline"
