"""The Transformer encoder, written out by hand: permutation equivariant on its tokens, until positions are added.

Self-attention (`Vaswani et al., Attention Is All You Need <https://arxiv.org/abs/1706.03762>`_, NeurIPS 2017)
updates every token from all tokens,

.. math::  y_i = W_o \\sum_{j=1}^{T} \\alpha_{ij}\\, W_v x_j, \\qquad
           \\alpha_{ij} = \\frac{\\exp(q_i^\\top k_j / \\sqrt{d})}{\\sum_{j'} \\exp(q_i^\\top k_{j'} / \\sqrt{d})},
           \\quad q_i = W_q x_i,\\ k_j = W_k x_j ,

which is message passing on the complete graph (every token sends a message to every token, itself included)
with the softmax weights computed per receiving node: :class:`AttentionMessagePassing` computes the same layer
with :class:`~gdl.nn.message_passing.MessagePassing`. Nothing in it depends on the order of the tokens, so the
encoder without positional encoding satisfies :math:`f(P X) = P f(X)`. Adding a positional encoding
:math:`x_i + p_i` (sinusoidal or learned) ties each token to its index and breaks the symmetry.

Inputs: a :class:`gdl.data.GraphBatch` (each graph a sequence of tokens, its node field ``x``, in order), or a
padded tensor ``(B, T, C)`` with a boolean ``mask`` ``(B, T)`` (valid tokens first). Padding is ignored whatever
it holds (NaN included); a sequence with no valid token pools to the zero vector, as an empty set does in
:class:`~gdl.nn.deepsets.DeepSets`.

Shapes: ``B`` sequences, ``T`` tokens (padded length), ``N`` tokens in all, ``C`` channels, ``nh`` heads,
``hs`` = C / nh.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gdl.nn.deepsets import _padded, _pool_padded, set_inputs
from gdl.nn.message_passing import AGGREGATIONS, MessagePassing, scatter_softmax

__all__ = ["MultiHeadSelfAttention", "AttentionMessagePassing", "TransformerBlock", "TransformerEncoder",
           "complete_graph", "sinusoidal_encoding", "POSITIONAL"]

#: Positional encodings :class:`TransformerEncoder` offers (``None``: none, the equivariant encoder).
POSITIONAL = (None, "sinusoidal", "learned")


def sinusoidal_encoding(length: int, dim: int) -> torch.Tensor:
    """``(length, dim)`` table :math:`p_{t, 2k} = \\sin(t / 10000^{2k/d})`, :math:`p_{t, 2k+1} = \\cos(\\cdot)`."""
    t = torch.arange(length, dtype=torch.float64).unsqueeze(1)
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    pe = torch.zeros(length, dim, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(t * freq)
    pe[:, 1::2] = torch.cos(t * freq)[:, : dim // 2]
    return pe.to(torch.get_default_dtype())


def complete_graph(batch: torch.Tensor) -> torch.Tensor:
    """``edge_index`` (2, sum_b n_b^2) of every ordered pair ``(j, i)`` of nodes in the same graph, self-pairs
    included, for the batch vector ``batch`` (N,) (sorted)."""
    counts = torch.bincount(batch)
    ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    parts = []
    for b, n in enumerate(counts.tolist()):
        idx = torch.arange(n, device=batch.device) + ptr[b]
        parts.append(torch.stack([idx.repeat_interleave(n), idx.repeat(n)]))          # (2, n^2): j -> i
    return torch.cat(parts, dim=1) if parts else batch.new_zeros(2, 0)


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention on padded sequences (see the module docstring for the equation).

    Shapes: ``x`` (B, T, C), ``mask`` (B, T) bool (``True``: a real token) -> (B, T, C).
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}")
        self.dim, self.heads = dim, heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=-1)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        att = q @ k.transpose(-2, -1) / math.sqrt(C // self.heads)                                # (B, nh, T, T)
        if mask is not None:
            att = att.masked_fill(~mask[:, None, None, :], float("-inf"))
        weights = F.softmax(att, dim=-1)
        if mask is not None:          # a sequence with no valid token: weights 0, not softmax(-inf, ...) = NaN
            weights = weights.masked_fill(~mask.any(1)[:, None, None, None], 0.0)
        y = weights @ v                                                             # (B, nh, T, hs)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, heads={self.heads}"


class AttentionMessagePassing(MessagePassing):
    """The same attention as message passing: :math:`m_{ij} = \\alpha_{ij} W_v x_j`, summed at :math:`i`, with
    :math:`\\alpha_{ij}` a softmax over the edges arriving at :math:`i`. On :func:`complete_graph` it equals
    :class:`MultiHeadSelfAttention` (whose weights it uses); on a sparser graph it is graph attention.

    Shapes: ``x`` (N, C), ``edge_index`` (2, E) -> (N, C).
    """

    def __init__(self, attention: MultiHeadSelfAttention):
        super().__init__(aggr="sum")
        self.attention = attention

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        N, C = x.shape
        nh = self.attention.heads
        q, k, v = (t.view(N, nh, C // nh) for t in self.attention.qkv(x).split(C, dim=-1))        # (N, nh, hs)
        return self.attention.proj(self.propagate(edge_index, q=q, k=k, v=v).reshape(N, C))

    def message(self, q_i, k_j, v_j, index, num_nodes):
        score = (q_i * k_j).sum(-1) / math.sqrt(q_i.shape[-1])                                      # (E, nh)
        return scatter_softmax(score, index, num_nodes).unsqueeze(-1) * v_j                         # (E, nh, hs)


class TransformerBlock(nn.Module):
    """Pre-norm encoder block: :math:`x \\leftarrow x + \\mathrm{MHSA}(\\mathrm{LN}(x))`, then
    :math:`x \\leftarrow x + \\mathrm{MLP}(\\mathrm{LN}(x))`; every part acts token-wise or by attention."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 2):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), mask)
        return x + self.mlp(self.ln2(x))


class TransformerEncoder(nn.Module):
    """Token embedding, optional positional encoding, ``num_layers`` :class:`TransformerBlock` s, a head.

    .. math::  h^{(0)}_t = W_e x_t + p_t, \\qquad y = \\mathrm{head}\\big(\\mathrm{LN}(h^{(L)})\\big)

    Without ``positional`` (:math:`p_t = 0`) the encoder is permutation equivariant per token (``readout="node"``)
    and invariant with a pooled readout (``"sum"``, ``"mean"``, ``"max"``); with it, neither.

    Args:
        in_dim, dim, out_dim: channels of the tokens, of the model, of the output.
        heads, num_layers: attention heads and blocks (defaults 2 and 2).
        positional: ``None``, ``"sinusoidal"`` or ``"learned"`` (a table of ``max_len`` vectors,
            initialised :math:`\\mathcal{N}(0, 0.02^2)` like GPT-2's).
        max_len: the longest sequence with a position (default 512).
        readout: ``"node"`` (one output per token) or a pooling over each sequence.

    Shapes: a :class:`gdl.data.GraphBatch` with ``x`` (N, in_dim) -> (N, out_dim) or (B, out_dim); padded ``x``
    (B, T, in_dim) with ``mask`` (B, T) -> (B, T, out_dim) (zero at padding) or (B, out_dim).
    """

    def __init__(self, in_dim: int, dim: int = 32, out_dim: int = 1, heads: int = 2, num_layers: int = 2,
                 positional: str | None = None, max_len: int = 512, readout: str = "node"):
        super().__init__()
        if positional not in POSITIONAL:
            raise ValueError(f"positional must be one of {POSITIONAL}, got {positional!r}")
        if readout not in ("node",) + AGGREGATIONS:
            raise ValueError(f"readout must be 'node' or one of {AGGREGATIONS}, got {readout!r}")
        self.in_dim, self.positional, self.max_len, self.readout = in_dim, positional, max_len, readout
        self.embed = nn.Linear(in_dim, dim)
        if positional == "sinusoidal":
            self.register_buffer("pe", sinusoidal_encoding(max_len, dim))
        elif positional == "learned":
            self.pe = nn.Parameter(0.02 * torch.randn(max_len, dim))
        else:
            self.pe = None
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads) for _ in range(num_layers))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, out_dim)

    def forward(self, x, mask: torch.Tensor | None = None) -> torch.Tensor:
        kind, x, index, num_seqs = set_inputs(x, mask, self.in_dim, type(self).__name__, self)
        batch = index if kind == "graph" else None
        if kind == "graph":
            x, mask = _padded(x, batch, num_seqs)                                    # (B, T, C), (B, T)
        else:
            mask = index
        B, T, _ = x.shape
        if T > self.max_len and self.pe is not None:
            raise ValueError(f"TransformerEncoder: sequences of {T} tokens exceed max_len={self.max_len}")
        h = self.embed(x)                                                            # (B, T, dim)
        if self.pe is not None:
            h = h + self.pe[:T]
        for block in self.blocks:
            h = block(h, mask)
        h = self.ln(h).masked_fill(~mask.unsqueeze(-1), 0.0)                         # zero at padding
        if self.readout != "node":
            return self.head(_pool_padded(h, mask, self.readout))                    # (B, out_dim)
        out = self.head(h).masked_fill(~mask.unsqueeze(-1), 0.0)                     # (B, T, out_dim)
        return out[mask] if kind == "graph" else out                                  # (N, out) or padded

    def extra_repr(self) -> str:
        return f"positional={self.positional!r}, readout={self.readout!r}"
