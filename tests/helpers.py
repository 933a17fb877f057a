"""Shared builders for the model and training tests."""
import torch

from detectron2.structures import BitMasks, Boxes, Instances

# The demo's structure (configs/synthvis/R18_demo.yaml) with thin layers and small frames, so a
# training run fits a 2-core CI machine.
TINY_OPTS = [
    "MODEL.DEVICE", "cpu",
    "MODEL.FPN.OUT_CHANNELS", "32",
    "MODEL.ROI_BOX_HEAD.FC_DIM", "64",
    "MODEL.ROI_MASK_HEAD.CONV_DIM", "32",
    "MODEL.VIS.TRACK_HEAD.FC_DIM", "32",
    "MODEL.VIS.TRACK_HEAD.EMBED_DIM", "32",
    "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "160",
    "INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "160",
    "SOLVER.IMS_PER_BATCH", "2",
    "DATALOADER.NUM_WORKERS", "0",
    "MODEL.VIS.TRACKER.SCORE_THRESH", "0.0",
    # float32 on every CPU, so that results do not depend on the machine's bfloat16 support
    # (tests/test_trainer_bf16.py tests the bfloat16 step)
    "SOLVER.CPU_BF16", "False",
]


def gt_instances(offset=0.0, ids=(1, 2), classes=(1, 2), with_masks=True, size=(96, 128)):
    """Two ground-truth instances (boxes, classes, track ids, box-shaped BitMasks) in a frame of
    ``size``; the first box is shifted right by ``offset`` pixels."""
    inst = Instances(size)
    boxes = torch.tensor([[8.0 + offset, 8, 40 + offset, 48], [60, 40, 100, 80]])
    inst.gt_boxes = Boxes(boxes)
    inst.gt_classes = torch.tensor(list(classes))
    inst.gt_track_ids = torch.tensor(list(ids))
    if with_masks:
        m = torch.zeros(2, *size, dtype=torch.bool)
        for k, (x0, y0, x1, y1) in enumerate(boxes.int().tolist()):
            m[k, y0:y1, x0:x1] = True
        inst.gt_masks = BitMasks(m)
    return inst


def training_pair(with_masks=True):
    """A training pair (same image, objects swapped in order and the first one moved 4 px)."""
    img = torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8)
    return {"image": img, "instances": gt_instances(0, [1, 2], with_masks=with_masks),
            "ref_image": img, "ref_instances": gt_instances(4, [2, 1], with_masks=with_masks)}


def boxed_instances(size, boxes, classes, ids):
    """Instances in a frame of ``size`` (h, w), one per (x0, y0, x1, y1) box, each with a
    box-shaped BitMask, its class and its track id."""
    inst = Instances(size)
    m = torch.zeros((len(boxes),) + tuple(size), dtype=torch.bool)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        m[k, y0:y1, x0:x1] = True
    inst.gt_masks = BitMasks(m)
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.gt_classes = torch.tensor(classes, dtype=torch.int64)
    inst.gt_track_ids = torch.tensor(ids, dtype=torch.int64)
    return inst


def flat_config(node, prefix=""):
    """A yacs config as {"A.B.C": value}."""
    out = {}
    for k, v in node.items():
        if isinstance(v, dict):
            out.update(flat_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
