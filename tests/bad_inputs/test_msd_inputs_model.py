"""Bad multi-source inputs to the model (issue 24, parts 3-4), one row each: the input, the
exception type and the message fragments that name the key, the pair, the frame or the field.

Every row fails on the code before issue 24: the key did not exist (the config rows), or the
training step took the input silently (an auxiliary object with K = 0 trained as an object of
class C, a class id C as the background)."""
import os

import pytest
import torch

from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

import vis_d2  # noqa: F401
from helpers import TINY_OPTS, training_pair
from vis_d2.config import get_vis_cfg

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "configs/synthvis/R18_demo.yaml")
C = get_vis_cfg(CONFIG, ["MODEL.DEVICE", "cpu"]).MODEL.ROI_HEADS.NUM_CLASSES

# (row id, config options, exception type, message fragments)
CONFIG_ROWS = [
    ("num-aux-classes-negative", ["MODEL.VIS.MSD.NUM_AUX_CLASSES", "-1"], ValueError,
     ["MODEL.VIS.MSD.NUM_AUX_CLASSES must be an integer >= 0", "got -1"]),
    ("num-aux-classes-fractional", ["MODEL.VIS.MSD.NUM_AUX_CLASSES", "1.5"], ValueError,
     ["MODEL.VIS.MSD.NUM_AUX_CLASSES"]),  # yacs: the key's type is int
    ("num-aux-classes-without-video-classes",
     ["MODEL.ROI_HEADS.NUM_CLASSES", "0", "MODEL.VIS.MSD.NUM_AUX_CLASSES", "2"], ValueError,
     ["MODEL.VIS.MSD.NUM_AUX_CLASSES = 2 leaves none of the 2 classes to the video set"]),
]


@pytest.mark.parametrize("opts, error, fragments", [r[1:] for r in CONFIG_ROWS],
                         ids=[r[0] for r in CONFIG_ROWS])
def test_bad_setting_is_refused_by_key(opts, error, fragments):
    with pytest.raises(error) as exc:
        build_model(get_vis_cfg(CONFIG, TINY_OPTS + opts))
    for fragment in fragments:
        assert fragment in str(exc.value)


@pytest.fixture(scope="module")
def models():
    """Tiny models with K = 0 and K = 2, in training mode."""
    out = {}
    for k in (0, 2):
        torch.manual_seed(0)
        out[k] = build_model(get_vis_cfg(CONFIG, TINY_OPTS + ["MODEL.VIS.MSD.NUM_AUX_CLASSES",
                                                              str(k)]))
        out[k].train()
    return out


def _with(frame, **fields):
    """A pair whose ``frame`` ("instances" or "ref_instances") gets the given fields."""
    torch.manual_seed(1)
    pair = training_pair()
    for name, value in fields.items():
        pair[frame].set(name, torch.tensor(value))
    return pair


# (row id, K, the pair, exception type, message fragments)
PAIR_ROWS = [
    ("auxiliary-object-with-k-0", 0, lambda: _with("instances", gt_aux=[False, True]),
     ValueError, ["pair 0: the key frame has 1 auxiliary objects (gt_aux True)",
                  "MODEL.VIS.MSD.NUM_AUX_CLASSES is 0"]),
    ("auxiliary-object-with-k-0-in-reference", 0,
     lambda: _with("ref_instances", gt_aux=[True, True]),
     ValueError, ["pair 0: the reference frame has 2 auxiliary objects (gt_aux True)"]),
    ("class-c-not-auxiliary-k-0", 0, lambda: _with("instances", gt_classes=[1, C]),
     ValueError, [f"pair 0: the key frame's gt_classes [1, {C}] (gt_aux [False, False])",
                  f"outside [0, {C}) (MODEL.ROI_HEADS.NUM_CLASSES)"]),
    ("class-c-not-auxiliary-k-2", 2,
     lambda: _with("instances", gt_classes=[1, C], gt_aux=[False, False]),
     ValueError, [f"gt_classes [1, {C}] (gt_aux [False, False])", f"outside [0, {C})"]),
    ("negative-class-in-reference", 2, lambda: _with("ref_instances", gt_classes=[-1, 0]),
     ValueError, ["pair 0: the reference frame's gt_classes [-1, 0]", f"outside [0, {C})"]),
]


@pytest.mark.parametrize("k, make_pair, error, fragments", [r[1:] for r in PAIR_ROWS],
                         ids=[r[0] for r in PAIR_ROWS])
def test_bad_training_pair_is_refused_by_field(models, k, make_pair, error, fragments):
    with pytest.raises(error) as exc, EventStorage(0):
        models[k]([make_pair()])
    for fragment in fragments:
        assert fragment in str(exc.value)
