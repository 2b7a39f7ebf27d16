"""Continuous (Lie) groups: rotations and reflections of the plane and of space, and rigid motions.

=========  ==========================================  =========================================
group      element value                               standard representation
=========  ==========================================  =========================================
``SO2``    angle :math:`\\theta \\in [0, 2\\pi)`           :math:`R(\\theta)`, 2x2
``O2``     ``(f, theta)``: :math:`R(\\theta) S^f`        2x2, :math:`S = \\mathrm{diag}(-1, 1)`
``SO3``    float64 rotation matrix :math:`R`, 3x3       :math:`R`
``O3``     float64 orthogonal matrix :math:`Q`, 3x3     :math:`Q`
``SE3``    ``(R, t)``: :math:`x \\mapsto R x + t`       4x4 homogeneous :math:`[[R, t], [0, 1]]`
``E3``     ``(Q, t)``: :math:`x \\mapsto Q x + t`       4x4 homogeneous
=========  ==========================================  =========================================

Every group here has ``lie_algebra()`` (a basis of its Lie algebra as matrices in the standard
representation), ``exp(X)`` (the element :math:`\\exp(X)`), ``sample(n, seed)`` (Haar-random, reproducible)
and ``generators()``: only the *discrete* generators that the identity component misses (a reflection for
O(2), O(3), E(3); nothing for SO(n), SE(3)). A linear map commutes with the whole group exactly when it
commutes with every Lie algebra generator and every discrete generator, which is what a weight-sharing
solver needs.

Elements are equal when their :meth:`~gdl.groups.Group.distance` (Frobenius norm of the difference of
standard matrices) is below ``equality_tolerance`` (1e-9: float64 compositions drift by ~1e-15 per step).
"""

from __future__ import annotations

import math

import torch

from gdl.groups._group import Group, GroupElement

__all__ = ["SO2", "O2", "SO3", "O3", "SE3", "E3", "so3_basis", "expm_skew"]

_F64 = torch.float64
_TWO_PI = 2 * math.pi
#: How far from orthogonal a user-supplied matrix may be.
_ORTHO_TOL = 1e-6


def _generator(seed: int | torch.Generator) -> torch.Generator:
    return seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)


def _rot2(theta: float) -> torch.Tensor:
    c, s = math.cos(theta), math.sin(theta)
    return torch.tensor([[c, -s], [s, c]], dtype=_F64)


_J2 = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=_F64)      # so(2) generator: d/dt R(t) at 0
_S2 = torch.diag(torch.tensor([-1.0, 1.0], dtype=_F64))        # the reflection x -> -x of O(2)
_S3 = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=_F64))   # the reflection x -> -x of O(3)


def expm_skew(X: torch.Tensor) -> torch.Tensor:
    """:math:`\\exp(X)` of a real antisymmetric matrix through the eigenvectors of the Hermitian :math:`iX`:
    :math:`iX = U \\Lambda U^\\dagger \\Rightarrow e^X = U e^{-i\\Lambda} U^\\dagger`. Accurate to ~1e-15 in float64,
    where ``torch.linalg.matrix_exp`` is off by up to ~2e-10 for small angles (torch 2.x, CPU)."""
    lam, U = torch.linalg.eigh(1j * X.to(torch.complex128))
    return ((U * torch.exp(-1j * lam).unsqueeze(-2)) @ U.mH).real


def so3_basis() -> list[torch.Tensor]:
    """:math:`L_x, L_y, L_z`, the infinitesimal rotations about the axes: :math:`(L_i)_{jk} = -\\epsilon_{ijk}`,
    so :math:`\\exp(t L_z)` rotates by :math:`t` counter-clockwise in the xy-plane."""
    L = torch.zeros(3, 3, 3, dtype=_F64)
    for i, j, k in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
        L[i, k, j], L[i, j, k] = 1.0, -1.0
    return list(L)


def _as_matrix(value, n: int, what: str) -> torch.Tensor:
    try:
        m = torch.as_tensor(value, dtype=_F64).detach().clone()
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"an element of {what} is a {n}x{n} matrix, got {type(value).__name__}") from None
    if m.shape != (n, n):
        raise ValueError(f"an element of {what} is a {n}x{n} matrix, got shape {tuple(m.shape)}")
    err = float((m.T @ m - torch.eye(n, dtype=_F64)).abs().max())
    if err > _ORTHO_TOL:
        raise ValueError(f"an element of {what} must be orthogonal (Q^T Q = I), got a matrix with "
                         f"|Q^T Q - I| = {err:.1e}")
    return m


def _as_lie_matrix(X, n: int, group: Group) -> torch.Tensor:
    X = torch.as_tensor(X, dtype=_F64)
    if X.shape != (n, n):
        raise ValueError(f"{group}.exp expects a {n}x{n} Lie algebra matrix (standard representation), "
                         f"got shape {tuple(X.shape)}")
    return X


def _rotation_angle_axis(R: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Angle in [0, pi] and unit axis of a 3x3 rotation (axis (0, 0, 1) for the identity)."""
    c = ((torch.trace(R) - 1) / 2).clamp(-1.0, 1.0)
    angle = float(torch.arccos(c))
    w = torch.stack([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    if float(w.norm()) > 1e-8:
        return angle, w / w.norm()
    if angle < 1.0:  # the identity
        return 0.0, torch.tensor([0.0, 0.0, 1.0], dtype=_F64)
    # angle pi: R = 2 a a^T - I, take the largest column of R + I
    m = R + torch.eye(3, dtype=_F64)
    col = m[:, int(torch.diagonal(m).argmax())]
    return angle, col / col.norm()


def _fmt_rotation(R: torch.Tensor) -> str:
    angle, axis = _rotation_angle_axis(R)
    return f"rot {angle:.3f} about ({axis[0]:.2f}, {axis[1]:.2f}, {axis[2]:.2f})"


def _haar_so3(n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` Haar-random rotations from normalised Gaussian quaternions (uniform on :math:`S^3`)."""
    q = torch.randn(n, 4, dtype=_F64, generator=gen)
    q = q / q.norm(dim=1, keepdim=True)
    w, x, y, z = q.unbind(1)
    return torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


class _LieGroup(Group):
    """Shared parts of the continuous groups."""

    is_finite = False
    equality_tolerance = 1e-9

    def _distance(self, a, b) -> float:
        return float((self.standard_matrix(a) - self.standard_matrix(b)).norm())

    def __repr__(self) -> str:
        return type(self).__name__

    def _key(self):
        return ()

    def exp(self, X) -> GroupElement:
        """The element :math:`\\exp(X)` for a Lie algebra matrix ``X`` in the standard representation."""
        raise NotImplementedError

    def dimension(self) -> int:
        """The dimension of the group as a manifold (the number of Lie algebra generators)."""
        return len(self.lie_algebra())


# --- the plane ------------------------------------------------------------------------------------
class SO2(_LieGroup):
    """Rotations of the plane. Value: the angle :math:`\\theta \\in [0, 2\\pi)`, acting on column vectors by
    :math:`R(\\theta) = \\begin{pmatrix}\\cos\\theta & -\\sin\\theta\\\\ \\sin\\theta & \\cos\\theta\\end{pmatrix}`;
    composition adds angles. Lie algebra: :math:`J = \\begin{pmatrix}0&-1\\\\1&0\\end{pmatrix}`.

    Examples:
        >>> g = SO2().element(math.pi / 2)
        >>> (g * g).value  # doctest: +ELLIPSIS
        3.14159...
    """

    def _identity(self):
        return 0.0

    def _compose(self, a, b):
        return (a + b) % _TWO_PI

    def _inverse(self, a):
        return (-a) % _TWO_PI

    def _canonical(self, value):
        if torch.is_tensor(value) and value.shape == (2, 2):
            m = _as_matrix(value, 2, str(self))
            if float(torch.det(m)) < 0:
                raise ValueError(f"an element of {self} has determinant +1, got a reflection {m.tolist()}")
            return math.atan2(float(m[1, 0]), float(m[0, 0])) % _TWO_PI
        try:
            return float(value) % _TWO_PI
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"an element of {self} is an angle (float) or a 2x2 rotation matrix, "
                             f"got {value!r}") from None

    def format_value(self, value) -> str:
        return f"{value:.4f}"

    def generators(self) -> list[GroupElement]:
        return []

    def sample(self, n: int, seed: int | torch.Generator = 0) -> list[GroupElement]:
        theta = torch.rand(n, dtype=_F64, generator=_generator(seed)) * _TWO_PI
        return [GroupElement(self, float(t)) for t in theta]

    def standard_matrix(self, value) -> torch.Tensor:
        return _rot2(value)

    def lie_algebra(self) -> list[torch.Tensor]:
        return [_J2.clone()]

    def exp(self, X) -> GroupElement:
        X = _as_lie_matrix(X, 2, self)
        if float((X + X.T).abs().max()) > 1e-9:
            raise ValueError(f"{self}.exp expects an antisymmetric 2x2 matrix t*J, got {X.tolist()}")
        return self.element(float(X[1, 0]))

    def angle(self, g: GroupElement) -> float:
        return self.check(g).value


class O2(_LieGroup):
    """Rotations and reflections of the plane. Value ``(f, theta)`` is :math:`R(\\theta) S^f`: first the
    reflection :math:`S = \\mathrm{diag}(-1, 1)` (:math:`x \\mapsto -x`) if ``f = 1``, then the rotation, the
    same convention as :class:`~gdl.groups.DihedralGroup`. Composition uses :math:`S R(\\theta) S = R(-\\theta)`.
    Discrete generator: the reflection ``(1, 0.0)``.
    """

    def _identity(self):
        return (0, 0.0)

    def _compose(self, a, b):
        fa, ta = a
        fb, tb = b
        return ((fa + fb) % 2, (ta + (-tb if fa else tb)) % _TWO_PI)

    def _inverse(self, a):
        f, t = a
        return (f, t) if f else (0, (-t) % _TWO_PI)

    def _canonical(self, value):
        if torch.is_tensor(value) and value.shape == (2, 2):
            m = _as_matrix(value, 2, str(self))
            f = int(float(torch.det(m)) < 0)
            r = m @ _S2 if f else m
            return (f, math.atan2(float(r[1, 0]), float(r[0, 0])) % _TWO_PI)
        if isinstance(value, tuple) and len(value) == 2 and value[0] in (0, 1):
            try:
                return (int(value[0]), float(value[1]) % _TWO_PI)
            except (TypeError, ValueError):
                pass
        raise ValueError(f"an element of {self} is a pair (f, theta) with f in {{0, 1}} (reflect first?) "
                         f"and an angle theta, or a 2x2 orthogonal matrix; got {value!r}")

    def format_value(self, value) -> str:
        return f"R({value[1]:.4f})" + (" S" if value[0] else "")

    def generators(self) -> list[GroupElement]:
        return [self.element((1, 0.0))]

    def sample(self, n: int, seed: int | torch.Generator = 0) -> list[GroupElement]:
        gen = _generator(seed)
        theta = torch.rand(n, dtype=_F64, generator=gen) * _TWO_PI
        flip = torch.randint(2, (n,), generator=gen)
        return [GroupElement(self, (int(f), float(t))) for f, t in zip(flip, theta)]

    def standard_matrix(self, value) -> torch.Tensor:
        f, t = value
        return _rot2(t) @ _S2 if f else _rot2(t)

    def lie_algebra(self) -> list[torch.Tensor]:
        return [_J2.clone()]

    def exp(self, X) -> GroupElement:
        return self.element((0, SO2().exp(X).value))


# --- space ----------------------------------------------------------------------------------------
class SO3(_LieGroup):
    """Rotations of space. Value: a float64 3x3 matrix :math:`R` with :math:`R^\\top R = I`,
    :math:`\\det R = 1`; composition is the matrix product. Lie algebra: :func:`so3_basis`
    :math:`L_x, L_y, L_z`. Haar samples come from uniformly random unit quaternions."""

    _det_sign: int | None = 1

    def _identity(self):
        return torch.eye(3, dtype=_F64)

    def _compose(self, a, b):
        return a @ b

    def _inverse(self, a):
        return a.T.clone()

    def _canonical(self, value):
        m = _as_matrix(value, 3, str(self))
        if self._det_sign is not None and float(torch.det(m)) * self._det_sign < 0:
            raise ValueError(f"an element of {self} has determinant +1 (a rotation), got determinant "
                             f"{float(torch.det(m)):.3f}")
        return m

    def format_value(self, value) -> str:
        if float(torch.det(value)) < 0:
            return "-" + _fmt_rotation(-value)
        return _fmt_rotation(value)

    def generators(self) -> list[GroupElement]:
        return []

    def sample(self, n: int, seed: int | torch.Generator = 0) -> list[GroupElement]:
        return [GroupElement(self, R) for R in _haar_so3(n, _generator(seed))]

    def standard_matrix(self, value) -> torch.Tensor:
        return value.clone()

    def lie_algebra(self) -> list[torch.Tensor]:
        return so3_basis()

    def exp(self, X) -> GroupElement:
        X = _as_lie_matrix(X, 3, self)
        if float((X + X.T).abs().max()) > 1e-9:
            raise ValueError(f"{self}.exp expects an antisymmetric 3x3 matrix, got {X.tolist()}")
        return GroupElement(self, expm_skew(X))

    def rotation(self, g: GroupElement) -> torch.Tensor:
        """The 3x3 matrix of ``g``."""
        return self.check(g).value.clone()


class O3(SO3):
    """Rotations and reflections of space: orthogonal 3x3 matrices :math:`Q` (:math:`\\det Q = \\pm 1`).
    Discrete generator: the mirror :math:`\\mathrm{diag}(-1, 1, 1)` (:math:`x \\mapsto -x`); with SO(3) it
    generates every reflection and the inversion :math:`-I`. Haar samples: a Haar rotation, negated
    (:math:`-R`, determinant -1) with probability 1/2."""

    _det_sign = None

    def generators(self) -> list[GroupElement]:
        return [GroupElement(self, _S3.clone())]

    def sample(self, n: int, seed: int | torch.Generator = 0) -> list[GroupElement]:
        gen = _generator(seed)
        R = _haar_so3(n, gen)
        sign = 1.0 - 2.0 * torch.randint(2, (n,), generator=gen).to(_F64)
        return [GroupElement(self, s * r) for s, r in zip(sign, R)]


class SE3(_LieGroup):
    """Rigid motions of space :math:`x \\mapsto R x + t`. Value: the pair ``(R, t)`` of a float64 3x3 rotation
    and a 3-vector; :math:`(R_1, t_1)(R_2, t_2) = (R_1 R_2, R_1 t_2 + t_1)`.

    The standard representation is the 4x4 homogeneous matrix :math:`\\begin{pmatrix}R & t\\\\0 & 1\\end{pmatrix}`
    and ``lie_algebra()`` has six generators in it: the three rotations :math:`L_x, L_y, L_z` (upper-left
    block) then the three translations :math:`T_x, T_y, T_z` (last column). Representations that only see the
    rotation part (``SO3Irrep(l, group=SE3())``) map the translation generators to zero.

    Translations have no uniform probability distribution, so ``sample`` draws a Haar rotation and a Gaussian
    translation with standard deviation ``translation_scale`` per axis.
    """

    _rotations: type[SO3] = SO3

    def __init__(self, translation_scale: float = 1.0):
        self.translation_scale = float(translation_scale)

    def _key(self):
        return ()  # the sampling scale is not part of the group's identity

    def _identity(self):
        return (torch.eye(3, dtype=_F64), torch.zeros(3, dtype=_F64))

    def _compose(self, a, b):
        return (a[0] @ b[0], a[0] @ b[1] + a[1])

    def _inverse(self, a):
        return (a[0].T.clone(), -(a[0].T @ a[1]))

    def _canonical(self, value):
        if torch.is_tensor(value) and value.shape == (4, 4):
            value = (value[:3, :3], value[:3, 3])
        if not isinstance(value, tuple) or len(value) != 2:
            raise ValueError(f"an element of {self} is a pair (R, t) of a 3x3 matrix and a 3-vector, or a 4x4 "
                             f"homogeneous matrix; got {type(value).__name__}")
        R = self._rotations()._canonical(value[0])
        t = torch.as_tensor(value[1], dtype=_F64).detach().clone()
        if t.shape != (3,):
            raise ValueError(f"the translation of an element of {self} is a 3-vector, got shape {tuple(t.shape)}")
        return (R, t)

    def _distance(self, a, b) -> float:
        return float((a[0] - b[0]).norm() + (a[1] - b[1]).norm())

    def format_value(self, value) -> str:
        t = value[1]
        return f"{SO3().format_value(value[0])}, t=({t[0]:.2f}, {t[1]:.2f}, {t[2]:.2f})"

    def generators(self) -> list[GroupElement]:
        return []

    def sample(self, n: int, seed: int | torch.Generator = 0) -> list[GroupElement]:
        gen = _generator(seed)
        rot = [g.value for g in self._rotations().sample(n, gen)]
        t = torch.randn(n, 3, dtype=_F64, generator=gen) * self.translation_scale
        return [GroupElement(self, (r, ti)) for r, ti in zip(rot, t)]

    def standard_matrix(self, value) -> torch.Tensor:
        m = torch.eye(4, dtype=_F64)
        m[:3, :3], m[:3, 3] = value
        return m

    def lie_algebra(self) -> list[torch.Tensor]:
        out = []
        for L in so3_basis():
            m = torch.zeros(4, 4, dtype=_F64)
            m[:3, :3] = L
            out.append(m)
        for i in range(3):
            m = torch.zeros(4, 4, dtype=_F64)
            m[i, 3] = 1.0
            out.append(m)
        return out

    def exp(self, X) -> GroupElement:
        X = _as_lie_matrix(X, 4, self)
        if float(X[3].abs().max()) > 1e-9 or float((X[:3, :3] + X[:3, :3].T).abs().max()) > 1e-9:
            raise ValueError(f"{self}.exp expects a 4x4 matrix [[A, v], [0, 0]] with A antisymmetric, "
                             f"got {X.tolist()}")
        # exp([[A, v], [0, 0]]) = [[e^A, V v], [0, 1]],  V = sum_k A^k / (k+1)! = I + c1 A + c2 A^2 (Rodrigues)
        A, v = X[:3, :3], X[:3, 3]
        theta = float(torch.stack([A[2, 1], A[0, 2], A[1, 0]]).norm())
        if theta < 1e-4:
            c1, c2 = 0.5 - theta**2 / 24, 1 / 6 - theta**2 / 120
        else:
            c1, c2 = (1 - math.cos(theta)) / theta**2, (theta - math.sin(theta)) / theta**3
        V = torch.eye(3, dtype=_F64) + c1 * A + c2 * (A @ A)
        return GroupElement(self, (expm_skew(A), V @ v))

    def rotation(self, g: GroupElement) -> torch.Tensor:
        """The 3x3 rotation (or reflection) part of ``g``."""
        return self.check(g).value[0].clone()

    def translation(self, g: GroupElement) -> torch.Tensor:
        return self.check(g).value[1].clone()


class E3(SE3):
    """The Euclidean group, :math:`x \\mapsto Q x + t` with :math:`Q \\in O(3)`: rigid motions and reflections.
    Like :class:`SE3` (4x4 homogeneous standard representation, six Lie algebra generators) plus the
    discrete generator ``(diag(-1, 1, 1), 0)``."""

    _rotations = O3

    def generators(self) -> list[GroupElement]:
        return [GroupElement(self, (_S3.clone(), torch.zeros(3, dtype=_F64)))]
