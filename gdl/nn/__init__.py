"""Layers and models, one family per module."""

from gdl.nn.cnn import CNN
from gdl.nn.gcnn import GCNN, GroupBatchNorm2d, GroupConv2d, GroupPool, LiftingConv2d
from gdl.nn.steerable import FieldPool, GatedReLU, NormReLU, SteerableCNN, SteerableConv2d

__all__ = [
    "CNN",
    "GCNN",
    "GroupBatchNorm2d",
    "GroupConv2d",
    "GroupPool",
    "LiftingConv2d",
    "FieldPool",
    "GatedReLU",
    "NormReLU",
    "SteerableCNN",
    "SteerableConv2d",
]
