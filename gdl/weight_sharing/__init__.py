"""Weight sharing from the intertwiner constraint :math:`W \\rho_{in}(g) = \\rho_{out}(g) W`: bases of equivariant
linear maps, parameter counts, and the layers built on them."""

from gdl.weight_sharing._solver import (
    METHODS,
    character_dimension,
    check_representation,
    constraint_pairs,
    constraint_residual,
    equivariant_basis,
    invariant_basis,
)

__all__ = ["METHODS", "character_dimension", "check_representation", "constraint_pairs", "constraint_residual",
           "equivariant_basis", "invariant_basis"]
