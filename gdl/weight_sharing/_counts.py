"""Parameter counts: how many free weights the intertwiner constraint leaves, computed by the solver.

Every count here is the dimension of a solution space of :func:`~gdl.weight_sharing.equivariant_basis`; the
``*_formula`` functions give the closed forms the book compares them with.

Filters. A filter on a :math:`k \\times k` grid is *invariant* (a map from the trivial representation to the
trivial one, Weiler & Cesa 2019) when rotating it changes nothing: :math:`\\kappa(g^{-1}p) = \\kappa(p)`.

- :math:`C_4, D_4` (and their subgroups) map the pixel grid onto itself, so they act on filters by permuting
  pixels (:func:`pixel_filter_rep`); the invariant filters are constant on pixel orbits.
- Rotations by other angles (:math:`C_8`, SO(2)) do not map pixels to pixels. Interpolating the rotated
  filter gives matrices that are *not* a representation (the solver refuses them), so we describe a filter as a
  continuous function in a polar basis (:class:`PolarFilterRep`),
  :math:`\\kappa(r, \\phi) = \\sum_{j} G_j(r) \\big(a_{j0}
  + \\sum_{m=1}^{m_j} a_{jm}\\cos m\\phi + b_{jm}\\sin m\\phi\\big)`,
  on which every rotation acts exactly, by :math:`R(m\\theta)` on :math:`(a_{jm}, b_{jm})`. Sampling the
  function on the pixel grid is the only approximation.
"""

from __future__ import annotations

import math

import torch

from gdl.groups import (
    O2,
    SO2,
    CyclicGroup,
    DihedralGroup,
    FiniteGroup,
    Group,
    GroupMismatchError,
    ImageAction,
    PermutationRep,
    Rep,
    TranslationGroup2D,
    TrivialRep,
)
from gdl.weight_sharing._solver import equivariant_basis

__all__ = ["dense_count", "translation_rep", "translation_count", "restrict_support", "local_filter_count",
           "pixel_filter_rep", "pixel_filter_basis", "pixel_filter_count_formula", "PolarFilterRep",
           "polar_filter_count_formula", "image_translation_rep"]


def dense_count(m_in: int, m_out: int) -> int:
    """:math:`M_{out} M_{in}`: the weights of an unconstrained linear layer, as the solver finds them for the
    trivial group :math:`C_1` (no symmetry, no constraint)."""
    c1 = CyclicGroup(1)
    return equivariant_basis(TrivialRep(c1, m_in), TrivialRep(c1, m_out)).shape[0]


def translation_rep(n: int) -> PermutationRep:
    """Cyclic shifts :math:`C_n` of a periodic 1D signal with ``n`` samples: :math:`(\\rho(t)x)_{i+t} = x_i`."""
    return PermutationRep(CyclicGroup(n), name="shifts")


def image_translation_rep(h: int, w: int) -> PermutationRep:
    """Periodic 2D translations :math:`\\mathbb{Z}_h \\times \\mathbb{Z}_w` of an ``h x w`` image (row-major)."""
    return PermutationRep(TranslationGroup2D((h, w)), name="pixels")


def translation_count(n: int) -> int:
    """Free weights of a linear map between periodic 1D signals that commutes with shifts: a circular
    convolution, one weight per offset, :math:`n` (instead of :math:`n^2`)."""
    rep = translation_rep(n)
    return equivariant_basis(rep, rep).shape[0]


def restrict_support(basis: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis of the maps in ``span(basis)`` that vanish outside ``mask``:

    .. math::  \\{W = \\textstyle\\sum_k c_k B_k : W_{ab} = 0 \\text{ where mask}_{ab} = 0\\},

    the null space of the coefficients' restriction to the outside of the mask (locality as one more linear
    constraint). Shapes: ``basis (D, M_out, M_in)``, ``mask (M_out, M_in)`` -> ``(D', M_out, M_in)``.
    """
    outside = basis[:, ~mask.bool()]                                   # (D, n_outside)
    if outside.numel() == 0:
        return basis.clone()
    # all D left singular vectors; the right ones only as many as there are (a full V would be n_outside^2)
    u, s, _ = torch.linalg.svd(outside, full_matrices=outside.shape[0] > outside.shape[1])
    rank = int((s > 1e-9 * max(1.0, float(s.max()) if len(s) else 1.0)).sum())
    coeffs = u[:, rank:]                                               # (D, D')
    return torch.einsum("dk,doi->koi", coeffs, basis)


def local_filter_count(n: int, k: int) -> int:
    """Free weights of a shift-equivariant map on ``n`` samples whose output at :math:`i` only reads inputs
    :math:`j` with circular distance :math:`|i - j| \\le (k-1)/2`: a local filter of odd size ``k``."""
    if k % 2 != 1 or k > n:
        raise ValueError(f"the filter size k must be odd and at most n={n}, got {k}")
    rep = translation_rep(n)
    i = torch.arange(n)
    dist = (i[:, None] - i[None, :]).remainder(n)
    mask = torch.minimum(dist, n - dist) <= (k - 1) // 2
    return restrict_support(equivariant_basis(rep, rep), mask).shape[0]


# --- pixel filters: groups that map the grid onto itself -------------------------------------------------
def pixel_filter_rep(group: FiniteGroup, k: int) -> PermutationRep:
    """The permutation representation of ``group`` (C1, C2, C4, D1, D2, D4) on the :math:`k^2` pixels of a
    ``k x k`` filter, with exactly the convention of :class:`~gdl.groups.ImageAction` (rot90, flip).

    Raises:
        GroupMismatchError: a group that does not map the pixel grid onto itself (e.g. C8).
    """
    action = ImageAction(group)   # refuses C8 etc. with a GroupMismatchError naming the group

    def perm(g):
        idx = torch.arange(k * k, dtype=torch.float64).reshape(1, k, k)
        moved = action(g, idx).flatten().long()                      # moved[j] = the pixel that lands on j
        p = [0] * (k * k)
        for j, i in enumerate(moved.tolist()):
            p[i] = j
        return tuple(p)

    return PermutationRep(group, permutation=perm, name=f"{k}x{k} pixels")


def pixel_filter_basis(group: FiniteGroup, k: int) -> torch.Tensor:
    """An orthonormal basis ``(D, k, k)`` of the ``k x k`` filters invariant under ``group``: the solution of the
    constraint for maps from the trivial representation to the pixel representation."""
    rep = pixel_filter_rep(group, k)
    return equivariant_basis(TrivialRep(group), rep)[..., 0].reshape(-1, k, k)


def pixel_filter_count_formula(group: FiniteGroup, k: int) -> int:
    """Closed forms of the number of pixel orbits: :math:`k^2` (C1), :math:`\\lceil k^2/4\\rceil` (C4) and
    :math:`h(h+1)/2` with :math:`h = \\lceil k/2\\rceil` (D4: a triangle of the grid)."""
    if isinstance(group, CyclicGroup) and group.n == 1:
        return k * k
    if isinstance(group, CyclicGroup) and group.n == 4:
        return math.ceil(k * k / 4)
    if isinstance(group, DihedralGroup) and group.n == 4:
        h = math.ceil(k / 2)
        return h * (h + 1) // 2
    raise GroupMismatchError(f"pixel_filter_count_formula knows C1, C4 and D4, got {group}")


# --- polar filters: any rotation angle ---------------------------------------------------------------------
def _angle_and_flip(group: Group, value) -> tuple[float, int]:
    if isinstance(group, CyclicGroup):
        return 2 * math.pi * value / group.n, 0
    if isinstance(group, DihedralGroup):
        return 2 * math.pi * value[1] / group.n, value[0]
    if isinstance(group, SO2):
        return float(value), 0
    return float(value[1]), value[0]                                   # O2: (f, theta)


class PolarFilterRep(Rep):
    """How a rotation group acts on the coefficients of a filter in a polar basis.

    A filter on a ``k x k`` grid (radius :math:`R = \\lfloor (k-1)/2 \\rfloor`) is
    :math:`\\kappa(r, \\phi) = \\sum_{j=0}^{R} G_j(r)\\big(a_{j0} + \\sum_{m=1}^{m_j} a_{jm}\\cos m\\phi
    + b_{jm}\\sin m\\phi\\big)` with Gaussian rings :math:`G_j(r) = e^{-(r-j)^2/2\\sigma^2}` at the integer radii
    and the band limit :math:`m_j = 2j` (a ring of radius :math:`j` has about :math:`2\\pi j` pixels, so
    frequencies up to :math:`2j` stay below the sampling limit :math:`\\pi j`). Rotating the filter by
    :math:`\\theta`, :math:`\\kappa \\mapsto \\kappa(R_\\theta^{-1}\\,\\cdot)`, maps :math:`(a_{jm}, b_{jm})` to
    :math:`R(m\\theta)(a_{jm}, b_{jm})`; the reflection :math:`x \\mapsto -x` multiplies them by
    :math:`(-1)^m\\,\\mathrm{diag}(1, -1)`. This is an exact representation for every angle.

    Args:
        group: :class:`~gdl.groups.CyclicGroup`, :class:`~gdl.groups.DihedralGroup`, ``SO2`` or ``O2``.
        k: the filter size.
        sigma: the width of the Gaussian rings in pixels (default: 0.6).
    """

    def __init__(self, group: Group, k: int, sigma: float = 0.6):
        if not isinstance(group, (CyclicGroup, DihedralGroup, SO2, O2)):
            raise GroupMismatchError(f"PolarFilterRep needs a planar rotation group (C_N, D_N, SO2, O2), got {group}")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"the filter size k must be a positive integer, got {k!r}")
        self.group, self.k, self.sigma = group, k, float(sigma)
        self.radius = (k - 1) // 2
        self.terms: list[tuple[int, int, str]] = []                    # (ring j, frequency m, "cos"/"sin")
        for j in range(self.radius + 1):
            self.terms.append((j, 0, "cos"))
            for m in range(1, self.max_frequency(j) + 1):
                self.terms += [(j, m, "cos"), (j, m, "sin")]
        self.dim = len(self.terms)

    @staticmethod
    def max_frequency(j: int) -> int:
        """The band limit :math:`m_j = 2j` of ring :math:`j`."""
        return 2 * j

    def _key(self):
        return (self.group, self.k, self.sigma)

    def _matrix(self, value):
        theta, flip = _angle_and_flip(self.group, value)
        m = torch.eye(self.dim, dtype=torch.float64)
        i = 0
        while i < self.dim:
            _, freq, _ = self.terms[i]
            if freq == 0:
                i += 1
                continue
            c, s = math.cos(freq * theta), math.sin(freq * theta)
            block = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
            if flip:
                block = block @ torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64)) * (-1) ** freq
            m[i:i + 2, i:i + 2] = block
            i += 2
        return m

    def lie_algebra(self):
        if self.group.is_finite:
            return []
        x = torch.zeros(self.dim, self.dim, dtype=torch.float64)
        for i, (_, freq, kind) in enumerate(self.terms):
            if kind == "cos" and freq > 0:
                x[i + 1, i], x[i, i + 1] = freq, -freq                    # m J on (a_m, b_m)
        return [x]

    def sample(self, points: torch.Tensor) -> torch.Tensor:
        """The basis functions at points ``(P, 2)`` (x right, y up), shape ``(P, dim)``; a coefficient vector
        ``c`` gives the filter values ``sample(points) @ c``. Frequencies :math:`m > 0` vanish at the origin."""
        pts = torch.as_tensor(points, dtype=torch.float64)
        r = pts.norm(dim=-1)
        phi = torch.atan2(pts[:, 1], pts[:, 0])
        cols = []
        for j, m, kind in self.terms:
            ring = self._ring(r, j)
            if m == 0:
                cols.append(ring)
            else:
                ang = torch.cos(m * phi) if kind == "cos" else torch.sin(m * phi)
                cols.append(ring * ang * (r > 1e-12))
        return torch.stack(cols, dim=-1)

    def _ring(self, r: torch.Tensor, j: int) -> torch.Tensor:
        """The radial profile of ring ``j``: :math:`\\exp(-(r - j)^2 / 2\\sigma^2)` inside the filter's disc."""
        return torch.exp(-(r - j) ** 2 / (2 * self.sigma ** 2)) * (r <= self.radius + 0.5)

    def grid(self) -> torch.Tensor:
        """The pixel centres ``(k*k, 2)`` of the filter, row-major, as (x, y) with y pointing up, so that
        ``torch.rot90`` of the image is a counter-clockwise rotation by 90 degrees."""
        c = (self.k - 1) / 2
        i, j = torch.meshgrid(torch.arange(self.k, dtype=torch.float64), torch.arange(self.k, dtype=torch.float64),
                              indexing="ij")
        return torch.stack([(j - c).flatten(), (c - i).flatten()], dim=-1)

    def images(self, coeffs: torch.Tensor) -> torch.Tensor:
        """Filters on the ``k x k`` grid from coefficients ``(..., dim)``: shape ``(..., k, k)``."""
        return (torch.as_tensor(coeffs, dtype=torch.float64) @ self.sample(self.grid()).T).unflatten(-1,
                                                                                                    (self.k, self.k))

    def basis(self) -> torch.Tensor:
        """The invariant filters: the solver's basis of maps from the trivial representation, sampled on the
        grid, shape ``(D, k, k)``."""
        return self.images(equivariant_basis(TrivialRep(self.group), self)[..., 0])

    def __repr__(self) -> str:
        return f"PolarFilter({self.group}, {self.k}x{self.k}, rings 0..{self.radius})"


def polar_filter_count_formula(group: Group, k: int) -> int:
    """Invariant polar filters with rings :math:`j = 0..R` and band limits :math:`m_j = 2j`: a frequency
    :math:`m` survives the rotation by :math:`2\\pi/N` iff :math:`N \\mid m`, so

    .. math::  C_N: \\sum_j \\big(1 + 2\\lfloor m_j/N\\rfloor\\big), \\quad
               D_N: \\sum_j \\big(1 + \\lfloor m_j/N\\rfloor\\big), \\quad
               SO(2), O(2): R + 1 \\text{ (one number per radius: the radial profile)}.
    """
    radius = (k - 1) // 2
    mj = [PolarFilterRep.max_frequency(j) for j in range(radius + 1)]
    if isinstance(group, CyclicGroup):
        return sum(1 + 2 * (m // group.n) for m in mj)
    if isinstance(group, DihedralGroup):
        return sum(1 + m // group.n for m in mj)
    if isinstance(group, (SO2, O2)):
        return radius + 1
    raise GroupMismatchError(f"polar_filter_count_formula needs C_N, D_N, SO2 or O2, got {group}")
