"""Ablation row A5 without Multi-Source Data (paper Table 1): A3 + BiTrack (paper Sec. 3.4) +
label voting (Sec. 3.5.4).

Both change video inference only, so the model is A3's: evaluate an A3 checkpoint with
``--eval-only train.init_checkpoint=<A3 output>/model_final.pth`` (what
``tools/ablation_sweep.py --lazy`` does) rather than training again.
The LazyConfig twin of ``configs/synthvis/R18_A5_bitrack.yaml``.
"""
from .A3_multitask import dataloader, lr_multiplier, model, optimizer, tracker, train

tracker.bitrack = True
tracker.label_voting = True

train.output_dir = "output/vis_ablation/A5_bitrack"
