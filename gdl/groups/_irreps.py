"""Irreducible representations of the continuous groups: SO(2), O(2), SO(3), O(3) (and E(3)/SE(3) through their
rotation part).

SO(3)/O(3) irreps are the real Wigner-D matrices of e3nn :cite:`geiger2022e3nn`, in e3nn's basis and with
e3nn's generators (``e3nn.o3.so3_generators``), evaluated in float64; e3nn is imported only when one of these
irreps is used. For :math:`l = 1` the matrix is the rotation itself, :math:`D^1(R) = R`.
"""

from __future__ import annotations

import functools
import math

import torch

from gdl.groups._continuous import _J2, _S2, E3, O2, O3, SE3, SO2, SO3, _rot2, _rotation_angle_axis
from gdl.groups._errors import GroupMismatchError, RepresentationError
from gdl.groups._group import Group
from gdl.groups._rep import Rep

__all__ = ["SO2Irrep", "O2Irrep", "SO3Irrep", "O3Irrep"]

_F64 = torch.float64


def _check_int(name: str, value, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise RepresentationError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


# --- the plane ------------------------------------------------------------------------------------
class SO2Irrep(Rep):
    """The real irreducible representation of SO(2) of frequency :math:`k`:
    :math:`\\rho_0(\\theta) = 1` (1-dimensional) and :math:`\\rho_k(\\theta) = R(k\\theta)` (2x2) for :math:`k \\ge 1`.
    :math:`d\\rho_k(J) = kJ`; character :math:`2\\cos k\\theta` (1 for :math:`k = 0`)."""

    def __init__(self, k: int, group: SO2 | None = None):
        self.k = _check_int("the frequency k of an SO(2) irrep", k, 0)
        self.group = group or SO2()
        if not isinstance(self.group, SO2):
            raise GroupMismatchError(f"SO2Irrep is a representation of SO2, got {self.group}")
        self.dim = 1 if k == 0 else 2

    def _key(self):
        return (self.k,)

    def _matrix(self, value):
        return torch.ones(1, 1, dtype=_F64) if self.k == 0 else _rot2(self.k * value)

    def lie_algebra(self):
        return [torch.zeros(1, 1, dtype=_F64) if self.k == 0 else self.k * _J2]

    def character(self, g) -> float:
        return 1.0 if self.k == 0 else 2 * math.cos(self.k * self.group.check(g).value)

    def __repr__(self) -> str:
        return f"SO2Irrep({self.k})"


class O2Irrep(Rep):
    """Real irreps of O(2) with elements :math:`R(\\theta) S^f`:

    - ``k = 0, j = 0``: trivial; ``k = 0, j = 1``: the determinant :math:`(-1)^f` (1-dimensional);
    - ``k >= 1``: :math:`\\rho_k(R(\\theta) S^f) = R(k\\theta) S^f` (2x2), character :math:`2\\cos k\\theta` or 0.
    """

    def __init__(self, k: int, j: int = 0, group: O2 | None = None):
        self.k = _check_int("the frequency k of an O(2) irrep", k, 0)
        if j not in (0, 1) or (k > 0 and j != 0):
            raise RepresentationError(f"O2Irrep: j (the sign of the reflection) is 0 or 1 and only for k = 0, "
                                      f"got k={k}, j={j!r}")
        self.j, self.group = j, group or O2()
        if not isinstance(self.group, O2):
            raise GroupMismatchError(f"O2Irrep is a representation of O2, got {self.group}")
        self.dim = 1 if k == 0 else 2

    def _key(self):
        return (self.k, self.j)

    def _matrix(self, value):
        f, t = value
        if self.k == 0:
            return torch.full((1, 1), -1.0 if (f and self.j) else 1.0, dtype=_F64)
        return _rot2(self.k * t) @ _S2 if f else _rot2(self.k * t)

    def lie_algebra(self):
        return [torch.zeros(1, 1, dtype=_F64) if self.k == 0 else self.k * _J2]

    def __repr__(self) -> str:
        return f"O2Irrep({self.k}, j={self.j})" if self.k == 0 else f"O2Irrep({self.k})"


# --- space ----------------------------------------------------------------------------------------
@functools.cache
def _so3_generators(l: int) -> torch.Tensor:
    """e3nn's real so(3) generators of degree ``l`` in float64, shape (3, 2l+1, 2l+1); ``[i]`` is
    :math:`dD^l(L_i)` for :math:`L_x, L_y, L_z`. (e3nn builds them in the default dtype, so we switch it to
    float64 for the call; its float32 version is only accurate to ~1e-7.)"""
    from e3nn import o3

    old = torch.get_default_dtype()
    try:
        torch.set_default_dtype(_F64)
        X = o3.so3_generators(l).to(_F64)
    finally:
        torch.set_default_dtype(old)
    return X


def _matrix_to_angles(R: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """e3nn's Euler angles, :math:`R = R_y(\\alpha) R_x(\\beta) R_y(\\gamma)` (``e3nn.o3.matrix_to_angles``), with
    :math:`\\beta` from ``atan2`` instead of ``acos``: ``acos`` near :math:`\\beta = 0` loses half the digits and
    the homomorphism error of :math:`D^l` grows to ~1e-10."""
    from e3nn import o3

    y = R[:, 1]                                       # R e_y = R_y(alpha) R_x(beta) e_y
    alpha = torch.atan2(y[0], y[2])
    beta = torch.atan2(torch.hypot(y[0], y[2]), y[1])
    rest = o3.angles_to_matrix(alpha, beta, torch.zeros_like(alpha)).T @ R   # = R_y(gamma)
    gamma = torch.atan2(rest[0, 2], rest[0, 0])
    return alpha, beta, gamma


def wigner_D(l: int, R: torch.Tensor) -> torch.Tensor:
    """e3nn's real Wigner-D matrix :math:`D^l(R)` of a rotation, float64:
    :math:`D^l(R_y(\\alpha) R_x(\\beta) R_y(\\gamma)) = e^{\\alpha X_y} e^{\\beta X_x} e^{\\gamma X_y}` with e3nn's
    Euler angles and generators (``e3nn.o3.so3_generators``), as ``e3nn.o3.Irrep(l, 1).D_from_matrix`` computes it.
    Shapes: ``(3, 3) -> (2l+1, 2l+1)``."""
    if l == 0:
        return torch.ones(1, 1, dtype=_F64)
    a, b, c = _matrix_to_angles(R.to(_F64))
    return _exp_generator(l, 1, float(a)) @ _exp_generator(l, 0, float(b)) @ _exp_generator(l, 1, float(c))


@functools.cache
def _eig_generator(l: int, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigen-decomposition :math:`i X_i = U \\Lambda U^\\dagger`; the eigenvalues are the integers -l..l."""
    lam, U = torch.linalg.eigh(1j * _so3_generators(l)[i].to(torch.complex128))
    return lam.round(), U


def _exp_generator(l: int, i: int, t: float) -> torch.Tensor:
    """:math:`\\exp(t X_i) = U e^{-it\\Lambda} U^\\dagger`, exact to round-off (see :func:`~gdl.groups.expm_skew`)."""
    lam, U = _eig_generator(l, i)
    return ((U * torch.exp(-1j * t * lam)) @ U.mH).real


def _chi_so3(l: int, R: torch.Tensor) -> float:
    """:math:`\\chi_l(\\theta) = \\sum_{m=-l}^{l} \\cos m\\theta = 1 + 2\\sum_{m=1}^l \\cos m\\theta`."""
    theta, _ = _rotation_angle_axis(R)
    return 1.0 + 2.0 * sum(math.cos(m * theta) for m in range(1, l + 1))


class _Wigner(Rep):
    """Shared code: the rotation part of an element of SO3/O3/SE3/E3, and the Lie algebra padding."""

    _groups: tuple[type, ...] = ()

    def _setup(self, l: int, group: Group) -> None:
        self.l = _check_int("the degree l of an SO(3) irrep", l, 0)
        if type(group) not in self._groups:
            raise GroupMismatchError(f"{type(self).__name__} is a representation of "
                                     f"{' or '.join(t.__name__ for t in self._groups)}, got {group}")
        self.group, self.dim = group, 2 * l + 1

    def _rotation(self, value) -> torch.Tensor:
        return value[0] if isinstance(self.group, SE3) else value

    def _det_and_rotation(self, value) -> tuple[float, torch.Tensor]:
        Q = self._rotation(value)
        d = 1.0 if float(torch.det(Q)) > 0 else -1.0
        return d, d * Q

    def lie_algebra(self):
        gens = list(_so3_generators(self.l)) if self.l > 0 else [torch.zeros(1, 1, dtype=_F64)] * 3
        if isinstance(self.group, SE3):  # translations act trivially
            gens += [torch.zeros(self.dim, self.dim, dtype=_F64)] * 3
        return [x.clone() for x in gens]


class SO3Irrep(_Wigner):
    """The irreducible representation :math:`D^l` of SO(3) (dimension :math:`2l+1`), e3nn's real Wigner-D
    matrices; ``group=SE3()`` gives the same matrices of the rotation part of a rigid motion.

    :math:`d D^l(L_i)` = ``e3nn.o3.so3_generators(l)[i]`` exactly; character
    :math:`\\chi_l(\\theta) = 1 + 2\\sum_{m=1}^{l}\\cos m\\theta` for a rotation by :math:`\\theta`.
    """

    _groups = (SO3, SE3)

    def __init__(self, l: int, group: SO3 | SE3 | None = None):
        self._setup(l, group or SO3())

    def _key(self):
        return (self.group, self.l)

    def _matrix(self, value):
        return wigner_D(self.l, self._rotation(value))

    def character(self, g) -> float:
        return _chi_so3(self.l, self._rotation(self.group.check(g).value))

    def __repr__(self) -> str:
        return f"SO3Irrep({self.l})" + ("" if type(self.group) is SO3 else f" of {self.group}")


class O3Irrep(_Wigner):
    """The irreducible representation :math:`(l, p)` of O(3), e3nn's ``Irrep(l, p)``: for :math:`Q` with
    :math:`d = \\det Q`, :math:`\\rho(Q) = p^{(1-d)/2} D^l(dQ)`. ``p = (-1)^l`` (e.g. ``1o`` vectors) is the
    "natural" parity, ``p = -(-1)^l`` pseudo-tensors (``0o`` pseudo-scalars, ``1e`` axial vectors).
    ``group=E3()`` uses the rotation/reflection part of a Euclidean motion.
    """

    _groups = (O3, E3)

    def __init__(self, l: int, p: int, group: O3 | E3 | None = None):
        if p not in (1, -1):
            raise RepresentationError(f"the parity p of an O(3) irrep is +1 or -1, got {p!r}")
        self.p = p
        self._setup(l, group or O3())

    def _key(self):
        return (self.group, self.l, self.p)

    def _matrix(self, value):
        d, R = self._det_and_rotation(value)
        D = wigner_D(self.l, R)
        return D * self.p if d < 0 else D

    def character(self, g) -> float:
        d, R = self._det_and_rotation(self.group.check(g).value)
        return _chi_so3(self.l, R) * (self.p if d < 0 else 1)

    @property
    def name(self) -> str:
        """e3nn's short name, e.g. ``1o``."""
        return f"{self.l}{'e' if self.p == 1 else 'o'}"

    def __repr__(self) -> str:
        return f"O3Irrep({self.name})" + ("" if type(self.group) is O3 else f" of {self.group}")
