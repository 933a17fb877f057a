"""Training and inference plumbing: the Trainer, checkpoints, video inference, the predictor."""
from .checkpoint import AtomicCheckpointer, check_weights_path
from .ema import EMAHook, ModelEMA
from .frame_fusion import FusedFrameModel, FusionMember
from .predictor import VISPredictor, load_model
from .trainer import VISTrainer, create_ddp_model
from .video_inference import (
    cache_video_detections,
    inference_on_videos,
    instances_to_frame_detections,
)

__all__ = [
    "AtomicCheckpointer",
    "check_weights_path",
    "EMAHook",
    "ModelEMA",
    "FusedFrameModel",
    "FusionMember",
    "VISPredictor",
    "load_model",
    "VISTrainer",
    "create_ddp_model",
    "cache_video_detections",
    "inference_on_videos",
    "instances_to_frame_detections",
]
