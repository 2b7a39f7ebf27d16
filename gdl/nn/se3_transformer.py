"""SE(3)-Transformer: self-attention on point clouds whose keys and values are tensor-field-network messages.

Fuchs, Worrall, Fischer and Welling, "SE(3)-Transformers: 3D Roto-Translation Equivariant Attention Networks",
NeurIPS 2020, https://arxiv.org/abs/2006.10503.

Node features are type-0 (scalars) and type-1 (vectors) fields, :math:`f_i = (f_i^0, f_i^1)`. Along an edge
:math:`j \\to i` with :math:`\\vec r_{ij} = \\vec x_j - \\vec x_i`, a tensor-field-network (TFN) kernel maps a type-k
feature to a type-l message,

.. math::  W^{lk}(\\vec r) = \\sum_{J=|k-l|}^{k+l} \\varphi^{lk}_J(\\lVert \\vec r \\rVert)
           \\sum_{M=-J}^{J} Y_{JM}(\\hat r)\\, Q^{lk}_{JM},

with :math:`Y_J` the real spherical harmonics, :math:`Q^{lk}_{JM}` the Clebsch-Gordan coefficients that couple
:math:`k \\otimes J \\to l`, and learned radial profiles :math:`\\varphi` (an MLP on a radial basis). In e3nn this is
a fully connected tensor product of :math:`f_j` with :math:`Y(\\hat r_{ij})` whose weights are computed per edge.
Keys :math:`k_{ij}` and values :math:`v_{ij}` are such messages; queries :math:`q_i` are a type-wise linear map of
:math:`f_i`; the attention weights use the invariant inner product (Wigner matrices are orthogonal):

.. math::  \\alpha_{ij} = \\frac{u(r_{ij}) \\exp(q_i^\\top k_{ij} / \\sqrt{d})}
           {\\sum_{j'} u(r_{ij'}) \\exp(q_i^\\top k_{ij'} / \\sqrt{d})},
           \\qquad f_i' = \\sigma\\Big(W_{\\mathrm{self}} f_i + \\sum_j \\alpha_{ij} v_{ij}\\Big),

where :math:`\\sigma` is a norm nonlinearity (each field rescaled by a function of its norm). The envelope
:math:`u` (zero with two zero derivatives at the cutoff) multiplies the radial profiles :math:`\\varphi` and the
unnormalised attention weights (:mod:`gdl.nn._radial`), so an atom crossing the cutoff changes energies and forces
continuously. An atom without neighbours gets no message and keeps its self-interaction term.

Like the paper, the default (``parity=False``) couples vectors to vectors through the cross product
(:math:`1 \\otimes 1 \\to 1`) and is equivariant to rotations and translations, SE(3), but *not* to reflections: it
can tell a molecule from its mirror image. ``parity=True`` tracks parity (vectors ``1o``, only parity-allowed
paths) and makes the model E(3)-equivariant.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gdl.nn._checks import model_dtype
from gdl.nn._radial import RadialMLP, enveloped_softmax
from gdl.nn.atomistic import MAX_Z, check_atoms, neighbour_edges
from gdl.nn.message_passing import MessagePassing, scatter_sum
from gdl.nn.nequip import EdgeGeometry, ExactClebschGordan, _e3nn

__all__ = ["SE3AttentionLayer", "SE3Transformer"]


def _split_heads(x: torch.Tensor, irreps, heads: int) -> torch.Tensor:
    """(E, irreps.dim) -> (E, H, irreps.dim / H): channel ``u`` of every irrep block goes to head ``u // (mul/H)``."""
    parts = [x[:, sl].reshape(x.shape[0], heads, mul // heads * ir.dim)         # explicit sizes: E may be 0
             for sl, (mul, ir) in zip(irreps.slices(), irreps)]
    return torch.cat(parts, -1)


def _merge_heads(x: torch.Tensor, irreps, heads: int) -> torch.Tensor:
    """Inverse of :func:`_split_heads`: (E, H, irreps.dim / H) -> (E, irreps.dim)."""
    out, start = [], 0
    for mul, ir in irreps:
        width = mul // heads * ir.dim
        out.append(x[:, :, start:start + width].reshape(x.shape[0], heads * width))
        start += width
    return torch.cat(out, -1)


class SE3AttentionLayer(ExactClebschGordan, MessagePassing):
    """One SE(3)-Transformer block: TFN keys and values, type-wise linear queries, softmax over incoming edges,
    a self-interaction (skip) term and a norm nonlinearity.

    Args:
        irreps_in, irreps_out: features in and out (e3nn syntax, e.g. ``"8x0e + 8x1e"``).
        irreps_key: query/key features (their inner product gives the logits).
        irreps_sh: spherical harmonics of the edge direction.
        num_basis, radial_hidden: the radial basis size and the width of the MLPs giving :math:`\\varphi`.
        heads: attention heads; every multiplicity of ``irreps_key`` and ``irreps_out`` must be divisible by it.

    Shapes: ``h`` (N, irreps_in.dim), ``sh`` (E, irreps_sh.dim), ``basis`` (E, K), ``envelope`` (E,)
    -> (N, irreps_out.dim).
    """

    def __init__(self, irreps_in, irreps_out, irreps_key, irreps_sh, num_basis: int = 8, radial_hidden: int = 16,
                 heads: int = 2):
        super().__init__(aggr="sum")
        o3, e3nn_nn = _e3nn()
        self.irreps_in, self.irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_out)
        self.irreps_key, self.heads = o3.Irreps(irreps_key), heads
        for name, irreps in (("irreps_key", self.irreps_key), ("irreps_out", self.irreps_out)):
            if any(mul % heads for mul, _ in irreps):
                raise ValueError(f"every multiplicity of {name}={irreps} must be divisible by heads={heads}")
        self.to_query = o3.Linear(self.irreps_in, self.irreps_key)
        self.to_key = o3.FullyConnectedTensorProduct(self.irreps_in, irreps_sh, self.irreps_key, shared_weights=False)
        self.to_value = o3.FullyConnectedTensorProduct(self.irreps_in, irreps_sh, self.irreps_out,
                                                       shared_weights=False)
        self.radial_key = RadialMLP([num_basis, radial_hidden, self.to_key.weight_numel])
        self.radial_value = RadialMLP([num_basis, radial_hidden, self.to_value.weight_numel])
        self.self_interaction = o3.Linear(self.irreps_in, self.irreps_out)
        self.act = e3nn_nn.NormActivation(self.irreps_out, torch.nn.functional.silu, epsilon=1e-8, bias=True)
        self.scale = 1.0 / math.sqrt(self.irreps_key.dim / heads)

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, sh: torch.Tensor, basis: torch.Tensor,
                envelope: torch.Tensor) -> torch.Tensor:
        agg = self.propagate(edge_index, h=h, q=self.to_query(h), sh=sh, basis=basis,
                             envelope=envelope)                                        # (N, irreps_out.dim)
        return self.act(self.self_interaction(h) + agg)

    def message(self, h_j, q_i, sh, basis, envelope, index, num_nodes):
        key = self.to_key(h_j, sh, self.radial_key(basis, envelope))                  # (E, key.dim)
        value = self.to_value(h_j, sh, self.radial_value(basis, envelope))            # (E, out.dim)
        q = _split_heads(q_i, self.irreps_key, self.heads)                            # (E, H, key.dim / H)
        k = _split_heads(key, self.irreps_key, self.heads)
        logits = (q * k).sum(-1) * self.scale                                         # (E, H), invariant
        alpha = enveloped_softmax(logits, envelope, index, num_nodes)                 # over edges into i
        v = _split_heads(value, self.irreps_out, self.heads)                          # (E, H, out.dim / H)
        return _merge_heads(alpha[..., None] * v, self.irreps_out, self.heads)

    def extra_repr(self) -> str:
        return f"{self.irreps_in} -> {self.irreps_out}, key {self.irreps_key}, heads={self.heads}"


class SE3Transformer(nn.Module):
    """An SE(3)-Transformer for atomic systems: atom types -> scalars, ``num_layers`` attention blocks with
    type-0 and type-1 features, an invariant energy (sum of per-atom scalars) and an equivariant vector per
    system (sum of per-atom type-1 outputs).

    Args:
        num_types: size of the atom-type embedding (``z`` in ``0..num_types-1``).
        channels: multiplicity of the type-0 and type-1 features.
        num_layers, heads, num_basis, radial_hidden: size of the network.
        cutoff: neighbours within this distance attend to each other.
        parity: ``False`` (the paper): SE(3)-equivariant, mirror images may differ; ``True``: E(3)-equivariant.

    Shapes:
        input: a :class:`gdl.data.GraphBatch` with ``pos`` (N, 3) and ``z`` (N,).
        output: ``{"energy": (B,), "vector": (B, 3)}``.

    Examples:
        >>> from gdl.data import collate
        >>> model = SE3Transformer(num_types=10, channels=4, num_layers=1)
        >>> out = model(collate([{"pos": torch.randn(4, 3), "z": torch.tensor([6, 1, 1, 8])}]))
        >>> out["energy"].shape, out["vector"].shape
        (torch.Size([1]), torch.Size([1, 3]))
    """

    def __init__(self, num_types: int = MAX_Z, channels: int = 8, num_layers: int = 2, heads: int = 2,
                 num_basis: int = 8, radial_hidden: int = 16, cutoff: float = 5.0, parity: bool = False):
        super().__init__()
        o3, _ = _e3nn()
        self.num_types, self.cutoff, self.parity = int(num_types), float(cutoff), parity
        vec = "1o" if parity else "1e"
        self.geometry = EdgeGeometry(lmax=2, num_basis=num_basis, cutoff=cutoff, parity=parity)
        self.embedding = nn.Embedding(num_types, channels)
        hidden = o3.Irreps(f"{channels}x0e + {channels}x{vec}")
        irreps = o3.Irreps(f"{channels}x0e")
        self.layers = nn.ModuleList()
        for _ in range(num_layers):
            self.layers.append(SE3AttentionLayer(irreps, hidden, hidden, self.geometry.irreps_sh, num_basis,
                                                 radial_hidden, heads))
            irreps = hidden
        self.energy_head = nn.Sequential(o3.Linear(hidden, f"{channels}x0e"), nn.SiLU(), nn.Linear(channels, 1))
        self.vector_head = o3.Linear(hidden, f"1x{vec}")

    def forward(self, batch) -> dict[str, torch.Tensor]:
        batch = check_atoms(batch, self.num_types, "SE3Transformer", dtype=model_dtype(self))
        edge_index, vec, _ = neighbour_edges(batch, self.cutoff)
        _, sh, basis, envelope = self.geometry(vec)
        h = self.embedding(batch.z).to(batch.pos.dtype)                          # (N, C) type-0
        for layer in self.layers:
            h = layer(h, edge_index, sh, basis, envelope)                                 # (N, C + 3C)
        energy = scatter_sum(self.energy_head(h).squeeze(-1), batch.batch, batch.num_graphs)   # (B,)
        vector = scatter_sum(self.vector_head(h), batch.batch, batch.num_graphs)               # (B, 3)
        return {"energy": energy, "vector": vector}

    def extra_repr(self) -> str:
        return f"num_types={self.num_types}, cutoff={self.cutoff}, parity={self.parity}"
