"""Field types and filter bases of E(2)-steerable convolutions (Weiler & Cesa 2019), built by gdl itself.

The four planar groups are :math:`C_N` (rotations by multiples of :math:`2\\pi/N`), :math:`D_N` (with the
mirror :math:`x \\mapsto -x`), :math:`SO(2)` and :math:`O(2)`, as the gdl groups ``CyclicGroup(N)``,
``DihedralGroup(N)``, ``SO2()`` and ``O2()`` (element conventions: :mod:`gdl.groups`).

A field of a :class:`FieldType` is either a real irreducible representation (an :class:`Irrep`) or the regular
representation of a finite group. A filter :math:`\\kappa: \\mathbb{R}^2 \\to \\mathbb{R}^{d_{out} \\times d_{in}}`
between two fields is steerable when

.. math::  \\kappa(g x) = \\rho_{out}(g)\\, \\kappa(x)\\, \\rho_{in}(g)^{-1} \\qquad \\text{for all } g \\in G .

In the harmonic basis of a ring, :math:`\\kappa(r, \\phi) = \\sum_j G_j(r) \\sum_{m \\le F_j} (a_{jm}\\cos m\\phi
+ b_{jm}\\sin m\\phi)`, the group acts on the coefficients by the exact representation :math:`P` of
:class:`~gdl.weight_sharing.PolarFilterRep`, so the constraint becomes the intertwiner constraint
:math:`W \\rho_{in}(g) = (\\rho_{out}(g) \\otimes P(g)) W` of chapter 4, which the course's solver
(:func:`~gdl.weight_sharing.equivariant_basis`) solves for every pair of irreps. For irreps of frequency
:math:`m \\to n` of :math:`SO(2)` only the angular frequencies :math:`|n - m|` and :math:`n + m` survive;
:math:`C_N` also keeps their aliases :math:`\\pm(n \\pm m) + tN`, and the mirror of :math:`D_N`/:math:`O(2)`
halves what is left. A regular field is an orthogonal change of basis :math:`Q` of a sum of irreps
(:func:`regular_decomposition`), so its filters are :math:`Q_{out} \\kappa_{irreps} Q_{in}^\\top`.

Rings, widths and band limits follow escnn's defaults (``R2Conv`` with ``frequencies_cutoff=None``) so that the two
libraries have the same filter spaces: rings at the radii :math:`0, 1, \\dots, \\lfloor k/2 \\rfloor`, Gaussian
widths 0.6 (0.4 on the outermost ring, a point at the centre), band limits :math:`F_0 = 0`,
and the limits of :func:`band_limits`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from gdl.groups import (
    O2,
    SO2,
    CyclicGroup,
    DihedralGroup,
    GroupMismatchError,
    RegularRep,
    Rep,
    TensorProductRep,
)
from gdl.weight_sharing import PolarFilterRep, equivariant_basis
from gdl.weight_sharing._counts import _angle_and_flip

__all__ = ["STEERABLE_GROUPS", "planar_group", "Irrep", "REGULAR", "FieldType", "band_limits", "RingHarmonics",
           "irreps_of", "regular_decomposition", "pair_basis"]

#: Group names understood here (e.g. ``"C8"``, ``"D4"``, ``"SO2"``).
STEERABLE_GROUPS = "C<N>, D<N> (N >= 1), SO2 or O2"
_F64 = torch.float64


@functools.cache
def planar_group(name: str):
    """The gdl group of a name: ``"C8"`` -> ``CyclicGroup(8)``, ``"D4"`` -> ``DihedralGroup(4)``, ``"SO2"``,
    ``"O2"``.

    Raises:
        ValueError: an unknown name, or ``N < 1`` (the message names what is expected).
    """
    if not isinstance(name, str):
        raise ValueError(f"group must be a string ({STEERABLE_GROUPS}), got {name!r}")
    key = name.upper().replace("(", "").replace(")", "")
    if key in ("SO2", "SO"):
        return SO2()
    if key == "O2":
        return O2()
    if key[:1] in ("C", "D") and key[1:].lstrip("-").isdigit():
        n = int(key[1:])
        if n < 1:
            raise ValueError(f"the number of rotations N of {name!r} must be >= 1, got N={n}")
        return CyclicGroup(n) if key[0] == "C" else DihedralGroup(n)
    raise ValueError(f"unknown steerable group {name!r}; expected {STEERABLE_GROUPS}")


def _order(group) -> int:
    """N for C_N / D_N, 0 for the continuous groups."""
    return group.n if isinstance(group, (CyclicGroup, DihedralGroup)) else 0


def _has_mirror(group) -> bool:
    return isinstance(group, (DihedralGroup, O2))


# --- irreps -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Irrep:
    """A real irreducible representation of a planar group, by its frequency ``k`` and, for the 1-dimensional
    irreps of a group with mirrors, the sign ``j`` the mirror gets (:math:`(-1)^j`).

    - :math:`k = 0`: 1-dimensional, :math:`\\rho(R_\\theta S^f) = (-1)^{jf}` (trivial for ``j = 0``);
    - :math:`C_N, D_N` with :math:`k = N/2`: 1-dimensional, :math:`\\rho(R_\\theta S^f) = \\cos(k\\theta)(-1)^{jf}`;
    - otherwise 2-dimensional, :math:`\\rho(R_\\theta S^f) = R(k\\theta) S^f` with :math:`S = \\mathrm{diag}(-1, 1)`
      (frequency 1 is the defining representation: vectors in the plane).
    """

    k: int
    j: int = 0

    def dim(self, group) -> int:
        return 1 if self.k == 0 or 2 * self.k == _order(group) else 2

    def matrix(self, group, value) -> torch.Tensor:
        theta, f = _angle_and_flip(group, value)
        if self.dim(group) == 1:
            sign = (-1.0) ** (self.j * f)
            return torch.full((1, 1), sign * (1.0 if self.k == 0 else math.cos(self.k * theta)), dtype=_F64)
        c, s = math.cos(self.k * theta), math.sin(self.k * theta)
        m = torch.tensor([[c, -s], [s, c]], dtype=_F64)
        return m @ torch.diag(torch.tensor([-1.0, 1.0], dtype=_F64)) if f else m

    def check(self, group) -> None:
        """Raise ValueError unless this is an irrep of ``group`` (naming the valid ones)."""
        n = _order(group)
        ok = isinstance(self.k, int) and self.k >= 0 and self.j in (0, 1)
        ok = ok and (n == 0 or self.k <= n // 2)
        ok = ok and (self.j == 0 or (_has_mirror(group) and self.dim(group) == 1))
        if not ok:
            valid = (f"frequencies k = 0..{n // 2}" if n else "frequencies k >= 0") + (
                ", j = 1 only for the 1-dimensional irreps (k = 0" + (f" or {n // 2})" if n and n % 2 == 0 else ")")
                if _has_mirror(group) else ", j = 0")
            raise ValueError(f"{self} is not an irrep of {group}; expected {valid}")

    def __str__(self) -> str:
        return f"irrep({self.k})" if self.j == 0 else f"irrep({self.k}, j=1)"


#: The regular field (C_N, D_N): the functions on the group, |G| channels.
REGULAR = "regular"


def irreps_of(group) -> list[Irrep]:
    """All irreps of a finite planar group (:math:`C_N`, :math:`D_N`), lowest frequency first."""
    n = _order(group)
    if not n:
        raise ValueError(f"{group} has infinitely many irreps; only C_N and D_N have regular fields")
    out = []
    for k in range(n // 2 + 1):
        out.append(Irrep(k))
        if _has_mirror(group) and Irrep(k).dim(group) == 1:
            out.append(Irrep(k, 1))
    return out


def _checked_once(rep, check, tolerance, n, seed) -> float:
    """The solver checks both representations on every call; these never change, so the check runs once."""
    done = rep.__dict__.setdefault("_checked", {})
    if (tolerance, n, seed) not in done:
        done[tolerance, n, seed] = check(tolerance, n, seed)
    return done[tolerance, n, seed]


class _IrrepRep(Rep):
    """An :class:`Irrep` as a gdl :class:`~gdl.groups.Rep`, for the solver."""

    def __init__(self, group, irrep: Irrep):
        self.group, self.irrep, self.dim = group, irrep, irrep.dim(group)

    def _key(self):
        return (self.group, self.irrep)

    def _matrix(self, value):
        cache = self.__dict__.setdefault("_cache", {})
        if value not in cache:
            cache[value] = self.irrep.matrix(self.group, value)
        return cache[value].clone()

    def check_homomorphism(self, tolerance: float = 1e-6, n: int = 1, seed: int = 0) -> float:
        return _checked_once(self, super().check_homomorphism, tolerance, n, seed)

    def lie_algebra(self):
        if self.group.is_finite:
            return []
        if self.dim == 1:
            return [torch.zeros(1, 1, dtype=_F64)]
        return [self.irrep.k * torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=_F64)]

    def __repr__(self) -> str:
        return f"{self.irrep}"


def _field_rep(group, field) -> Rep:
    return RegularRep(group) if field == REGULAR else _IrrepRep(group, field)


# --- field types ----------------------------------------------------------------------------------------
def _as_field(group, f):
    if f == REGULAR:
        if not group.is_finite:
            raise ValueError(f"regular fields need a finite group (C_N, D_N), got {group}")
        return REGULAR
    if f == "trivial":
        return Irrep(0)
    if isinstance(f, Irrep):
        irrep = f
    elif isinstance(f, int) and not isinstance(f, bool):
        irrep = Irrep(f)
    elif isinstance(f, tuple) and len(f) == 2:
        irrep = Irrep(f[1], f[0])                      # (j, k), escnn's order for O(2)/D_N irreps
    else:
        raise ValueError(f"a field is 'regular', 'trivial', a frequency k, a pair (j, k) or an Irrep; got {f!r}")
    irrep.check(group)
    return irrep


@dataclass(frozen=True, init=False)
class FieldType:
    """The fields of a feature map, in channel order: immutable and hashable, like escnn's ``FieldType`` or
    e3nn's ``Irreps``.

    Args:
        group: a group name (``"C8"``, ``"D4"``, ``"SO2"``, ``"O2"``).
        fields: each ``"regular"``, ``"trivial"``, a frequency ``k``, a pair ``(j, k)`` (the sign of the mirror and
            the frequency) or an :class:`Irrep`.

    Examples:
        >>> FieldType("C8", ["regular"] * 2).size
        16
        >>> str(FieldType("SO2", [0, 1, 2] * 2))
        'SO2[irrep(0) + irrep(1) + irrep(2) + irrep(0) + irrep(1) + irrep(2)]'
    """

    group_name: str
    fields: tuple

    def __init__(self, group: str, fields):
        grp = planar_group(group)
        object.__setattr__(self, "group_name", str(grp))
        object.__setattr__(self, "fields", tuple(_as_field(grp, f) for f in fields))

    @property
    def group(self):
        return planar_group(self.group_name)

    def field_dims(self) -> list[int]:
        """Channels of each field."""
        g = self.group
        return [g.order if f == REGULAR else f.dim(g) for f in self.fields]

    @property
    def size(self) -> int:
        """Total number of channels."""
        return sum(self.field_dims())

    def __len__(self) -> int:
        return len(self.fields)

    def __add__(self, other: FieldType) -> FieldType:
        if not isinstance(other, FieldType) or other.group_name != self.group_name:
            raise GroupMismatchError(f"cannot concatenate field types of {self.group_name} and "
                                     f"{getattr(other, 'group_name', type(other).__name__)}")
        return FieldType(self.group_name, self.fields + other.fields)

    def rep(self) -> Rep:
        """The representation of the whole type (a direct sum), as a gdl :class:`~gdl.groups.Rep`."""
        reps = [_field_rep(self.group, f) for f in self.fields]
        return reps[0] if len(reps) == 1 else sum(reps[1:], reps[0])

    def matrix(self, value) -> torch.Tensor:
        """:math:`\\rho(g)` of the element with this value, float64 ``(size, size)``: block diagonal."""
        g = self.group
        return torch.block_diag(*[_field_rep(g, f)._matrix(value) for f in self.fields])

    def __str__(self) -> str:
        parts: list[list] = []
        for f in self.fields:                           # run-length encoding: "4x regular"
            if parts and parts[-1][1] == f:
                parts[-1][0] += 1
            else:
                parts.append([1, f])
        return f"{self.group_name}[" + " + ".join(f"{n}x {f}" if n > 1 else str(f) for n, f in parts) + "]"

    __repr__ = __str__


# --- filters on rings ----------------------------------------------------------------------------------------
def band_limits(kernel_size: int) -> tuple[int, ...]:
    """escnn's default band limit of each ring ``j = 0..R`` (:math:`R = \\lfloor k/2 \\rfloor`):
    :math:`F_0 = 0`, :math:`F_R = \\min(2R, 2)` on the outermost ring (which the square grid cuts), and
    :math:`F_j = 2j - [j \\text{ even}]` in between (a ring of radius :math:`j` has about :math:`2\\pi j` pixels)."""
    R = kernel_size // 2
    return tuple(0 if j == 0 else min(2 * j, 2 if j == R else 2 * j - (j + 1) % 2) for j in range(R + 1))


class RingHarmonics(PolarFilterRep):
    """The filters of chapter 4's :class:`~gdl.weight_sharing.PolarFilterRep` (Gaussian rings at the integer radii
    times circular harmonics, on which every group element acts exactly) with escnn's widths and band limits:
    ring widths :math:`\\sigma_j = 0.6` (0.4 on the outermost ring, 0.005 at the centre) and
    :math:`F_j` from :func:`band_limits`, or a given ``band``."""

    def __init__(self, group, kernel_size: int, band: tuple[int, ...] | None = None):
        self._band = tuple(band) if band is not None else band_limits(kernel_size)
        if len(self._band) != kernel_size // 2 + 1:
            raise ValueError(f"band needs one limit per ring (rings 0..{kernel_size // 2}), got {self._band}")
        super().__init__(group, kernel_size)
        R = self.radius
        self.sigmas = tuple(0.005 if j == 0 else (0.4 if j == R else 0.6) for j in range(R + 1))

    def max_frequency(self, j: int) -> int:  # type: ignore[override]
        return self._band[j]

    def _key(self):
        return (self.group, self.k, self._band)

    def _matrix(self, value):
        cache = self.__dict__.setdefault("_cache", {})
        if value not in cache:
            cache[value] = super()._matrix(value)
        return cache[value].clone()

    def _ring(self, r: torch.Tensor, j: int) -> torch.Tensor:
        # a ring of its own width, not cut at the filter's disc (the circular harmonics of PolarFilterRep.sample)
        return torch.exp(-0.5 * ((r - j) / self.sigmas[j]) ** 2)

    def __repr__(self) -> str:
        return f"RingHarmonics({self.group}, {self.k}x{self.k}, band limits {self._band})"


@functools.cache
def _irrep_rep(group_name: str, irrep: Irrep) -> _IrrepRep:
    return _IrrepRep(planar_group(group_name), irrep)            # one instance: its matrices are cached


class _KernelRep(TensorProductRep):
    r""":math:`\psi_{out} \otimes P`: where the filters between two irreps live (checked once)."""

    def check_homomorphism(self, tolerance: float = 1e-6, n: int = 1, seed: int = 0) -> float:
        return _checked_once(self, super().check_homomorphism, tolerance, n, seed)


@functools.cache
def _kernel_rep(group_name: str, out: Irrep, kernel_size: int, band: tuple) -> _KernelRep:
    return _KernelRep(_irrep_rep(group_name, out), _rings(group_name, kernel_size, band))


@functools.cache
def _rings(group_name: str, kernel_size: int, band: tuple) -> RingHarmonics:
    return RingHarmonics(planar_group(group_name), kernel_size, band)


# --- bases ---------------------------------------------------------------------------------------------------
@functools.cache
def regular_decomposition(group_name: str) -> tuple[torch.Tensor, tuple[Irrep, ...]]:
    """The orthogonal change of basis of a regular field,
    :math:`\\rho_{reg}(g) = Q\\, (\\oplus_i \\psi_i(g))\\, Q^\\top`.

    Each irrep :math:`\\psi` appears :math:`\\dim\\psi` times in the regular representation over the complex
    numbers; over the reals an irrep whose endomorphisms are the complex numbers (the 2-dimensional ones of
    :math:`C_N`) appears once. The columns of :math:`Q` for one copy are an isometric intertwiner from the solver's
    basis of :math:`\\mathrm{Hom}_G(\\psi, \\rho_{reg})`.

    Returns:
        ``Q`` float64 ``(|G|, |G|)`` and the irreps in the order of its columns.
    """
    group = planar_group(group_name)
    reg = RegularRep(group)
    cols, irreps = [], []
    for psi in irreps_of(group):
        rep = _irrep_rep(group_name, psi)
        maps = equivariant_basis(rep, reg)                       # (D, |G|, d)
        n_end = equivariant_basis(rep, rep).shape[0]             # 1 (real type) or 2 (complex type)
        for e in maps[: maps.shape[0] // n_end]:
            cols.append(e * math.sqrt(rep.dim))
            irreps.append(psi)
    Q = torch.cat(cols, dim=1)
    err = float((Q.T @ Q - torch.eye(group.order, dtype=_F64)).abs().max())
    if err > 1e-9:                                               # pragma: no cover - a solver failure
        raise RuntimeError(f"the regular decomposition of {group} is not orthogonal (error {err:.1e})")
    return Q, tuple(irreps)


@functools.cache
def _irrep_pair_basis(group_name: str, out: Irrep, inp: Irrep, kernel_size: int, band: tuple) -> torch.Tensor:
    """Steerable filters from irrep ``inp`` to irrep ``out``, sampled on the grid: float64
    ``(D, d_out, d_in, k, k)``, from the solver's basis of
    :math:`\\mathrm{Hom}_G(\\psi_{in}, \\psi_{out} \\otimes P)`."""
    rin, rout = _irrep_rep(group_name, inp), _irrep_rep(group_name, out)
    rings = _rings(group_name, kernel_size, band)
    coeffs = equivariant_basis(rin, _kernel_rep(group_name, out, kernel_size, band))          # (D, d_out * F, d_in)
    coeffs = coeffs.reshape(-1, rout.dim, rings.dim, rin.dim)
    samples = rings.sample(rings.grid())                                    # (k*k, F)
    filters = torch.einsum("dofi,pf->doip", coeffs, samples)
    return filters.reshape(*filters.shape[:3], kernel_size, kernel_size)


def _decompose(group_name: str, field) -> tuple[torch.Tensor, tuple[Irrep, ...]]:
    if field == REGULAR:
        return regular_decomposition(group_name)
    return torch.eye(field.dim(planar_group(group_name)), dtype=_F64), (field,)


@functools.cache
def pair_basis(group_name: str, out_field, in_field, kernel_size: int, band: tuple | None = None) -> torch.Tensor:
    """The steerable filters between two fields, float64 ``(D, d_out, d_in, k, k)``: the irrep bases of every pair of
    irreps in the two fields, mapped through the regular fields' change of basis
    :math:`\\kappa = Q_{out} \\kappa_{irreps} Q_{in}^\\top`. Computed once per pair and cached."""
    band = tuple(band) if band is not None else band_limits(kernel_size)
    q_out, ir_out = _decompose(group_name, out_field)
    q_in, ir_in = _decompose(group_name, in_field)
    g = planar_group(group_name)
    blocks, o = [], 0
    for a in ir_out:
        i = 0
        for b in ir_in:
            B = _irrep_pair_basis(group_name, a, b, kernel_size, band)           # (D, da, db, k, k)
            qa, qb = q_out[:, o:o + a.dim(g)], q_in[:, i:i + b.dim(g)]
            blocks.append(torch.einsum("pa,dabkl,qb->dpqkl", qa, B, qb))
            i += b.dim(g)
        o += a.dim(g)
    return torch.cat(blocks, dim=0)
