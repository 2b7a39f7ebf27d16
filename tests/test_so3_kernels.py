"""SO(3)-steerable kernels solved from the constraint (gdl.so3_kernels)."""

import pytest
import torch

from gdl.groups import SO3, SO3Irrep, wigner_D
from gdl.so3_kernels import (
    SpherePolynomialRep,
    analytic_kernels,
    expected_count,
    kernel_values,
    solve_kernels,
    subspace_distance,
)
from gdl.weight_sharing import equivariant_basis

F64 = torch.float64


def _sphere(n=100, seed=0):
    x = torch.randn(n, 3, dtype=F64, generator=torch.Generator().manual_seed(seed))
    return x / x.norm(dim=1, keepdim=True)


def test_polynomial_rep_is_a_representation_with_the_right_lie_algebra():
    rep = SpherePolynomialRep((2, 1))
    assert rep.dim == 9 and rep.homomorphism_error() < 1e-13
    numeric = super(SpherePolynomialRep, rep).lie_algebra()
    assert max(float((a - b).abs().max()) for a, b in zip(rep.lie_algebra(), numeric)) < 1e-8
    # rho(R) p evaluated at x equals p(R^{-1} x)
    R = SO3().sample(1, seed=3)[0]
    c = torch.randn(rep.dim, dtype=F64)
    x = _sphere(20)
    assert torch.allclose(rep.evaluate(x) @ (rep.matrix(R) @ c), rep.evaluate(x @ R.value) @ c, atol=1e-12)
    assert [equivariant_basis(SO3Irrep(J), rep).shape[0] for J in range(4)] == [1, 1, 1, 0]
    with pytest.raises(ValueError, match="non-negative integers"):
        SpherePolynomialRep((-1,))


@pytest.mark.parametrize(("l_in", "l_out", "L"), [(0, 0, 2), (1, 1, 2), (1, 2, 3), (2, 2, 2), (2, 0, 1), (3, 2, 3)])
def test_solved_kernels_are_spherical_harmonics_times_clebsch_gordan(l_in, l_out, L):
    basis, poly = solve_kernels(l_in, l_out, L)
    assert len(basis) == expected_count(l_in, l_out, L)
    x = _sphere()
    K = kernel_values(basis, poly, x)
    if len(basis):
        assert subspace_distance(K, analytic_kernels(l_in, l_out, L, x)) < 1e-10
        R = SO3().sample(1, seed=1)[0].value
        rotated = kernel_values(basis, poly, x @ R.T)
        assert (rotated - wigner_D(l_out, R) @ K @ wigner_D(l_in, R).T).abs().max() < 1e-12


def test_subspace_distance_sees_a_missing_or_wrong_kernel():
    x = _sphere()
    full = analytic_kernels(1, 1, 2, x)
    assert subspace_distance(full[:2], full) == 1.0                       # different sizes
    assert subspace_distance(full[[0, 1]], full[[0, 2]]) > 0.99           # a different J
    assert subspace_distance(full, full[[2, 0, 1]] * 3.0) < 1e-12          # the same span


def test_expected_count_and_bad_degree():
    assert expected_count(1, 1, 3) == 3 and expected_count(0, 3, 2) == 0 and expected_count(2, 3, 10) == 5
    with pytest.raises(ValueError, match="L must be at least 1"):
        solve_kernels(0, 0, 0)
