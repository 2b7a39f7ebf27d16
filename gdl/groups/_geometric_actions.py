"""Actions on geometric data: images rotated by any angle (approximate), point clouds, and graphs.

- :class:`RotateImageAction`: rotations (and flips) of images by arbitrary angles, by resampling. Only
  approximately an action: see its docstring for the measured error.
- :class:`PointCloudAction`: :math:`x_i \\mapsto Q x_i + t` on ``(..., N, d)`` point clouds.
- :class:`GraphAction`: relabelling the nodes of a graph, moving node features and the adjacency matrix (or the
  edge list) together.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gdl.groups._actions import Action
from gdl.groups._continuous import O2, O3, SE3, SO2, SO3
from gdl.groups._errors import GroupMismatchError, ShapeError
from gdl.groups._finite import CyclicGroup, DihedralGroup, SymmetricGroup
from gdl.groups._group import Group

__all__ = ["RotateImageAction", "PointCloudAction", "GraphAction", "smooth_disk_images"]

_PLANE_GROUPS = (SO2, O2, CyclicGroup, DihedralGroup)


def _shape(x) -> object:
    return tuple(x.shape) if torch.is_tensor(x) else type(x).__name__


class RotateImageAction(Action):
    """Rotate (and, for O(2)/:math:`D_n`, first flip left-right) images ``(..., C, H, W)`` about their centre by
    any angle, with bilinear resampling (``F.grid_sample``) and zeros outside the image:

    .. math::  (g \\cdot x)(p) = x(Q_g^{-1} p),

    :math:`Q_g` the 2x2 standard matrix of ``g`` acting on (x right, y up) coordinates, so a positive angle turns
    the image counter-clockwise as displayed, like ``torch.rot90`` and :class:`~gdl.groups.ImageAction`.

    .. warning:: This is only approximately a group action. Interpolation blurs, and corners leave the image.
       Measured in ``tests/test_actions.py`` as the compatibility error
       :math:`\\max|g(hx) - (gh)x| / \\max|x|` over 8 Haar-random angles: about 5e-2 on smooth 33x33 images
       that vanish outside the inscribed disk (3.5e-2 with ``mode="bicubic"``), and about 0.5 on 8x8 scikit-learn
       digits padded to 16x16 (sharp edges, few pixels). Multiples of 90 degrees are exact to float round-off.
       Use :class:`~gdl.groups.ImageAction` for exact C4/D4 actions.

    Args:
        group: ``SO2()``, ``O2()``, ``CyclicGroup(n)`` or ``DihedralGroup(n)`` for any ``n``.
        mode: ``"bilinear"`` (default) or ``"nearest"`` or ``"bicubic"`` (see ``F.grid_sample``).
    """

    def __init__(self, group: Group, mode: str = "bilinear"):
        if not isinstance(group, _PLANE_GROUPS):
            raise GroupMismatchError(f"RotateImageAction needs SO2, O2, a cyclic or a dihedral group; got {group}")
        self.group, self.mode = group, mode

    def check_input(self, x):
        if not torch.is_tensor(x) or x.ndim < 3 or x.shape[-1] != x.shape[-2] or not x.is_floating_point():
            raise ShapeError(f"{self} expects float square images of shape (..., C, H, H), got {_shape(x)}")

    def sampling_matrix(self, g) -> torch.Tensor:
        r"""The float64 2x2 matrix that maps an output pixel's normalised ``(u, v)`` (v down) to the input position
        it reads: :math:`S Q_g^\top S` with :math:`S = \mathrm{diag}(1, -1)`."""
        Q = self.group.standard_matrix(g.value)                # acts on (x, y) with y up
        S = torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64))
        return S @ Q.T @ S                                     # output (u, v) -> input (u, v), v down

    def resample(self, x: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)``, each resampled with its own ``(2, 2)`` matrix from :meth:`sampling_matrix`
        (``matrices``: ``(B, 2, 2)`` or ``(2, 2)`` for all): one ``grid_sample`` for the whole batch, each image
        bitwise as if resampled alone."""
        theta = torch.zeros(x.shape[0], 2, 3, dtype=x.dtype, device=x.device)
        theta[:, :, :2] = matrices.to(dtype=x.dtype, device=x.device)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode=self.mode, padding_mode="zeros", align_corners=False)

    def _act(self, g, x):
        *batch, C, H, W = x.shape
        return self.resample(x.reshape(-1, C, H, W), self.sampling_matrix(g)).reshape(*batch, C, H, W)

    def random_input(self, batch=4, dtype=torch.float64, generator=None):
        """Smooth random images (sums of Gaussian blobs) vanishing outside the inscribed disk, 33x33."""
        return smooth_disk_images(batch, 33, dtype=dtype, generator=generator)

    def __repr__(self) -> str:
        return f"RotateImageAction({self.group}, {self.mode})"


def smooth_disk_images(batch: int, size: int, blobs: int = 3, width: float = 0.15, dtype=torch.float64,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """``(batch, 1, size, size)`` sums of Gaussian blobs of relative ``width``, centred inside the disk of
    radius 0.5 and multiplied by a smooth window that vanishes outside the inscribed disk."""
    lin = torch.linspace(-1, 1, size, dtype=torch.float64)
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    r = torch.sqrt(xx**2 + yy**2)
    window = torch.clamp(1 - r**2, min=0) ** 2
    c = (torch.rand(batch, blobs, 2, dtype=torch.float64, generator=generator) - 0.5)
    d2 = (xx[None, None] - c[..., 0, None, None]) ** 2 + (yy[None, None] - c[..., 1, None, None]) ** 2
    img = torch.exp(-d2 / (2 * width**2)).sum(1, keepdim=True) * window
    return img.to(dtype)


class PointCloudAction(Action):
    """Rotations, reflections and translations of point clouds ``(..., N, d)``:

    .. math::  (g \\cdot x)_i = Q_g x_i + t_g,

    with ``d = 3`` for ``SO3``, ``O3``, ``SE3``, ``E3`` (:math:`t_g = 0` for the first two) and ``d = 2`` for
    ``SO2``, ``O2``, ``CyclicGroup(n)``, ``DihedralGroup(n)``. Exact (a matrix product).
    """

    def __init__(self, group: Group):
        if isinstance(group, (SE3, SO3, O3)):
            self.d = 3
        elif isinstance(group, _PLANE_GROUPS):
            self.d = 2
        else:
            raise GroupMismatchError(f"PointCloudAction needs SO3, O3, SE3, E3, SO2, O2, C_n or D_n; got {group}")
        self.group = group

    def check_input(self, x):
        if not torch.is_tensor(x) or x.ndim < 2 or x.shape[-1] != self.d or not x.is_floating_point():
            raise ShapeError(f"{self} expects float point clouds of shape (..., N, {self.d}), got {_shape(x)}")

    def matrix_and_shift(self, g) -> tuple[torch.Tensor, torch.Tensor]:
        """:math:`(Q_g, t_g)` in float64."""
        if isinstance(self.group, SE3):
            return g.value[0], g.value[1]
        return self.group.standard_matrix(g.value), torch.zeros(self.d, dtype=torch.float64)

    def _act(self, g, x):
        Q, t = self.matrix_and_shift(g)
        return x @ Q.T.to(dtype=x.dtype, device=x.device) + t.to(dtype=x.dtype, device=x.device)  # (..., N, d)

    def random_input(self, batch=4, dtype=torch.float64, generator=None):
        return torch.randn(batch, 5, self.d, dtype=dtype, generator=generator)


class GraphAction(Action):
    """Relabel the nodes of a graph by a permutation :math:`\\sigma \\in S_N`: node features move with their nodes
    and so does the connectivity,

    .. math::  (\\sigma \\cdot X)_{\\sigma(i)} = X_i, \\qquad (\\sigma \\cdot A)_{\\sigma(i)\\sigma(j)} = A_{ij}
               \\;(A \\mapsto P A P^\\top), \\qquad (i, j) \\mapsto (\\sigma(i), \\sigma(j)) \\text{ for each edge}.

    The input is a pair ``(x, adjacency)`` with ``x`` of shape ``(..., N, C)`` and ``adjacency`` ``(..., N, N)``,
    or ``(x, edge_index)`` with an integer ``edge_index`` of shape ``(2, E)`` (``structure="edge_index"``; edges
    keep their order, so per-edge features stay aligned). A function checked with this action takes the pair.

    Args:
        group: ``SymmetricGroup(N)``.
        structure: ``"adjacency"`` (default) or ``"edge_index"``.
    """

    def __init__(self, group: SymmetricGroup, structure: str = "adjacency"):
        if not isinstance(group, SymmetricGroup):
            raise GroupMismatchError(f"GraphAction needs a SymmetricGroup, got {group}")
        if structure not in ("adjacency", "edge_index"):
            raise ValueError(f"structure must be 'adjacency' or 'edge_index', got {structure!r}")
        self.group, self.structure = group, structure

    def check_input(self, x):
        n = self.group.n
        if not isinstance(x, (tuple, list)) or len(x) != 2:
            raise ShapeError(f"{self} expects a pair (node features (..., {n}, C), {self.structure}), got "
                             f"{type(x).__name__}" + (f" of length {len(x)}" if isinstance(x, (tuple, list)) else ""))
        feats, struct = x
        if not torch.is_tensor(feats) or feats.ndim < 2 or feats.shape[-2] != n:
            raise ShapeError(f"{self} expects node features of shape (..., {n}, C), got {_shape(feats)}")
        if self.structure == "adjacency":
            if not torch.is_tensor(struct) or struct.ndim < 2 or struct.shape[-2:] != (n, n):
                raise ShapeError(f"{self} expects an adjacency matrix of shape (..., {n}, {n}), got {_shape(struct)}")
        else:
            if (not torch.is_tensor(struct) or struct.ndim != 2 or struct.shape[0] != 2
                    or struct.is_floating_point()):
                got = f"{_shape(struct)}" + (f" {struct.dtype}" if torch.is_tensor(struct) else "")
                raise ShapeError(f"{self} expects an integer edge_index of shape (2, E), got {got}")
            if struct.numel() and (int(struct.min()) < 0 or int(struct.max()) >= n):
                raise ShapeError(f"{self}: edge_index refers to nodes {int(struct.min())}..{int(struct.max())}, "
                                 f"but the graph has nodes 0..{n - 1}")

    def _act(self, g, x):
        feats, struct = x
        inv = torch.tensor(g.inverse().value, device=feats.device)
        feats = feats.index_select(-2, inv)                       # (..., N, C)
        if self.structure == "adjacency":
            struct = struct.index_select(-2, inv.to(struct.device)).index_select(-1, inv.to(struct.device))
        else:
            struct = torch.tensor(g.value, device=struct.device)[struct]   # (2, E), relabelled
        return type(x)((feats, struct)) if isinstance(x, tuple) else [feats, struct]

    def random_input(self, batch=4, dtype=torch.float64, generator=None):
        n = self.group.n
        x = torch.randn(batch, n, 3, dtype=dtype, generator=generator)
        if self.structure == "adjacency":
            a = (torch.rand(batch, n, n, generator=generator) < 0.4).to(dtype)
            return (x, torch.triu(a, 1) + torch.triu(a, 1).transpose(-1, -2))
        i, j = torch.triu_indices(n, n, 1)
        keep = torch.rand(i.shape[0], generator=generator) < 0.4
        return (x, torch.cat([torch.stack([i[keep], j[keep]]), torch.stack([j[keep], i[keep]])], 1))

    def __repr__(self) -> str:
        return f"GraphAction({self.group}, {self.structure})"

