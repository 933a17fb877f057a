"""The models of an ensemble, each given as a config file and its weights, loaded into one
:class:`~vis_d2.engine.frame_fusion.FusedFrameModel`.

    lead_cfg, members = load_members(["a.yaml:a.pth", "b.yaml:b.pth"], opts=["MODEL.DEVICE", "cpu"])
    ensemble = build_ensemble(lead_cfg, members)       # or a subset: members[1:]
    preds = VISPredictor(lead_cfg, frame_model=ensemble)(video)           # one video
    inference_on_videos(ensemble, build_vis_test_loader(lead_cfg, split), evaluator,
                        VideoTracker.from_config(lead_cfg))              # a registered split

The first model's config (the *lead*) also gives what the ensemble has once: the scales
(``TEST.VIS.SCALES``, every model runs at each), the fusion IoU, the detections per frame, the
tracker (``MODEL.VIS.TRACKER``), the test datasets and the prediction threshold. The models
must share one class list (names and dataset ids, from each config's ``DATASETS.TEST[0]``
metadata, else ``DATASETS.TRAIN[0]``) and one embedding size; either mismatch is refused naming
both models.
"""
import os
from dataclasses import dataclass
from typing import List, Sequence, Tuple

from ..config import get_vis_cfg
from ..engine.frame_fusion import FusedFrameModel, FusionMember, check_compatible, check_scales
from ..engine.predictor import load_model

__all__ = ["ModelSpec", "parse_model_spec", "parse_model_args", "load_members",
           "build_ensemble"]


@dataclass(frozen=True)
class ModelSpec:
    """One model: its config file and weights (None: the config's ``MODEL.WEIGHTS``; "" random
    initialisation)."""

    config_file: str
    weights: "str | None" = None

    @property
    def name(self) -> str:
        return self.config_file if self.weights is None else f"{self.config_file}:{self.weights}"


def parse_model_spec(text: str) -> ModelSpec:
    """``CONFIG[:WEIGHTS]`` -> ModelSpec; the config file is split off at its first ':' after
    its extension (``.yaml``/``.yml``/``.py``), so weights paths may contain ':'."""
    lowered = text.lower()
    for ext in (".yaml", ".yml", ".py"):
        i = lowered.find(ext + ":")
        if i >= 0:
            return ModelSpec(text[:i + len(ext)], text[i + len(ext) + 1:])
    if lowered.endswith((".yaml", ".yml", ".py")):
        return ModelSpec(text)
    raise ValueError(f"model {text!r}: expected CONFIG.yaml[:WEIGHTS], e.g. "
                     "configs/synthvis/R18_demo.yaml:output/demo/model_final.pth")


def parse_model_args(models: Sequence[str], scales=None) -> List[ModelSpec]:
    """A command line's ``--models`` parsed and its ``--scales`` (None: the lead's) checked;
    ValueError naming the bad one."""
    specs = [parse_model_spec(m) for m in models]
    if scales is not None:
        check_scales(scales, "--scales")
    return specs


def load_members(specs: Sequence, opts: Sequence[str] = ()) -> Tuple[object, List[FusionMember]]:
    """Build and load every model.

    Args:
        specs: ModelSpecs or ``CONFIG[:WEIGHTS]`` strings, the lead first.
        opts: ``KEY VALUE`` config overrides applied to every model (e.g. ``MODEL.DEVICE cpu``).

    Returns:
        (the lead's config, frozen; one FusionMember per model, named by its spec).
    """
    specs = [s if isinstance(s, ModelSpec) else parse_model_spec(s) for s in specs]
    if not specs:
        raise ValueError("an ensemble needs at least one model (--models)")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"models given twice: {sorted({n for n in names if names.count(n) > 1})}")
    lead_cfg, members = None, []
    for spec in specs:
        if not os.path.isfile(spec.config_file):
            raise FileNotFoundError(f"model {spec.name!r}: config file not found: "
                                    f"{spec.config_file}")
        extra = [] if spec.weights is None else ["MODEL.WEIGHTS", spec.weights]
        cfg = get_vis_cfg(spec.config_file, list(opts) + extra)
        cfg.freeze()
        # load_model's errors name the weights file, which names the model
        members.append(FusionMember.from_config(cfg, load_model(cfg), spec.name))
        check_compatible(members[0], members[-1])
        lead_cfg = lead_cfg or cfg
    return lead_cfg, members


def build_ensemble(lead_cfg, members: Sequence[FusionMember], scales=None) -> FusedFrameModel:
    """The FusedFrameModel of ``members`` with the lead config's fusion settings (``scales``,
    if given, replaces its ``TEST.VIS.SCALES``)."""
    scales = check_scales(lead_cfg.TEST.VIS.SCALES if scales is None else scales,
                          "TEST.VIS.SCALES" if scales is None else "--scales")
    return FusedFrameModel(members, scales, lead_cfg.TEST.VIS.FUSION_IOU_THRESH,
                           lead_cfg.TEST.DETECTIONS_PER_IMAGE)
