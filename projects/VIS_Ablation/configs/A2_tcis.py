"""Ablation row A2 (paper Table 1): A1 + TCIS (paper Sec. 3.3).

TCIS predicts each instance's reference-frame mask from its key-frame RoI feature, its key-frame
mask and the feature difference between the frames, through the shared mask head. It reads the
mask pooler's output (64 x 14 x 14) and adds the training loss ``loss_tcis``; inference does
not run it. The LazyConfig twin of ``configs/synthvis/R18_A2_tcis.yaml``.
"""
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec

from vis_d2.modeling.tcis import TCIS

from .A1_baseline import dataloader, lr_multiplier, model, optimizer, tracker, train

model.roi_heads.tcis = L(TCIS)(
    # the mask pooler's output: FPN channels x 14 x 14
    input_shape=ShapeSpec(channels="${....backbone.out_channels}", height=14, width=14),
    block="BottleneckBlock",  # the Correlation Transform: a standard ResNet block
    bottleneck_channels=64,
    deform_kernel=3,
    norm="",
)
model.roi_heads.tcis_loss_weight = 1.0

train.output_dir = "output/vis_ablation/A2_tcis"
