"""vis_d2: Video Instance Segmentation on Detectron2.

Importing the package registers its datasets (``vis_d2.data.builtin``) and its model components
in detectron2's registries, the way detectron2's own ``projects/`` do.
"""
__version__ = "0.1.0"
