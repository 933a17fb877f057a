"""The environment set-up gives a working detectron2: a plain Mask R-CNN trains a step on CPU,
and `python -m vis_d2.env` reports versions."""
import subprocess
import sys

import torch

from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage


def test_plain_mask_rcnn_trains_one_step_on_cpu():
    torch.manual_seed(0)
    cfg = get_cfg()
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.MASK_ON = True
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    model = build_model(cfg)  # detectron2's own GeneralizedRCNN + StandardROIHeads
    model.train()
    inst = Instances((128, 160))
    inst.gt_boxes = Boxes(torch.tensor([[10.0, 10, 60, 70]]))
    inst.gt_classes = torch.tensor([1])
    m = torch.zeros(1, 128, 160, dtype=torch.bool)
    m[0, 10:70, 10:60] = True
    inst.gt_masks = BitMasks(m)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    before = model.roi_heads.box_predictor.cls_score.weight.detach().clone()
    with EventStorage(0):
        losses = model([{"image": torch.randint(0, 255, (3, 128, 160), dtype=torch.uint8), "instances": inst}])
    assert {"loss_cls", "loss_box_reg", "loss_mask", "loss_rpn_cls", "loss_rpn_loc"} == set(losses)
    loss = sum(losses.values())
    assert torch.isfinite(loss)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert not torch.equal(before, model.roi_heads.box_predictor.cls_score.weight)


def test_env_report_runs():
    out = subprocess.run([sys.executable, "-m", "vis_d2.env"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for key in ("torch", "torchvision", "detectron2", "detectron2._C", "CUDA available", "datasets"):
        assert key in out.stdout


def test_cuda_without_cuda_is_an_error_unless_the_fallback_is_set(monkeypatch, caplog):
    import logging

    import pytest
    import torch

    from vis_d2.config import get_vis_cfg
    from vis_d2.env import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError) as exc:
        get_vis_cfg("configs/ytvis_2021/R50_FPN_baseline.yaml")
    assert "MODEL.DEVICE=cuda but" in str(exc.value)
    assert "Give MODEL.DEVICE cpu to run on the CPU, or set MODEL.VIS.CPU_FALLBACK True" \
        in str(exc.value)
    with caplog.at_level(logging.WARNING, logger="vis_d2"):
        cfg = get_vis_cfg("configs/ytvis_2021/R50_FPN_baseline.yaml",
                          ["MODEL.VIS.CPU_FALLBACK", "True"])
    assert cfg.MODEL.DEVICE == "cpu"
    assert "running on the CPU (MODEL.VIS.CPU_FALLBACK is set)" in caplog.text
    # the synthetic CPU recipes opt in; "cpu" and a working CUDA pass unchanged
    assert get_vis_cfg("configs/synthvis/R18_demo.yaml").MODEL.DEVICE == "cpu"
    assert resolve_device("cpu", False) == "cpu"
    with pytest.raises(RuntimeError, match="Give train.device cpu .* set train.cpu_fallback True"):
        resolve_device("cuda:1", False, keys=("train.device", "train.cpu_fallback"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("cuda:1", False) == "cuda:1"
