"""crackal: an active-learning labelling assistant for crack segmentation."""

__version__ = "0.1.0"
