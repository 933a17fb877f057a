"""Load a ``timm`` model's weights from a local file (``MODEL.VIS.TIMM.WEIGHTS``), never the hub.

Files read: ``.safetensors`` (the timm model cards on Hugging Face), or ``torch.save`` files
(``.pth`` / ``.bin``: the official ResNeSt and Swin releases, timm's ``pytorch_model.bin``) read
with ``torch.load(weights_only=True)`` as vis_d2's checkpointer reads them. A state dict may sit
under ``"model"`` (Swin releases) or ``"state_dict"`` (mmcv files), and behind DDP's ``module.``.
Where timm converts a family's original files (Swin's ``checkpoint_filter_fn``: the releases put
each patch merging at the end of a stage, timm at the start of the next), the same conversion is
applied here. Every weight the model has must be in the file with its shape; keys the model lacks
(the classifier and final norm a backbone drops) are ignored.
"""
import logging
import os
import sys
from typing import Dict

import torch
from torch import nn

__all__ = ["load_timm_weights", "require_weights_file", "weights_sources"]

logger = logging.getLogger(__name__)

WEIGHTS_KEY = "MODEL.VIS.TIMM.WEIGHTS"
# Release pages of the families whose timm config names no original file.
_OFFICIAL_RELEASES = {"resnest": "https://github.com/zhanghang1989/ResNeSt (Model Zoo)"}


def weights_sources(model_name: str) -> str:
    """One sentence: where to download ImageNet weights of timm's ``model_name``."""
    import timm

    cfg = timm.models.get_pretrained_cfg(model_name)
    places = []
    if cfg is not None and cfg.hf_hub_id:
        places.append(f"the timm model card https://huggingface.co/{cfg.hf_hub_id} "
                      "(model.safetensors)")
    if cfg is not None and cfg.url:
        places.append(f"the original release {cfg.url}")
    else:
        family = next((v for k, v in _OFFICIAL_RELEASES.items() if model_name.startswith(k)), None)
        if family:
            places.append(f"the official release {family}")
    if not places:
        return f"timm lists no published weights for '{model_name}'."
    return f"Download the weights of '{model_name}' from " + " or ".join(places) + "."


def require_weights_file(path: str, model_name: str) -> None:
    """A FileNotFoundError, saying where to get the weights, unless ``path`` is a file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{WEIGHTS_KEY} points to '{path}', which does not exist. "
            f"{weights_sources(model_name)} Set {WEIGHTS_KEY} to the downloaded file, or to '' "
            "to start the backbone from random weights (MODEL.WEIGHTS, a whole-model checkpoint, "
            "is loaded after it either way).")


def _first(items, n: int = 5) -> str:
    return ", ".join(map(str, items[:n])) + (", ..." if len(items) > n else "")


def _read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """The tensors of ``path`` (see the module docstring for the formats), unwrapped."""
    from ...engine.checkpoint import AtomicCheckpointer, UnreadableCheckpointError

    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except Exception as e:  # safetensors reports a damaged header as several types
            raise UnreadableCheckpointError(
                f"'{path}' ({WEIGHTS_KEY}) is not a readable safetensors file ({e})") from e
    # the checkpointer's reader: weights_only torch.load, and errors that name the file
    loaded = AtomicCheckpointer(nn.Module())._torch_load(path)
    for key in ("model", "state_dict"):
        if isinstance(loaded.get(key), dict):
            loaded = loaded[key]
            break
    loaded = {k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    if loaded and all(k.startswith("module.") for k in loaded):
        loaded = {k[len("module."):]: v for k, v in loaded.items()}
    return loaded


def load_timm_weights(model: nn.Module, path: str, model_name: str) -> None:
    """Copy the weights of file ``path`` into ``model``, a timm model built by name
    ``model_name`` (the network itself, not a features wrapper, so that its keys are timm's).

    Raises:
        FileNotFoundError: ``path`` does not exist (the message says where to get it).
        vis_d2.engine.checkpoint.IncompatibleCheckpointError: the file lacks some of the model's
            weights or holds them in other shapes (a file of another architecture); the message
            names the file and the first mismatching keys.
        vis_d2.engine.checkpoint.UnreadableCheckpointError / UnsafeCheckpointError: the file is
            damaged, or holds pickled objects beyond tensors.
    """
    from ...engine.checkpoint import IncompatibleCheckpointError

    require_weights_file(path, model_name)
    state = _read_state_dict(path)
    convert = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if convert is not None:
        try:
            state = convert(state, model)
        except Exception as e:  # timm's converters assume a file of their own family
            raise IncompatibleCheckpointError(
                f"'{path}' ({WEIGHTS_KEY}) is not a checkpoint of timm's '{model_name}': timm's "
                f"conversion of its keys failed ({type(e).__name__}: {e})") from e
    own = model.state_dict()
    # Batch norms saved before PyTorch 0.4.1 have no counter; it only matters for momentum=None.
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    shapes = [f"{k} {tuple(state[k].shape)} in the file, {tuple(v.shape)} in the model"
              for k, v in own.items() if k in state and state[k].shape != v.shape]
    if missing or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} are missing from it (first: {_first(missing)})")
        if shapes:
            parts.append(f"{len(shapes)} have another shape (first: {_first(shapes, 3)})")
        raise IncompatibleCheckpointError(
            f"'{path}' ({WEIGHTS_KEY}) does not fit timm's '{model_name}', a file of another "
            f"architecture? Of the model's {len(own)} weights, {' and '.join(parts)}. "
            f"{weights_sources(model_name)}")
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    unused = [k for k in state if k not in own]
    logger.info(f"Loaded {len(own) - len(set(own) - set(state))} tensors of '{model_name}' from "
                f"'{path}'" + (f"; ignored {len(unused)} the backbone does not use (first: "
                               f"{_first(unused, 3)})" if unused else ""))
