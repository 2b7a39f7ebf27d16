"""Small models of one molecule-sized point cloud that differ only in their read-out.

They exist to make one modelling choice visible: what the output is allowed to do when the input is rotated.
All share one backbone, :class:`DistanceFeatures`: each point :math:`i` (an atom of species :math:`z_i` at
:math:`x_i \\in \\mathbb{R}^3`) gets invariant features from its distances to the other points,

.. math::  h_i = \\Big[\\, e(z_i) \\;,\\; \\sum_{j \\ne i} \\phi(\\lVert x_i - x_j \\rVert) \\otimes e(z_j) \\Big],
           \\qquad \\phi_k(r) = \\exp\\!\\big(-(r - \\mu_k)^2 / 2\\sigma^2\\big),

with a learned species embedding :math:`e` and a Gaussian radial basis :math:`\\phi`. Distances do not change
under rotations, reflections or translations (:math:`E(3)`), nor under relabelling points of the same species.
The read-outs:

- :class:`InvariantPointModel`: :math:`y = \\sum_i \\mathrm{MLP}(h_i) \\in \\mathbb{R}^k`, **invariant** for any
  :math:`k`: right for an energy, and unable to represent a vector that should turn with the molecule.
- :class:`VectorPointModel`: :math:`\\vec y = \\sum_i s(h_i)\\,(x_i - \\bar x)` with a learned scalar :math:`s`,
  **equivariant** (:math:`\\vec y \\mapsto Q \\vec y`, translations ignored): the form of a dipole moment.
- :class:`VectorFeatureModel`: equivariant vector features
  :math:`\\vec v_c = \\sum_i s_c(h_i)\\,(x_i - \\bar x)`, then a scalar read-out. With ``readout="norm"`` the
  read-out sees only :math:`\\lVert \\vec v_c \\rVert` (invariant, correct for an energy); with
  ``readout="components"`` it sees the Cartesian components of :math:`\\vec v_c`: every layer but the last is
  equivariant, and the output is **not** invariant. That variant is a deliberate counter-example (chapter
  "Common confusions"); ``tests/test_confusions.py`` checks that the checker rejects it.

Inputs are plain tensors of positions ``(B, N, 3)``; the species of the ``N`` points are fixed at construction
(one molecule type per model, as in the course's water examples). Each model stores ``group``, ``in_action`` and
``out_action`` (what it claims), so ``gdl.testing.assert_equivariant(model, x)`` needs no further arguments.
Models for batches of different molecules (``GraphBatch`` in, energy and forces out) are in ``gdl.nn.schnet``,
``gdl.nn.nequip`` and ``gdl.nn.egnn``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gdl.groups import E3, O3Irrep, PointCloudAction, RepAction, ShapeError, TrivialAction
from gdl.nn._checks import check_finite, to_model_dtype

__all__ = ["DistanceFeatures", "InvariantPointModel", "VectorPointModel", "VectorFeatureModel"]


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                         nn.Linear(hidden, d_out))


class DistanceFeatures(nn.Module):
    """Invariant per-point features from species and pairwise distances (see the module docstring).

    Args:
        species: the species (e.g. atomic numbers) of the ``N`` points, in input order.
        num_basis: number :math:`K` of Gaussians :math:`\\phi_k` (default: 16).
        cutoff: the centres :math:`\\mu_k` are spread evenly over ``[0, cutoff]`` (default: 3.0, in the units
            of the positions); :math:`\\sigma` is their spacing.
        embed_dim: size of the species embedding :math:`e` (default: 4).

    Shapes:
        input ``(B, N, 3)``; output ``(B, N, embed_dim * (1 + num_basis))``.
    """

    def __init__(self, species: Sequence[int], num_basis: int = 16, cutoff: float = 3.0, embed_dim: int = 4):
        super().__init__()
        species = [int(s) for s in species]
        if len(species) < 2:
            raise ValueError(f"species must list at least two points, got {species}")
        kinds = sorted(set(species))
        self.register_buffer("type_index", torch.tensor([kinds.index(s) for s in species]), persistent=False)
        self.species = tuple(species)
        self.embed = nn.Embedding(len(kinds), embed_dim)
        self.register_buffer("centres", torch.linspace(0.0, cutoff, num_basis), persistent=False)
        self.width = cutoff / (num_basis - 1)
        self.out_dim = embed_dim * (1 + num_basis)

    def check_input(self, x: torch.Tensor, model: str) -> torch.Tensor:
        """``x`` checked (shape, finite) and cast to the model's dtype (the rule of :mod:`gdl.nn._checks`)."""
        n = len(self.species)
        if not torch.is_tensor(x) or x.ndim != 3 or x.shape[1:] != (n, 3) or not x.is_floating_point():
            got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ShapeError(f"{model} expects float positions of shape (B, {n}, 3) (species {self.species}), "
                             f"got {got}")
        check_finite(x, "positions x", model)
        return to_model_dtype(self, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        r = torch.cdist(x, x)                                            # (B, N, N)
        phi = torch.exp(-((r[..., None] - self.centres) ** 2) / (2 * self.width**2))   # (B, N, N, K)
        phi = phi * (1 - torch.eye(N, dtype=x.dtype, device=x.device))[..., None]       # no self-pairs
        e = self.embed(self.type_index).to(x.dtype)                      # (N, E)
        pair = torch.einsum("bijk,je->bike", phi, e).flatten(-2)         # (B, N, K*E)
        return torch.cat([e.expand(B, N, -1), pair], dim=-1)             # (B, N, E*(1+K))


class _PointModel(nn.Module):
    def __init__(self, species: Sequence[int], hidden: int, **features):
        super().__init__()
        self.features = DistanceFeatures(species, **features)
        self.hidden = hidden
        self.group = E3()
        self.in_action = PointCloudAction(self.group)

    def _centred(self, x: torch.Tensor) -> torch.Tensor:
        return x - x.mean(dim=1, keepdim=True)                           # (B, N, 3)

    def extra_repr(self) -> str:
        return f"species={self.features.species}, params={sum(p.numel() for p in self.parameters())}"


class InvariantPointModel(_PointModel):
    """:math:`y = \\sum_i \\mathrm{MLP}(h_i)`: an :math:`E(3)`-invariant output of any size ``out_dim``.

    Shapes:
        input ``(B, N, 3)``; output ``(B, out_dim)``.
    """

    def __init__(self, species: Sequence[int], out_dim: int = 1, hidden: int = 64, **features):
        super().__init__(species, hidden, **features)
        self.out_dim = out_dim
        self.mlp = _mlp(self.features.out_dim, hidden, out_dim)
        self.out_action = TrivialAction(self.group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features.check_input(x, type(self).__name__)
        return self.mlp(self.features(x)).sum(dim=1)                     # (B, out_dim)


class VectorPointModel(_PointModel):
    """:math:`\\vec y = \\sum_i s(h_i)\\,(x_i - \\bar x)`: a vector that rotates (and reflects) with the points,
    :math:`\\vec y(Qx + t) = Q\\,\\vec y(x)`. A point charge model of a dipole moment has exactly this form.

    Shapes:
        input ``(B, N, 3)``; output ``(B, 3)``.
    """

    def __init__(self, species: Sequence[int], hidden: int = 64, **features):
        super().__init__(species, hidden, **features)
        self.mlp = _mlp(self.features.out_dim, hidden, 1)
        self.out_action = RepAction(O3Irrep(1, -1, group=self.group))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features.check_input(x, type(self).__name__)
        s = self.mlp(self.features(x))                                   # (B, N, 1)
        return (s * self._centred(x)).sum(dim=1)                         # (B, 3)


class VectorFeatureModel(_PointModel):
    """Equivariant vector features :math:`\\vec v_c = \\sum_i s_c(h_i)(x_i - \\bar x)`, ``c = 1..C``, then a
    scalar output :math:`y = \\mathrm{MLP}\\big(r(\\vec v)\\big)`: everything the output knows passes through
    the vector features, as in a network whose hidden layers carry vectors.

    ``readout="norm"``: :math:`r(\\vec v) = (\\lVert \\vec v_1 \\rVert, \\dots, \\lVert \\vec v_C \\rVert)`, invariant.
    ``readout="components"``: :math:`r(\\vec v)` = the :math:`3C` Cartesian components: **not** invariant, though
    the features are equivariant. The model claims invariance either way (``out_action`` is trivial), as a model
    meant for an energy would, so the checker can catch the second.

    Shapes:
        input ``(B, N, 3)``; output ``(B, 1)``.
    """

    def __init__(self, species: Sequence[int], readout: str = "norm", vectors: int = 8, hidden: int = 64,
                 **features):
        super().__init__(species, hidden, **features)
        if readout not in ("norm", "components"):
            raise ValueError(f"readout must be 'norm' or 'components', got {readout!r}")
        self.readout, self.vectors = readout, vectors
        self.coefficients = _mlp(self.features.out_dim, hidden, vectors)
        self.mlp = _mlp(vectors if readout == "norm" else 3 * vectors, hidden, 1)
        self.out_action = TrivialAction(self.group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features.check_input(x, type(self).__name__)
        h = self.features(x)                                             # (B, N, F)
        v = torch.einsum("bnc,bnd->bcd", self.coefficients(h), self._centred(x))   # (B, C, 3), equivariant
        if self.readout == "norm":
            r = (v.pow(2).sum(-1) + 1e-12).sqrt()                        # (B, C), invariant
        else:
            r = v.flatten(1)                                             # (B, 3C), rotates with x
        return self.mlp(r)                                               # (B, 1)

    def extra_repr(self) -> str:
        return f"readout={self.readout!r}, " + super().extra_repr()
