"""Ablation row A1 (paper Table 1), the paper-faithful baseline, as a LazyConfig: the LazyConfig
twin of ``configs/synthvis/R18_A1_paper.yaml`` (the demo recipe with its extras that the paper
does not have turned off). Rows A2..A5 build on it.
"""
from .A1_baseline import vis_rcnn_row

model, dataloader, tracker, test, optimizer, lr_multiplier, train = vis_rcnn_row(
    "R18_A1_paper.yaml", "output/vis_ablation/A1_paper")
