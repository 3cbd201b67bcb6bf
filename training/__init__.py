"""Crack segmentation model: training, evaluation and the model registry."""
