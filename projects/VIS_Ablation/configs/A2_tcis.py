"""Ablation row A2 (paper Table 1): A1 (``A1_paper.py``) + TCIS (paper Sec. 3.3), the LazyConfig
twin of ``configs/synthvis/R18_A2_tcis.yaml``.

TCIS predicts each instance's reference-frame mask from its key-frame RoI feature, its key-frame
mask and the feature difference between the frames, through the shared mask head. It trains with
``loss_tcis`` and does not run at inference.
"""
from vis_d2.modeling import TCIS

from .A1_baseline import from_yaml, roi_shape, yaml_config
from .A1_paper import dataloader, lr_multiplier, model, optimizer, test, tracker, train

_cfg = yaml_config("R18_A2_tcis.yaml")
model.roi_heads.tcis = from_yaml(TCIS, _cfg, roi_shape(14))  # on the mask pooler's output
model.roi_heads.tcis_loss_weight = _cfg.MODEL.VIS.TCIS.LOSS_WEIGHT

train.output_dir = "output/vis_ablation/A2_tcis"
