"""Spectral positional encodings and a subgraph network beyond 1-WL.

Laplacian eigenvectors give every node coordinates that describe its place in the graph. With
:math:`L = D - A` and :math:`L u_k = \\lambda_k u_k` (:math:`0 = \\lambda_0 \\le \\lambda_1 \\le \\dots`), node
:math:`i` gets :math:`(u_1(i), \\dots, u_K(i))`. The eigenvectors are not functions of the graph: :math:`-u_k` is an
eigenvector as well, and for a repeated eigenvalue any orthonormal basis of its eigenspace is. A network that reads
them raw (:class:`LapPEGNN` with ``sign="raw"``) changes its output when the numerical eigensolver picks another
sign, e.g. after the nodes are relabelled. SignNet (Lim et al. 2023, https://arxiv.org/abs/2202.13013) makes the
encoding sign-invariant,

.. math::  \\mathrm{PE} = \\rho\\big([\\phi(u_k) + \\phi(-u_k)]_{k=1}^{K}\\big),

with :math:`\\phi` a permutation-equivariant network applied to each eigenvector; it is still not invariant to the
choice of basis of a repeated eigenvalue.

:class:`NodeDeletedGNN` is a DS-GNN of Bevilacqua et al. 2022 (https://arxiv.org/abs/2110.02910): it runs one GIN
on every graph with one node deleted and pools the results,

.. math::  y_G = \\rho\\Big(\\sum_{v \\in V} \\mathrm{GIN}(G - v)\\Big),

which separates graphs that 1-WL cannot (a 6-cycle and two triangles) at the cost of :math:`n` copies of an
:math:`(n-1)`-node graph per graph.

Shapes: ``N`` nodes, ``E`` edges, ``B`` graphs, ``K`` eigenvectors, ``C`` channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gdl.nn.gnn import GINConv, mlp
from gdl.nn.message_passing import global_pool

__all__ = ["laplacian_eigenvectors", "LapPEGNN", "NodeDeletedGNN", "node_deleted_subgraphs", "SIGN_MODES"]

SIGN_MODES = ("raw", "signnet")


def _check_graph_batch(batch, owner: str) -> None:
    for name in ("x", "edge_index", "batch"):
        if getattr(batch, name, None) is None:
            raise ValueError(f"{owner} takes a gdl.data.GraphBatch with 'x', 'edge_index' and 'batch'; "
                             f"missing {name!r}")


def laplacian_eigenvectors(batch, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The eigenvectors :math:`u_1, \\dots, u_K` of each graph's Laplacian :math:`L = D - A` after the first
    (constant) one, as node features, and their eigenvalues.

    Graphs with fewer than ``k + 1`` nodes get zero columns. Signs (and bases of repeated eigenvalues) are whatever
    ``torch.linalg.eigh`` returns.

    Returns:
        ``(N, K)`` eigenvector entries and ``(B, K)`` eigenvalues (zero where missing).
    """
    _check_graph_batch(batch, "laplacian_eigenvectors")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    dtype = batch.x.dtype if batch.x.is_floating_point() else torch.get_default_dtype()
    pe = batch.x.new_zeros(batch.num_nodes, k, dtype=dtype)
    values = batch.x.new_zeros(batch.num_graphs, k, dtype=dtype)
    ptr = batch.ptr.tolist()
    src, dst = batch.edge_index
    for b, n in enumerate(batch.sizes):
        start = ptr[b]
        inside = (dst >= start) & (dst < start + n)
        adj = batch.x.new_zeros(n, n, dtype=dtype)
        adj[dst[inside] - start, src[inside] - start] = 1.0
        lap = torch.diag(adj.sum(1)) - adj
        lam, vec = torch.linalg.eigh(lap)
        m = min(k, n - 1)
        pe[start:start + n, :m] = vec[:, 1:1 + m]
        values[b, :m] = lam[1:1 + m]
    return pe, values


class LapPEGNN(nn.Module):
    """A GIN whose node features are ``x`` concatenated with a Laplacian positional encoding.

    .. math::  h^{(0)}_i = [x_i, \\mathrm{PE}_i], \\qquad
               \\mathrm{PE} = [u_1, \\dots, u_K] \\ (\\texttt{raw}) \\quad\\text{or}\\quad
               \\rho\\big([\\phi(u_k) + \\phi(-u_k)]_k\\big) \\ (\\texttt{signnet}),

    :math:`\\phi` a two-layer GIN from one channel to ``pe_dim`` applied to each eigenvector alone, :math:`\\rho` an
    MLP on the concatenation. The node readout is permutation-equivariant only when the encoding is: never for
    ``raw`` (signs are arbitrary), for ``signnet`` when the first ``K + 1`` eigenvalues of every graph are simple.

    Args:
        in_dim, hidden, out_dim: channels of ``x``, hidden layers and output.
        k: number of eigenvectors :math:`K`.
        sign: ``"raw"`` or ``"signnet"``.
        pe_dim: width of the SignNet encoding (``signnet`` only; ``raw`` uses ``K``).
        num_layers: GIN layers after the encoding.
        readout: ``"node"`` or ``"sum"``.

    Shapes: a GraphBatch with ``x`` (N, in_dim) -> (N, out_dim) or (B, out_dim).
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, k: int = 3, sign: str = "raw", pe_dim: int = 8,
                 num_layers: int = 3, readout: str = "node"):
        super().__init__()
        if sign not in SIGN_MODES:
            raise ValueError(f"sign must be one of {SIGN_MODES}, got {sign!r}")
        if readout not in ("node", "sum"):
            raise ValueError(f"readout must be 'node' or 'sum', got {readout!r}")
        self.in_dim, self.k, self.sign, self.readout = in_dim, k, sign, readout
        if sign == "signnet":
            self.phi = nn.ModuleList([GINConv(1, pe_dim), GINConv(pe_dim, pe_dim)])
            self.rho = mlp(k * pe_dim, hidden, pe_dim)
        width = in_dim + (pe_dim if sign == "signnet" else k)
        dims = [width] + [hidden] * num_layers
        self.convs = nn.ModuleList(GINConv(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.head = mlp(hidden, hidden, out_dim)

    def encoding(self, batch) -> torch.Tensor:
        """The positional encoding, ``(N, K)`` (raw) or ``(N, pe_dim)`` (SignNet)."""
        u, _ = laplacian_eigenvectors(batch, self.k)                     # (N, K)
        if self.sign == "raw":
            return u
        per_vector = []
        for j in range(self.k):
            both = []
            for s in (1.0, -1.0):
                h = s * u[:, j:j + 1]
                for i, conv in enumerate(self.phi):
                    h = conv(h, batch.edge_index)
                    h = F.relu(h) if i < len(self.phi) - 1 else h
                both.append(h)
            per_vector.append(both[0] + both[1])                          # phi(u) + phi(-u): sign-invariant
        return self.rho(torch.cat(per_vector, dim=1))

    def forward(self, batch) -> torch.Tensor:
        _check_graph_batch(batch, type(self).__name__)
        if batch.x.shape[-1] != self.in_dim:
            raise ValueError(f"{type(self).__name__}: x must have {self.in_dim} channels, got {tuple(batch.x.shape)}")
        h = torch.cat([batch.x, self.encoding(batch).to(batch.x.dtype)], dim=1)
        for conv in self.convs:
            h = F.relu(conv(h, batch.edge_index))
        if self.readout == "node":
            return self.head(h)
        return self.head(global_pool(h, batch.batch, batch.num_graphs, "sum"))


def node_deleted_subgraphs(batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every graph of the batch with one node deleted, once for each node, as one big batch.

    Subgraph :math:`s` (one per node of the batch, numbered like the nodes) holds the other nodes of the graph of
    node :math:`s` and the edges between them.

    Returns:
        ``node`` (M,): the original node of each subgraph node; ``edge_index`` (2, E') among the M subgraph nodes;
        ``subgraph`` (M,): the subgraph of each subgraph node (sorted); ``graph`` (N,): the graph of each
        subgraph, i.e. ``batch.batch``.
    """
    device = batch.batch.device
    b = batch.batch                                                        # (N,)
    ptr = batch.ptr.to(device)
    n = (ptr[1:] - ptr[:-1])[b]                                            # (N,) size of each node's graph
    s = torch.repeat_interleave(torch.arange(batch.num_nodes, device=device), n)   # copy of each subgraph node
    first = torch.cumsum(n, 0) - n                                         # (N,) offset of each copy
    u = ptr[b[s]] + torch.arange(len(s), device=device) - first[s]         # original node, before deletion
    keep = u != s
    new_id = torch.cumsum(keep.long(), 0) - 1                              # index among kept copy-nodes
    src, dst = batch.edge_index
    # each edge j -> i is copied into every subgraph of its graph, except the ones deleting j or i
    reps = n[dst]
    e = torch.repeat_interleave(torch.arange(len(dst), device=device), reps)
    e_first = torch.cumsum(reps, 0) - reps
    sub = ptr[b[dst[e]]] + torch.arange(len(e), device=device) - e_first[e]  # subgraph receiving the copy
    ok = (src[e] != sub) & (dst[e] != sub)
    e, sub = e[ok], sub[ok]
    local = lambda node: node - ptr[b[node]]                               # noqa: E731  position in its graph
    copy_index = lambda sg, node: first[sg] + local(node)                  # noqa: E731  before deletion
    edge_index = torch.stack([new_id[copy_index(sub, src[e])], new_id[copy_index(sub, dst[e])]])
    return u[keep], edge_index, s[keep], b


class NodeDeletedGNN(nn.Module):
    """DS-GNN with node deletion: a GIN on every node-deleted subgraph, summed per subgraph, then per graph.

    .. math::  y_G = \\rho\\Big(\\sum_{v \\in V(G)} \\sum_{i \\in V(G) \\setminus \\{v\\}} h_i^{(L)}(G - v)\\Big)

    Invariant to relabelling the nodes of each graph (the set of subgraphs is relabelled with them). Cost: a graph
    of :math:`n` nodes and :math:`m` edges becomes :math:`n(n-1)` nodes and :math:`\\sum_v (m - \\deg v) =
    (n - 2) m` edges (each edge counted in both directions).

    Args:
        in_dim, hidden, out_dim: channels.
        num_layers: GIN layers on each subgraph.

    Shapes: a GraphBatch with ``x`` (N, in_dim) -> (B, out_dim).
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int = 3):
        super().__init__()
        self.in_dim = in_dim
        dims = [in_dim] + [hidden] * num_layers
        self.convs = nn.ModuleList(GINConv(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.head = mlp(hidden, hidden, out_dim)

    def forward(self, batch) -> torch.Tensor:
        _check_graph_batch(batch, type(self).__name__)
        if batch.x.shape[-1] != self.in_dim:
            raise ValueError(f"{type(self).__name__}: x must have {self.in_dim} channels, got {tuple(batch.x.shape)}")
        node, edge_index, subgraph, graph = node_deleted_subgraphs(batch)
        h = batch.x[node]                                                  # (M, in_dim)
        for conv in self.convs:
            h = F.relu(conv(h, edge_index))
        per_subgraph = global_pool(h, subgraph, batch.num_nodes, "sum")    # (N, C): one row per deleted node
        return self.head(global_pool(per_subgraph, graph, batch.num_graphs, "sum"))   # (B, out_dim)
