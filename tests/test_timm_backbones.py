"""The timm backbones (paper Sec. 4.1): ResNeSt and Swin as detectron2 backbones with res2..res5,
the FPN on them, the Table 2 configs B1 / B2 training a step on CPU, weights from local files only,
and the errors for a wrong model name, a missing or foreign weights file, and a missing timm."""
import os
import socket
import sys

import pytest
import torch
from torch import nn

from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from helpers import TINY_OPTS, boxed_instances
from vis_d2.config import get_vis_cfg
from vis_d2.engine.checkpoint import IncompatibleCheckpointError
from vis_d2.engine.trainer import VISTrainer
from vis_d2.modeling.backbones import TimmBackbone, load_timm_weights

timm = pytest.importorskip("timm")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESNEST_CHANNELS = {"res2": 256, "res3": 512, "res4": 1024, "res5": 2048}


@pytest.fixture
def no_network(monkeypatch):
    """Every way timm / torch could fetch weights raises, and so does opening a socket."""
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    import huggingface_hub
    import timm.models._builder as builder
    import timm.models._hub as hub

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)
    for module in (hub, builder):
        for name in ("download_cached_file", "load_state_dict_from_hf", "load_state_dict_from_url",
                     "hf_hub_download", "load_pretrained"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, refuse)
    with pytest.raises(AssertionError, match="network access attempted"):
        socket.create_connection(("huggingface.co", 443))


@pytest.mark.parametrize("name, channels", [
    ("resnest50d", RESNEST_CHANNELS),
    ("resnest101e", RESNEST_CHANNELS),
    ("swin_small_patch4_window7_224", {"res2": 96, "res3": 192, "res4": 384, "res5": 768}),
])
def test_backbone_stages_are_res2_to_res5_with_strides_and_channels(name, channels, no_network):
    torch.manual_seed(0)
    backbone = TimmBackbone(model_name=name).eval()
    shapes = backbone.output_shape()
    assert {k: (s.channels, s.stride) for k, s in shapes.items()} == \
        {k: (c, 2 ** int(k[3])) for k, c in channels.items()}
    assert backbone.size_divisibility == 32
    with torch.no_grad():
        out = backbone(torch.randn(2, 3, 64, 96))
    assert {k: tuple(v.shape) for k, v in out.items()} == \
        {k: (2, c, 64 // 2 ** int(k[3]), 96 // 2 ** int(k[3])) for k, c in channels.items()}


def test_out_features_subset_and_swin_input_off_the_window_grid(no_network):
    # 5 x 7 patches at res5 stride: not a multiple of Swin's 7x7 window at any stage
    backbone = TimmBackbone(model_name="swin_small_patch4_window7_224",
                            out_features=["res3", "res5"]).eval()
    assert backbone.output_shape().keys() == {"res3", "res5"}
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, 160, 224))
    assert tuple(out["res3"].shape) == (1, 192, 20, 28)
    assert tuple(out["res5"].shape) == (1, 768, 5, 7)


def test_table_configs_chain():
    """S50 (Table 1's backbone) -> B1 (ResNeSt-101) -> B2 (Swin-S): what each row changes."""
    def cfg(name):
        return get_vis_cfg(os.path.join(REPO, "configs/ytvis_2021", name), ["MODEL.DEVICE", "cpu"])

    s50, b1, b2 = cfg("S50_FPN_A5.yaml"), cfg("B1_S101_FPN.yaml"), cfg("B2_SwinS_FPN.yaml")
    for c in (s50, b1, b2):
        assert c.MODEL.BACKBONE.NAME == "build_vis_timm_fpn_backbone" and c.INPUT.FORMAT == "RGB"
        assert c.MODEL.VIS.TCIS.ENABLED and c.MODEL.VIS.MSD.NUM_AUX_CLASSES == 8  # A4's training
        assert c.MODEL.VIS.TRACKER.BITRACK and c.MODEL.VIS.TRACKER.LABEL_VOTING  # A5's inference
        assert c.MODEL.WEIGHTS == "" and c.MODEL.VIS.TIMM.WEIGHTS == ""
    assert [c.MODEL.VIS.TIMM.NAME for c in (s50, b1, b2)] == \
        ["resnest50d", "resnest101e", "swin_small_patch4_window7_224"]
    assert [c.MODEL.VIS.TIMM.NORM for c in (s50, b1, b2)] == ["SyncBN", "SyncBN", ""]
    assert [(c.SOLVER.OPTIMIZER, c.SOLVER.BASE_LR, c.SOLVER.WEIGHT_DECAY) for c in (b1, b2)] == \
        [("SGD", 0.01, 0.0001), ("ADAMW", 5e-5, 0.05)]


def _pair(h, w):
    """A training pair of an (h, w) frame with two objects, the first moving 4 px."""
    img = torch.randint(0, 255, (3, h, w), dtype=torch.uint8)
    boxes = [(8, 8, 40, 48), (50, 30, 80, 60)]
    moved = [(12, 8, 44, 48), (50, 30, 80, 60)]
    return {"image": img, "instances": boxed_instances((h, w), boxes, [1, 2], [1, 2]),
            "ref_image": img, "ref_instances": boxed_instances((h, w), moved, [1, 2], [1, 2])}


def _train_step(config, *opts):
    """Build the config's model (tiny heads, CPU) and run one optimizer step on one pair of a
    90 x 120 frame (padded to 96 x 128 by the backbone's size divisibility).
    Returns (cfg, model, losses, {parameter name: changed by the step})."""
    cfg = get_vis_cfg(os.path.join(REPO, "configs/ytvis_2021", config),
                      TINY_OPTS + ["MODEL.WEIGHTS", ""] + list(opts))
    torch.manual_seed(0)
    model = build_model(cfg).train()
    optimizer = VISTrainer.build_optimizer(cfg, model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with EventStorage(0):
        losses = model([_pair(90, 120)])
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    optimizer.step()
    changed = {n: not torch.equal(before[n], p.detach()) for n, p in model.named_parameters()}
    return cfg, model, {k: float(v.detach()) for k, v in losses.items()}, changed


def test_b1_resnest101_config_trains_a_step_with_syncbn_on_one_cpu_process(no_network):
    cfg, model, losses, changed = _train_step("B1_S101_FPN.yaml")
    assert cfg.MODEL.VIS.TIMM.NAME == "resnest101e" and cfg.SOLVER.OPTIMIZER == "SGD"
    assert cfg.SOLVER.BASE_LR == pytest.approx(1e-2) and cfg.MODEL.VIS.TRACKER.BITRACK
    assert model.backbone.size_divisibility == 32
    assert {k: s.stride for k, s in model.backbone.output_shape().items()} == \
        {f"p{k}": 2 ** k for k in range(2, 8)}
    net = model.backbone.bottom_up.net.model
    # FREEZE_AT 2: stem and res2 frozen (FrozenBN), res3.. synchronised BatchNorm
    assert isinstance(net.bn1, FrozenBatchNorm2d) and isinstance(net.layer1[0].bn1, FrozenBatchNorm2d)
    assert isinstance(net.layer2[0].bn1, nn.SyncBatchNorm)
    assert not any(changed[n] for n in changed if n.startswith("backbone.bottom_up.net.model.layer1."))
    assert changed["backbone.bottom_up.net.model.layer2.0.conv1.weight"]
    # the multi-label head reads C5 = res5 of ResNeSt (2048 channels) and trains
    assert model.multilabel_head.fc.in_features == 2048 and changed["multilabel_head.fc.weight"]
    assert {"loss_cls", "loss_mask", "loss_track", "loss_tcis", "loss_semseg",
            "loss_multilabel", "loss_maskiou"} <= set(losses)


def test_b2_swin_config_trains_a_step_with_adamw(no_network):
    cfg, model, losses, changed = _train_step("B2_SwinS_FPN.yaml")
    assert cfg.SOLVER.OPTIMIZER == "ADAMW" and cfg.SOLVER.BASE_LR == pytest.approx(5e-5)
    net = model.backbone.bottom_up.net.model
    assert net.layers[3].blocks[-1].drop_path1.drop_prob == pytest.approx(0.2)
    assert model.multilabel_head.fc.in_features == 768
    # FREEZE_AT 0: the patch embedding trains too
    assert changed["backbone.bottom_up.net.model.patch_embed.proj.weight"]
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    assert "loss_multilabel" in losses
    # Swin's relative position bias tables get no weight decay; its other weights 0.05
    from vis_d2.engine import VISTrainer

    decay = {id(p): g["weight_decay"] for g in VISTrainer.build_optimizer(cfg, model).param_groups
             for p in g["params"]}
    tables = [p for n, p in model.named_parameters() if n.endswith("relative_position_bias_table")]
    assert len(tables) == 24 and {decay[id(p)] for p in tables} == {0.0}
    assert decay[id(net.layers[0].blocks[0].attn.qkv.weight)] == pytest.approx(0.05)


# ---- weights from local files -----------------------------------------------------------------

def _state(backbone):
    return {k: v.clone() for k, v in backbone.net.model.state_dict().items()}


@pytest.mark.parametrize("fmt", ["safetensors", "pth_model_module"])
def test_weights_file_round_trip(tmp_path, fmt, no_network):
    torch.manual_seed(1)
    source = _state(TimmBackbone(model_name="resnest14d"))
    if fmt == "safetensors":
        from safetensors.torch import save_file

        path = str(tmp_path / "model.safetensors")
        save_file(source, path)
    else:  # a DDP state dict under "model", with a classifier the backbone does not use
        path = str(tmp_path / "resnest14d.pth")
        extra = {"fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)}
        torch.save({"model": {f"module.{k}": v for k, v in {**source, **extra}.items()}}, path)
    torch.manual_seed(2)
    loaded = _state(TimmBackbone(model_name="resnest14d", weights=path))
    assert loaded.keys() == source.keys()
    assert all(torch.equal(loaded[k], source[k]) for k in source)


def test_official_swin_layout_is_converted_by_timm(tmp_path):
    """The Swin releases keep each patch merging at the end of a stage ("layers.0.downsample"),
    timm at the start of the next ("layers.1.downsample"), and name the classifier "head" (timm:
    "head.fc"); timm's converter maps them."""
    kw = dict(embed_dim=24, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1))
    torch.manual_seed(3)
    source = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, **kw)
    official = {}
    for k, v in source.state_dict().items():
        if ".downsample." in k:
            stage = int(k.split(".")[1])
            k = k.replace(f"layers.{stage}.downsample", f"layers.{stage - 1}.downsample")
        official[k.replace("head.fc.", "head.")] = v
    assert "layers.0.downsample.reduction.weight" in official
    path = str(tmp_path / "swin_official.pth")
    torch.save({"model": official}, path)
    torch.manual_seed(4)
    target = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, **kw)
    load_timm_weights(target, path, "swin_tiny_patch4_window7_224")
    got, want = target.state_dict(), source.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)


# ---- bad input ----------------------------------------------------------------------------------

def test_unknown_model_name_lists_close_names():
    with pytest.raises(ValueError, match="MODEL.VIS.TIMM.NAME 'resnest101' is not a timm model; "
                                         "close names: resnest101e"):
        TimmBackbone(model_name="resnest101")
    with pytest.raises(ValueError, match="MODEL.VIS.TIMM.NAME is empty"):
        TimmBackbone(model_name="")


def test_missing_weights_file_says_where_to_get_it(tmp_path, no_network):
    path = str(tmp_path / "nowhere.safetensors")
    with pytest.raises(FileNotFoundError) as e:
        TimmBackbone(model_name="resnest50d", weights=path)
    msg = str(e.value)
    assert f"MODEL.VIS.TIMM.WEIGHTS points to '{path}', which does not exist" in msg
    assert "https://huggingface.co/timm/resnest50d.in1k" in msg and "zhanghang1989/ResNeSt" in msg
    with pytest.raises(FileNotFoundError, match="SwinTransformer/storage/releases"):
        TimmBackbone(model_name="swin_small_patch4_window7_224", weights=path)


def test_weights_of_another_architecture_name_the_file_and_keys(tmp_path):
    other = timm.create_model("resnet10t", pretrained=False).state_dict()
    path = str(tmp_path / "resnet10t.pth")
    torch.save(other, path)
    own = TimmBackbone(model_name="resnest14d").net.model.state_dict()
    first_missing = next(k for k in own if k not in other)
    with pytest.raises(IncompatibleCheckpointError) as e:
        TimmBackbone(model_name="resnest14d", weights=path)
    msg = str(e.value)
    assert f"'{path}' (MODEL.VIS.TIMM.WEIGHTS) does not fit timm's 'resnest14d'" in msg
    assert f"are missing from it (first: {first_missing}," in msg

    # one tensor of another shape
    bad = dict(own)
    bad["layer2.0.conv1.weight"] = torch.zeros(3, 3, 1, 1)
    torch.save(bad, path)
    with pytest.raises(IncompatibleCheckpointError,
                       match=r"1 have another shape \(first: layer2.0.conv1.weight \(3, 3, 1, 1\) "
                             r"in the file, \(128, 256, 1, 1\) in the model\)"):
        TimmBackbone(model_name="resnest14d", weights=path)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="MODEL.VIS.TIMM.NORM 'SyncBN' converts BatchNorm layers, "
                                         "and timm model 'swin_small_patch4_window7_224' has none"):
        TimmBackbone(model_name="swin_small_patch4_window7_224", norm="SyncBN")
    with pytest.raises(ValueError, match="MODEL.VIS.TIMM.NORM must be one of"):
        TimmBackbone(model_name="resnest14d", norm="GN")
    with pytest.raises(ValueError, match=r"OUT_FEATURES must be among .* got \['p5'\]"):
        TimmBackbone(model_name="resnest14d", out_features=["p5"])


def test_without_timm_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'vis_d2\[backbones\]'"):
        TimmBackbone(model_name="resnest50d")
