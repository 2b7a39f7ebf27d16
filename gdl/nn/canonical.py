"""Baselines that get rotation invariance without building it into the layers: an MLP on coordinates written in
a canonical frame (principal axes), and random rotations of whole molecules as data augmentation.

A canonical frame maps every configuration to one representative of its orbit under rotations, so an ordinary
MLP on the canonical coordinates is rotation invariant wherever the frame is well defined (distinct principal
moments, non-zero skewness along the first two axes). Where it is not, the frame jumps: the model is
discontinuous there, one of the known drawbacks of canonicalisation.
"""

from __future__ import annotations

import torch

from gdl.data.graphs import GraphBatch
from gdl.nn.atomistic import CoordinateMLP

__all__ = ["principal_axes_frame", "CanonicalMLP", "random_rotations", "RandomRotation3d"]


def principal_axes_frame(pos: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Rotations :math:`R` (rows: the principal axes) that put each configuration in its canonical frame,
    :math:`x_i \\mapsto R (x_i - \\bar x)`.

    The axes are the eigenvectors of the (weighted) covariance :math:`C = \\sum_i w_i (x_i - \\bar x)(x_i - \\bar
    x)^\\top`, largest eigenvalue first. Sign conventions: axes 1 and 2 point where the weighted third moment
    :math:`\\sum_i w_i \\big(e \\cdot (x_i - \\bar x)\\big)^3` is positive, and axis 3 is :math:`e_1 \\times e_2`,
    so :math:`\\det R = +1` (a rotation, never a reflection).

    Args:
        pos: ``(B, n, 3)`` coordinates.
        weights: ``(n,)`` or ``(B, n)`` non-negative weights (e.g. atomic numbers; default: all ones).

    Returns:
        ``(B, 3, 3)`` rotation matrices.
    """
    if pos.ndim != 3 or pos.shape[-1] != 3:
        raise ValueError(f"pos must have shape (B, n, 3), got {tuple(pos.shape)}")
    w = torch.ones(pos.shape[:2], dtype=pos.dtype, device=pos.device) if weights is None else weights
    w = w.to(pos.dtype).expand(pos.shape[:2])                                   # (B, n)
    centre = (w[..., None] * pos).sum(1, keepdim=True) / w.sum(1)[:, None, None]
    rel = pos - centre                                                          # (B, n, 3)
    cov = torch.einsum("bn,bni,bnj->bij", w, rel, rel)                          # (B, 3, 3)
    _, vecs = torch.linalg.eigh(cov)                                           # ascending eigenvalues
    e1, e2 = vecs[..., 2], vecs[..., 1]                                         # (B, 3) each
    s1 = torch.sign((w * (rel @ e1[..., None]).squeeze(-1) ** 3).sum(1))
    s2 = torch.sign((w * (rel @ e2[..., None]).squeeze(-1) ** 3).sum(1))
    e1 = e1 * torch.where(s1 == 0, 1.0, s1)[:, None]
    e2 = e2 * torch.where(s2 == 0, 1.0, s2)[:, None]
    return torch.stack([e1, e2, torch.linalg.cross(e1, e2)], dim=1)


class CanonicalMLP(CoordinateMLP):
    """An MLP on the coordinates of a molecule in its principal-axes frame,
    :math:`\\hat E = \\mathrm{MLP}\\big(R(x)(x_1 - \\bar x), \\dots, R(x)(x_n - \\bar x)\\big)` with
    :math:`R` from :func:`principal_axes_frame` (weighted by atomic number).

    Rotation and translation invariant where the frame is well defined (not permutation invariant: atoms keep
    their order); forces from :class:`gdl.nn.atomistic.EnergyForces` differentiate through the frame.

    Args:
        num_atoms: atoms per molecule (every system of the batch must have it, in a fixed order).
        hidden, num_layers: width and depth of the MLP (SiLU).
    """

    def coordinates(self, pos: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The centred coordinates turned into the principal-axes frame, :math:`R(x)(x_i - \\bar x)`."""
        rot = principal_axes_frame(pos, z)                                     # (B, 3, 3)
        return super().coordinates(pos, z) @ rot.transpose(1, 2)                # (B, n, 3)


def random_rotations(n: int, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(n, 3, 3)`` rotations drawn uniformly (Haar measure: QR of a Gaussian matrix with the signs fixed)."""
    a = torch.randn(n, 3, 3, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]
    q[torch.linalg.det(q) < 0, :, 0] *= -1                                     # reflections -> rotations
    return q.to(dtype)


class RandomRotation3d:
    """Data augmentation for batches of molecules: every molecule turned by its own random rotation about its
    centroid, :math:`x_i \\mapsto Q_b (x_i - \\bar x_b) + \\bar x_b`, and its forces turned with it,
    :math:`F_i \\mapsto Q_b F_i`. Call as ``aug(batch, generator)`` (what :func:`gdl.training.train` does)."""

    def __call__(self, batch: GraphBatch, generator: torch.Generator) -> GraphBatch:
        q = random_rotations(batch.num_graphs, generator, batch.pos.dtype).to(batch.pos.device)[batch.batch]
        counts = torch.bincount(batch.batch, minlength=batch.num_graphs).to(batch.pos.dtype)
        centre = torch.zeros(batch.num_graphs, 3, dtype=batch.pos.dtype, device=batch.pos.device)
        centre = centre.index_add_(0, batch.batch, batch.pos) / counts[:, None]
        rel = batch.pos - centre[batch.batch]
        fields = {"pos": (q @ rel[..., None]).squeeze(-1) + centre[batch.batch]}
        if "forces" in batch:
            fields["forces"] = (q @ batch.forces[..., None]).squeeze(-1)
        return batch.replace(**fields)

    def __repr__(self) -> str:
        return "RandomRotation3d()"
