"""DimeNet++: directional message passing with distances *and angles*.

Gasteiger, Giri, Margraf & Günnemann, "Fast and uncertainty-aware directional message passing for
non-equilibrium molecules", NeurIPS ML4Molecules workshop 2020, https://arxiv.org/abs/2011.14115; the ++ version
of DimeNet (Gasteiger, Groß & Günnemann, ICLR 2020, https://arxiv.org/abs/2003.03123), several times faster.

SchNet's messages live on atoms and see only distances. DimeNet's messages :math:`m_{ji}` live on *directed edges*
:math:`j \\to i`, and the message on :math:`j \\to i` is updated from the messages :math:`m_{kj}` arriving at
:math:`j`, weighted by a basis in the distance :math:`d_{kj}` and the angle :math:`\\alpha_{kji}` at :math:`j`:

.. math::  m_{ji} \\leftarrow f\\Big(m_{ji},\\ \\sum_{k \\in \\mathcal N(j) \\setminus \\{i\\}}
           W_{\\mathrm{down}}\\big(m_{kj} \\odot W_{\\mathrm{rbf}}\\, e_{\\mathrm{RBF}}(d_{kj})\\big) \\odot
           W_{\\mathrm{sbf}}\\, a_{\\mathrm{SBF}}(d_{kj}, \\alpha_{kji})\\Big),

with the radial (Bessel) and 2D spherical (Fourier-Bessel) bases

.. math::  e_{\\mathrm{RBF},n}(d) = u(d/c)\\, \\sin(n \\pi d / c), \\qquad
           a_{\\mathrm{SBF},ln}(d, \\alpha) = u(d/c)\\, \\frac{\\sqrt2}{|j_{l+1}(z_{ln})|}\\,
           j_l\\!\\big(z_{ln}\\, d / c\\big)\\, Y_l^0(\\alpha),

where :math:`j_l` is the spherical Bessel function, :math:`z_{ln}` its :math:`n`-th root, :math:`Y_l^0(\\alpha) =
\\sqrt{(2l+1)/4\\pi}\\, P_l(\\cos\\alpha)` the zonal spherical harmonic (e3nn's :math:`Y_l` with the polar axis
along one of the two edges; only :math:`m = 0` appears because one angle is all a pair of edges has), and
:math:`u(x) = 1/x + a x^{p-1} + b x^p + c x^{p+1}` a polynomial envelope that vanishes smoothly at :math:`x = 1`.
Distances and angles are invariant, so the energy :math:`E = \\sum_i \\sum_{\\text{blocks}} t_i` is E(3)-invariant;
unlike SchNet it sees bond angles, and so tells apart configurations with equal distances but different angles
between neighbours (chapter 8).

The triplet aggregation is ordinary message passing on the *line graph* (edges as nodes, pairs ``k -> j -> i``
as edges), so it uses the same :class:`~gdl.nn.message_passing.MessagePassing` base as every graph model.

Shapes: ``N`` atoms, ``E`` edges, ``T`` triplets, ``B`` systems, ``C`` hidden channels, ``R`` radial and ``L``
spherical basis sizes.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import nn

from gdl.data.graphs import GraphBatch
from gdl.nn._checks import model_dtype
from gdl.nn.atomistic import MAX_Z, check_atoms, check_coincident, neighbour_edges
from gdl.nn.message_passing import MessagePassing, scatter_sum
from gdl.nn.neighbours import Triplets, triplet_cosines, triplets

__all__ = ["Envelope", "BesselBasis", "SphericalBasis", "spherical_bessel", "legendre", "bessel_roots",
           "glorot_orthogonal_", "EmbeddingBlock", "ResidualLayer", "DirectionalMessage", "InteractionPPBlock",
           "OutputPPBlock", "DimeNetPlusPlus"]


class Envelope(nn.Module):
    """:math:`u(x) = 1/x + a x^{p-1} + b x^p + c x^{p+1}` for :math:`x < 1`, else 0, with :math:`p` = exponent + 1
    and :math:`a, b, c` chosen so that :math:`x u(x)` and its first two derivatives vanish at :math:`x = 1`."""

    def __init__(self, exponent: int = 5):
        super().__init__()
        p = exponent + 1
        self.p, self.a, self.b, self.c = p, -(p + 1) * (p + 2) / 2, p * (p + 2), -p * (p + 1) / 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Horner's scheme: 1/x + x^(p-1) (a + x (b + c x)), fewer operations than the sum of powers
        u = x.reciprocal() + x.pow(self.p - 1) * (x * (x * self.c + self.b) + self.a)
        return u * (x < 1.0)


def spherical_bessel(lmax: int, x: torch.Tensor) -> torch.Tensor:
    """``(..., lmax+1)`` spherical Bessel functions :math:`j_0 .. j_{lmax}` of ``x > 0`` by upward recurrence
    :math:`j_{l+1} = \\frac{2l+1}{x} j_l - j_{l-1}`, in float64 (absolute error below 1e-9 for x > 0.3 and
    l <= 6; below 1e-12 for x > 1)."""
    x64 = x.double()
    inv = x64.reciprocal()              # one division: a product's derivatives are cheaper than a quotient's
    j = [torch.sin(x64) * inv]
    if lmax >= 1:
        j.append((j[0] - torch.cos(x64)) * inv)                     # j_1 = (j_0 - cos x) / x
    for l in range(1, lmax):
        j.append((2 * l + 1) * inv * j[l] - j[l - 1])
    return torch.stack(j, -1).to(x.dtype)


def legendre(lmax: int, c: torch.Tensor) -> torch.Tensor:
    """``(..., lmax+1)`` Legendre polynomials :math:`P_0 .. P_{lmax}` of ``c`` (Bonnet's recursion
    :math:`(l+1) P_{l+1} = (2l+1) c P_l - l P_{l-1}`)."""
    p = [torch.ones_like(c), c]
    for l in range(1, lmax):                    # P_{l+1} = (2l+1)/(l+1) c P_l - l/(l+1) P_{l-1}
        p.append(torch.addcmul(p[l - 1] * (-l / (l + 1)), c, p[l], value=(2 * l + 1) / (l + 1)))
    return torch.stack(p[: lmax + 1], -1)


@lru_cache(maxsize=8)
def bessel_roots(num_spherical: int, num_radial: int) -> tuple[tuple[float, ...], ...]:
    """The first ``num_radial`` positive roots :math:`z_{ln}` of :math:`j_l`, for ``l < num_spherical``; the roots
    of :math:`j_l` interlace those of :math:`j_{l-1}`, so each is bracketed and found by Brent's method."""
    from scipy.optimize import brentq
    from scipy.special import spherical_jn

    roots = [[math.pi * (n + 1) for n in range(num_radial + num_spherical)]]
    for l in range(1, num_spherical):
        prev = roots[-1]
        roots.append([brentq(lambda x, l=l: spherical_jn(l, x), prev[n], prev[n + 1])
                      for n in range(len(prev) - 1)])
    return tuple(tuple(r[:num_radial]) for r in roots)


class BesselBasis(nn.Module):
    """Radial basis on edges, :math:`e_n(d) = u(d/c) \\sin(\\omega_n d / c)`, frequencies :math:`\\omega_n`
    initialised to :math:`n\\pi` and trained. ``(E,) -> (E, R)``."""

    def __init__(self, num_radial: int = 6, cutoff: float = 5.0, envelope_exponent: int = 5):
        super().__init__()
        self.cutoff = float(cutoff)
        self.envelope = Envelope(envelope_exponent)
        self.freq = nn.Parameter(torch.empty(num_radial))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.freq.copy_(torch.arange(1, len(self.freq) + 1) * math.pi)

    def forward(self, dist: torch.Tensor, envelope: torch.Tensor | None = None) -> torch.Tensor:
        """``envelope``: :math:`u(d/c)` ``(E,)`` when the caller has it already (DimeNet++ shares it)."""
        x = dist / self.cutoff
        u = self.envelope(x) if envelope is None else envelope
        return u[:, None] * torch.sin(self.freq * x[:, None])


class SphericalBasis(nn.Module):
    """2D Fourier-Bessel basis on triplets, :math:`a_{ln}(d_{kj}, \\alpha_{kji})` (see the module docstring).

    ``forward(dist (E,), cos_angle (T,), idx_kj (T,)) -> (T, L*R)``; ``envelope`` :math:`u(d/c)` ``(E,)`` may be
    passed when the caller has it already (DimeNet++ computes it once for both bases).
    """

    def __init__(self, num_spherical: int = 7, num_radial: int = 6, cutoff: float = 5.0,
                 envelope_exponent: int = 5):
        super().__init__()
        from scipy.special import spherical_jn

        self.num_spherical, self.num_radial, self.cutoff = num_spherical, num_radial, float(cutoff)
        self.envelope = Envelope(envelope_exponent)
        roots = torch.tensor(bessel_roots(num_spherical, num_radial), dtype=torch.float64)     # (L, R)
        norm = torch.tensor([[math.sqrt(2.0) / abs(spherical_jn(l + 1, float(z))) for z in row]
                             for l, row in enumerate(roots)], dtype=torch.float64)
        ylm = torch.tensor([math.sqrt((2 * l + 1) / (4 * math.pi)) for l in range(num_spherical)])
        self.register_buffer("roots", roots)
        self.register_buffer("norm", norm)
        self.register_buffer("ylm_norm", ylm)

    def forward(self, dist: torch.Tensor, cos_angle: torch.Tensor, idx_kj: torch.Tensor,
                envelope: torch.Tensor | None = None) -> torch.Tensor:
        L, R = self.num_spherical, self.num_radial
        x = dist / self.cutoff                                                  # (E,)
        u = self.envelope(x) if envelope is None else envelope                  # (E,)
        arg = self.roots.to(dist.dtype) * x[:, None, None]                      # (E, L, R)
        jl = spherical_bessel(L - 1, arg)                                       # (E, L, R, L): j_l' for every l'
        jl = jl.diagonal(dim1=1, dim2=3)                                        # (E, R, L): j_l(z_ln x)
        norm = (self.norm * self.ylm_norm[:, None]).to(dist.dtype)             # (L, R): both normalisations
        rbf = u[:, None, None] * norm * jl.transpose(1, 2)                      # (E, L, R)
        cbf = legendre(L - 1, cos_angle)                                        # (T, L): P_l, normalised in rbf
        return (rbf[idx_kj] * cbf[:, :, None]).reshape(-1, L * R)

    def extra_repr(self) -> str:
        return f"num_spherical={self.num_spherical}, num_radial={self.num_radial}, cutoff={self.cutoff:g}"


def glorot_orthogonal_(weight: torch.Tensor, scale: float = 2.0) -> torch.Tensor:
    """DimeNet's initialisation: a random orthogonal matrix rescaled to variance
    :math:`\\mathrm{scale} / (\\mathrm{fan_{in}} + \\mathrm{fan_{out}})`."""
    with torch.no_grad():
        nn.init.orthogonal_(weight)
        weight.mul_(math.sqrt(scale / ((weight.shape[0] + weight.shape[1]) * float(weight.var()))))
    return weight


def _init_linears(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            glorot_orthogonal_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


class EmbeddingBlock(nn.Module):
    """First edge messages :math:`m_{ji} = \\sigma(W[h_i \\| h_j \\| \\sigma(W_{\\mathrm{rbf}} e(d_{ji}))])` from
    atom-type embeddings. ``-> (E, C)``."""

    def __init__(self, num_types: int, num_radial: int, hidden_channels: int):
        super().__init__()
        self.emb = nn.Embedding(num_types, hidden_channels)
        self.lin_rbf = nn.Linear(num_radial, hidden_channels)
        self.lin = nn.Linear(3 * hidden_channels, hidden_channels)
        self.act = nn.SiLU()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.uniform_(self.emb.weight, -math.sqrt(3), math.sqrt(3))
        self.lin_rbf.reset_parameters()
        self.lin.reset_parameters()

    def forward(self, z, rbf, i, j):
        h = self.emb(z)
        return self.act(self.lin(torch.cat([h[i], h[j], self.act(self.lin_rbf(rbf))], -1)))


class ResidualLayer(nn.Module):
    """:math:`x + \\sigma(W_2 \\sigma(W_1 x))`."""

    def __init__(self, channels: int):
        super().__init__()
        self.lin1, self.lin2, self.act = nn.Linear(channels, channels), nn.Linear(channels, channels), nn.SiLU()
        _init_linears(self)

    def forward(self, x):
        return x + self.act(self.lin2(self.act(self.lin1(x))))


class DirectionalMessage(MessagePassing):
    """Message passing on the line graph: edge ``j -> i`` gathers :math:`\\sum_k x_{kj} \\odot s_{kji}` from the
    edges ``k -> j`` that end where it starts. ``propagate`` gets ``edge_index = [idx_kj, idx_ji]`` (pass it as
    ``line_edges`` when it is built already: a network builds it once for all blocks)."""

    def forward(self, x, idx_kj, idx_ji, sbf, line_edges=None):
        line_edges = torch.stack([idx_kj, idx_ji]) if line_edges is None else line_edges     # (2, T)
        return self.propagate(line_edges, num_nodes=x.shape[0], x=x, sbf=sbf)

    def message(self, x_j, sbf):
        return x_j * sbf


class InteractionPPBlock(nn.Module):
    """One DimeNet++ interaction: update every edge message from the messages arriving at its source, through
    the radial basis (on ``k -> j``), a down-projection, the spherical basis (on ``k -> j -> i``), the triplet sum,
    an up-projection, and residual layers. ``(E, C) -> (E, C)``."""

    def __init__(self, hidden_channels: int, int_emb_size: int, basis_emb_size: int, num_spherical: int,
                 num_radial: int, num_before_skip: int = 1, num_after_skip: int = 2):
        super().__init__()
        self.act = nn.SiLU()
        self.lin_rbf1 = nn.Linear(num_radial, basis_emb_size, bias=False)
        self.lin_rbf2 = nn.Linear(basis_emb_size, hidden_channels, bias=False)
        self.lin_sbf1 = nn.Linear(num_spherical * num_radial, basis_emb_size, bias=False)
        self.lin_sbf2 = nn.Linear(basis_emb_size, int_emb_size, bias=False)
        self.lin_kj = nn.Linear(hidden_channels, hidden_channels)
        self.lin_ji = nn.Linear(hidden_channels, hidden_channels)
        self.lin_down = nn.Linear(hidden_channels, int_emb_size, bias=False)
        self.lin_up = nn.Linear(int_emb_size, hidden_channels, bias=False)
        self.directional = DirectionalMessage()
        self.layers_before_skip = nn.ModuleList(ResidualLayer(hidden_channels) for _ in range(num_before_skip))
        self.lin = nn.Linear(hidden_channels, hidden_channels)
        self.layers_after_skip = nn.ModuleList(ResidualLayer(hidden_channels) for _ in range(num_after_skip))
        _init_linears(self)

    def forward(self, m, rbf, sbf, t: Triplets, line_edges=None):
        x_ji = self.act(self.lin_ji(m))                                             # (E, C)
        x_kj = self.act(self.lin_kj(m)) * self.lin_rbf2(self.lin_rbf1(rbf))         # (E, C)
        x_kj = self.act(self.lin_down(x_kj))                                        # (E, I)
        s = self.lin_sbf2(self.lin_sbf1(sbf))                                       # (T, I)
        x_kj = self.act(self.lin_up(self.directional(x_kj, t.idx_kj, t.idx_ji, s, line_edges)))  # (E, C)
        h = x_ji + x_kj
        for layer in self.layers_before_skip:
            h = layer(h)
        h = self.act(self.lin(h)) + m
        for layer in self.layers_after_skip:
            h = layer(h)
        return h


class OutputPPBlock(nn.Module):
    """Per-atom output: :math:`t_i = \\mathrm{MLP}\\big(W_{\\mathrm{up}} \\sum_j W_{\\mathrm{rbf}} e(d_{ji}) \\odot
    m_{ji}\\big)`. ``(E, C) -> (N,)``. The last layer starts at zero (as in the paper), so an untrained model
    predicts zero energy."""

    def __init__(self, num_radial: int, hidden_channels: int, out_emb_channels: int, num_layers: int = 3):
        super().__init__()
        self.act = nn.SiLU()
        self.lin_rbf = nn.Linear(num_radial, hidden_channels, bias=False)
        self.lin_up = nn.Linear(hidden_channels, out_emb_channels, bias=False)
        self.lins = nn.ModuleList(nn.Linear(out_emb_channels, out_emb_channels) for _ in range(num_layers))
        self.lin = nn.Linear(out_emb_channels, 1, bias=False)
        _init_linears(self)
        nn.init.zeros_(self.lin.weight)

    def forward(self, m, rbf, i, num_nodes):
        x = self.lin_up(scatter_sum(self.lin_rbf(rbf) * m, i, num_nodes))         # (N, O)
        for lin in self.lins:
            x = self.act(lin(x))
        return self.lin(x).squeeze(-1)


class DimeNetPlusPlus(nn.Module):
    """DimeNet++ energy model: ``GraphBatch -> (B,)`` (wrap in :class:`~gdl.nn.atomistic.EnergyForces` for forces).

    .. math::  E_b = \\sum_{i \\in b} \\sum_{t=0}^{T} \\mathrm{Output}_t(m^{(t)})_i

    Args:
        num_types: atom-type embedding size (default 100).
        hidden_channels: ``C`` (paper: 128). num_blocks: ``T`` interaction blocks (paper: 4).
        int_emb_size, basis_emb_size, out_emb_channels: bottleneck sizes (paper: 64, 8, 256).
        num_spherical, num_radial: ``L`` and ``R`` (paper: 7, 6). cutoff: Angstrom (paper: 5).
        envelope_exponent: :math:`p - 1` of the envelope (paper: 5).
        num_before_skip, num_after_skip, num_output_layers: residual / output depths (paper: 1, 2, 3).
        max_neighbours: passed to :func:`gdl.nn.neighbours.radius_graph`.

    Raises:
        ValueError: two atoms coincide (closer than 1e-6 Angstrom): the envelope :math:`1/d` and the bond
            angles are undefined there, so the model refuses instead of returning NaN.

    Examples:
        >>> from gdl.nn.atomistic import EnergyForces, atoms_batch
        >>> model = EnergyForces(DimeNetPlusPlus(hidden_channels=16, num_blocks=1, int_emb_size=8,
        ...                                      out_emb_channels=16))
        >>> model(atoms_batch(torch.randn(4, 3), torch.tensor([6, 1, 1, 8])))["forces"].shape
        torch.Size([4, 3])
    """

    def __init__(self, num_types: int = MAX_Z, hidden_channels: int = 64, num_blocks: int = 3,
                 int_emb_size: int = 32, basis_emb_size: int = 8, out_emb_channels: int = 128,
                 num_spherical: int = 7, num_radial: int = 6, cutoff: float = 5.0, envelope_exponent: int = 5,
                 num_before_skip: int = 1, num_after_skip: int = 2, num_output_layers: int = 3,
                 max_neighbours: int | None = None):
        super().__init__()
        self.num_types, self.cutoff, self.max_neighbours = num_types, float(cutoff), max_neighbours
        self.rbf = BesselBasis(num_radial, cutoff, envelope_exponent)
        self.sbf = SphericalBasis(num_spherical, num_radial, cutoff, envelope_exponent)
        self.emb = EmbeddingBlock(num_types, num_radial, hidden_channels)
        self.output_blocks = nn.ModuleList(OutputPPBlock(num_radial, hidden_channels, out_emb_channels,
                                                         num_output_layers) for _ in range(num_blocks + 1))
        self.interaction_blocks = nn.ModuleList(
            InteractionPPBlock(hidden_channels, int_emb_size, basis_emb_size, num_spherical, num_radial,
                               num_before_skip, num_after_skip) for _ in range(num_blocks))

    def forward(self, batch: GraphBatch) -> torch.Tensor:
        batch = check_atoms(batch, self.num_types, "DimeNetPlusPlus", dtype=model_dtype(self))
        n = batch.num_nodes
        edge_index, _, dist = neighbour_edges(batch, self.cutoff, self.max_neighbours)
        check_coincident(edge_index, dist, "DimeNetPlusPlus")               # 1/d envelope, angles: d > 0
        j, i = edge_index                                                   # messages j -> i
        t = triplets(edge_index, n)
        u = self.rbf.envelope(dist / self.cutoff)                           # (E,): shared by both bases
        rbf = self.rbf(dist, u)                                             # (E, R)
        sbf = self.sbf(dist, triplet_cosines(batch.pos, t), t.idx_kj, u)    # (T, L*R)
        line_edges = torch.stack([t.idx_kj, t.idx_ji])                      # (2, T): the same in every block
        m = self.emb(batch.z, rbf, i, j)                                    # (E, C)
        atom = self.output_blocks[0](m, rbf, i, n)                          # (N,)
        for block, out in zip(self.interaction_blocks, self.output_blocks[1:]):
            m = block(m, rbf, sbf, t, line_edges)
            atom = atom + out(m, rbf, i, n)
        return scatter_sum(atom, batch.batch, batch.num_graphs)             # (B,)

    def extra_repr(self) -> str:
        return f"cutoff={self.cutoff:g}, num_types={self.num_types}"
