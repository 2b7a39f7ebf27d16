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
from gdl.data.graphs import GRAPH_KEYS, GraphBatch, collate, unbatch
from gdl.data.molecules import MOLECULES, md_trajectory, random_rotations, rotate_atoms

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
    "collate",
    "unbatch",
    "MOLECULES",
    "md_trajectory",
    "random_rotations",
    "rotate_atoms",
]
