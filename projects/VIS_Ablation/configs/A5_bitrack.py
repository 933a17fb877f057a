"""Ablation row A5 without Multi-Source Data (paper Table 1): A3 + BiTrack (paper Sec. 3.4) +
label voting (Sec. 3.5.4), the LazyConfig twin of ``configs/synthvis/R18_A5_bitrack.yaml``.

Both change video inference only, so the model is A3's: evaluate an A3 checkpoint with
``--eval-only train.init_checkpoint=<A3 output>/model_final.pth`` (what
``projects/VIS_Ablation/sweep.py --lazy`` does) rather than training again.
"""
from vis_d2.tracking import VideoTracker

from .A1_baseline import from_yaml, yaml_config
from .A3_multitask import dataloader, lr_multiplier, model, optimizer, train

tracker = from_yaml(VideoTracker, yaml_config("R18_A5_bitrack.yaml"))

train.output_dir = "output/vis_ablation/A5_bitrack"
