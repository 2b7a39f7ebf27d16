"""Representations: a group acting on a vector space through matrices.

A representation :math:`\\rho: G \\to GL(\\mathbb{R}^M)` satisfies :math:`\\rho(gh) = \\rho(g)\\rho(h)`.
A :class:`Rep` holds no data: it says what a feature vector *is* (how it transforms), the way e3nn's
``Irreps`` and escnn's ``FieldType`` do. Reps are immutable and hashable, so solvers can cache on them.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence

import torch

from gdl.groups._errors import GroupMismatchError, RepresentationError
from gdl.groups._group import FiniteGroup, Group, GroupElement

__all__ = ["Rep", "TrivialRep", "StandardRep", "RegularRep", "PermutationRep", "DirectSumRep",
           "TensorProductRep", "MatrixRep"]


class Rep(abc.ABC):
    """Base class: subclasses set ``group`` and ``dim`` and implement :meth:`_matrix` and :meth:`_key`."""

    group: Group
    dim: int

    @abc.abstractmethod
    def _matrix(self, value) -> torch.Tensor:
        """The float64 ``(dim, dim)`` matrix of the element with this value."""

    @abc.abstractmethod
    def _key(self) -> tuple: ...

    # --- matrices ---------------------------------------------------------------------------
    def matrix(self, g: GroupElement) -> torch.Tensor:
        """:math:`\\rho(g)`, a float64 tensor of shape ``(dim, dim)``."""
        self.group.check(g)
        return self._matrix(g.value)

    def character(self, g: GroupElement) -> float:
        """:math:`\\chi(g) = \\operatorname{tr} \\rho(g)`."""
        return float(torch.trace(self.matrix(g)))

    def lie_algebra(self) -> list[torch.Tensor]:
        """:math:`d\\rho(X_i)` for the basis :math:`X_i` of the group's Lie algebra (empty for finite groups).

        The default differentiates :math:`t \\mapsto \\rho(\\exp(t X_i))` at 0 numerically; exact
        subclasses override it.
        """
        if self.group.is_finite:
            return []
        exp = getattr(self.group, "exp", None)
        if exp is None:
            raise NotImplementedError(f"{self.group} does not provide exp(); cannot differentiate {self}")
        eps = 1e-5
        out = []
        for X in self.group.lie_algebra():
            plus, minus = self.matrix(exp(eps * X)), self.matrix(exp(-eps * X))
            out.append((plus - minus) / (2 * eps))
        return out

    # --- building new representations ------------------------------------------------------
    def __add__(self, other: Rep) -> DirectSumRep:
        return DirectSumRep([self, other])

    def __rmul__(self, n: int) -> Rep:
        if not isinstance(n, int) or n < 1:
            raise RepresentationError(f"multiplicity must be a positive integer, got {n!r}")
        return self if n == 1 else DirectSumRep([self] * n)

    def tensor(self, other: Rep) -> TensorProductRep:
        """:math:`\\rho_1 \\otimes \\rho_2`, the Kronecker product of the matrices."""
        return TensorProductRep(self, other)

    # --- data --------------------------------------------------------------------------------
    def randn(self, *batch: int, dtype: torch.dtype = torch.float64,
              generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """A random feature tensor of shape ``(*batch, dim)``."""
        return torch.randn(*batch, self.dim, dtype=dtype, generator=generator).to(device or "cpu")

    def homomorphism_error(self, elements: Sequence[GroupElement] | None = None, n: int = 8,
                           seed: int = 0) -> float:
        """:math:`\\max_{g,h} \\lVert \\rho(gh) - \\rho(g)\\rho(h) \\rVert_\\infty` over the elements
        (default: all of a group with at most 24 elements, else ``n`` samples), plus the identity error
        :math:`\\lVert \\rho(e) - I \\rVert_\\infty`."""
        if elements is None:
            g_ = self.group
            elements = g_.elements() if g_.is_finite and g_.order <= 24 else g_.sample(n, seed)
        mats = [self.matrix(g) for g in elements]
        err = float((self.matrix(self.group.identity()) - torch.eye(self.dim, dtype=torch.float64))
                    .abs().max())
        for g, mg in zip(elements, mats):
            for h, mh in zip(elements, mats):
                err = max(err, float((self.matrix(g * h) - mg @ mh).abs().max()))
        return err

    def _check_same_group(self, other: Rep) -> None:
        if not isinstance(other, Rep):
            raise TypeError(f"expected a Rep, got {type(other).__name__}")
        if other.group != self.group:
            raise GroupMismatchError(f"cannot combine {self} (a representation of {self.group}) with "
                                     f"{other} (a representation of {other.group})")

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._key() == other._key()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._key()))


class TrivialRep(Rep):
    """:math:`\\rho(g) = I` on :math:`\\mathbb{R}^{dim}`: features that never change (invariants)."""

    def __init__(self, group: Group, dim: int = 1):
        self.group, self.dim = group, dim

    def _key(self):
        return (self.group, self.dim)

    def _matrix(self, value):
        return torch.eye(self.dim, dtype=torch.float64)

    def lie_algebra(self):
        return [torch.zeros(self.dim, self.dim, dtype=torch.float64) for _ in self.group.lie_algebra()]

    def __repr__(self) -> str:
        return f"Trivial({self.group})" if self.dim == 1 else f"Trivial({self.group}, dim={self.dim})"


class StandardRep(Rep):
    """The defining matrices of a group: 2x2 rotations for :math:`C_n`, rotations and reflections for
    :math:`D_n`, permutation matrices for :math:`S_n`, 3x3 rotations for SO(3)...

    The group must provide ``standard_matrix(value)``.
    """

    def __init__(self, group: Group):
        if not hasattr(group, "standard_matrix"):
            raise RepresentationError(f"{group} has no standard (defining) matrix representation")
        self.group = group
        self.dim = int(group.standard_matrix(group.identity().value).shape[0])

    def _key(self):
        return (self.group,)

    def _matrix(self, value):
        return self.group.standard_matrix(value)

    def lie_algebra(self):
        return list(self.group.lie_algebra())

    def __repr__(self) -> str:
        return f"Standard({self.group})"


class RegularRep(Rep):
    """The regular representation of a finite group on :math:`\\mathbb{R}^{|G|}`:
    :math:`\\rho(g) e_h = e_{gh}`. Feature vectors are functions on the group (G-CNN channels)."""

    def __init__(self, group: FiniteGroup):
        if not isinstance(group, FiniteGroup):
            raise RepresentationError(f"the regular representation needs a finite group, got {group}")
        self.group, self.dim = group, group.order

    def _key(self):
        return (self.group,)

    def _matrix(self, value):
        cache = self.__dict__.setdefault("_cache", {})
        if value not in cache:
            g = GroupElement(self.group, value)
            m = torch.zeros(self.dim, self.dim, dtype=torch.float64)
            for j, h in enumerate(self.group.elements()):
                m[self.group.index(g * h), j] = 1.0
            cache[value] = m
        return cache[value].clone()

    def __repr__(self) -> str:
        return f"Regular({self.group})"


class PermutationRep(Rep):
    """Permutation matrices of an action on ``size`` points: :math:`\\rho(g) e_i = e_{g \\cdot i}`.

    Args:
        group: a finite group.
        permutation: ``g -> tuple p`` with ``g: i -> p[i]`` (default: the group's natural action,
            ``group.permutation``, e.g. :math:`S_n` on n points, :math:`C_n` on a polygon's vertices).
        name: short description for ``repr``.
    """

    def __init__(self, group: FiniteGroup, permutation: Callable | None = None, name: str | None = None):
        perm = permutation or getattr(group, "permutation", None)
        if perm is None or perm(group.identity()) is None:
            raise RepresentationError(f"{group} has no natural permutation action; pass permutation=")
        self.group, self._perm, self._name = group, perm, name
        self.dim = len(perm(group.identity()))

    def _key(self):
        return (self.group, self._perm if self._name is None else self._name, self.dim)

    def _matrix(self, value):
        p = self._perm(GroupElement(self.group, value))
        if sorted(p) != list(range(self.dim)):
            raise RepresentationError(f"permutation= returned {p}, not a permutation of 0..{self.dim - 1}")
        m = torch.zeros(self.dim, self.dim, dtype=torch.float64)
        m[list(p), list(range(self.dim))] = 1.0
        return m

    def __repr__(self) -> str:
        return f"Perm({self.group}{', ' + self._name if self._name else ''}, dim={self.dim})"


class DirectSumRep(Rep):
    """:math:`\\rho_1 \\oplus \\dots \\oplus \\rho_k`: block-diagonal matrices; features concatenate."""

    def __init__(self, reps: Sequence[Rep]):
        flat: list[Rep] = []
        for r in reps:
            flat.extend(r.reps if isinstance(r, DirectSumRep) else [r])
        if not flat:
            raise RepresentationError("a direct sum needs at least one representation")
        for r in flat[1:]:
            flat[0]._check_same_group(r)
        self.reps, self.group = tuple(flat), flat[0].group
        self.dim = sum(r.dim for r in flat)

    def _key(self):
        return self.reps

    def _matrix(self, value):
        return torch.block_diag(*[r._matrix(value) for r in self.reps])

    def lie_algebra(self):
        per_rep = [r.lie_algebra() for r in self.reps]
        return [torch.block_diag(*blocks) for blocks in zip(*per_rep)]

    def slices(self) -> list[slice]:
        """Where each summand sits in a feature vector."""
        out, start = [], 0
        for r in self.reps:
            out.append(slice(start, start + r.dim))
            start += r.dim
        return out

    def __repr__(self) -> str:
        parts: list[str] = []
        for r in self.reps:  # run-length encode: "3x Regular(C4) + Trivial(C4)"
            if parts and parts[-1][1] == r:
                parts[-1][0] += 1
            else:
                parts.append([1, r])
        return " + ".join(f"{n}x {r}" if n > 1 else repr(r) for n, r in parts)


class TensorProductRep(Rep):
    """:math:`\\rho_1 \\otimes \\rho_2`, acting on outer products: :math:`\\rho(g) = \\rho_1(g) \\otimes
    \\rho_2(g)` (Kronecker product, row-major flattening of :math:`u v^\\top`)."""

    def __init__(self, a: Rep, b: Rep):
        a._check_same_group(b)
        self.a, self.b, self.group, self.dim = a, b, a.group, a.dim * b.dim

    def _key(self):
        return (self.a, self.b)

    def _matrix(self, value):
        return torch.kron(self.a._matrix(value), self.b._matrix(value))

    def lie_algebra(self):
        ia = torch.eye(self.a.dim, dtype=torch.float64)
        ib = torch.eye(self.b.dim, dtype=torch.float64)
        return [torch.kron(xa, ib) + torch.kron(ia, xb)
                for xa, xb in zip(self.a.lie_algebra(), self.b.lie_algebra())]

    def __repr__(self) -> str:
        return f"({self.a} (x) {self.b})"


class MatrixRep(Rep):
    """A representation given by a function ``g -> matrix``, validated on construction.

    Use it for one-off representations; the homomorphism property is checked and a
    :class:`RepresentationError` raised when it fails.
    """

    def __init__(self, group: Group, fn: Callable[[GroupElement], torch.Tensor], name: str,
                 tolerance: float = 1e-8):
        self.group, self._fn, self._name = group, fn, name
        m = torch.as_tensor(fn(group.identity()), dtype=torch.float64)
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise RepresentationError(f"{name}: matrices must be square, got shape {tuple(m.shape)}")
        self.dim = m.shape[0]
        err = self.homomorphism_error()
        if err > tolerance:
            raise RepresentationError(f"{name} is not a representation of {group}: "
                                      f"homomorphism error {err:.2e} > {tolerance:.0e}")

    def _key(self):
        return (self.group, self._name, self.dim)

    def _matrix(self, value):
        return torch.as_tensor(self._fn(GroupElement(self.group, value)), dtype=torch.float64)

    def __repr__(self) -> str:
        return self._name
