"""The one radial network of the equivariant 3D models (NequIP-style, SE(3)-Transformer), with its smooth cutoff.

A model with a cutoff :math:`r_c` sees a neighbour only while :math:`r < r_c`. For energies and forces to stay
continuous when an atom crosses the cutoff, everything an edge contributes must vanish there, with its slope. The
radial network gives each edge its weights from the distance alone,

.. math::  R(r) = \\mathrm{MLP}\\big(e(r)\\big)\\, u(r),

with a radial basis :math:`e(r)` and an envelope :math:`u` that falls smoothly to 0 at :math:`r_c` (its value and
first two derivatives vanish there). The envelope multiplies the MLP's *output*: an MLP with biases maps a zero
input to a non-zero output, so an envelope on its input alone would leave a jump of :math:`\\mathrm{MLP}(0)` at the
cutoff. :class:`RadialMLP` cannot be called without the envelope, so no model can forget it.

Attention adds one more way to see an edge: a softmax over the neighbours counts an edge at the cutoff with a
finite weight. :func:`enveloped_softmax` multiplies the unnormalised weights by the envelope,

.. math::  \\alpha_{ij} = \\frac{u(r_{ij})\\, e^{s_{ij}}}{\\sum_{j'} u(r_{ij'})\\, e^{s_{ij'}}},

so an edge's weight goes to 0 smoothly as it leaves, and the others renormalise smoothly.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gdl.nn.message_passing import scatter_max, scatter_sum

__all__ = ["BesselBasis", "PolynomialCutoff", "RadialMLP", "enveloped_softmax"]


class BesselBasis(nn.Module):
    """Radial Bessel functions :math:`e_n(r) = \\sqrt{2/r_c}\\, \\sin(n \\pi r / r_c) / r`, :math:`n = 1..K`
    (written through ``sinc``, so finite at :math:`r = 0`).

    Shapes: ``r`` (E,) -> (E, K).
    """

    def __init__(self, num_basis: int = 8, cutoff: float = 5.0):
        super().__init__()
        self.cutoff = float(cutoff)
        self.register_buffer("n", torch.arange(1, num_basis + 1, dtype=torch.get_default_dtype()))

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        k = self.n.to(r.dtype) / self.cutoff                                 # (K,): n / r_c
        # sqrt(2/r_c) sin(n pi r / r_c) / r = sqrt(2/r_c) (n pi / r_c) sinc(n r / r_c); one product with r
        return (math.sqrt(2.0 / self.cutoff) * math.pi) * k * torch.sinc(r[:, None] * k)

    def extra_repr(self) -> str:
        return f"num_basis={len(self.n)}, cutoff={self.cutoff}"


class PolynomialCutoff(nn.Module):
    """Smooth cutoff :math:`u(x) = 1 - \\tfrac{(p+1)(p+2)}{2} x^p + p(p+2) x^{p+1} - \\tfrac{p(p+1)}{2} x^{p+2}`,
    :math:`x = r / r_c`, zero for :math:`x \\ge 1`; :math:`u` and its first two derivatives vanish at the cutoff."""

    def __init__(self, cutoff: float = 5.0, p: int = 6):
        super().__init__()
        self.cutoff, self.p = float(cutoff), float(p)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        x, p = (r / self.cutoff).clamp(max=1.0), self.p       # u(1) = 0 exactly; no huge powers beyond it
        # Horner's scheme, 1 + x^p (-(p+1)(p+2)/2 + x (p(p+2) - x p(p+1)/2)): fewer operations than three powers
        u = 1 + x ** p * (x * (p * (p + 2) - x * (p * (p + 1) / 2)) - (p + 1) * (p + 2) / 2)
        return u * (x < 1)

    def extra_repr(self) -> str:
        return f"cutoff={self.cutoff}, p={int(self.p)}"


class RadialMLP(nn.Module):
    """Per-edge weights from the distance, zero (with zero slope) at the cutoff:
    :math:`R(r) = \\mathrm{MLP}(e(r))\\, u(r)`.

    Args:
        sizes: layer widths ``[K, hidden, ..., out]`` (SiLU between layers, none after the last).

    Shapes: ``basis`` (E, K), ``envelope`` (E,) -> (E, out).
    """

    def __init__(self, sizes: list[int]):
        super().__init__()
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.SiLU()]
        self.net = nn.Sequential(*layers[:-1])

    def forward(self, basis: torch.Tensor, envelope: torch.Tensor) -> torch.Tensor:
        if envelope.shape != basis.shape[:1]:
            raise ValueError(f"envelope must have shape (E,)=({basis.shape[0]},) like the basis rows, "
                             f"got {tuple(envelope.shape)}")
        return self.net(basis) * envelope[:, None]


def enveloped_softmax(logits: torch.Tensor, envelope: torch.Tensor, index: torch.Tensor,
                      num_nodes: int) -> torch.Tensor:
    """Softmax over the edges that share a target, each unnormalised weight multiplied by the envelope:
    :math:`\\alpha_e = u_e e^{s_e} / \\sum_{e' \\to i} u_{e'} e^{s_{e'}}`. A target whose edges all have
    :math:`u = 0` gets weights 0 (not NaN).

    Shapes: ``logits`` (E, H), ``envelope`` (E,), ``index`` (E,) -> (E, H).
    """
    shift = scatter_max(logits.detach(), index, num_nodes)[index]     # for stability; cancels in the ratio
    w = torch.exp(logits - shift) * envelope[:, None]
    total = scatter_sum(w, index, num_nodes)[index]
    return w / torch.where(total > 0, total, torch.ones_like(total))
