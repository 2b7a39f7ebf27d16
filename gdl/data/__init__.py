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

__all__ = [
    "ROTATIONS",
    "DigitSplit",
    "RandomRotation",
    "digit_images",
    "random_angles",
    "rotate_images",
    "rotated_digits",
]
