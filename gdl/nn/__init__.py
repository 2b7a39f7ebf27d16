"""Layers and models, one family per module."""

from gdl.nn.cnn import CNN

__all__ = ["CNN"]
