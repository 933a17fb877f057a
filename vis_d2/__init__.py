"""vis_d2: Video Instance Segmentation on Detectron2.

``import vis_d2`` is light: it imports neither torch nor detectron2, so that the metric and its
command line (``vis_d2.evaluation``, ``python -m vis_d2.evaluation``) start without them. The
datasets (``vis_d2.data.builtin``) and model components are registered in detectron2's
registries, the way detectron2's own ``projects/`` do, by

* ``import vis_d2.data`` (the datasets) and ``import vis_d2.modeling`` (the model components);
* the first ``add_vis_config`` / ``get_vis_cfg`` call (both), so that a script building its
  config through them needs no other import; ``vis_d2.add_vis_config`` and
  ``vis_d2.get_vis_cfg`` are imported on first access (PEP 562).

The entry points (``train_net.py``, ``tools/*``, ``projects/VIS_Ablation/*``) import
``vis_d2.data`` and ``vis_d2.modeling`` before detectron2: these two import the third-party
modules that call ``torch.jit.script`` at import through ``vis_d2.quiet_import``, which
filters the deprecation FutureWarning torch would otherwise print twice in every command.
"""
import importlib

__version__ = "0.1.0"

__all__ = ["add_vis_config", "get_vis_cfg", "__version__"]


# Subpackages that ``vis_d2.<name>`` imports on first access (``import vis_d2`` does not).
_SUBMODULES = ("config", "data", "engine", "evaluation", "modeling", "tracking")


def __getattr__(name):
    if name in ("add_vis_config", "get_vis_cfg"):
        from . import config

        return getattr(config, name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
