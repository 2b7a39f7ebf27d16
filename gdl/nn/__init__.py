"""Layers and models, one family per module."""

from gdl.nn.cnn import CNN
from gdl.nn.gcnn import GCNN, GroupBatchNorm2d, GroupConv2d, GroupPool, LiftingConv2d

__all__ = ["CNN", "GCNN", "GroupBatchNorm2d", "GroupConv2d", "GroupPool", "LiftingConv2d"]
