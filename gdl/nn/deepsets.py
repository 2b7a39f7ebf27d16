"""DeepSets: functions of sets, after `Zaheer et al., Deep Sets <https://arxiv.org/abs/1703.06114>`_ (NeurIPS 2017).

A permutation-invariant function of a set :math:`\\{x_1, \\dots, x_n\\}` can be written as

.. math::  f(X) = \\rho\\Big(\\bigoplus_{i=1}^{n} \\phi(x_i)\\Big)

with :math:`\\bigoplus` a sum (or mean, or max); the permutation-equivariant linear layer is

.. math::  x_i' = \\Lambda x_i + \\Gamma \\bigoplus_{j=1}^{n} x_j + b .

Both are message passing on a graph with no edges plus one pooling step, so they reuse
:func:`~gdl.nn.message_passing.scatter` and :func:`~gdl.nn.message_passing.global_pool`.

Sets of different sizes come either as a :class:`gdl.data.GraphBatch` (elements concatenated, the batch vector
says which set each belongs to; no ``edge_index`` needed) or padded: a tensor ``(B, N_max, C)`` with a boolean
``mask`` ``(B, N_max)`` (``True`` for real elements), passed as ``model(x, mask)`` or ``model({"x": x, "mask":
mask})``. Padding never changes a result, whatever it holds (NaN included: padded entries are replaced, with
``masked_fill``, never multiplied by 0). A set with no element pools to the zero vector (the sum over no
elements), so its output is :math:`\rho(0)`; the Transformer's pooled read-out does the same. Inputs follow
:mod:`gdl.nn._checks`: cast to the model's dtype; NaN in a real element is a ``ValueError``.

:class:`GRUSetBaseline` reads the set as a sequence (the order matters to it): the baseline of the chapter.

Shapes: ``B`` sets, ``N`` elements in all (``N_max`` per padded row), ``C`` channels.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gdl.nn._checks import check_finite, to_model_dtype
from gdl.nn.gnn import mlp
from gdl.nn.message_passing import AGGREGATIONS, check_batch, global_pool, scatter

__all__ = ["DeepSets", "DeepSetsLayer", "GRUSetBaseline", "set_inputs"]


def set_inputs(x: Any, mask: torch.Tensor | None, in_dim: int, owner: str, module: nn.Module | None = None):
    """Normalise the accepted set inputs.

    Returns ``("graph", x (N, C), batch (N,), num_graphs)`` or ``("padded", x (B, N_max, C), mask (B, N_max),
    B)``, after checking shapes and raising ``ValueError`` naming the tensor that does not fit or holds NaN in a
    real element. With ``module``, ``x`` is cast to its dtype, and padded entries are set to 0.
    """
    kind, x, index, num_sets = _set_inputs(x, mask, in_dim, owner)
    check_finite(x, "'x'", owner, None if kind == "graph" else index)
    if kind == "padded":
        x = x.masked_fill(~index.unsqueeze(-1), 0.0)                   # padding holds nothing, not even NaN
    return kind, (x if module is None else to_model_dtype(module, x)), index, num_sets


def _set_inputs(x: Any, mask: torch.Tensor | None, in_dim: int, owner: str):
    if isinstance(x, dict):
        if "x" not in x:
            raise ValueError(f"{owner}: a padded set input dict needs keys 'x' and optionally 'mask', got {list(x)}")
        x, mask = x["x"], x.get("mask", mask)
    if hasattr(x, "batch") and hasattr(x, "num_graphs"):              # a GraphBatch
        b = x
        if getattr(b, "x", None) is None:
            raise ValueError(f"{owner}: the GraphBatch needs the set elements as node field 'x'")
        if b.x.ndim != 2 or b.x.shape[-1] != in_dim:
            raise ValueError(f"{owner}: node field 'x' must have shape (N, {in_dim}), got {tuple(b.x.shape)}")
        check_batch(b.batch, b.x.shape[0], b.num_graphs)
        return "graph", b.x, b.batch, b.num_graphs
    if not torch.is_tensor(x) or x.ndim != 3 or x.shape[-1] != in_dim:
        got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"{owner}: padded sets 'x' must have shape (B, N_max, {in_dim}), got {got}")
    if mask is None:
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    if not torch.is_tensor(mask) or mask.dtype != torch.bool or mask.shape != x.shape[:2]:
        got = (tuple(mask.shape), mask.dtype) if torch.is_tensor(mask) else type(mask).__name__
        raise ValueError(f"{owner}: 'mask' must be a bool tensor of shape {tuple(x.shape[:2])} (B, N_max) "
                         f"matching 'x', got {got}")
    return "padded", x, mask, x.shape[0]


def _pool_padded(h: torch.Tensor, mask: torch.Tensor, reduce: str) -> torch.Tensor:
    """Pool ``h`` (B, N_max, C) over the valid entries of each row -> (B, C) (0 for empty rows)."""
    m = mask.unsqueeze(-1)
    if reduce == "max":
        out = h.masked_fill(~m, float("-inf")).amax(dim=1)
        return torch.where(mask.any(1, keepdim=True), out, torch.zeros_like(out))
    total = h.masked_fill(~m, 0.0).sum(dim=1)                       # not h * m: 0 * NaN is NaN
    return total / mask.sum(1, keepdim=True).clamp(min=1).to(h.dtype) if reduce == "mean" else total


class DeepSets(nn.Module):
    """The invariant DeepSets model :math:`f(X) = \\rho\\big(\\bigoplus_i \\phi(x_i)\\big)`.

    Args:
        in_dim, hidden, out_dim: channels of the elements, of :math:`\\phi`'s layers, of the output.
        pool: :math:`\\bigoplus`, ``"sum"`` (default; counts matter), ``"mean"`` or ``"max"``.
        phi_layers: linear layers in :math:`\\phi` (default 2).
        rho_layers: linear layers in :math:`\\rho` (default 2; 1 makes :math:`\\rho` linear, so a sum over a
            set larger than any seen in training needs no extrapolation by :math:`\\rho`).

    Shapes: a :class:`gdl.data.GraphBatch` with ``x`` (N, in_dim), or padded ``x`` (B, N_max, in_dim) with
    ``mask`` (B, N_max) -> (B, out_dim); ``out_dim == 1`` gives (B,).
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, pool: str = "sum", phi_layers: int = 2,
                 rho_layers: int = 2):
        super().__init__()
        if pool not in AGGREGATIONS:
            raise ValueError(f"pool must be one of {AGGREGATIONS}, got {pool!r}")
        if phi_layers < 1 or rho_layers < 1:
            raise ValueError(f"phi_layers and rho_layers must be >= 1, got {phi_layers} and {rho_layers}")
        self.in_dim, self.out_dim, self.pool = in_dim, out_dim, pool
        self.phi = nn.Sequential(mlp(in_dim, *[hidden] * phi_layers), nn.ReLU())
        self.rho = mlp(*[hidden] * rho_layers, out_dim)

    def forward(self, x, mask: torch.Tensor | None = None) -> torch.Tensor:
        kind, x, index, num_sets = set_inputs(x, mask, self.in_dim, type(self).__name__, self)
        h = self.phi(x)
        if kind == "graph":
            pooled = global_pool(h, index, num_sets, self.pool)                     # (B, hidden)
        else:
            pooled = _pool_padded(h, index, self.pool)                              # (B, hidden)
        out = self.rho(pooled)
        return out.squeeze(-1) if self.out_dim == 1 else out

    def extra_repr(self) -> str:
        return f"pool={self.pool!r}"


class DeepSetsLayer(nn.Module):
    """The permutation-equivariant layer :math:`x_i' = \\Lambda x_i + \\Gamma \\bigoplus_j x_j + b`.

    Args:
        in_dim, out_dim: channels in and out.
        pool: ``"sum"``, ``"mean"`` (default) or ``"max"``.

    Shapes: a :class:`gdl.data.GraphBatch` with ``x`` (N, in_dim) -> (N, out_dim); padded ``x``
    (B, N_max, in_dim) with ``mask`` -> (B, N_max, out_dim), zero at padding.
    """

    def __init__(self, in_dim: int, out_dim: int, pool: str = "mean"):
        super().__init__()
        if pool not in AGGREGATIONS:
            raise ValueError(f"pool must be one of {AGGREGATIONS}, got {pool!r}")
        self.in_dim, self.out_dim, self.pool = in_dim, out_dim, pool
        self.lam = nn.Linear(in_dim, out_dim)                   # Lambda and b
        self.gamma = nn.Linear(in_dim, out_dim, bias=False)     # Gamma

    def forward(self, x, mask: torch.Tensor | None = None) -> torch.Tensor:
        kind, x, index, num_sets = set_inputs(x, mask, self.in_dim, type(self).__name__, self)
        if kind == "graph":
            pooled = scatter(x, index, num_sets, self.pool)                          # (B, in_dim)
            return self.lam(x) + self.gamma(pooled)[index]                           # (N, out_dim)
        pooled = _pool_padded(x, index, self.pool)                                   # (B, in_dim)
        out = self.lam(x) + self.gamma(pooled).unsqueeze(1)                          # (B, N_max, out_dim)
        return out.masked_fill(~index.unsqueeze(-1), 0.0)

    def extra_repr(self) -> str:
        return f"{self.in_dim}, {self.out_dim}, pool={self.pool!r}"


class GRUSetBaseline(nn.Module):
    """A recurrent baseline that reads a set as a sequence, in the order given: an MLP embedding, a GRU, and a
    linear head on the last hidden state, :math:`y = W h_n + c`, :math:`h_t = \\mathrm{GRU}(h_{t-1},
    \\mathrm{MLP}(x_t))`. Not permutation invariant.

    Args:
        in_dim, hidden, out_dim: channels of the elements, of the GRU, of the output.
        scale: multiplies the output (default 1). The hidden state is bounded (:math:`|h| < 1`), so targets of
            size ~50 would need head weights of that size, which Adam reaches only slowly; set ``scale`` to the
            typical size of the target instead.

    Shapes: as :class:`DeepSets`: -> (B, out_dim) or (B,) for ``out_dim == 1``.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, scale: float = 1.0):
        super().__init__()
        self.in_dim, self.out_dim, self.scale = in_dim, out_dim, float(scale)
        self.embed = nn.Sequential(mlp(in_dim, hidden, hidden), nn.ReLU())
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, out_dim)

    def forward(self, x, mask: torch.Tensor | None = None) -> torch.Tensor:
        kind, x, index, num_sets = set_inputs(x, mask, self.in_dim, type(self).__name__, self)
        if kind == "graph":
            x, index = _padded(x, index, num_sets)
        if not bool(index.any(1).all()):
            raise ValueError("GRUSetBaseline: every set needs at least one element ('mask' has an empty row)")
        lengths = index.sum(1)
        if not bool((index == (torch.arange(index.shape[1], device=index.device) < lengths[:, None])).all()):
            raise ValueError("GRUSetBaseline: 'mask' must hold the valid entries first in each row")
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(x), lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        _, h = self.gru(packed)                                                      # (1, B, hidden)
        out = self.scale * self.head(h[0])
        return out.squeeze(-1) if self.out_dim == 1 else out

    def extra_repr(self) -> str:
        return f"scale={self.scale:g}"


def _padded(x: torch.Tensor, batch: torch.Tensor, num_sets: int) -> tuple[torch.Tensor, torch.Tensor]:
    counts = torch.bincount(batch, minlength=num_sets)
    ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    pos = torch.arange(x.shape[0], device=x.device) - ptr[batch]
    out = x.new_zeros(num_sets, int(counts.max()), x.shape[-1])
    mask = torch.zeros(num_sets, int(counts.max()), dtype=torch.bool, device=x.device)
    out[batch, pos] = x
    mask[batch, pos] = True
    return out, mask
