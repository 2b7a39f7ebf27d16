"""A U(1) lattice gauge theory and a layer that is gauge-invariant by construction.

On an :math:`L \\times L` periodic lattice, a *matter field* :math:`\\phi(x) \\in \\mathbb C` lives on the sites and
a *link field* :math:`U_\\mu(x) = e^{i\\theta_\\mu(x)}` on the edges from :math:`x` to :math:`x + \\hat\\mu`
(:math:`\\mu = 1, 2`). A gauge transformation is a phase :math:`\\alpha(x)` at every site, chosen independently:

.. math::  \\phi(x) \\mapsto e^{i\\alpha(x)} \\phi(x), \\qquad
           \\theta_\\mu(x) \\mapsto \\theta_\\mu(x) + \\alpha(x) - \\alpha(x + \\hat\\mu).

The group :class:`U1GaugeGroup` is :math:`U(1)^{L^2}`, one circle per site. Observables must not depend on the
gauge. Two kinds of local quantities are invariant: the plaquette angle around each unit square,

.. math::  \\theta_P(x) = \\theta_1(x) + \\theta_2(x + \\hat 1) - \\theta_1(x + \\hat 2) - \\theta_2(x),

and the covariant hopping term :math:`\\bar\\phi(x)\\, U_\\mu(x)\\, \\phi(x + \\hat\\mu)` (with :math:`|\\phi(x)|^2`).
:class:`GaugeInvariantCNN` computes these and feeds them to an ordinary CNN with circular padding: invariant under
every gauge transformation, equivariant to lattice translations.

Fields travel as ``{"theta": (B, 2, L, L), "phi": (B, 2, L, L)}`` (the two link angles of each site; the real
and imaginary part of the matter field), acted on by :class:`GaugeAction`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gdl.groups import Action, Group, GroupElement, ShapeError
from gdl.nn._checks import to_model_dtype

__all__ = ["U1GaugeGroup", "GaugeAction", "plaquettes", "gauge_invariants", "GaugeInvariantCNN", "NaiveLatticeCNN",
           "random_configuration"]

_F64 = torch.float64


def _wrap(a: torch.Tensor) -> torch.Tensor:
    """Angles to (-pi, pi]."""
    return torch.remainder(a + math.pi, 2 * math.pi) - math.pi


class U1GaugeGroup(Group):
    """:math:`U(1)^{L \\times L}`: a phase :math:`\\alpha(x)` per site. Value: an ``(L, L)`` float64 tensor of
    angles in :math:`[-\\pi, \\pi)`; composition adds them (mod :math:`2\\pi`)."""

    is_finite = False
    equality_tolerance = 1e-12

    def __init__(self, size: int):
        if not isinstance(size, int) or size < 2:
            raise ValueError(f"the lattice size must be an integer >= 2, got {size!r}")
        self.size = size

    def _key(self):
        return (self.size,)

    def __repr__(self) -> str:
        return f"U(1)^({self.size}x{self.size})"

    def _identity(self):
        return torch.zeros(self.size, self.size, dtype=_F64)

    def _compose(self, a, b):
        return _wrap(a + b)

    def _inverse(self, a):
        return _wrap(-a)

    def _canonical(self, value):
        v = torch.as_tensor(value, dtype=_F64)
        if v.shape != (self.size, self.size):
            raise ValueError(f"an element of {self} is an ({self.size}, {self.size}) angle field, got {tuple(v.shape)}")
        return _wrap(v)

    def _distance(self, a, b) -> float:
        return float(_wrap(a - b).abs().max())

    def format_value(self, value) -> str:
        return f"alpha field (max |alpha| {float(value.abs().max()):.2f})"

    def generators(self) -> list[GroupElement]:
        return []

    def sample(self, n: int, seed: int | torch.Generator = 0) -> list[GroupElement]:
        gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
        return [GroupElement(self, _wrap(2 * math.pi * torch.rand(self.size, self.size, dtype=_F64, generator=gen)))
                for _ in range(n)]


class GaugeAction(Action):
    """The gauge action on ``{"theta": (B, 2, L, L), "phi": (B, 2, L, L)}``:
    :math:`\\theta_\\mu(x) + \\alpha(x) - \\alpha(x + \\hat\\mu)`, :math:`e^{i\\alpha(x)}\\phi(x)`
    (``dims=(-2, -1)`` are the lattice axes 1 and 2; the lattice is periodic)."""

    def __init__(self, group: U1GaugeGroup):
        self.group = group

    def check_input(self, x):
        _fields(x, str(self), size=self.group.size)

    def _act(self, g, x):
        alpha = g.value.to(x["theta"])                                      # (L, L)
        shifted = torch.stack([torch.roll(alpha, -1, dims=0), torch.roll(alpha, -1, dims=1)])   # alpha(x + mu)
        theta = x["theta"] + alpha - shifted
        c, s = torch.cos(alpha), torch.sin(alpha)
        re, im = x["phi"][:, 0], x["phi"][:, 1]
        phi = torch.stack([c * re - s * im, s * re + c * im], dim=1)
        return {**x, "theta": theta, "phi": phi}

    def __repr__(self) -> str:
        return f"GaugeAction({self.group})"


def plaquettes(theta: torch.Tensor) -> torch.Tensor:
    """:math:`\\theta_P(x) = \\theta_1(x) + \\theta_2(x + \\hat 1) - \\theta_1(x + \\hat 2) - \\theta_2(x)`,
    ``(B, 2, L, L) -> (B, L, L)`` (lattice axis 1 is ``dim=-2``, axis 2 is ``dim=-1``)."""
    t1, t2 = theta[:, 0], theta[:, 1]
    return t1 + torch.roll(t2, -1, dims=-2) - torch.roll(t1, -1, dims=-1) - t2


def gauge_invariants(theta: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """The local gauge invariants as 7 channels ``(B, 7, L, L)``: :math:`\\cos\\theta_P, \\sin\\theta_P,
    |\\phi|^2` and the real and imaginary parts of :math:`\\bar\\phi(x) e^{i\\theta_\\mu(x)} \\phi(x + \\hat\\mu)`,
    :math:`\\mu = 1, 2`."""
    p = plaquettes(theta)
    z = torch.complex(phi[:, 0], phi[:, 1])                                   # (B, L, L)
    channels = [torch.cos(p), torch.sin(p), (z.conj() * z).real]
    for mu in range(2):
        hop = z.conj() * torch.exp(1j * theta[:, mu].to(z.real.dtype)) * torch.roll(z, -1, dims=-2 + mu)
        channels += [hop.real, hop.imag]
    return torch.stack(channels, dim=1)


def _fields(fields, who: str, size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The link angles and the matter field of ``{"theta", "phi"}``, each ``(B, 2, L, L)`` (``L = size`` when
    given); a :class:`~gdl.groups.ShapeError` naming what is wrong otherwise."""
    if not isinstance(fields, dict) or not {"theta", "phi"} <= set(fields):
        got = sorted(fields) if isinstance(fields, dict) else type(fields).__name__
        raise ShapeError(f"{who} takes a dict with 'theta' and 'phi', got {got}")
    theta, phi = fields["theta"], fields["phi"]
    side = "L" if size is None else size
    for name, t in (("theta", theta), ("phi", phi)):
        if (not torch.is_tensor(t) or t.ndim != 4 or t.shape[1] != 2
                or (size is not None and t.shape[2:] != (size, size))):
            got = tuple(t.shape) if torch.is_tensor(t) else type(t).__name__
            raise ShapeError(f"{who}: {name!r} must be a tensor (B, 2, {side}, {side}), got {got}")
    if theta.shape != phi.shape:
        raise ShapeError(f"{who}: 'theta' {tuple(theta.shape)} and 'phi' {tuple(phi.shape)} must have one shape")
    return theta, phi


def _cnn(in_channels: int, hidden: int, out_channels: int) -> nn.Sequential:
    conv = lambda a, b: nn.Conv2d(a, b, 3, padding=1, padding_mode="circular")   # noqa: E731
    return nn.Sequential(conv(in_channels, hidden), nn.Tanh(), conv(hidden, hidden), nn.Tanh(),
                         conv(hidden, out_channels))


class GaugeInvariantCNN(nn.Module):
    """Gauge invariants (:func:`gauge_invariants`) followed by a CNN with circular padding.

    .. math::  f(\\theta, \\phi) = \\mathrm{CNN}\\big(\\cos\\theta_P, \\sin\\theta_P, |\\phi|^2,
               \\bar\\phi\\, U_\\mu\\, \\phi(\\cdot + \\hat\\mu)\\big)

    Shapes: ``{"theta", "phi"}`` each ``(B, 2, L, L)`` -> ``(B, out_channels, L, L)``.
    """

    def __init__(self, hidden: int = 8, out_channels: int = 1):
        super().__init__()
        self.cnn = _cnn(7, hidden, out_channels)

    def forward(self, fields: dict) -> torch.Tensor:
        theta, phi = to_model_dtype(self, *_fields(fields, type(self).__name__))
        return self.cnn(gauge_invariants(theta, phi))


class NaiveLatticeCNN(nn.Module):
    """A CNN on the raw fields
    :math:`(\\cos\\theta_\\mu, \\sin\\theta_\\mu, \\mathrm{Re}\\,\\phi, \\mathrm{Im}\\,\\phi)`:
    translation-equivariant, not gauge-invariant (the counter-example)."""

    def __init__(self, hidden: int = 8, out_channels: int = 1):
        super().__init__()
        self.cnn = _cnn(6, hidden, out_channels)

    def forward(self, fields: dict) -> torch.Tensor:
        theta, phi = to_model_dtype(self, *_fields(fields, type(self).__name__))
        return self.cnn(torch.cat([torch.cos(theta), torch.sin(theta), phi], dim=1))


def random_configuration(batch: int, size: int, seed: int = 0, dtype: torch.dtype = _F64) -> dict:
    """Random links (uniform angles) and a Gaussian matter field: ``{"theta", "phi"}`` each ``(B, 2, L, L)``."""
    g = torch.Generator().manual_seed(seed)
    theta = 2 * math.pi * torch.rand(batch, 2, size, size, dtype=dtype, generator=g) - math.pi
    return {"theta": theta, "phi": torch.randn(batch, 2, size, size, dtype=dtype, generator=g)}
