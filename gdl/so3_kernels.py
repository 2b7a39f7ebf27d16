"""SO(3)-steerable kernels solved from the constraint, and the analytic solution they must match.

A convolution kernel that maps a type-:math:`l_{in}` field to a type-:math:`l_{out}` field is a matrix-valued
function on space, :math:`K(x) \\in \\mathbb R^{(2l_{out}+1) \\times (2l_{in}+1)}`, and the layer is rotation
equivariant exactly when

.. math::  K(R x) = D^{l_{out}}(R)\\, K(x)\\, D^{l_{in}}(R)^{-1} \\qquad \\text{for every rotation } R.

On a sphere of fixed radius, write :math:`K` in a finite basis of functions :math:`p_a` that rotations map into
each other: here the homogeneous polynomials of degrees :math:`L` and :math:`L - 1` in :math:`(x, y, z)`, which
restricted to the sphere are exactly the functions of angular frequency up to :math:`L`.
(:class:`SpherePolynomialRep` is the representation :math:`(\\rho(R) p)(x) = p(R^{-1} x)` on their coefficients,
with an exact Lie algebra.) The constraint becomes the intertwiner constraint of chapter 4 for the coefficient
tensor, :math:`W D^{l_{in}}(R) = (\\rho(R) \\otimes D^{l_{out}}(R))\\, W`, and :func:`solve_kernels` hands it to
:func:`gdl.weight_sharing.equivariant_basis`.

The Wigner-Eckart theorem predicts the answer (Lang and Weiler 2021, https://arxiv.org/abs/2010.10952): one
solution for each :math:`J` with :math:`|l_{in} - l_{out}| \\le J \\le l_{in} + l_{out}` (and :math:`J \\le L`),

.. math::  K^J(x)_{m_{out} m_{in}} = \\sum_{m} C^{l_{in} J l_{out}}_{m_{in} m\\, m_{out}}\\, Y^J_m(x),

spherical harmonics times Clebsch-Gordan coefficients (:func:`analytic_kernels`, from e3nn).
:func:`subspace_distance` compares the two families of kernels evaluated on points of the sphere.
"""

from __future__ import annotations

import itertools
from functools import cache

import torch

from gdl.groups import SO3, Rep, SO3Irrep, TensorProductRep

__all__ = ["SpherePolynomialRep", "solve_kernels", "kernel_values", "analytic_kernels", "subspace_distance",
           "expected_count"]

_F64 = torch.float64


@cache
def _monomials(degree: int) -> tuple[tuple[int, int, int], ...]:
    """Exponents (a, b, c) of x^a y^b z^c with a + b + c = degree, in a fixed order."""
    return tuple((a, b, degree - a - b) for a in range(degree, -1, -1) for b in range(degree - a, -1, -1))


def _poly_mul(p: dict, q: dict) -> dict:
    out: dict = {}
    for (e1, c1), (e2, c2) in itertools.product(p.items(), q.items()):
        e = (e1[0] + e2[0], e1[1] + e2[1], e1[2] + e2[2])
        out[e] = out.get(e, 0.0) + c1 * c2
    return out


class SpherePolynomialRep(Rep):
    """Rotations acting on homogeneous polynomials of the given degrees in :math:`(x, y, z)`:
    :math:`(\\rho(R) p)(x) = p(R^{-1} x)`, on the coefficients of the monomials.

    Args:
        degrees: e.g. ``(3, 2)``; on the unit sphere, degrees :math:`L` and :math:`L - 1` together span the
            functions of angular frequency :math:`0, \\dots, L` once each.

    Attributes:
        monomials: ``[(degree, (a, b, c)), ...]``, the basis in order.
    """

    def __init__(self, degrees: tuple[int, ...], group: SO3 | None = None):
        if not degrees or any(not isinstance(d, int) or d < 0 for d in degrees):
            raise ValueError(f"degrees must be non-negative integers, got {degrees!r}")
        self.group, self.degrees = group or SO3(), tuple(degrees)
        self.monomials = [(d, e) for d in self.degrees for e in _monomials(d)]
        self.dim = len(self.monomials)
        self._index = {(d, e): i for i, (d, e) in enumerate(self.monomials)}

    def _key(self):
        return (self.group, self.degrees)

    def _matrix(self, value) -> torch.Tensor:
        Rinv = torch.as_tensor(value, dtype=_F64).T
        # (R^{-1} x)_k = sum_j Rinv[k, j] x_j, one linear polynomial per k
        linear = [{(1, 0, 0): float(Rinv[k, 0]), (0, 1, 0): float(Rinv[k, 1]), (0, 0, 1): float(Rinv[k, 2])}
                  for k in range(3)]
        M = torch.zeros(self.dim, self.dim, dtype=_F64)
        for col, (d, e) in enumerate(self.monomials):
            p: dict = {(0, 0, 0): 1.0}
            for k in range(3):
                for _ in range(e[k]):
                    p = _poly_mul(p, linear[k])
            for exp, c in p.items():
                M[self._index[d, exp], col] += c
        return M

    def lie_algebra(self) -> list[torch.Tensor]:
        """Exact: :math:`d\\rho(X) p = -\\nabla p \\cdot (X x)`, so a monomial maps to monomials of its degree."""
        out = []
        for X in self.group.lie_algebra():
            M = torch.zeros(self.dim, self.dim, dtype=_F64)
            for col, (d, e) in enumerate(self.monomials):
                for k, j in itertools.product(range(3), range(3)):
                    if e[k] == 0 or float(X[k, j]) == 0.0:
                        continue
                    new = list(e)
                    new[k] -= 1
                    new[j] += 1
                    M[self._index[d, tuple(new)], col] -= float(X[k, j]) * e[k]
            out.append(M)
        return out

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        """The basis polynomials at points ``x`` (P, 3) -> (P, dim)."""
        x = torch.as_tensor(x, dtype=_F64)
        return torch.stack([x[:, 0] ** a * x[:, 1] ** b * x[:, 2] ** c for _, (a, b, c) in self.monomials], 1)

    def __repr__(self) -> str:
        return f"SpherePolynomialRep(degrees={self.degrees})"


def expected_count(l_in: int, l_out: int, L: int) -> int:
    """The Wigner-Eckart count: the number of :math:`J` with :math:`|l_{in} - l_{out}| \\le J \\le
    \\min(l_{in} + l_{out}, L)`."""
    return max(0, min(l_in + l_out, L) - abs(l_in - l_out) + 1)


def solve_kernels(l_in: int, l_out: int, L: int, method: str = "auto") -> tuple[torch.Tensor, SpherePolynomialRep]:
    """Solve the kernel constraint with the course's solver.

    Returns:
        the coefficient basis ``(D, P, 2 l_out + 1, 2 l_in + 1)`` (``P`` polynomials; kernel
        :math:`K(x) = \\sum_a p_a(x) W_a`) and the polynomial representation.
    """
    if L < 1:
        raise ValueError(f"L must be at least 1 (degrees L and L - 1), got {L}")
    poly = SpherePolynomialRep((L, L - 1))
    rep_in, rep_out = SO3Irrep(l_in), SO3Irrep(l_out)
    from gdl.weight_sharing import equivariant_basis

    basis = equivariant_basis(rep_in, TensorProductRep(poly, rep_out), method=method)   # (D, P * (2lo+1), 2li+1)
    return basis.reshape(len(basis), poly.dim, rep_out.dim, rep_in.dim), poly


def kernel_values(basis: torch.Tensor, poly: SpherePolynomialRep, x: torch.Tensor) -> torch.Tensor:
    """The kernels of a coefficient basis at points ``x`` (P, 3): ``(D, P, 2 l_out + 1, 2 l_in + 1)``."""
    return torch.einsum("pa,daoi->dpoi", poly.evaluate(x), basis)


def analytic_kernels(l_in: int, l_out: int, L: int, x: torch.Tensor) -> torch.Tensor:
    """:math:`K^J(x) = \\sum_m C^{l_{in} J l_{out}}_{m_{in} m m_{out}} Y^J_m(\\hat x)` for every allowed
    :math:`J \\le L`, at points ``x`` (P, 3): ``(D, P, 2 l_out + 1, 2 l_in + 1)`` (e3nn's real spherical harmonics
    and Clebsch-Gordan coefficients)."""
    from e3nn import o3

    x = torch.as_tensor(x, dtype=_F64)
    out = []
    for J in range(abs(l_in - l_out), min(l_in + l_out, L) + 1):
        Y = o3.spherical_harmonics(J, x, normalize=True, normalization="component")        # (P, 2J+1)
        C = o3.wigner_3j(l_in, J, l_out, dtype=_F64)                                       # (2li+1, 2J+1, 2lo+1)
        out.append(torch.einsum("imo,pm->poi", C, Y))
    return torch.stack(out)


def subspace_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest principal-angle sine between the spans of two families of vectors (rows flattened):
    :math:`\\lVert Q_a Q_a^\\top - Q_b Q_b^\\top \\rVert_2 = \\lVert (I - Q_b Q_b^\\top) Q_a \\rVert_2` for spans of
    equal dimension, 0 when the spans agree, 1 when one holds a vector orthogonal to the other. Families of
    different sizes are at distance 1. (Computed on the small matrix :math:`(I - Q_b Q_b^\\top) Q_a`, which keeps
    angles near zero accurate.)"""
    qa = torch.linalg.qr(a.reshape(len(a), -1).T).Q
    qb = torch.linalg.qr(b.reshape(len(b), -1).T).Q
    if qa.shape[1] != qb.shape[1]:
        return 1.0
    return float(torch.linalg.matrix_norm(qa - qb @ (qb.T @ qa), ord=2))
