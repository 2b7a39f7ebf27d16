"""Data sets generated offline (nothing is downloaded at run time)."""

from gdl.data.digits import (
    ROTATIONS,
    DigitSplit,
    RandomRotation,
    digit_images,
    random_angles,
    rotate_images,
    rotated_digits,
)
from gdl.data.graph_tasks import from_networkx, hub_graphs, random_graph_batch, relabel_nodes, triangles, wl_pairs
from gdl.data.graphs import GRAPH_KEYS, GraphBatch, GraphDataset, collate, unbatch
from gdl.data.molecules import MOLECULES, md_trajectory, random_rotations, rotate_atoms
from gdl.data.nbody import NBodyData, charged_nbody, nbody_splits
from gdl.data.sets import digit_pool, digit_sets

__all__ = [
    "ROTATIONS",
    "DigitSplit",
    "RandomRotation",
    "digit_images",
    "random_angles",
    "rotate_images",
    "rotated_digits",
    "GRAPH_KEYS",
    "GraphBatch",
    "GraphDataset",
    "collate",
    "unbatch",
    "MOLECULES",
    "md_trajectory",
    "random_rotations",
    "rotate_atoms",
    "from_networkx", "hub_graphs", "random_graph_batch", "relabel_nodes", "triangles", "wl_pairs",
    "digit_pool", "digit_sets",
    "NBodyData", "charged_nbody", "nbody_splits",
]
