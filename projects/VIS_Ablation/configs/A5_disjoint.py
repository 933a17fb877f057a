"""Ablation row A5-disjoint: A5 with vis_d2's "disjoint" BiTrack merge, the LazyConfig twin of
``configs/synthvis/R18_A5_disjoint.yaml``. Inference only: evaluated from A4's checkpoint, as A5.
"""
from vis_d2.tracking import VideoTracker

from .A1_baseline import from_yaml, yaml_config
from .A5_bitrack import dataloader, lr_multiplier, model, optimizer, test, train

tracker = from_yaml(VideoTracker, yaml_config("R18_A5_disjoint.yaml"))

train.output_dir = "output/vis_ablation/A5_disjoint"
