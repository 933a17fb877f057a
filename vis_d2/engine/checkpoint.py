"""Checkpoints written atomically, so an interrupted save never leaves a truncated file.

detectron2's ``Checkpointer.save`` streams ``torch.save`` straight into the final file and then
rewrites ``last_checkpoint`` in place; a kill during either leaves a file that breaks
``--resume``. Here both go to a temporary file in the same folder first and are moved into
place with ``os.replace`` (atomic on POSIX).
"""
import os

import torch

from detectron2.checkpoint import DetectionCheckpointer

from ..file_io import atomic_open, atomic_write_bytes

__all__ = ["AtomicCheckpointer", "check_weights_path"]


def check_weights_path(weights: str) -> None:
    """Fail early, naming the path, when MODEL.WEIGHTS is a local file that does not exist.

    URLs and detectron2:// catalog names are left to detectron2 (they cannot be fetched on a
    machine without network, and detectron2 says so itself).
    """
    if not weights or "://" in weights:
        return
    if not os.path.isfile(weights):
        raise FileNotFoundError(
            f"MODEL.WEIGHTS points to '{weights}', which does not exist. Give the path of a "
            "detectron2 checkpoint (.pth/.pkl), or '' to train from scratch."
        )


class AtomicCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer whose ``save`` and ``tag_last_checkpoint`` are atomic."""

    def save(self, name: str, **kwargs) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        with atomic_open(save_file) as f:
            torch.save(data, f)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        atomic_write_bytes(
            os.path.join(self.save_dir, "last_checkpoint"), last_filename_basename.encode()
        )
