"""``add_vis_config(cfg)``: every config key vis_d2 adds to detectron2's defaults.

Keys are grouped by the component that reads them; each component reads its keys in its own
``from_config``, so the same classes build from a yacs YAML and from a LazyConfig.
"""
from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

from .tracking.video_tracker import RETIRED_TRACKER_KEYS, VideoTracker


def add_vis_config(cfg):
    """Add vis_d2's keys (with their defaults) to a detectron2 config, in place; the first call
    also registers vis_d2's datasets and model components (``import vis_d2`` does not)."""
    from . import data, modeling  # noqa: F401  (registers them on first import)

    _C = cfg
    _C.MODEL.VIS = CN()
    # ---- track head (MaskTrack R-CNN style) -------------------------------------------------
    _C.MODEL.VIS.TRACK_HEAD = CN()
    _C.MODEL.VIS.TRACK_HEAD.NUM_FC = 2
    _C.MODEL.VIS.TRACK_HEAD.FC_DIM = 1024
    _C.MODEL.VIS.TRACK_HEAD.EMBED_DIM = 1024
    _C.MODEL.VIS.TRACK_HEAD.LOSS_WEIGHT = 1.0
    # The first DETACH_ITERS training iterations, loss_track trains the track head only, not the
    # backbone and FPN it reads (0: never).
    _C.MODEL.VIS.TRACK_HEAD.DETACH_ITERS = 0
    # ---- FPN ---------------------------------------------------------------------------------
    # The paper's FPN has 6 levels (P2..P7); False gives the standard 5 (P2..P6).
    _C.MODEL.VIS.FPN_P7 = True
    # ---- timm backbones (vis_d2.modeling.backbones; paper Sec. 4.1) ---------------------------
    # Read when MODEL.BACKBONE.NAME is "build_vis_timm_fpn_backbone" (or "TimmBackbone", no FPN);
    # MODEL.BACKBONE.FREEZE_AT freezes its stem and first stages as for a ResNet.
    _C.MODEL.VIS.TIMM = CN()
    # A timm model: "resnest50d" / "resnest101e" (ResNeSt-50/101), "swin_small_patch4_window7_224".
    _C.MODEL.VIS.TIMM.NAME = ""
    # A local file of the backbone's weights alone (.safetensors / .pth; docs/BACKBONES.md), read
    # when the model is built; "" keeps the random init. MODEL.WEIGHTS is loaded after it.
    _C.MODEL.VIS.TIMM.WEIGHTS = ""
    # The stages of stride 4..32 are named res2..res5, as detectron2's ResNet names them.
    _C.MODEL.VIS.TIMM.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    # "" keeps the model's own norm layers; "SyncBN" / "FrozenBN" convert its BatchNorm layers.
    _C.MODEL.VIS.TIMM.NORM = ""
    # Stochastic depth rate of the model's blocks.
    _C.MODEL.VIS.TIMM.DROP_PATH_RATE = 0.0
    # Back-propagate through the backbone from the reference frames too (see VideoRCNN).
    _C.MODEL.VIS.REF_BACKBONE_GRAD = True

    # ---- TCIS: Temporally Correlated Instance Segmentation (paper 3.3, training only) -------
    _C.MODEL.VIS.TCIS = CN()
    _C.MODEL.VIS.TCIS.ENABLED = False
    _C.MODEL.VIS.TCIS.LOSS_WEIGHT = 1.0
    # The Correlation Transform: a standard ResNet block, "BottleneckBlock" or "BasicBlock".
    _C.MODEL.VIS.TCIS.BLOCK = "BottleneckBlock"
    _C.MODEL.VIS.TCIS.BOTTLENECK_CHANNELS = 64
    _C.MODEL.VIS.TCIS.DEFORM_KERNEL = 3
    _C.MODEL.VIS.TCIS.NORM = ""

    # ---- multi-task heads (paper 3.5.1) -------------------------------------------------------
    # Semantic segmentation branch on P3 (training only).
    _C.MODEL.VIS.SEMSEG = CN()
    _C.MODEL.VIS.SEMSEG.ENABLED = False
    _C.MODEL.VIS.SEMSEG.IN_FEATURE = "p3"
    _C.MODEL.VIS.SEMSEG.NUM_CONVS = 4
    _C.MODEL.VIS.SEMSEG.CONV_DIM = 128
    _C.MODEL.VIS.SEMSEG.NORM = "GN"
    _C.MODEL.VIS.SEMSEG.LOSS_WEIGHT = 0.5
    # Multi-label classification on C5 (training only; optionally rescales scores at inference).
    _C.MODEL.VIS.MULTILABEL = CN()
    _C.MODEL.VIS.MULTILABEL.ENABLED = False
    _C.MODEL.VIS.MULTILABEL.IN_FEATURE = "res5"
    _C.MODEL.VIS.MULTILABEL.LOSS_WEIGHT = 0.5
    _C.MODEL.VIS.MULTILABEL.RESCORE_TEST = False
    # Mask scoring (Mask Scoring R-CNN): score = classification score x predicted mask IoU.
    _C.MODEL.VIS.MASKIOU = CN()
    _C.MODEL.VIS.MASKIOU.ENABLED = False
    _C.MODEL.VIS.MASKIOU.CONV_DIM = 256
    _C.MODEL.VIS.MASKIOU.FC_DIM = 1024
    _C.MODEL.VIS.MASKIOU.LOSS_WEIGHT = 1.0
    # Mask-shape classification (vis_d2.modeling.mask_class_head): a small CNN classifies each
    # detection from its predicted mask; at inference score = box score^(1-w) * p_mask^w.
    _C.MODEL.VIS.MASK_CLASS = CN()
    _C.MODEL.VIS.MASK_CLASS.ENABLED = False
    _C.MODEL.VIS.MASK_CLASS.CONV_DIMS = [16, 32]
    _C.MODEL.VIS.MASK_CLASS.FC_DIM = 128
    _C.MODEL.VIS.MASK_CLASS.LOSS_WEIGHT = 1.0
    _C.MODEL.VIS.MASK_CLASS.SCORE_WEIGHT = 0.5
    # Also train the head on the ground-truth masks of the same proposals (the mask loss's
    # targets): a clean outline from the first step, while the predicted masks are still blobs.
    _C.MODEL.VIS.MASK_CLASS.TRAIN_ON_GT_MASKS = False

    # Weight of a Dice loss ``loss_mask_dice`` on the mask head's outputs, beside its per-pixel
    # BCE (same targets); 0 disables it. Dice scores a mask by its overlap relative to the two
    # masks' areas, as the IoU metric does; the BCE weighs each of the 28x28 pixels alike.
    _C.MODEL.VIS.MASK_DICE_WEIGHT = 0.0

    # Per-class NMS on each frame's pasted masks at this IoU, after the box NMS and every
    # rescoring (vis_d2/modeling/mask_nms.py); 0 disables it. Partial boxes on an object
    # overlap its full box by IoU < 0.5, pass the box NMS and become rival tracks.
    _C.MODEL.VIS.MASK_NMS_THRESH = 0.0

    # Where MODEL.DEVICE asks for CUDA and CUDA does not work: run on the CPU with a warning
    # (True) or stop with an error (False), so a GPU run never trains on the CPU unnoticed.
    _C.MODEL.VIS.CPU_FALLBACK = False

    # ---- multi-source data (paper Sec. 3.2) ----------------------------------------------------
    _C.MODEL.VIS.MSD = CN()
    # K auxiliary classes (Algorithm 1, vis_d2.modeling.auxiliary_classes): the box predictor has
    # C + K class outputs, C = MODEL.ROI_HEADS.NUM_CLASSES; the objects of source classes the
    # video set lacks train the K outputs, and no auxiliary class leaves the model. 0: those
    # objects are dropped from the data.
    _C.MODEL.VIS.MSD.NUM_AUX_CLASSES = 0

    # ---- weights files (vis_d2.engine.checkpoint) ---------------------------------------------
    _C.MODEL.VIS.CHECKPOINT = CN()
    # Open .pkl weights (detectron2 model zoo) reading only arrays; False: refuse (pickle runs code).
    _C.MODEL.VIS.CHECKPOINT.TRUST_PKL = False
    # Evaluate/predict with weights lacking model keys or of other shapes (training always may).
    _C.MODEL.VIS.CHECKPOINT.ALLOW_PARTIAL = False

    # ---- tracking (vis_d2/tracking): VideoTracker's fields, in upper case, with its defaults ----
    _C.MODEL.VIS.TRACKER = CN(VideoTracker.config_defaults())

    # ---- training data -------------------------------------------------------------------------
    _C.INPUT.VIS = CN()
    # The reference frame is sampled without replacement in [t - delta, t + delta], != t.
    _C.INPUT.VIS.REF_DELTA = 5
    # Keep only N uniformly sampled frames per training video (paper Fig. 2b); 0 keeps all.
    _C.INPUT.VIS.FRAMES_PER_VIDEO = 0
    # Pseudo reference frames for image datasets (semi-supervised tracking, paper 3.2).
    _C.INPUT.VIS.PSEUDO_SHIFT = 0.1      # fraction of the image size
    _C.INPUT.VIS.PSEUDO_ROTATE = 10.0    # degrees
    _C.INPUT.VIS.PSEUDO_SCALE = [0.9, 1.1]
    _C.INPUT.VIS.PSEUDO_FLIP = 0.5
    # Training augmentations beyond resize + horizontal flip (vis_d2.data.augmentation), sampled
    # on the key frame and applied to both frames of a pair. Off by default.
    _C.INPUT.VIS.VERTICAL_FLIP_PROB = 0.0
    _C.INPUT.VIS.BRIGHTNESS = [1.0, 1.0]  # intensity range of detectron2's RandomBrightness
    _C.INPUT.VIS.CONTRAST = [1.0, 1.0]  # of RandomContrast
    # Reorder the colour channels (one of the 5 other orders) with this probability.
    _C.INPUT.VIS.CHANNEL_PERMUTATION_PROB = 0.0
    # Copy-paste (vis_d2.data.copy_paste): paste objects of recent pairs into a pair's two frames.
    _C.INPUT.VIS.COPY_PASTE = CN()
    _C.INPUT.VIS.COPY_PASTE.ENABLED = False
    _C.INPUT.VIS.COPY_PASTE.PROB = 0.5
    _C.INPUT.VIS.COPY_PASTE.MAX_OBJECTS = 3
    _C.INPUT.VIS.COPY_PASTE.BANK_SIZE = 16
    _C.INPUT.VIS.COPY_PASTE.MIN_AREA = 16
    # Per-object recolouring (vis_d2.data.instance_recolor), after copy-paste: each object, with
    # probability PROB, gets its own channel order and an intensity gain in GAIN, in both frames.
    _C.INPUT.VIS.INSTANCE_RECOLOR = CN()
    _C.INPUT.VIS.INSTANCE_RECOLOR.ENABLED = False
    _C.INPUT.VIS.INSTANCE_RECOLOR.PROB = 0.5
    _C.INPUT.VIS.INSTANCE_RECOLOR.GAIN = [1.0, 1.0]

    _C.DATALOADER.VIS = CN()
    # Share of the pairs drawn from each dataset of DATASETS.TRAIN (one weight per dataset, e.g.
    # [1, 1] for as many video pairs as pseudo pairs); empty: every record equally often.
    _C.DATALOADER.VIS.SOURCE_WEIGHTS = []

    # ---- evaluation ----------------------------------------------------------------------------
    _C.TEST.VIS = CN()
    # Save the best checkpoint by this metric of the periodic evaluation ("" disables).
    _C.TEST.VIS.BEST_METRIC = "segm/AP"
    # VISPredictor and python -m vis_d2.predict keep (and draw) only the tracks scoring at least
    # this; evaluation keeps every track, because AP needs the low-scoring ones.
    _C.TEST.VIS.PREDICT_SCORE_THRESH = 0.3
    # Multi-scale testing (paper Sec. 3.5.5; vis_d2.engine.frame_fusion): each frame runs at these
    # factors of the test size (INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST), the paper's (0.7, 1.0, 1.3);
    # several factors fuse boxes, masks and embeddings, and need `pip install 'vis_d2[ensemble]'`.
    _C.TEST.VIS.SCALES = (1.0,)
    # Boxes of one class from several scales or models merge above this IoU (ensemble-boxes').
    _C.TEST.VIS.FUSION_IOU_THRESH = 0.55
    # Pseudo labels (paper Sec. 3.5.3; python -m vis_d2.pseudo_labels): the boxes of the tracks
    # the tracker followed and the detector was sure of (vis_d2.pseudo_labels.selection).
    _C.TEST.VIS.PSEUDO = CN()
    # Frames with a detection of the track; 3 means matched at least twice, since one match can
    # join two false positives of neighbouring frames by chance.
    _C.TEST.VIS.PSEUDO.MIN_TRACK_LENGTH = 3
    # The track's mean per-frame score (its score before MODEL.VIS.TRACKER.SCORE_COVERAGE_EXP);
    # 0.5: the detector, on average, gives the class more probability than all else together.
    _C.TEST.VIS.PSEUDO.MIN_TRACK_SCORE = 0.5
    # A kept track's boxes scoring below this are left out; 0.0 keeps every box the tracker
    # matched (above MODEL.VIS.TRACKER.SCORE_THRESH): its hard frames are what tracking adds.
    _C.TEST.VIS.PSEUDO.MIN_BOX_SCORE = 0.0

    # ---- optimisation --------------------------------------------------------------------------
    # "SGD" is detectron2's optimizer (the paper's). "ADAMW" is for models trained from scratch
    # on short schedules (the CPU demo), where it converges in far fewer steps; it uses
    # SOLVER.BASE_LR, SOLVER.WEIGHT_DECAY(_NORM/_BIAS) and SOLVER.ADAMW_BETAS, and is clipped
    # by SOLVER.CLIP_GRADIENTS like SGD.
    _C.SOLVER.OPTIMIZER = "SGD"
    _C.SOLVER.ADAMW_BETAS = (0.9, 0.999)
    # Exponential moving average of the weights (vis_d2.engine.ema): evaluated during training
    # and saved as the final model.
    _C.SOLVER.EMA = CN()
    _C.SOLVER.EMA.ENABLED = False
    _C.SOLVER.EMA.DECAY = 0.998
    # Train on CPU with the forward pass under torch.autocast("cpu", torch.bfloat16): convolutions
    # and matrix products in bfloat16, weights, gradients and the optimizer in float32. Only
    # where the CPU has bfloat16 instructions (AVX512-BF16 or AMX); elsewhere it would be
    # emulated and slower, so training stays float32 with a warning. No effect on CUDA (use
    # SOLVER.AMP there) or at inference.
    _C.SOLVER.CPU_BF16 = False
    # A wall-clock budget for training, in minutes (vis_d2.engine.cpu_short_run): where the steps'
    # pace would carry training past it, the run ends earlier, on a compressed LR schedule.
    # 0: no budget (the schedule runs to SOLVER.MAX_ITER however long it takes).
    _C.SOLVER.MAX_TRAIN_MINUTES = 0.0
    return cfg


def get_vis_cfg(config_file=None, opts=None):
    """detectron2 defaults + vis_d2 keys, then ``config_file`` (YAML) and ``opts`` (key value ...).

    A missing config file gets a clear ``FileNotFoundError`` naming it. ``MODEL.DEVICE`` "cuda"
    on a machine where CUDA does not work is an error, or "cpu" with a warning where
    ``MODEL.VIS.CPU_FALLBACK`` is set (:func:`vis_d2.env.resolve_device`).
    """
    import os

    from .env import resolve_device

    cfg = add_vis_config(get_cfg())
    if config_file:
        if not os.path.isfile(config_file):
            raise FileNotFoundError(f"config file not found: {config_file}")
        try:
            cfg.merge_from_file(config_file)
        except KeyError as e:
            _raise_if_retired(e, config_file)
            raise
    if opts:
        try:
            cfg.merge_from_list(list(opts))
        except (KeyError, AssertionError) as e:  # yacs asserts that an option's key exists
            _raise_if_retired(e, "the command-line options")
            raise
    cfg.MODEL.DEVICE = resolve_device(cfg.MODEL.DEVICE, cfg.MODEL.VIS.CPU_FALLBACK)
    return cfg


def _raise_if_retired(error: Exception, where: str) -> None:
    """Replace yacs' "Non-existent key" error for a key vis_d2 retired by one naming its
    replacement."""
    for key, message in RETIRED_TRACKER_KEYS.items():
        if f"MODEL.VIS.TRACKER.{key}" in str(error):
            raise KeyError(f"{where}: {message}") from error
