"""Ablation row A5 (paper Table 1): A4 + BiTrack (paper Sec. 3.4) as Algorithm 2 has it, without
label voting, the LazyConfig twin of ``configs/synthvis/R18_A5_bitrack.yaml``.

BiTrack changes video inference only, so the model is A4's: evaluate an A4 checkpoint with
``--eval-only train.init_checkpoint=<A4 output>/model_final.pth`` (what
``projects/VIS_Ablation/sweep.py --lazy`` does) rather than training again.
"""
from vis_d2.tracking import VideoTracker

from .A1_baseline import from_yaml, yaml_config
from .A4_msd import dataloader, lr_multiplier, model, optimizer, test, train

tracker = from_yaml(VideoTracker, yaml_config("R18_A5_bitrack.yaml"))

train.output_dir = "output/vis_ablation/A5_bitrack"
