"""TCIS (paper Sec. 3.3) is a training-only loss: a model with ``MODEL.VIS.TCIS.ENABLED`` and the
same weights gives the same inference outputs as one without it, calls the same modules (never
the TCIS ones), uses the same parameters and does the same number of operations."""
import os

import pytest
import torch

from detectron2.modeling import build_model
from detectron2.utils.analysis import FlopCountAnalysis

from vis_d2.config import get_vis_cfg

from helpers import TINY_OPTS

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "synthvis", "R18_demo.yaml")
FIELDS = ("scores", "pred_classes", "pred_masks", "pred_embeds")


@pytest.fixture(scope="module")
def off_and_on():
    """(model without TCIS, model with TCIS and the same weights, the TCIS-only state keys),
    both in eval mode; every detection is kept so that the mask head runs on many."""
    opts = TINY_OPTS + ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]
    torch.manual_seed(0)
    off = build_model(get_vis_cfg(CONFIG, opts + ["MODEL.VIS.TCIS.ENABLED", "False"]))
    on = build_model(get_vis_cfg(CONFIG, opts + ["MODEL.VIS.TCIS.ENABLED", "True"]))
    result = on.load_state_dict(off.state_dict(), strict=False)
    off.eval()
    on.eval()
    return off, on, result


def _frames(n=3):
    gen = torch.Generator().manual_seed(1)
    return [{"image": torch.randint(0, 255, (3, 96, 128), generator=gen, dtype=torch.uint8)}
            for _ in range(n)]


def _called_modules(model, frames):
    """{name: module} of every module that runs while ``model`` infers ``frames``."""
    called = {}

    def hook(name):
        def record(module, inputs, output):
            called[name] = module  # returns None: the output is left as it is
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in model.named_modules() if name]
    try:
        with torch.no_grad():
            for f in frames:
                model([f])
    finally:
        for h in handles:
            h.remove()
    return called


def test_tcis_weights_are_the_only_extra_state(off_and_on):
    off, on, result = off_and_on
    assert result.unexpected_keys == []
    assert result.missing_keys and all(k.startswith("roi_heads.tcis.") for k in result.missing_keys)
    tcis_params = sum(p.numel() for p in on.roi_heads.tcis.parameters())
    assert tcis_params > 0
    assert (sum(p.numel() for p in on.parameters())
            == sum(p.numel() for p in off.parameters()) + tcis_params)


def test_inference_outputs_are_identical(off_and_on):
    off, on, _ = off_and_on
    with torch.no_grad():
        for f in _frames():
            a = off([f])[0]["instances"]
            b = on([f])[0]["instances"]
            assert len(a) > 0 and len(a) == len(b)
            assert torch.equal(a.pred_boxes.tensor, b.pred_boxes.tensor)
            for field in FIELDS:
                assert torch.equal(a.get(field), b.get(field)), field


def test_inference_runs_the_same_modules_and_parameters(off_and_on):
    off, on, _ = off_and_on
    frames = _frames()
    called_off, called_on = _called_modules(off, frames), _called_modules(on, frames)
    assert not [name for name in called_on if name.startswith("roi_heads.tcis")]
    assert sorted(called_on) == sorted(called_off)
    # parameters of the modules that ran, each counted once through the module that owns it
    used_off, used_on = (sum(p.numel() for m in called.values()
                             for p in m.parameters(recurse=False))
                         for called in (called_off, called_on))
    assert used_on == used_off > 0


def test_inference_does_the_same_number_of_operations(off_and_on):
    off, on, _ = off_and_on
    frame = _frames(1)
    flops_off = FlopCountAnalysis(off, frame).unsupported_ops_warnings(False)
    flops_on = FlopCountAnalysis(on, frame).unsupported_ops_warnings(False)
    assert flops_off.total() > 0
    assert flops_on.total() == flops_off.total()
    assert flops_on.by_operator() == flops_off.by_operator()
