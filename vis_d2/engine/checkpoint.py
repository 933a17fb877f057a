"""Checkpoints written atomically, so an interrupted save never leaves a truncated file.

detectron2's ``Checkpointer.save`` streams ``torch.save`` straight into the final file and then
rewrites ``last_checkpoint`` in place; a kill during either leaves a file that breaks
``--resume``. Here both go to a temporary file in the same folder first and are moved into
place with ``os.replace`` (atomic on POSIX).
"""
import os
import shutil

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


def _free_space_note(folder: str, state_dict) -> str:
    """One sentence on the free space in ``folder`` against the size of the model weights."""
    free = shutil.disk_usage(folder).free
    weights = sum(t.numel() * t.element_size() for t in state_dict.values()
                  if isinstance(t, torch.Tensor))
    note = f"{free / 2**20:.1f} MiB are free on the filesystem of '{folder}'"
    if free < 2 * weights:
        # a checkpoint holds the weights and more (optimizer state, EMA, scheduler): below
        # twice the weights' size it does not fit
        note += f", too little for a checkpoint of {weights / 2**20:.1f} MiB of weights and more"
    return note + "."


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
        try:
            with atomic_open(save_file) as f:
                torch.save(data, f)
        except (OSError, RuntimeError) as e:
            # A full disk surfaces from torch's zip writer as "unexpected pos A vs B", which
            # names neither the file nor the cause: say both, and that nothing was lost.
            raise RuntimeError(
                f"Could not write checkpoint '{save_file}' ({type(e).__name__}: {e}). "
                f"{_free_space_note(self.save_dir, data['model'])} The checkpoints already in "
                f"'{self.save_dir}' and its last_checkpoint are unchanged."
            ) from e
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        atomic_write_bytes(
            os.path.join(self.save_dir, "last_checkpoint"), last_filename_basename.encode()
        )
