"""Message-passing graph neural networks: GCN, GIN and an edge-feature MPNN layer, and a small GNN model.

Every layer is a :class:`~gdl.nn.message_passing.MessagePassing` subclass that writes only its ``message``
(and ``update``), so each is permutation equivariant: relabel the nodes of a graph and its node outputs are
relabelled the same way, :math:`f(P X, P A P^\\top) = P f(X, A)`. A graph-level readout
(:func:`~gdl.nn.message_passing.global_pool`) sums, averages or maximises over the nodes and is invariant.

:class:`AdjacencyMLP`, an MLP on the flattened adjacency matrix, is the baseline that is neither.

Shapes: ``N`` nodes, ``E`` edges, ``B`` graphs, ``C`` channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gdl.nn._checks import check_finite, to_model_dtype
from gdl.nn.message_passing import AGGREGATIONS, MessagePassing, check_batch, check_edge_index, degree, global_pool

__all__ = ["GCNConv", "GINConv", "MPNNConv", "GNN", "AdjacencyMLP", "mlp", "to_dense_adjacency", "READOUTS"]

#: ``"node"`` (equivariant, one output per node) or a graph readout (invariant, one output per graph).
READOUTS = ("node",) + AGGREGATIONS


def mlp(*dims: int, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """``Linear -> act -> ... -> Linear`` through ``dims`` (no activation after the last layer)."""
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def _check_x(x: torch.Tensor, in_dim: int, owner: str, name: str = "x") -> None:
    if not torch.is_tensor(x) or x.ndim != 2 or x.shape[-1] != in_dim:
        got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"{owner}: node features {name!r} must have shape (N, {in_dim}), got {got}")
    check_finite(x, repr(name), owner)                                  # NaN features: an error, as NaN positions


class _Conv(MessagePassing):
    """PyG-style one-line ``repr``: ``GCNConv(5, 4)``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class GCNConv(_Conv):
    """Graph convolution of `Kipf & Welling, Semi-Supervised Classification with Graph Convolutional Networks
    <https://arxiv.org/abs/1609.02907>`_ (ICLR 2017):

    .. math::  x_i' = \\sum_{j \\in \\mathcal{N}(i) \\cup \\{i\\}} \\frac{1}{\\sqrt{\\hat d_i \\hat d_j}}\\, W x_j + b,
               \\qquad \\hat d_i = 1 + |\\mathcal{N}(i)| ,

    i.e. :math:`X' = \\hat D^{-1/2} (A + I) \\hat D^{-1/2} X W^\\top + b`. The normalisation factorises, so
    the layer scales the nodes before and after a plain sum over the edges (no per-edge product). Parameter
    names (``lin.weight``, ``bias``) follow PyTorch Geometric's ``GCNConv``, so its weights load with
    ``load_state_dict``; existing self-loops are replaced by one of weight 1, as there.

    Args:
        in_dim, out_dim: channels in and out.
        bias: learn :math:`b` (default: ``True``).

    Shapes: ``x`` (N, in_dim), ``edge_index`` (2, E) -> (N, out_dim).
    """

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True):
        super().__init__(aggr="sum")
        self.in_dim, self.out_dim = in_dim, out_dim
        self.lin = nn.Linear(in_dim, out_dim, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_dim)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.lin.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        _check_x(x, self.in_dim, type(self).__name__)
        n = x.shape[0]
        check_edge_index(edge_index, n)
        if bool((edge_index[0] == edge_index[1]).any()):                     # the self-loop is added below
            edge_index = edge_index[:, edge_index[0] != edge_index[1]]
        s = (degree(edge_index[1], n, x.dtype) + 1).rsqrt().unsqueeze(-1)      # (N, 1): 1 / sqrt(d_i)
        h = s * self.lin(x)                                                   # (N, C): W x_j / sqrt(d_j)
        out = s * (self.propagate(edge_index, x=h) + h)                       # neighbours + self-loop
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return f"{self.in_dim}, {self.out_dim}"


class GINConv(_Conv):
    """Graph isomorphism network layer of `Xu et al., How Powerful are Graph Neural Networks?
    <https://arxiv.org/abs/1810.00826>`_ (ICLR 2019): as powerful as the 1-WL test, no more.

    .. math::  x_i' = \\mathrm{MLP}\\Big((1 + \\epsilon)\\, x_i + \\sum_{j \\in \\mathcal{N}(i)} x_j\\Big)

    Args:
        in_dim, out_dim: channels in and out (the MLP is ``in_dim -> hidden -> out_dim``).
        hidden: width of the MLP's hidden layer (default: ``out_dim``).
        eps: initial :math:`\\epsilon` (default: 0); ``train_eps`` makes it a parameter.
        net: use this module as the MLP instead (e.g. one shared with a reference implementation).

    Shapes: ``x`` (N, in_dim), ``edge_index`` (2, E) -> (N, out_dim).
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int | None = None, eps: float = 0.0,
                 train_eps: bool = False, net: nn.Module | None = None):
        super().__init__(aggr="sum")
        self.in_dim, self.out_dim = in_dim, out_dim
        self.nn = net if net is not None else mlp(in_dim, hidden or out_dim, out_dim)
        eps_t = torch.tensor([float(eps)])
        if train_eps:
            self.eps = nn.Parameter(eps_t)
        else:
            self.register_buffer("eps", eps_t)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        _check_x(x, self.in_dim, type(self).__name__)
        return self.propagate(edge_index, x=x)

    def update(self, aggregated: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.nn((1 + self.eps) * x + aggregated)

    def extra_repr(self) -> str:
        return f"{self.in_dim}, {self.out_dim}, eps={float(self.eps):g}"


class MPNNConv(_Conv):
    """Message passing with edge features, in the form of `Gilmer et al., Neural Message Passing for Quantum
    Chemistry <https://arxiv.org/abs/1704.01212>`_ (ICML 2017):

    .. math::  m_{ij} = \\phi\\big([x_i, x_j, e_{ij}]\\big), \\qquad
               x_i' = \\gamma\\Big(\\big[x_i, \\textstyle\\bigoplus_{j \\in \\mathcal{N}(i)} m_{ij}\\big]\\Big)

    with :math:`\\phi, \\gamma` two-layer MLPs. Edge features travel with their edge, so relabelling the nodes
    (and ``edge_index`` with them) leaves every message unchanged.

    Args:
        in_dim, out_dim, edge_dim: node channels in and out, edge channels.
        hidden: width of the MLPs (default: ``out_dim``).
        aggr: ``"sum"``, ``"mean"`` or ``"max"`` (default: ``"sum"``).

    Shapes: ``x`` (N, in_dim), ``edge_index`` (2, E), ``edge_attr`` (E, edge_dim) -> (N, out_dim).
    """

    def __init__(self, in_dim: int, out_dim: int, edge_dim: int, hidden: int | None = None, aggr: str = "sum"):
        super().__init__(aggr=aggr)
        hidden = hidden or out_dim
        self.in_dim, self.out_dim, self.edge_dim = in_dim, out_dim, edge_dim
        self.phi = mlp(2 * in_dim + edge_dim, hidden, hidden)
        self.gamma = mlp(in_dim + hidden, hidden, out_dim)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        _check_x(x, self.in_dim, type(self).__name__)
        check_edge_index(edge_index, x.shape[0])
        if not torch.is_tensor(edge_attr) or edge_attr.shape != (edge_index.shape[1], self.edge_dim):
            got = tuple(edge_attr.shape) if torch.is_tensor(edge_attr) else type(edge_attr).__name__
            raise ValueError(f"MPNNConv: edge features 'edge_attr' must have shape (E, {self.edge_dim}) with "
                             f"E={edge_index.shape[1]} edges, got {got}")
        return self.propagate(edge_index, x=x, edge_attr=edge_attr)

    def message(self, x_i: torch.Tensor, x_j: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        return self.phi(torch.cat([x_i, x_j, edge_attr], dim=-1))

    def update(self, aggregated: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.gamma(torch.cat([x, aggregated], dim=-1))

    def extra_repr(self) -> str:
        return f"{self.in_dim}, {self.out_dim}, edge_dim={self.edge_dim}, aggr={self.aggr!r}"


class GNN(nn.Module):
    """A stack of message-passing layers with ReLU between them and a node or graph readout.

    .. math::  h^{(0)} = x, \\quad h^{(l+1)} = \\mathrm{ReLU}\\big(\\mathrm{conv}_l(h^{(l)}, A)\\big), \\quad
               y = \\mathrm{head}(h^{(L)}_i) \\ \\text{(node)} \\quad\\text{or}\\quad
               y_b = \\mathrm{head}\\Big(\\textstyle\\bigoplus_{i \\in b} h^{(L)}_i\\Big) \\ \\text{(graph)}

    Node readout: equivariant, :math:`f(g \\cdot G)_{\\sigma(i)} = f(G)_i`; graph readout: invariant.

    Args:
        in_dim, hidden, out_dim: node channels in, hidden, out.
        num_layers: message-passing rounds (default: 3).
        conv: ``"gin"``, ``"gcn"`` or ``"mpnn"`` (the last needs ``edge_dim``).
        readout: ``"node"`` or ``"sum"``/``"mean"``/``"max"`` over each graph (default: ``"node"``).
        edge_dim: channels of ``edge_attr`` (``conv="mpnn"`` only).

    Shapes: a :class:`gdl.data.GraphBatch` with ``x`` (N, in_dim), ``edge_index`` (2, E) (and ``edge_attr``
    (E, edge_dim)) -> (N, out_dim) or (B, out_dim).
    """

    CONVS = ("gin", "gcn", "mpnn")

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int = 3, conv: str = "gin",
                 readout: str = "node", edge_dim: int | None = None):
        super().__init__()
        if conv not in self.CONVS:
            raise ValueError(f"conv must be one of {self.CONVS}, got {conv!r}")
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
        if (conv == "mpnn") != (edge_dim is not None):
            raise ValueError(f"edge_dim is needed by conv='mpnn' and only by it; got conv={conv!r}, "
                             f"edge_dim={edge_dim!r}")
        self.in_dim, self.conv, self.readout, self.edge_dim = in_dim, conv, readout, edge_dim
        dims = [in_dim] + [hidden] * num_layers

        def layer(a, b):
            if conv == "gin":
                return GINConv(a, b)
            if conv == "gcn":
                return GCNConv(a, b)
            return MPNNConv(a, b, edge_dim)

        self.convs = nn.ModuleList(layer(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.head = mlp(hidden, hidden, out_dim)

    def forward(self, batch) -> torch.Tensor:
        x, edge_index = _graph_fields(batch, type(self).__name__)
        _check_x(x, self.in_dim, type(self).__name__)
        edge_attr = getattr(batch, "edge_attr", None) if self.edge_dim is not None else None
        check_finite(edge_attr, "'edge_attr'", type(self).__name__)
        x, edge_attr = to_model_dtype(self, x, edge_attr)                 # one dtype rule: gdl.nn._checks
        if self.edge_dim is not None and edge_attr is None:
            raise ValueError("GNN(conv='mpnn'): the batch needs edge features 'edge_attr' (E, edge_dim)")
        h = x
        for conv in self.convs:
            h = F.relu(conv(h, edge_index) if edge_attr is None else conv(h, edge_index, edge_attr))
        if self.readout == "node":
            return self.head(h)                                               # (N, out_dim)
        return self.head(global_pool(h, batch.batch, batch.num_graphs, self.readout))   # (B, out_dim)


def _graph_fields(batch, owner: str) -> tuple[torch.Tensor, torch.Tensor]:
    for name in ("x", "edge_index", "batch"):
        if getattr(batch, name, None) is None:
            raise ValueError(f"{owner} takes a gdl.data.GraphBatch with node features 'x', 'edge_index' and the "
                             f"batch vector 'batch'; missing {name!r} in {type(batch).__name__}")
    check_batch(batch.batch, batch.x.shape[0], getattr(batch, "num_graphs", None))
    return batch.x, batch.edge_index


def to_dense_adjacency(batch, n_max: int) -> torch.Tensor:
    """``(B, n_max, n_max)`` adjacency matrices of a batch's graphs (zero-padded; node ``i`` of graph ``b`` is row
    ``i - ptr[b]``). Raises ``ValueError`` if a graph has more than ``n_max`` nodes."""
    sizes = batch.sizes
    if max(sizes) > n_max:
        raise ValueError(f"to_dense_adjacency: a graph has {max(sizes)} nodes, more than n_max={n_max}")
    ptr = batch.ptr.to(batch.batch.device)
    local = torch.arange(batch.num_nodes, device=batch.batch.device) - ptr[batch.batch]   # (N,)
    src, dst = batch.edge_index
    adj = torch.zeros(batch.num_graphs, n_max, n_max, dtype=batch.x.dtype, device=batch.x.device)
    adj[batch.batch[src], local[dst], local[src]] = 1.0
    return adj


class AdjacencyMLP(nn.Module):
    """The baseline without symmetry: an MLP on the flattened, zero-padded adjacency matrix,
    :math:`y = \\mathrm{MLP}(\\mathrm{vec}\\, A)`. It sees node labels, so relabelling the nodes
    (:math:`A \\mapsto P A P^\\top`) changes its output.

    Shapes: a :class:`gdl.data.GraphBatch` with at most ``n_max`` nodes per graph -> (B, out_dim).
    """

    def __init__(self, n_max: int, hidden: int, out_dim: int, num_layers: int = 2):
        super().__init__()
        self.n_max = n_max
        self.net = mlp(n_max * n_max, *([hidden] * num_layers), out_dim)

    def forward(self, batch) -> torch.Tensor:
        _graph_fields(batch, type(self).__name__)
        return self.net(to_dense_adjacency(batch, self.n_max).flatten(1))
