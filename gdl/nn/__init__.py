"""Layers and models, one family per module."""

from gdl.nn.atomistic import EnergyForces, atoms_batch
from gdl.nn.cnn import CNN
from gdl.nn.deepsets import DeepSets, DeepSetsLayer, GRUSetBaseline
from gdl.nn.dimenet import DimeNetPlusPlus
from gdl.nn.egnn import EGNN, CoordinateGNN, EGNNLayer, LinearDynamics
from gdl.nn.gcnn import GCNN, GroupBatchNorm2d, GroupConv2d, GroupPool, LiftingConv2d
from gdl.nn.gnn import GNN, AdjacencyMLP, GCNConv, GINConv, MPNNConv
from gdl.nn.message_passing import MessagePassing, global_pool, scatter, scatter_softmax
from gdl.nn.neighbours import radius_graph, triplets
from gdl.nn.nequip import NequIP
from gdl.nn.oriented_gcnn import OrientationFeatures, OrientedGCNN
from gdl.nn.point_models import DistanceFeatures, InvariantPointModel, VectorFeatureModel, VectorPointModel
from gdl.nn.schnet import SchNet
from gdl.nn.se3_transformer import SE3Transformer
from gdl.nn.steerable import FieldPool, GatedReLU, NormReLU, SteerableCNN, SteerableConv2d
from gdl.nn.transformer import AttentionMessagePassing, MultiHeadSelfAttention, TransformerEncoder, complete_graph

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
    "MessagePassing", "global_pool", "scatter", "scatter_softmax",
    "GNN", "AdjacencyMLP", "GCNConv", "GINConv", "MPNNConv",
    "DeepSets", "DeepSetsLayer", "GRUSetBaseline",
    "AttentionMessagePassing", "MultiHeadSelfAttention", "TransformerEncoder", "complete_graph",
    "EGNN", "EGNNLayer", "CoordinateGNN", "LinearDynamics", "NequIP", "SE3Transformer",
    "EnergyForces", "atoms_batch", "radius_graph", "triplets", "SchNet", "DimeNetPlusPlus",
    "OrientationFeatures", "OrientedGCNN", "DistanceFeatures", "InvariantPointModel", "VectorPointModel",
    "VectorFeatureModel",
]
