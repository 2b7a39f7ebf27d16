"""One message-passing base for every graph model in ``gdl`` (GCN, GIN, MPNN, SchNet, DimeNet++, EGNN, ...).

A layer updates node :math:`i` from messages sent along the edges :math:`(j \\to i)` that point at it,

.. math::  m_{ij} = \\phi\\big(x_i, x_j, e_{ij}\\big), \\qquad
           a_i = \\bigoplus_{j \\in \\mathcal{N}(i)} m_{ij}, \\qquad
           x_i' = \\gamma\\big(x_i, a_i\\big),

with :math:`\\bigoplus` a permutation-invariant reduction (sum, mean or max). Because :math:`\\phi` and
:math:`\\gamma` are shared by all edges and nodes and :math:`\\bigoplus` ignores the order of its arguments,
relabelling the nodes relabels the output the same way: :math:`f(P x, P A P^\\top) = P f(x, A)`.

Graphs use PyTorch Geometric's layout: ``edge_index`` is a ``(2, E)`` long tensor whose row 0 holds the source
:math:`j` and row 1 the target :math:`i` of each edge (messages flow ``edge_index[0] -> edge_index[1]``); a batch
of graphs is one disconnected graph (see :class:`gdl.data.GraphBatch`). Scatters use pure PyTorch
(``index_add_``, ``scatter_reduce_``): no compiled extension is needed.

How to write a layer: subclass :class:`MessagePassing`, write ``message`` (and, if needed, ``update``), and call
``self.propagate(edge_index, x=x, edge_attr=e, ...)`` in ``forward``. Arguments of ``message`` named ``<name>_i``
or ``<name>_j`` receive the node tensor ``<name>`` gathered at the target or source of every edge; any other
argument receives the keyword of that name unchanged (edge tensors, scalars); ``index`` receives the targets
``edge_index[1]`` and ``num_nodes`` the node count ``N`` (e.g. for :func:`scatter_softmax` over incoming
edges). ``update(aggregated, ...)`` receives ``(N, ...)`` aggregated messages and, by name, any keyword of
``propagate``. Graph-level (invariant) outputs pool node features per graph with :func:`global_pool`::

    class SumOfNeighbours(MessagePassing):
        def forward(self, x, edge_index):
            return self.propagate(edge_index, x=x)

        def message(self, x_j):          # (E, C): the source node of each edge
            return x_j

Shapes: ``N`` nodes, ``E`` edges, ``C`` channels.
"""

from __future__ import annotations

import inspect
import weakref

import torch
from torch import nn

__all__ = ["MessagePassing", "scatter", "scatter_sum", "scatter_mean", "scatter_max", "scatter_softmax",
           "degree", "check_edge_index", "check_batch", "global_pool", "AGGREGATIONS"]

AGGREGATIONS = ("sum", "mean", "max")


def scatter_sum(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """:math:`\\mathrm{out}_i = \\sum_{e: \\mathrm{index}_e = i} \\mathrm{src}_e`; (E, ...) -> (dim_size, ...)."""
    return src.new_zeros((dim_size, *src.shape[1:])).index_add_(0, index, src)


def degree(index: torch.Tensor, dim_size: int, dtype: torch.dtype | None = None) -> torch.Tensor:
    """How often each of ``0 .. dim_size-1`` occurs in ``index`` (e.g. in-degrees from ``edge_index[1]``)."""
    ones = torch.ones(index.shape[0], dtype=dtype or torch.get_default_dtype(), device=index.device)
    return scatter_sum(ones, index, dim_size)


def scatter_mean(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Mean of the rows of ``src`` sent to each output row (0 where nothing arrives)."""
    count = degree(index, dim_size, src.dtype).clamp(min=1)
    return scatter_sum(src, index, dim_size) / count.view(-1, *([1] * (src.ndim - 1)))


def scatter_max(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Element-wise maximum of the rows of ``src`` sent to each output row (0 where nothing arrives)."""
    idx = index.view(-1, *([1] * (src.ndim - 1))).expand_as(src)
    out = src.new_zeros((dim_size, *src.shape[1:]))
    return out.scatter_reduce(0, idx, src, reduce="amax", include_self=False)


def scatter(src: torch.Tensor, index: torch.Tensor, dim_size: int, reduce: str = "sum") -> torch.Tensor:
    """Reduce the rows of ``src`` (E, ...) into ``dim_size`` rows by ``reduce`` in :data:`AGGREGATIONS`."""
    if reduce not in AGGREGATIONS:
        raise ValueError(f"reduce must be one of {AGGREGATIONS}, got {reduce!r}")
    return {"sum": scatter_sum, "mean": scatter_mean, "max": scatter_max}[reduce](src, index, dim_size)


def scatter_softmax(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Softmax of ``src`` (E, ...) over the entries that share an ``index`` (attention over incoming edges):
    :math:`\\mathrm{out}_e = \\exp(s_e) / \\sum_{e': \\mathrm{index}_{e'} = \\mathrm{index}_e} \\exp(s_{e'})`."""
    shift = scatter_max(src.detach(), index, dim_size)[index]   # for stability; cancels in the ratio
    w = torch.exp(src - shift)
    return w / scatter_sum(w, index, dim_size)[index]


#: The last ``edge_index`` whose values passed :func:`check_edge_index`: (weak reference, its ``_version``, N).
_LAST_CHECKED: tuple | None = None


def check_edge_index(edge_index: torch.Tensor, num_nodes: int, name: str = "edge_index") -> None:
    """Raise ``ValueError`` naming ``name`` unless it is an integer ``(2, E)`` tensor with entries in ``0..N-1``.

    Reading the range makes the host wait for the device, so the value check is skipped when the same tensor
    object, unmodified (same ``_version``), passed it for the same ``N`` just before: the layers of one network
    share one ``edge_index``, and each would otherwise stall a GPU once per forward pass."""
    global _LAST_CHECKED
    if not torch.is_tensor(edge_index) or edge_index.ndim != 2 or edge_index.shape[0] != 2 \
            or edge_index.is_floating_point():
        got = tuple(edge_index.shape) if torch.is_tensor(edge_index) else type(edge_index).__name__
        raise ValueError(f"{name} must be an integer tensor of shape (2, E), got {got}")
    if edge_index.numel() and edge_index.device.type != "meta":
        last = _LAST_CHECKED
        if last is not None and last[0]() is edge_index and last[1] == edge_index._version and last[2] == num_nodes:
            return
        lo, hi = torch.stack(torch.aminmax(edge_index)).tolist()          # one read of the device, not two
        if lo < 0 or hi >= num_nodes:
            raise ValueError(f"{name} refers to nodes {lo}..{hi}, but there are only {num_nodes} nodes "
                             f"(valid: 0..{num_nodes - 1})")
        _LAST_CHECKED = (weakref.ref(edge_index), edge_index._version, num_nodes)


def check_batch(batch: torch.Tensor, num_nodes: int, num_graphs: int | None = None, name: str = "batch") -> None:
    """Raise ``ValueError`` naming ``name`` unless it is a sorted integer ``(N,)`` vector (graph of each node)."""
    if not torch.is_tensor(batch) or batch.ndim != 1 or batch.is_floating_point():
        got = tuple(batch.shape) if torch.is_tensor(batch) else type(batch).__name__
        raise ValueError(f"{name} must be an integer tensor of shape (N,), got {got}")
    if batch.shape[0] != num_nodes:
        raise ValueError(f"{name} has {batch.shape[0]} entries, but there are {num_nodes} nodes")
    if num_nodes and batch.device.type != "meta":
        if bool((batch[1:] < batch[:-1]).any()) or int(batch[0]) < 0:
            raise ValueError(f"{name} must be sorted with values >= 0 (nodes of graph b contiguous), got "
                             f"{batch.tolist()[:20]}{' ...' if num_nodes > 20 else ''}")
        if num_graphs is not None and int(batch[-1]) >= num_graphs:
            raise ValueError(f"{name} refers to graph {int(batch[-1])}, but there are {num_graphs} graphs")


def global_pool(x: torch.Tensor, batch: torch.Tensor, num_graphs: int | None = None,
                reduce: str = "sum") -> torch.Tensor:
    """Graph readout: pool the node features of each graph, :math:`h_b = \\bigoplus_{i: \\mathrm{batch}_i = b} x_i`.

    Invariant to relabelling the nodes within each graph. ``x`` (N, ...) and ``batch`` (N,) -> (B, ...).
    """
    num_graphs = int(batch[-1]) + 1 if num_graphs is None and len(batch) else (num_graphs or 0)
    check_batch(batch, x.shape[0], num_graphs)
    return scatter(x, batch, num_graphs, reduce)


class MessagePassing(nn.Module):
    """Base class: ``propagate`` = gather at the edges, ``message``, ``aggregate`` (scatter), ``update``.

    .. math::  x_i' = \\gamma\\Big(x_i, \\bigoplus_{j \\in \\mathcal{N}(i)} \\phi(x_i, x_j, e_{ij})\\Big)

    Args:
        aggr: the reduction :math:`\\bigoplus`, one of ``"sum"``, ``"mean"``, ``"max"`` (default: ``"sum"``).
    """

    def __init__(self, aggr: str = "sum"):
        super().__init__()
        if aggr not in AGGREGATIONS:
            raise ValueError(f"aggr must be one of {AGGREGATIONS}, got {aggr!r}")
        self.aggr = aggr
        self._message_args = list(inspect.signature(self.message).parameters)
        self._update_args = list(inspect.signature(self.update).parameters)[1:]

    def propagate(self, edge_index: torch.Tensor, num_nodes: int | None = None, **kwargs) -> torch.Tensor:
        """Run one round of message passing; ``kwargs`` are node tensors (first axis ``N``), edge tensors
        (first axis ``E``) or anything else that ``message``/``update`` ask for by name.

        Args:
            edge_index: ``(2, E)`` source and target node of every edge.
            num_nodes: ``N`` (default: the first axis of the first node tensor that ``message`` gathers).
        """
        if num_nodes is None:
            bases = [a[:-2] for a in self._message_args if a[-2:] in ("_i", "_j") and a[:-2] in kwargs]
            if not bases:
                raise ValueError("propagate needs num_nodes when message() gathers no node tensor (x_i/x_j)")
            num_nodes = kwargs[bases[0]].shape[0]
        check_edge_index(edge_index, num_nodes)
        src, dst = edge_index[0], edge_index[1]
        args = {}
        for a in self._message_args:
            if a == "index":
                args[a] = dst
            elif a == "num_nodes":
                args[a] = num_nodes
            elif a.endswith(("_i", "_j")) and a[:-2] in kwargs:
                base = kwargs[a[:-2]]
                if not torch.is_tensor(base) or base.shape[0] != num_nodes:
                    raise ValueError(f"{a[:-2]!r} must be a node tensor with first axis N={num_nodes} to be "
                                     f"gathered as {a}, got {tuple(getattr(base, 'shape', ()))}")
                args[a] = base.index_select(0, dst if a.endswith("_i") else src)
            elif a in kwargs:
                args[a] = kwargs[a]
            else:
                raise TypeError(f"{type(self).__name__}.message() needs {a!r}, which propagate() was not given")
        messages = self.message(**args)                                   # (E, ...)
        aggregated = self.aggregate(messages, dst, num_nodes)             # (N, ...)
        return self.update(aggregated, **{a: kwargs[a] for a in self._update_args if a in kwargs})

    def message(self, x_j: torch.Tensor) -> torch.Tensor:
        """:math:`\\phi`: one message per edge (default: the source node's features)."""
        return x_j

    def aggregate(self, messages: torch.Tensor, index: torch.Tensor, num_nodes: int) -> torch.Tensor:
        """:math:`\\bigoplus`: reduce the messages at their target nodes."""
        return scatter(messages, index, num_nodes, self.aggr)

    def update(self, aggregated: torch.Tensor) -> torch.Tensor:
        """:math:`\\gamma`: new node features from the aggregated messages (default: unchanged)."""
        return aggregated

    def extra_repr(self) -> str:
        return f"aggr={self.aggr!r}"
