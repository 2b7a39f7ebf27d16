"""E(n)-equivariant graph neural networks (EGNN), and the two baselines of its N-body experiment.

Satorras, Hoogeboom and Welling, "E(n) Equivariant Graph Neural Networks", ICML 2021,
https://arxiv.org/abs/2102.09844.

An EGNN layer keeps invariant node features :math:`h_i` and coordinates :math:`\\vec x_i` apart. Messages see the
coordinates only through squared distances, and coordinates move along the relative vectors:

.. math::
    m_{ij} &= \\phi_e\\big(h_i, h_j, \\lVert \\vec x_i - \\vec x_j \\rVert^2, a_{ij}\\big), \\\\
    \\vec v_i' &= \\phi_v(h_i)\\, \\vec v_i + \\frac{1}{|\\mathcal N(i)|} \\sum_{j} (\\vec x_i - \\vec x_j)\\,
        \\phi_x(m_{ij}), \\qquad \\vec x_i' = \\vec x_i + \\vec v_i' , \\\\
    h_i' &= h_i + \\phi_h\\big(h_i, \\textstyle\\sum_j m_{ij}\\big).

(Without velocities the middle line is :math:`\\vec x_i' = \\vec x_i + \\frac{1}{|\\mathcal N(i)|}\\sum_j
(\\vec x_i - \\vec x_j) \\phi_x(m_{ij})`.) Rotating, reflecting or translating the input rotates, reflects or
translates the output positions and leaves :math:`h` unchanged, because :math:`\\phi_\\cdot` only see invariants and
:math:`\\vec x_i - \\vec x_j`, :math:`\\vec v_i` transform as vectors. No square root is taken, so coincident
points give finite values and gradients (no NaN).
"""

from __future__ import annotations

import torch
from torch import nn

from gdl.nn._checks import check_finite, model_dtype, sum_is_finite
from gdl.nn.message_passing import MessagePassing, degree

__all__ = ["EGNNLayer", "EGNN", "CoordinateGNN", "LinearDynamics", "check_points"]


def check_points(batch, fields: tuple[str, ...] = ("pos",), values: bool = True) -> None:
    """Raise ``ValueError`` naming the field if a point/vector field is not a finite ``(N, 3)`` float tensor
    (``values=False``: the shapes and dtypes only)."""
    for name in fields:
        if name not in batch:
            raise ValueError(f"the batch has no field {name!r} (fields: {batch.keys()})")
        t = batch[name]
        if t.ndim != 2 or t.shape[1] != 3 or not t.is_floating_point():
            raise ValueError(f"{name} must be a float tensor of shape (N, 3), got {tuple(t.shape)} {t.dtype}")
        if values and not torch.isfinite(t).all():
            bad = (~torch.isfinite(t)).any(1).nonzero().flatten().tolist()
            raise ValueError(f"{name} has NaN or infinite entries (nodes {bad[:10]})")


def _prepare(batch, model: nn.Module, points: tuple[str, ...], features: tuple[str, ...], edge: bool):
    """Check the point fields (:func:`check_points`), the node scalar fields and ``edge_attr`` (finite), and cast
    every floating field the model reads to its dtype (the rule of :mod:`gdl.nn._checks`).

    The values are checked with one sum per field and a single wait for the device: a finite total means every
    entry is finite; only otherwise does each field's own check run, to name the field and the rows."""
    check_points(batch, points, values=False)
    owner = type(model).__name__
    names = list(points) + [k for k in features if k in batch] + (["edge_attr"] if edge and "edge_attr" in batch
                                                                   else [])
    floats = [batch[k].detach() for k in names if batch[k].is_floating_point() and batch[k].device.type != "meta"]
    if floats and not bool(sum_is_finite(*floats)):
        check_points(batch, points)
        for name in names[len(points):]:
            check_finite(batch[name], repr(name), owner)
    dtype = model_dtype(model)
    cast = {k: batch[k].to(dtype) for k in names
            if batch[k].is_floating_point() and dtype is not None and batch[k].dtype != dtype}
    return batch.replace(**cast) if cast else batch


def _mlp(n_in: int, hidden: int, n_out: int, last_act: bool = False) -> nn.Sequential:
    layers = [nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, n_out)]
    return nn.Sequential(*layers, nn.SiLU()) if last_act else nn.Sequential(*layers)


def _edges(batch) -> torch.Tensor:
    """The batch's ``edge_index``, or all ordered pairs within each graph when it has none."""
    if batch.edge_index is not None:
        return batch.edge_index
    b = batch.batch
    same = b[:, None] == b[None, :]
    same.fill_diagonal_(False)
    dst, src = same.nonzero(as_tuple=True)
    return torch.stack([src, dst])


class EGNNLayer(MessagePassing):
    """One E(n)-equivariant layer (equations in the module docstring).

    Args:
        hidden: width of :math:`h` and of the messages.
        edge_features: size of :math:`a_{ij}` (0: none).
        velocity: update velocities too (the N-body variant, the paper's eq. 7).

    Shapes: ``h`` (N, C), ``x`` (N, 3), ``v`` (N, 3) or ``None``, ``edge_index`` (2, E), ``edge_attr`` (E, A),
    ``degree`` (N, 1) or ``None`` -> ``h`` (N, C), ``x`` (N, 3), ``v`` (N, 3) or ``None``. ``degree`` is
    :math:`\\max(|\\mathcal N(i)|, 1)`; a network passes it to every layer (:meth:`in_degree`, computed once per
    forward pass), a layer alone computes it.
    """

    def __init__(self, hidden: int, edge_features: int = 0, velocity: bool = False):
        super().__init__(aggr="sum")
        self.hidden, self.edge_features = hidden, edge_features
        self.phi_e = _mlp(2 * hidden + 1 + edge_features, hidden, hidden, last_act=True)
        self.phi_x = _mlp(hidden, hidden, 1)
        self.phi_h = _mlp(2 * hidden, hidden, hidden)
        self.phi_v = _mlp(hidden, hidden, 1) if velocity else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                m.reset_parameters()
        nn.init.xavier_uniform_(self.phi_x[-1].weight, gain=1e-3)    # start with small coordinate steps

    @staticmethod
    def in_degree(edge_index: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor:
        """``(N, 1)``: :math:`\\max(|\\mathcal N(i)|, 1)`, the number of edges into each node (at least 1)."""
        return degree(edge_index[1], n, dtype).clamp(min=1)[:, None]

    def forward(self, h, x, edge_index, edge_attr=None, v=None, degree=None):
        n = h.shape[0]
        agg = self.propagate(edge_index, num_nodes=n, h=h, x=x, edge_attr=edge_attr)   # (N, C + 3)
        m, dx = agg[:, :self.hidden], agg[:, self.hidden:]
        dx = dx / (self.in_degree(edge_index, n, x.dtype) if degree is None else degree)   # C = 1 / |N(i)|
        if self.phi_v is not None:
            if v is None:
                raise ValueError("EGNNLayer(velocity=True) needs the velocities v (N, 3)")
            v = self.phi_v(h) * v + dx
            x = x + v
        else:
            x = x + dx
        h = h + self.phi_h(torch.cat([h, m], -1))
        return h, x, v

    def message(self, h_i, h_j, x_i, x_j, edge_attr):
        diff = x_i - x_j                                                  # (E, 3)
        d2 = (diff * diff).sum(-1, keepdim=True)                          # (E, 1), no sqrt: smooth at 0
        parts = [h_i, h_j, d2] + ([edge_attr] if self.edge_features else [])
        m = self.phi_e(torch.cat(parts, -1))                              # (E, C)
        return torch.cat([m, diff * self.phi_x(m)], -1)                   # (E, C + 3)

    def extra_repr(self) -> str:
        return f"hidden={self.hidden}, edge_features={self.edge_features}, velocity={self.phi_v is not None}"


class EGNN(nn.Module):
    """A stack of :class:`EGNNLayer` that predicts new positions (e.g. of an N-body system).

    Node scalars are read from the fields named in ``node_features`` (their widths summed to ``in_features``);
    with ``velocity=True`` the speed :math:`\\lVert \\vec v_i \\rVert` is appended (computed safely at 0) and the
    velocities ``vel`` are updated too. Edges come from ``edge_index`` (fully connected graphs when absent) with
    ``edge_attr`` as :math:`a_{ij}` when ``edge_features > 0``.

    Args:
        in_features: total width of the node scalar fields.
        hidden, num_layers: size of the network (paper: 64 and 4).
        edge_features: width of ``edge_attr`` (0: not used).
        velocity: use and update ``vel``.
        node_features: names of the node scalar fields.

    Shapes: input a :class:`gdl.data.GraphBatch` with ``pos`` (N, 3) [+ ``vel`` (N, 3)]; output ``(N, 3)``
    positions (a "node point" field).

    Examples:
        >>> from gdl.data import collate
        >>> model = EGNN(in_features=1, hidden=16, num_layers=2, node_features=("q",))
        >>> batch = collate([{"pos": torch.randn(4, 3), "q": torch.ones(4, 1)}])
        >>> model(batch).shape
        torch.Size([4, 3])
    """

    def __init__(self, in_features: int = 1, hidden: int = 64, num_layers: int = 4, edge_features: int = 0,
                 velocity: bool = False, node_features: tuple[str, ...] = ("x",)):
        super().__init__()
        self.velocity, self.node_features, self.in_features = velocity, tuple(node_features), in_features
        self.embed = nn.Linear(in_features + int(velocity), hidden)
        self.layers = nn.ModuleList(EGNNLayer(hidden, edge_features, velocity) for _ in range(num_layers))
        self.edge_features = edge_features

    def node_scalars(self, batch) -> torch.Tensor:
        parts = [batch[k].reshape(batch.num_nodes, -1) for k in self.node_features if k in batch]
        if self.velocity:
            v = batch.vel
            parts.append(torch.sqrt((v * v).sum(-1, keepdim=True) + torch.finfo(v.dtype).tiny))  # |v|
        h = torch.cat(parts, -1) if parts else batch.pos.new_zeros(batch.num_nodes, 0)
        if h.shape[1] != self.in_features + int(self.velocity):
            raise ValueError(f"node features {self.node_features} have total width {h.shape[1] - self.velocity}, "
                             f"the model was built for in_features={self.in_features}")
        return h.to(batch.pos.dtype)

    def forward(self, batch) -> torch.Tensor:
        batch = _prepare(batch, self, ("pos", "vel") if self.velocity else ("pos",), self.node_features,
                         bool(self.edge_features))
        edge_index = _edges(batch)
        edge_attr = batch.edge_attr if self.edge_features else None
        if edge_attr is not None and edge_attr.shape != (edge_index.shape[1], self.edge_features):
            raise ValueError(f"edge_attr must have shape (E, {self.edge_features})=({edge_index.shape[1]}, "
                             f"{self.edge_features}), got {tuple(edge_attr.shape)}")
        h, x = self.embed(self.node_scalars(batch)), batch.pos
        v = batch.vel if self.velocity else None
        deg = EGNNLayer.in_degree(edge_index, x.shape[0], x.dtype)            # (N, 1): the same in every layer
        for layer in self.layers:
            h, x, v = layer(h, x, edge_index, edge_attr, v, deg)
        return x


class _MPLayer(MessagePassing):
    """A plain message-passing layer: :math:`h_i' = h_i + \\phi_h(h_i, \\sum_j \\phi_e(h_i, h_j, a_{ij}))`."""

    def __init__(self, hidden: int, edge_features: int = 0):
        super().__init__(aggr="sum")
        self.edge_features = edge_features
        self.phi_e = _mlp(2 * hidden + edge_features, hidden, hidden, last_act=True)
        self.phi_h = _mlp(2 * hidden, hidden, hidden)

    def forward(self, h, edge_index, edge_attr=None):
        return h + self.phi_h(torch.cat([h, self.propagate(edge_index, h=h, edge_attr=edge_attr)], -1))

    def message(self, h_i, h_j, edge_attr):
        return self.phi_e(torch.cat([h_i, h_j] + ([edge_attr] if self.edge_features else []), -1))


class CoordinateGNN(nn.Module):
    """The non-equivariant baseline: a message-passing network that reads the coordinates (and velocities) as
    ordinary node features and predicts :math:`\\vec x_i' = \\vec x_i + \\mathrm{MLP}(h_i)`.

    Permutation-equivariant, but not rotation- or translation-equivariant: it must learn those symmetries
    from data.

    Shapes: as :class:`EGNN`.
    """

    def __init__(self, in_features: int = 1, hidden: int = 64, num_layers: int = 4, edge_features: int = 0,
                 velocity: bool = True, node_features: tuple[str, ...] = ("x",)):
        super().__init__()
        self.velocity, self.node_features, self.edge_features = velocity, tuple(node_features), edge_features
        self.embed = nn.Linear(in_features + 3 + 3 * int(velocity), hidden)
        self.layers = nn.ModuleList(_MPLayer(hidden, edge_features) for _ in range(num_layers))
        self.head = _mlp(hidden, hidden, 3)

    def forward(self, batch) -> torch.Tensor:
        batch = _prepare(batch, self, ("pos", "vel") if self.velocity else ("pos",), self.node_features,
                         bool(self.edge_features))
        parts = [batch[k].reshape(batch.num_nodes, -1) for k in self.node_features if k in batch] + [batch.pos]
        if self.velocity:
            parts.append(batch.vel)
        h = self.embed(torch.cat(parts, -1).to(batch.pos.dtype))
        edge_index = _edges(batch)
        edge_attr = batch.edge_attr if self.edge_features else None
        for layer in self.layers:
            h = layer(h, edge_index, edge_attr)
        return batch.pos + self.head(h)


class LinearDynamics(nn.Module):
    """The linear baseline: :math:`\\vec x_i' = \\vec x_i + \\tau\\, \\vec v_i` with one learned scalar
    :math:`\\tau` (constant-velocity motion). Equivariant, but blind to the interactions.

    Shapes: input a batch with ``pos`` and ``vel`` (N, 3); output (N, 3).
    """

    def __init__(self):
        super().__init__()
        self.tau = nn.Parameter(torch.zeros(()))

    def forward(self, batch) -> torch.Tensor:
        batch = _prepare(batch, self, ("pos", "vel"), (), False)
        return batch.pos + self.tau * batch.vel
