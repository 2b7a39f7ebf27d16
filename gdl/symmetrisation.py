"""The third route to symmetry: make any model invariant or equivariant by averaging or by canonicalising.

- **Group averaging** (the Reynolds operator) of a map :math:`f` over a finite group :math:`G`,

  .. math::  \\Pi f(x) = \\frac{1}{|G|} \\sum_{g \\in G} g^{-1} \\cdot_{out} f(g \\cdot_{in} x),

  is equivariant for every :math:`f`, leaves equivariant maps unchanged, and so is a projection
  (:math:`\\Pi \\Pi = \\Pi`). On linear maps, :func:`average_linear` is the orthogonal projection onto the space
  that :func:`gdl.weight_sharing.equivariant_basis` spans. :class:`GroupAveraged` wraps a model (cost:
  :math:`|G|` forward passes).
- **Frame averaging** (Puny et al. 2022, https://arxiv.org/abs/2110.03336) replaces the group, which may be
  infinite, by a small input-dependent set of frames. For point clouds under E(3), the frames are the principal
  axes: centre the cloud, diagonalise its covariance, and take the eigenvectors with every choice of signs
  (:func:`pca_frames`: 8 frames for O(3), the 4 with determinant +1 for SO(3)). :class:`FrameAveraged` averages
  a model over them. It is exactly invariant only when the covariance's eigenvalues are distinct: near equal
  eigenvalues the axes become ill-conditioned, and the error grows as the gap shrinks.
- **Canonicalisation** (Kaba et al. 2023, https://arxiv.org/abs/2211.06489) maps every input to one
  representative of its orbit before the model sees it. :class:`C4Canonicalised` scores the four quarter turns
  of an image with any network, :math:`s_k(x) = h(r^{-k} x)`, turns the image back by the best one,
  :math:`x \\mapsto r^{-k^*} x` with :math:`k^* = \\arg\\max_k s_k(x)`, and applies the model: one forward pass of the
  model, invariant whenever the maximum is unique (the scores of a turned image are the same scores shifted).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import nn

from gdl.groups import Action, FiniteGroup, Rep

__all__ = ["average_linear", "GroupAveraged", "pca_frames", "FrameAveraged", "C4Canonicalised"]


def average_linear(W: torch.Tensor, rep_in: Rep, rep_out: Rep) -> torch.Tensor:
    """The group average of a linear map,

    .. math::  \\Pi W = \\frac{1}{|G|}\\sum_g \\rho_{out}(g)\\, W\\, \\rho_{in}(g)^{-1}.

    Args:
        W: ``(..., M_out, M_in)`` matrices.
        rep_in, rep_out: representations of the same finite group.

    Raises:
        ValueError: for a group that is not finite, or a ``W`` of the wrong shape.
    """
    group = rep_in.group
    if rep_out.group != group:
        raise ValueError(f"rep_in is a representation of {group}, rep_out of {rep_out.group}")
    if not isinstance(group, FiniteGroup):
        raise ValueError(f"average_linear sums over the elements of a finite group, got {group}")
    if W.shape[-2:] != (rep_out.dim, rep_in.dim):
        raise ValueError(f"W must have shape (..., {rep_out.dim}, {rep_in.dim}), got {tuple(W.shape)}")
    total = torch.zeros_like(W)
    elements = group.elements()
    for g in elements:
        out = rep_out.matrix(g).to(W)
        inv = rep_in.matrix(g.inverse()).to(W)
        total = total + out @ W @ inv
    return total / len(elements)


class GroupAveraged(nn.Module):
    """:math:`\\Pi f(x) = \\frac{1}{|G|} \\sum_g g^{-1} \\cdot_{out} f(g \\cdot_{in} x)` for a finite group.

    Args:
        model: the model :math:`f`.
        group: a finite group.
        in_action: how ``group`` acts on inputs.
        out_action: how it acts on outputs (``None``: invariant outputs, plain mean).

    Exposes ``in_action``/``out_action`` for the checker.
    """

    def __init__(self, model: nn.Module, group: FiniteGroup, in_action: Action, out_action: Action | None = None):
        super().__init__()
        if not isinstance(group, FiniteGroup):
            raise ValueError(f"GroupAveraged needs a finite group, got {group}")
        self.model, self.group = model, group
        self.in_action, self.out_action = in_action, out_action

    def forward(self, x):
        outputs = []
        for g in self.group.elements():
            y = self.model(self.in_action(g, x))
            outputs.append(y if self.out_action is None else self.out_action(g.inverse(), y))
        return torch.stack(outputs).mean(0)


def pca_frames(x: torch.Tensor, proper: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The PCA frames of point clouds: centroid, principal axes with every sign choice, and the eigenvalues.

    .. math::  C = \\tfrac1N \\sum_i (x_i - \\bar x)(x_i - \\bar x)^\\top = V \\Lambda V^\\top, \\qquad
               \\mathcal F(x) = \\{ V \\operatorname{diag}(s) : s \\in \\{\\pm 1\\}^3 \\}
               \\ (\\det = +1 \\text{ only, if proper}).

    Rotating the cloud by :math:`Q` (and shifting it) maps :math:`\\mathcal F(x)` to :math:`Q \\mathcal F(x)` when
    the eigenvalues are distinct, so the canonical coordinates :math:`(x_i - \\bar x)^\\top F` run over the same
    set.

    Args:
        x: ``(..., N, 3)`` point clouds.
        proper: keep only the rotations (SO(3) frames).

    Returns:
        centroid ``(..., 3)``, frames ``(..., F, 3, 3)`` (columns are axes; F = 8 or 4), eigenvalues ``(..., 3)``
        in ascending order.
    """
    if x.ndim < 2 or x.shape[-1] != 3:
        raise ValueError(f"pca_frames expects point clouds of shape (..., N, 3), got {tuple(x.shape)}")
    centroid = x.mean(-2)
    y = x - centroid[..., None, :]
    cov = y.transpose(-1, -2) @ y / x.shape[-2]
    values, vectors = torch.linalg.eigh(cov)                               # (..., 3), (..., 3, 3)
    signs = torch.tensor(list(itertools.product((1.0, -1.0), repeat=3)), dtype=x.dtype, device=x.device)  # (8, 3)
    frames = vectors[..., None, :, :] * signs[:, None, :]                  # (..., 8, 3, 3)
    if proper:
        keep = torch.linalg.det(frames) > 0                                # (..., 8): 4 of them
        frames = frames[keep].reshape(*frames.shape[:-3], 4, 3, 3)
    return centroid, frames, values


class FrameAveraged(nn.Module):
    """Frame averaging over PCA frames: an E(3)-invariant (or equivariant) model from any model of point clouds.

    .. math::  \\langle f \\rangle(x) = \\frac{1}{|\\mathcal F(x)|} \\sum_{F \\in \\mathcal F(x)}
               \\rho_{out}(F)\\, f\\big((x - \\bar x) F\\big), \\qquad \\rho_{out}(F) = 1 \\ \\text{(scalar)}
               \\ \\text{or}\\ F \\ \\text{(vector)}.

    Args:
        model: maps ``(B, N, 3)`` canonical coordinates to ``(B, C)`` (scalar) or ``(B, 3)`` (vector).
        output: ``"scalar"`` (invariant) or ``"vector"`` (rotates with the input, ignores translations).
        proper: average over SO(3) frames only (then the model is only SO(3)-equivariant).

    Shapes: ``(B, N, 3)`` -> ``(B, C)`` or ``(B, 3)``.
    """

    def __init__(self, model: nn.Module, output: str = "scalar", proper: bool = False):
        super().__init__()
        if output not in ("scalar", "vector"):
            raise ValueError(f"output must be 'scalar' or 'vector', got {output!r}")
        self.model, self.output, self.proper = model, output, proper

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != 3:
            raise ValueError(f"FrameAveraged expects point clouds (B, N, 3), got {tuple(x.shape)}")
        centroid, frames, _ = pca_frames(x, self.proper)                   # (B, 3), (B, F, 3, 3)
        b, f = frames.shape[:2]
        local = (x - centroid[:, None, :])[:, None] @ frames               # (B, F, N, 3)
        out = self.model(local.reshape(b * f, *x.shape[1:])).reshape(b, f, -1)   # (B, F, C)
        if self.output == "vector":
            out = (frames @ out[..., None])[..., 0]                        # rotate back: F y
        return out.mean(1)


class C4Canonicalised(nn.Module):
    """Canonicalise an image's orientation among the quarter turns, then apply the model.

    .. math::  s_k(x) = h(r^{-k} x), \\quad k^*(x) = \\arg\\max_k s_k(x), \\quad
               f_{\\mathrm{can}}(x) = f(r^{-k^*(x)} x),

    with :math:`r` the quarter turn of :class:`gdl.groups.ImageAction` (``torch.rot90``). Turning the input by
    :math:`r^m` shifts the scores, :math:`s_k(r^m x) = s_{k-m}(x)`, so :math:`k^*` moves by :math:`m` and the
    canonical image is the same: exactly invariant unless two scores tie.

    Args:
        model: maps ``(B, C, H, W)`` to anything.
        score: ``h``, maps ``(B, C, H, W)`` to ``(B,)`` scores (e.g. the overlap with a template).

    Shapes: ``(B, C, H, W)`` (square) -> the model's output.
    """

    def __init__(self, model: nn.Module, score: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.model, self.score = model, score

    def turns(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`k^*(x)`, ``(B,)`` integers in 0..3."""
        if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
            raise ValueError(f"C4Canonicalised expects square images (B, C, H, W), got {tuple(x.shape)}")
        scores = torch.stack([self.score(torch.rot90(x, -k, dims=(-2, -1))) for k in range(4)], dim=1)  # (B, 4)
        return scores.argmax(1)

    def canonicalise(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`r^{-k^*(x)} x`, image by image."""
        k = self.turns(x)
        rotated = torch.stack([torch.rot90(x, -j, dims=(-2, -1)) for j in range(4)], dim=1)   # (B, 4, C, H, W)
        return rotated[torch.arange(len(x), device=x.device), k]

    def forward(self, x: torch.Tensor):
        return self.model(self.canonicalise(x))
