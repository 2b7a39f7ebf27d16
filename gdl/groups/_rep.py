"""Representations: a group acting on a vector space through matrices.

A representation :math:`\\rho: G \\to GL(\\mathbb{R}^M)` satisfies :math:`\\rho(gh) = \\rho(g)\\rho(h)`.
A :class:`Rep` holds no data: it says what a feature vector *is* (how it transforms), the way e3nn's
``Irreps`` and escnn's ``FieldType`` do. Reps are immutable and hashable, so solvers can cache on them.

Two representations are equal when they *are* the same: the same group and the same defining data (an irrep's
labels, a permutation's images of the generators, a :class:`MatrixRep`'s matrices), never merely the same name.
"""

from __future__ import annotations

import abc
import math
import warnings
from collections.abc import Callable, Sequence

import torch

from gdl.groups._errors import GroupMismatchError, RepresentationError
from gdl.groups._finite import SymmetricGroup
from gdl.groups._group import FiniteGroup, Group, GroupElement

__all__ = ["Rep", "TrivialRep", "DefiningRep", "StandardIrrep", "StandardRep", "RegularRep", "PermutationRep",
           "DirectSumRep", "TensorProductRep", "MatrixRep"]


def _fingerprint(matrices: Sequence[torch.Tensor]) -> tuple[bytes, ...]:
    """Hashable form of some float64 matrices, rounded to 1e-9 (so round-off does not split equal reps)."""
    return tuple((torch.round(torch.as_tensor(m, dtype=torch.float64), decimals=9) + 0.0).numpy().tobytes()
                 for m in matrices)


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

    def _test_elements(self, n: int, seed: int) -> list[GroupElement]:
        """All elements of a finite group with at most 24 of them; otherwise the generators and ``n`` samples."""
        g_ = self.group
        if g_.is_finite and g_.order <= 24:
            return g_.elements()
        return list(g_.generators()) + list(g_.sample(n, seed))

    def homomorphism_error(self, elements: Sequence[GroupElement] | None = None, n: int = 8,
                           seed: int = 0) -> float:
        """The one homomorphism check of gdl (:class:`MatrixRep` and the weight-sharing solver call it):

        .. math::  \\max_{g,h} \\lVert \\rho(gh) - \\rho(g)\\rho(h) \\rVert_\\infty \\;\\text{and}\\;
                   \\lVert \\rho(e) - I \\rVert_\\infty

        over the pairs of ``elements`` (default: all of a finite group with at most 24 elements, else the
        generators and ``n`` Haar samples). Also checks that every matrix is ``(dim, dim)``.

        Raises:
            RepresentationError: a matrix of the wrong shape.
        """
        if elements is None:
            elements = self._test_elements(n, seed)
        eye = self.matrix(self.group.identity())
        if tuple(eye.shape) != (self.dim, self.dim):
            raise RepresentationError(f"{self}: rho(g) must be ({self.dim}, {self.dim}), got {tuple(eye.shape)}")
        mats = [self.matrix(g) for g in elements]
        err = float((eye - torch.eye(self.dim, dtype=torch.float64)).abs().max()) if self.dim else 0.0
        for g, mg in zip(elements, mats):
            for h, mh in zip(elements, mats):
                if self.dim:
                    err = max(err, float((self.matrix(g * h) - mg @ mh).abs().max()))
        return err

    def check_homomorphism(self, tolerance: float = 1e-6, n: int = 1, seed: int = 0) -> float:
        """Raise :class:`RepresentationError` unless :meth:`homomorphism_error` is below ``tolerance`` times the
        largest matrix entry (at least 1); return the error. Checked on all pairs of: every element of a group with
        at most 24 of them, else the generators and ``n`` Haar samples (the solver imposes the constraint on
        generators only, which is sound only for a homomorphism)."""
        elements = self._test_elements(n, seed)
        err = self.homomorphism_error(elements)
        scale = max([1.0] + [float(self.matrix(g).abs().max()) for g in elements[:8] if self.dim])
        if not err <= tolerance * scale:
            raise RepresentationError(f"{self} is not a representation of {self.group}: homomorphism error "
                                      f"max |rho(gh) - rho(g) rho(h)| = {err:.2e} > {tolerance * scale:.0e}")
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


class DefiningRep(Rep):
    """The matrices that define a group: 2x2 rotations for :math:`C_n` and SO(2), rotations and reflections for
    :math:`D_n`, 3x3 rotations for SO(3), 4x4 homogeneous matrices for SE(3), and the :math:`n \\times n`
    permutation matrices for :math:`S_n` (the *permutation* representation, reducible: trivial
    :math:`\\oplus` :class:`StandardIrrep`).

    The group must provide ``standard_matrix(value)``.
    """

    def __init__(self, group: Group):
        if not hasattr(group, "standard_matrix"):
            raise RepresentationError(f"{group} has no defining matrix representation")
        self.group = group
        self.dim = int(group.standard_matrix(group.identity().value).shape[0])

    def _key(self):
        return (self.group,)

    def _matrix(self, value):
        return self.group.standard_matrix(value)

    def lie_algebra(self):
        return list(self.group.lie_algebra())

    def __repr__(self) -> str:
        return f"Defining({self.group})"


def _sum_zero_basis(n: int) -> torch.Tensor:
    """An orthonormal basis ``(n, n-1)`` of :math:`\\{x \\in \\mathbb{R}^n : \\sum_i x_i = 0\\}` (Helmert's):
    column :math:`k` is :math:`(1, \\dots, 1, -k, 0, \\dots, 0)/\\sqrt{k(k+1)}` with :math:`k` ones."""
    q = torch.zeros(n, n - 1, dtype=torch.float64)
    for k in range(1, n):
        q[:k, k - 1] = 1.0
        q[k, k - 1] = -float(k)
        q[:, k - 1] /= math.sqrt(k * (k + 1))
    return q


class StandardIrrep(Rep):
    """The standard representation of :math:`S_n`: the :math:`(n-1)`-dimensional irreducible representation,
    the permutation matrices restricted to the vectors whose entries sum to zero,

    .. math::  \\rho(\\sigma) = Q^\\top P_\\sigma Q, \\qquad Q \\in \\mathbb{R}^{n \\times (n-1)},\\;
               Q^\\top Q = I,\\; \\mathbf{1}^\\top Q = 0,

    so that :math:`P_\\sigma \\cong 1 \\oplus \\rho(\\sigma)`; character :math:`\\chi(\\sigma) =
    \\#\\{\\text{fixed points of } \\sigma\\} - 1`. Orthogonal matrices (Helmert's basis :math:`Q`).

    Args:
        group: a :class:`~gdl.groups.SymmetricGroup` with :math:`n \\ge 2`.
    """

    def __init__(self, group: SymmetricGroup):
        if not isinstance(group, SymmetricGroup) or group.n < 2:
            raise RepresentationError(f"StandardIrrep is the (n-1)-dimensional irrep of a symmetric group S_n "
                                      f"with n >= 2, got {group}")
        self.group, self.dim = group, group.n - 1
        self._q = _sum_zero_basis(group.n)

    def _key(self):
        return (self.group,)

    def _matrix(self, value):
        return self._q.T @ self.group.standard_matrix(value) @ self._q

    def __repr__(self) -> str:
        return f"StandardIrrep({self.group})"


def StandardRep(group: Group) -> DefiningRep:  # noqa: N802 (the old class name, kept for a deprecation period)
    """Deprecated: ``StandardRep`` is now :class:`DefiningRep` (the group's defining matrices).

    For :math:`S_n` the old name was wrong: the standard representation of :math:`S_n` is the
    :math:`(n-1)`-dimensional irreducible one (:class:`StandardIrrep`), not the :math:`n`-dimensional
    permutation matrices (:class:`DefiningRep` or :class:`PermutationRep`), so ``StandardRep(S_n)`` raises.
    """
    if isinstance(group, SymmetricGroup):
        raise RepresentationError(
            f"StandardRep({group}) is ambiguous and no longer exists: use DefiningRep({group}) or "
            f"PermutationRep({group}) for the {group.n}x{group.n} permutation matrices, StandardIrrep({group}) for "
            f"the standard ({group.n - 1}-dimensional irreducible) representation of {group}")
    warnings.warn("gdl.groups.StandardRep is deprecated; use DefiningRep (the same matrices)", DeprecationWarning,
                  stacklevel=2)
    return DefiningRep(group)


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
        # what the representation is: the images of the generators (they determine every rho(g)), not the name
        key = self.__dict__.get("_key_cache")
        if key is None:
            key = (self.group, self.dim, tuple(tuple(self._perm(g)) for g in self.group.generators()))
            self.__dict__["_key_cache"] = key
        return key

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

    Use it for one-off representations; the homomorphism property is checked (:meth:`Rep.check_homomorphism`)
    and a :class:`RepresentationError` raised when it fails. Equality and hashing (hence the solver's cache) use
    the matrices, not ``name``: the generators' matrices, the Lie algebra and a few fixed Haar samples for a
    continuous group.
    """

    def __init__(self, group: Group, fn: Callable[[GroupElement], torch.Tensor], name: str,
                 tolerance: float = 1e-8):
        self.group, self._fn, self._name = group, fn, name
        m = torch.as_tensor(fn(group.identity()), dtype=torch.float64)
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise RepresentationError(f"{name}: matrices must be square, got shape {tuple(m.shape)}")
        self.dim = m.shape[0]
        self.check_homomorphism(tolerance, n=8)

    def _key(self):
        key = self.__dict__.get("_key_cache")
        if key is None:
            mats = [self.matrix(g) for g in self.group.generators()]
            if not self.group.is_finite:
                mats += self.lie_algebra() + [self.matrix(g) for g in self.group.sample(4, seed=12345)]
            key = (self.group, self.dim, _fingerprint(mats))
            self.__dict__["_key_cache"] = key
        return key

    def _matrix(self, value):
        return torch.as_tensor(self._fn(GroupElement(self.group, value)), dtype=torch.float64)

    def __repr__(self) -> str:
        return self._name
