"""Weight sharing from the intertwiner constraint :math:`W \\rho_{in}(g) = \\rho_{out}(g) W`: bases of equivariant
linear maps, parameter counts, and the layers built on them."""

from gdl.weight_sharing._counts import (
    PolarFilterRep,
    dense_count,
    image_translation_rep,
    local_filter_count,
    pixel_filter_basis,
    pixel_filter_count_formula,
    pixel_filter_rep,
    polar_filter_count_formula,
    restrict_support,
    translation_count,
    translation_rep,
)
from gdl.weight_sharing._layers import EquivariantLinear, EquivariantMLP, EquivariantNonlinearity
from gdl.weight_sharing._solver import (
    METHODS,
    character_dimension,
    constraint_pairs,
    constraint_residual,
    equivariant_basis,
    invariant_basis,
)

__all__ = [
    "PolarFilterRep", "dense_count", "image_translation_rep", "local_filter_count", "pixel_filter_basis",
    "pixel_filter_count_formula", "pixel_filter_rep", "polar_filter_count_formula", "restrict_support",
    "translation_count", "translation_rep",
    "EquivariantLinear", "EquivariantMLP", "EquivariantNonlinearity",
    "METHODS", "character_dimension", "constraint_pairs", "constraint_residual",
    "equivariant_basis", "invariant_basis",
]
