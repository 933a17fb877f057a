"""vis_d2: Video Instance Segmentation on Detectron2.

Importing the package registers its datasets (``vis_d2.data.builtin``) and its model components
in detectron2's registries, the way detectron2's own ``projects/`` do.
"""
__version__ = "0.1.0"

from . import data  # noqa: F401,E402  (registers the builtin datasets)
from . import modeling  # noqa: F401,E402  (registers VideoRCNN, VISROIHeads, backbones, heads)
from .config import add_vis_config, get_vis_cfg  # noqa: E402

__all__ = ["add_vis_config", "get_vis_cfg", "__version__"]
