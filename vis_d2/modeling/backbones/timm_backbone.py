"""A ``timm`` image model as a detectron2 ``Backbone``, and the paper's FPN on it (Sec. 4.1).

The paper's larger models use ResNeSt-101 (timm ``resnest101e``; ResNeSt-50 is ``resnest50d``)
and Swin-S (``swin_small_patch4_window7_224``). :class:`TimmBackbone` wraps any timm model that
``timm.create_model(name, features_only=True)`` supports and names its stages of stride 4, 8, 16
and 32 ``res2``..``res5`` as detectron2's ResNet does, so the FPN, the multi-label head (which
reads ``res5``, the paper's C5) and every config key that names a stage work unchanged.

The model is always created with ``pretrained=False`` (no hub download); weights come from the
local file ``MODEL.VIS.TIMM.WEIGHTS`` (:mod:`.timm_weights`). Swin is built with
``dynamic_img_size``: timm then pads each stage to a multiple of the attention window itself,
so an input only needs a multiple of the largest output stride (``size_divisibility``, which the
FPN also asks for), not of the window, nor a fixed 224x224.
"""
import difflib
import re
from typing import Dict, Sequence

import torch
from torch import nn

from detectron2.config import configurable
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone

from ..fpn import build_vis_fpn
from .timm_weights import load_timm_weights, require_weights_file

__all__ = ["TimmBackbone", "build_vis_timm_fpn_backbone", "import_timm"]

# detectron2's stage names and their strides.
STAGE_STRIDES = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
# "" keeps the model's own normalisation layers (BatchNorm in ResNeSt, LayerNorm in Swin).
NORMS = ("", "SyncBN", "FrozenBN")
INSTALL = "pip install 'vis_d2[backbones]'"


def import_timm():
    """The ``timm`` module, or an ImportError saying how to install it."""
    try:
        import timm
    except ImportError as e:
        raise ImportError(
            f"The timm backbones (MODEL.VIS.TIMM) need the timm package: {INSTALL}") from e
    return timm


def check_model_name(timm, name: str) -> None:
    """A ValueError, listing the closest timm names, unless ``name`` is a timm model."""
    if not name:
        raise ValueError("MODEL.VIS.TIMM.NAME is empty: give a timm model name, e.g. "
                         "'resnest101e' or 'swin_small_patch4_window7_224'")
    if timm.is_model(name):
        return
    # rank the names of the same family (its leading letters) first, then all of timm's
    family = re.match(r"[a-z]+", name.lower())
    same_family = timm.list_models(f"{family.group(0)}*") if family else []
    close = difflib.get_close_matches(name, same_family, n=8, cutoff=0.0) or \
        difflib.get_close_matches(name, timm.list_models(), n=8, cutoff=0.6)
    raise ValueError(
        f"MODEL.VIS.TIMM.NAME '{name}' is not a timm model"
        + (f"; close names: {', '.join(close)}" if close else "")
        + " (timm.list_models('pattern*') lists them)")


def _parent(root: nn.Module, dotted: str):
    """(the module holding submodule ``dotted`` of ``root``, its attribute name)."""
    head, _, name = dotted.rpartition(".")
    return (root.get_submodule(head) if head else root), name


@BACKBONE_REGISTRY.register()
class TimmBackbone(Backbone):
    """A timm model's stages as detectron2 features.

    Input: images (N, C, H, W), H and W multiples of ``size_divisibility``.
    Output: {``res_k``: (N, channels_k, H / 2**k, W / 2**k)} for ``res_k`` in ``out_features``.
    """

    @configurable
    def __init__(self, *, model_name: str, out_features: Sequence[str] = tuple(STAGE_STRIDES),
                 in_channels: int = 3, norm: str = "", freeze_at: int = 0,
                 drop_path_rate: float = 0.0, weights: str = ""):
        """
        Args:
            model_name: a timm model name (``timm.list_models()``).
            out_features: stages to return, of ``res2``..``res5``.
            in_channels: channels of the input images.
            norm: "" keeps the model's normalisation layers; "SyncBN" / "FrozenBN" turn its
                BatchNorm layers into synchronised / frozen ones (the model must have some).
            freeze_at: 0 trains everything; 1 freezes the stem (the layers before ``res2``);
                k in 2..5 the stem and stages ``res2``..``res_k`` (detectron2's FREEZE_AT).
                Frozen BatchNorm layers become ``FrozenBatchNorm2d``.
            drop_path_rate: stochastic depth rate of the model's blocks (0: none).
            weights: a local weights file of ``model_name`` ("" keeps the random init).
        """
        super().__init__()
        timm = import_timm()
        check_model_name(timm, model_name)
        unknown = [f for f in out_features if f not in STAGE_STRIDES]
        if unknown or not out_features:
            raise ValueError(f"MODEL.VIS.TIMM.OUT_FEATURES must be among {list(STAGE_STRIDES)}, "
                             f"got {list(out_features)}")
        if norm not in NORMS:
            raise ValueError(f"MODEL.VIS.TIMM.NORM must be one of {NORMS}, got {norm!r}")
        if not 0 <= freeze_at <= 5:
            raise ValueError(f"MODEL.BACKBONE.FREEZE_AT must be in 0..5, got {freeze_at}")
        if weights:
            require_weights_file(weights, model_name)  # fail before building the model
        # drop_path_rate always given: timm's own default differs by family (0.1 for Swin)
        kwargs = {"in_chans": in_channels, "drop_path_rate": drop_path_rate}
        if timm.models.get_pretrained_cfg_value(model_name, "fixed_input_size"):
            kwargs["dynamic_img_size"] = True  # any input size (Swin), see the module docstring
        # pretrained=False always: pretrained=True would download from the hub
        try:
            self.net = timm.create_model(model_name, pretrained=False, features_only=True,
                                         feature_cls="getter", **kwargs)
        except TypeError as e:  # a model that takes no drop_path_rate / in_chans
            raise ValueError(f"timm model '{model_name}' cannot be built as a backbone with "
                             f"{kwargs} (MODEL.VIS.TIMM): {e}") from e
        strides, channels = self.net.feature_info.reduction(), self.net.feature_info.channels()
        modules = self.net.feature_info.module_name()
        # the last of the model's outputs at each stride: its deepest features there
        last = {s: i for i, s in enumerate(strides)}
        missing = [f for f in out_features if STAGE_STRIDES[f] not in last]
        if missing:
            raise ValueError(f"timm model '{model_name}' has no stage for {missing} (its "
                             f"strides are {strides}; res_k needs stride 2**k)")
        self._index = {f: last[STAGE_STRIDES[f]] for f in out_features}
        self._stage_module = {f: modules[last[s]] for f, s in STAGE_STRIDES.items() if s in last}
        self._out_features = list(out_features)
        self._out_feature_strides = {f: STAGE_STRIDES[f] for f in out_features}
        self._out_feature_channels = {f: channels[i] for f, i in self._index.items()}
        self.model_name = model_name

        if weights:
            load_timm_weights(self.net.model, weights, model_name)
        if norm:
            if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.modules()):
                raise ValueError(
                    f"MODEL.VIS.TIMM.NORM '{norm}' converts BatchNorm layers, and timm model "
                    f"'{model_name}' has none; set MODEL.VIS.TIMM.NORM ''")
            if norm == "SyncBN":  # ordinary BatchNorm in a single process (no process group)
                self.net = nn.SyncBatchNorm.convert_sync_batchnorm(self.net)
            else:
                self.net = FrozenBatchNorm2d.convert_frozen_batchnorm(self.net)
        self.freeze(freeze_at)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec):
        t = cfg.MODEL.VIS.TIMM
        return {
            "model_name": t.NAME,
            "out_features": list(t.OUT_FEATURES),
            "in_channels": input_shape.channels,
            "norm": t.NORM,
            "freeze_at": cfg.MODEL.BACKBONE.FREEZE_AT,
            "drop_path_rate": t.DROP_PATH_RATE,
            "weights": t.WEIGHTS,
        }

    def freeze(self, freeze_at: int) -> "TimmBackbone":
        """Freeze the stem (``freeze_at`` >= 1) and stages ``res2``..``res{freeze_at}``."""
        if freeze_at < 1:
            return self
        if "res2" not in self._stage_module:
            raise ValueError(f"MODEL.BACKBONE.FREEZE_AT {freeze_at}: timm model "
                             f"'{self.model_name}' has no stride-4 stage to tell its stem by")
        model = self.net.model
        # the stem: the model's top-level modules before the one holding res2's stage
        res2_top = self._stage_module["res2"].split(".")[0]
        names = [n for n, _ in model.named_children()]
        frozen = names[:names.index(res2_top)]
        frozen += [self._stage_module[f"res{k}"] for k in range(2, freeze_at + 1)
                   if f"res{k}" in self._stage_module]
        for dotted in frozen:
            parent, name = _parent(model, dotted)
            module = getattr(parent, name)
            for p in module.parameters():
                p.requires_grad_(False)
            setattr(parent, name, FrozenBatchNorm2d.convert_frozen_batchnorm(module))
        return self

    def no_weight_decay_names(self) -> Sequence[str]:
        """Local names of the parameters the timm model excludes from weight decay (Swin's
        relative position bias tables), as detectron2's optimizer ``overrides`` key them."""
        full = getattr(self.net.model, "no_weight_decay", lambda: ())()
        return sorted({n.rsplit(".", 1)[-1] for n in full})

    @property
    def size_divisibility(self) -> int:
        # each output at stride s must be exactly H/s for the FPN's 2x top-down merges
        return max(self._out_feature_strides.values())

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        if x.dim() != 4:
            raise ValueError(f"TimmBackbone takes (N, C, H, W) images, got shape {tuple(x.shape)}")
        outputs = self.net(x)
        return {f: outputs[i] for f, i in self._index.items()}


@BACKBONE_REGISTRY.register()
def build_vis_timm_fpn_backbone(cfg, input_shape: ShapeSpec):
    """:class:`TimmBackbone` (``MODEL.VIS.TIMM``) + the paper's FPN (:func:`build_vis_fpn`):
    outputs ``p2..p7`` (``p2..p6`` without ``MODEL.VIS.FPN_P7``)."""
    return build_vis_fpn(cfg, TimmBackbone(cfg, input_shape))
