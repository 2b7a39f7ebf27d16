"""SchNet: continuous-filter convolutions on interatomic distances.

Schütt et al., "SchNet: a continuous-filter convolutional neural network for modeling quantum interactions",
NeurIPS 2017, https://arxiv.org/abs/1706.08566 (and J. Chem. Phys. 148, 241722 (2018)).

Atoms start from an embedding of their type, :math:`h_i^{(0)} = \\mathrm{emb}(z_i)`. Each interaction block adds
a *continuous-filter convolution*: the filter applied to neighbour :math:`j` is a learned function of the distance
only, expanded in Gaussians and switched off smoothly at the cutoff,

.. math::  h_i \\leftarrow h_i + \\mathrm{Dense}\\Big(\\mathrm{ssp}\\Big(W_2 \\sum_{j \\in \\mathcal N(i)}
           (W_1 h_j) \\odot \\mathrm{Filter}(r_{ij})\\Big)\\Big), \\qquad
           \\mathrm{Filter}(r) = \\mathrm{MLP}\\big(e^{-\\gamma (r - \\mu_k)^2}\\big)_{k}\\; f_c(r),

.. math::  f_c(r) = \\tfrac12\\big(\\cos(\\pi r / r_c) + 1\\big)\\ (r < r_c), \\qquad
           \\mathrm{ssp}(x) = \\ln(\\tfrac12 e^x + \\tfrac12),

and the energy is a sum of atom-wise outputs, :math:`E = \\sum_i \\mathrm{MLP}(h_i)`. Because only distances
enter, :math:`E(Qx + t) = E(x)` for every rotation, reflection and translation, and the sum makes it invariant to
relabelling atoms; forces from :class:`gdl.nn.atomistic.EnergyForces` are then equivariant. The price: two
configurations with the same multiset of neighbour distances around every atom get the same energy (mirror
images, for instance), see chapter 8.

Block and parameter names follow PyTorch Geometric's ``SchNet``, so weights can be copied across and compared.

Shapes: ``N`` atoms, ``E`` edges, ``B`` systems, ``C`` hidden channels, ``F`` filters, ``K`` Gaussians.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gdl.data.graphs import GraphBatch
from gdl.nn._checks import model_dtype
from gdl.nn.atomistic import MAX_Z, check_atoms, neighbour_edges
from gdl.nn.message_passing import MessagePassing, scatter_sum

__all__ = ["ShiftedSoftplus", "GaussianRBF", "CosineCutoff", "CFConv", "InteractionBlock", "SchNet"]


class ShiftedSoftplus(nn.Module):
    """:math:`\\mathrm{ssp}(x) = \\ln(1 + e^x) - \\ln 2`: smooth (forces need a smooth energy), ssp(0) = 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softplus(x) - math.log(2.0)


class GaussianRBF(nn.Module):
    """Expand distances in ``K`` Gaussians with centres :math:`\\mu_k` evenly spaced on ``[start, stop]`` and width
    equal to the spacing: :math:`e_k(r) = \\exp(-(r - \\mu_k)^2 / (2\\Delta^2))`. ``(E,) -> (E, K)``."""

    def __init__(self, start: float = 0.0, stop: float = 5.0, num_gaussians: int = 50):
        super().__init__()
        offset = torch.linspace(start, stop, num_gaussians)
        self.coeff = -0.5 / float(offset[1] - offset[0]) ** 2
        self.register_buffer("offset", offset)

    def forward(self, dist: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.coeff * (dist[:, None] - self.offset.to(dist.dtype)) ** 2)

    def extra_repr(self) -> str:
        return f"num_gaussians={len(self.offset)}, stop={float(self.offset[-1]):g}"


class CosineCutoff(nn.Module):
    """:math:`f_c(r) = \\tfrac12(\\cos(\\pi r / r_c) + 1)` for :math:`r < r_c`, else 0: goes to zero with zero slope,
    so energies and forces stay continuous when an atom crosses the cutoff. ``(E,) -> (E,)``."""

    def __init__(self, cutoff: float = 5.0):
        super().__init__()
        self.cutoff = float(cutoff)

    def forward(self, dist: torch.Tensor) -> torch.Tensor:
        # clamping at r_c gives cos(pi) = -1, i.e. exactly 0 beyond the cutoff, in one op instead of a mask
        return 0.5 * (torch.cos(dist.clamp(max=self.cutoff) * (math.pi / self.cutoff)) + 1.0)

    def extra_repr(self) -> str:
        return f"cutoff={self.cutoff:g}"


class CFConv(MessagePassing):
    """Continuous-filter convolution :math:`x_i' = W_2 \\sum_j (W_1 x_j) \\odot W(r_{ij})`, with the filter
    :math:`W(r) = \\mathrm{nn}(\\mathrm{rbf}(r))\\, f_c(r)`.

    Args:
        in_channels, out_channels, num_filters: sizes ``C_in``, ``C_out``, ``F``.
        filter_net: ``(E, K) -> (E, F)``, the filter-generating network.
        cutoff: :math:`r_c` of the cosine cutoff.

    Shapes: x ``(N, C_in)``, edge_index ``(2, E)``, dist ``(E,)``, rbf ``(E, K)`` -> ``(N, C_out)``.
    """

    def __init__(self, in_channels: int, out_channels: int, num_filters: int, filter_net: nn.Module,
                 cutoff: float):
        super().__init__(aggr="sum")
        self.lin1 = nn.Linear(in_channels, num_filters, bias=False)
        self.lin2 = nn.Linear(num_filters, out_channels)
        self.nn = filter_net
        self.cutoff = CosineCutoff(cutoff)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.lin1.weight)
        nn.init.xavier_uniform_(self.lin2.weight)
        nn.init.zeros_(self.lin2.bias)

    def forward(self, x, edge_index, dist, rbf):
        W = self.nn(rbf) * self.cutoff(dist)[:, None]              # (E, F)
        return self.lin2(self.propagate(edge_index, x=self.lin1(x), W=W))

    def message(self, x_j: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        return x_j * W


class InteractionBlock(nn.Module):
    """One SchNet interaction: filter network, CFConv, ssp, atom-wise Dense; returns the update :math:`v_i`
    (the model adds it: :math:`h_i \\leftarrow h_i + v_i`). ``(N, C) -> (N, C)``."""

    def __init__(self, hidden_channels: int, num_gaussians: int, num_filters: int, cutoff: float):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(num_gaussians, num_filters), ShiftedSoftplus(),
                                 nn.Linear(num_filters, num_filters))
        self.conv = CFConv(hidden_channels, hidden_channels, num_filters, self.mlp, cutoff)
        self.act = ShiftedSoftplus()
        self.lin = nn.Linear(hidden_channels, hidden_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for layer in (self.mlp[0], self.mlp[2], self.lin):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.conv.reset_parameters()

    def forward(self, h, edge_index, dist, rbf):
        return self.lin(self.act(self.conv(h, edge_index, dist, rbf)))


class SchNet(nn.Module):
    """SchNet energy model: ``GraphBatch -> (B,)`` energies (wrap in
    :class:`~gdl.nn.atomistic.EnergyForces` for forces).

    .. math::  E_b = \\sum_{i \\in b} \\mathrm{Dense}_2\\big(\\mathrm{ssp}(\\mathrm{Dense}_1(h_i^{(T)}))\\big)

    Args:
        num_types: size of the atom-type embedding (atomic numbers ``0 .. num_types-1``; default 100).
        hidden_channels: ``C`` (default 64; the paper uses 64 for MD17).
        num_filters: ``F`` (default 64).
        num_interactions: ``T`` interaction blocks (default 3).
        num_gaussians: ``K`` (default 50).
        cutoff: :math:`r_c` in Angstrom (default 5.0).
        max_neighbours: passed to :func:`gdl.nn.neighbours.radius_graph` (raises when exceeded; default none).

    Shapes: input a GraphBatch with ``pos`` (N, 3), ``z`` (N,); output ``(B,)``. A batch with its own
    ``edge_index`` uses it instead of the radius graph.

    Examples:
        >>> from gdl.nn.atomistic import EnergyForces, atoms_batch
        >>> model = EnergyForces(SchNet(hidden_channels=16, num_filters=16, num_interactions=2))
        >>> out = model(atoms_batch(torch.randn(4, 3), torch.tensor([6, 1, 1, 8])))
        >>> out["energy"].shape, out["forces"].shape
        (torch.Size([1]), torch.Size([4, 3]))
    """

    def __init__(self, num_types: int = MAX_Z, hidden_channels: int = 64, num_filters: int = 64,
                 num_interactions: int = 3, num_gaussians: int = 50, cutoff: float = 5.0,
                 max_neighbours: int | None = None):
        super().__init__()
        self.num_types, self.cutoff, self.max_neighbours = num_types, float(cutoff), max_neighbours
        self.embedding = nn.Embedding(num_types, hidden_channels)
        self.distance_expansion = GaussianRBF(0.0, cutoff, num_gaussians)
        self.interactions = nn.ModuleList(InteractionBlock(hidden_channels, num_gaussians, num_filters, cutoff)
                                          for _ in range(num_interactions))
        self.lin1 = nn.Linear(hidden_channels, hidden_channels // 2)
        self.act = ShiftedSoftplus()
        self.lin2 = nn.Linear(hidden_channels // 2, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.embedding.reset_parameters()
        for block in self.interactions:
            block.reset_parameters()
        for layer in (self.lin1, self.lin2):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def atom_features(self, batch: GraphBatch) -> torch.Tensor:
        """``(N, C)`` invariant features after the last interaction block."""
        batch = check_atoms(batch, self.num_types, "SchNet", dtype=model_dtype(self))
        edge_index, _, dist = neighbour_edges(batch, self.cutoff, self.max_neighbours)
        rbf = self.distance_expansion(dist)                                 # (E, K)
        h = self.embedding(batch.z)                                         # (N, C)
        for block in self.interactions:
            h = h + block(h, edge_index, dist, rbf)
        return h

    def forward(self, batch: GraphBatch) -> torch.Tensor:
        h = self.atom_features(batch)
        e = self.lin2(self.act(self.lin1(h))).squeeze(-1)                  # (N,) atomic energies
        return scatter_sum(e, batch.batch, batch.num_graphs)                # (B,)

    def extra_repr(self) -> str:
        return f"cutoff={self.cutoff:g}, num_types={self.num_types}"
