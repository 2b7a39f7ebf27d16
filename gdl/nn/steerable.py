"""Steerable CNNs (Weiler & Cesa 2019) built on escnn, with plain tensors in and out.

Weiler & Cesa, `General E(2)-Equivariant Steerable CNNs <https://arxiv.org/abs/1911.08251>`_ (NeurIPS 2019).

A steerable convolution maps a field of type :math:`\\rho_{in}` to a field of type :math:`\\rho_{out}` with a
filter :math:`\\kappa: \\mathbb{R}^2 \\to \\mathbb{R}^{C_{out} \\times C_{in}}` constrained by

.. math::  \\kappa(g x) = \\rho_{out}(g)\\, \\kappa(x)\\, \\rho_{in}(g)^{-1} \\qquad \\text{for all } g \\in G,

so the filter is a learned combination :math:`\\kappa = \\sum_i w_i \\kappa_i` of a fixed basis of solutions
(escnn solves for the basis; only the :math:`w_i` are trained). ``G`` can be the rotations by multiples of
:math:`2\\pi/N` (:math:`C_N`), those with mirrors (:math:`D_N`) or all rotations (:math:`SO(2)`). The
features are regular fields (:math:`C_N`, :math:`D_N`, with a point-wise ReLU) or irreducible fields of
frequency :math:`0..L` (:math:`SO(2)`, with a norm or a gated non-linearity).

**Exact and approximate equivariance.** The basis filters are sampled on the pixel grid. A rotation by
90 degrees maps grid points to grid points, so for any ``G`` that contains it (``N`` divisible by 4, or
:math:`SO(2)`) the network is equivariant to it up to round-off; escnn stores the sampled basis in
float32, so that round-off is about 1e-7 *even in float64*. Other angles (45 degrees for :math:`C_8`)
move grid points off the grid: the error is then set by how well the sampled filter represents its
rotated self, typically a few percent for 5x5 filters.

escnn is an optional dependency imported only here. Modules take and return plain ``(B, C, H, W)``
tensors and wrap them in ``GeometricTensor`` only around escnn's own layers. :meth:`SteerableCNN.export`
returns a model made of plain PyTorch modules (escnn's ``R2Conv.export()`` for the convolutions).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gdl.groups import CyclicGroup, DihedralGroup, ImageAction, MatrixRep, ShapeError, TrivialAction
from gdl.nn.gcnn import GroupBatchNorm2d

__all__ = ["STEERABLE_GROUPS", "escnn_available", "SteerableConv2d", "NormReLU", "GatedReLU", "FieldPool",
           "SteerableCNN"]

#: Group names understood here: ``"C<N>"``, ``"D<N>"`` and ``"SO2"`` (e.g. ``"C8"``, ``"D4"``).
STEERABLE_GROUPS = "C<N>, D<N> (N >= 1) or SO2"


def escnn_available() -> bool:
    """Whether the optional dependency escnn can be imported."""
    try:
        import escnn  # noqa: F401
    except ImportError:
        return False
    return True


def _escnn():
    try:
        import escnn.group._numerical as numerical
        from escnn import gspaces
        from escnn import nn as enn
    except ImportError as err:  # pragma: no cover - exercised only without escnn
        raise ImportError(
            "gdl.nn.steerable needs the optional dependency escnn: pip install 'gdl[steerable]'"
        ) from err
    # escnn 1.0.11 passes an np.matrix to scikit-learn's randomized_svd, which recent scikit-learn versions
    # reject (it breaks every D_N basis). Its own fallback, scipy's exact SVD, accepts it and is deterministic.
    numerical.randomized_svd = None
    return gspaces, enn


def _parse_group(name: str) -> tuple[str, int]:
    if not isinstance(name, str):
        raise ValueError(f"group must be a string ({STEERABLE_GROUPS}), got {name!r}")
    key = name.upper().replace("(", "").replace(")", "")
    if key in ("SO2", "SO"):
        return "SO2", -1
    if key[:1] in ("C", "D") and key[1:].isdigit() and int(key[1:]) >= 1:
        return key[0], int(key[1:])
    raise ValueError(f"unknown steerable group {name!r}; expected {STEERABLE_GROUPS}")


def _gspace(name: str, maximum_frequency: int):
    gspaces, _ = _escnn()
    kind, n = _parse_group(name)
    if kind == "SO2":
        return gspaces.rot2dOnR2(-1, maximum_frequency=maximum_frequency)
    if kind == "C":
        return gspaces.rot2dOnR2(n)
    return gspaces.flipRot2dOnR2(n)


def _checker_group(gspace):
    """The largest subgroup of the pixel grid's symmetries in ``gspace``: C4 or D4 (C2/D2/C1/D1 for N
    not divisible by 4), together with a map from its elements to escnn group elements.

    Conventions (checked by the tests): ``torch.rot90`` by ``k`` quarter turns is escnn's rotation ``+k``
    quarter turns, and ``torch.flip`` along ``W`` is escnn's reflection ``(1, 0)``.
    """
    G = gspace.fibergroup
    n = gspace.rotations_order                       # -1 for SO(2)
    quarters = 4 if n < 0 or n % 4 == 0 else (2 if n % 2 == 0 else 1)
    flips = gspace.flips_order > 0
    group = DihedralGroup(quarters) if flips else CyclicGroup(quarters)

    def to_escnn(g):
        f, k = g.value if flips else (0, g.value)
        turns = k * (4 // quarters)                  # quarter turns
        rot = turns * math.pi / 2 if n < 0 else (turns * n // 4) % n
        return G.element((f, rot)) if flips else G.element(rot)

    return group, to_escnn


def _field_action(field_type, group, to_escnn, name: str):
    """``ImageAction(group, fiber=...)`` for a whole escnn field type (one fibre of dimension C)."""
    fiber = MatrixRep(group, lambda g: torch.as_tensor(field_type.representation(to_escnn(g))),
                      name=name, tolerance=1e-6)
    return ImageAction(group, fiber=fiber)


class SteerableConv2d(nn.Module):
    """A steerable convolution (escnn ``R2Conv``) between two escnn field types, on plain tensors.

    .. math::  \\kappa(g x) = \\rho_{out}(g)\\, \\kappa(x)\\, \\rho_{in}(g)^{-1}

    Args:
        in_type, out_type: escnn ``FieldType`` objects of the same gspace.
        kernel_size: odd filter size (default: 5).
        bias: learnable bias on the invariant (trivial) fields (default: ``True``).

    Construction skips escnn's He initialisation, which walks every basis element in Python and is slow on
    wide layers; :meth:`reset_parameters` instead scales standard-normal basis weights so that the
    expanded filter has the He standard deviation :math:`\\sqrt{2 / (C_{in} k^2)}` (one filter expansion).

    Shapes:
        input ``(B, in_type.size, H, W)``; output ``(B, out_type.size, H, W)``.
    """

    def __init__(self, in_type, out_type, kernel_size: int = 5, bias: bool = True):
        super().__init__()
        _, enn = _escnn()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (a centred filter), got {kernel_size}")
        self.in_type, self.out_type, self.kernel_size = in_type, out_type, kernel_size
        self.conv = enn.R2Conv(in_type, out_type, kernel_size, padding=kernel_size // 2, bias=bias,
                               initialize=False)
        # escnn caches the sampled basis per pair of field types and shares that module between layers (and
        # models); an own copy keeps `.double()` or `.to(device)` on one model from changing another.
        self.conv._basisexpansion = copy.deepcopy(self.conv._basisexpansion)
        self.group, self._to_escnn = _checker_group(in_type.gspace)
        self.in_action = _field_action(in_type, self.group, self._to_escnn, "in_type")
        self.out_action = _field_action(out_type, self.group, self._to_escnn, "out_type")
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        w = self.conv.weights
        w.normal_()
        filt, _ = self.conv.expand_parameters()           # (C_out, C_in, k, k)
        target = math.sqrt(2.0 / (self.in_type.size * self.kernel_size**2))
        w.mul_(target / filt.std().clamp_min(1e-12))
        if self.conv.bias is not None:
            self.conv.bias.zero_()

    def train(self, mode: bool = True) -> SteerableConv2d:
        # escnn caches the expanded filter when switching to eval mode; computed without autograd it stays a
        # plain buffer, so the module can still be deep-copied (as the equivariance checker does).
        with torch.no_grad():
            return super().train(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, enn = _escnn()
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != self.in_type.size:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ShapeError(f"SteerableConv2d expects (B, {self.in_type.size}, H, W), got {got}")
        return self.conv(enn.GeometricTensor(x, self.in_type)).tensor   # (B, C_out, H, W)

    def export(self) -> nn.Conv2d:
        """Plain ``nn.Conv2d`` with the expanded filter (escnn's ``R2Conv.export``)."""
        was_training = self.conv.training
        conv = self.conv.eval().export()
        self.conv.train(was_training)
        return conv

    def extra_repr(self) -> str:
        return (f"{self.in_type.gspace.fibergroup}: {self.in_type.size} -> {self.out_type.size} channels, "
                f"kernel_size={self.kernel_size}, basis weights={self.conv.weights.numel()}")


def _field_index(sizes: list[int]) -> torch.Tensor:
    return torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))   # channel -> field


class NormReLU(nn.Module):
    """Norm non-linearity: each field keeps its direction, its norm goes through a biased ReLU,

    .. math::  f \\mapsto \\operatorname{ReLU}(\\lVert f \\rVert - b)\\, \\frac{f}{\\lVert f \\rVert},

    equivariant for any orthogonal field representation (rotations preserve norms). Plain PyTorch.

    Args:
        field_sizes: channels of each field, in order (a trivial field has size 1).
    """

    def __init__(self, field_sizes: list[int]):
        super().__init__()
        self.field_sizes = list(field_sizes)
        self.register_buffer("_field", _field_index(self.field_sizes), persistent=False)
        self.bias = nn.Parameter(torch.full((len(self.field_sizes),), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        sq = torch.zeros(B, len(self.field_sizes), H, W, dtype=x.dtype, device=x.device)
        sq = sq.index_add(1, self._field, x * x)                      # (B, F, H, W) squared norms
        norm = sq.clamp_min(1e-20).sqrt()
        scale = F.relu(norm - self.bias.view(1, -1, 1, 1)) / norm    # (B, F, H, W)
        return x * scale[:, self._field]

    def extra_repr(self) -> str:
        return f"fields={len(self.field_sizes)}, channels={sum(self.field_sizes)}"


class GatedReLU(nn.Module):
    """Gated non-linearity: scalar fields go through a ReLU; every other field is multiplied by the sigmoid
    of its own invariant gate, :math:`f_i \\mapsto \\sigma(s_i)\\, f_i`. Plain PyTorch.

    The input is ``[gates (n_gated channels), scalars, gated fields]``; the gates are dropped from the output.

    Args:
        n_scalars: number of trivial (scalar) fields.
        gated_sizes: channels of each gated field.
    """

    def __init__(self, n_scalars: int, gated_sizes: list[int]):
        super().__init__()
        self.n_scalars, self.gated_sizes = n_scalars, list(gated_sizes)
        self.n_gates = len(self.gated_sizes)
        self.register_buffer("_field", _field_index(self.gated_sizes), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, s = self.n_gates, self.n_scalars
        gates, scalars, gated = x[:, :g], x[:, g:g + s], x[:, g + s:]
        return torch.cat([F.relu(scalars), gated * torch.sigmoid(gates)[:, self._field]], dim=1)

    def extra_repr(self) -> str:
        return f"scalars={self.n_scalars}, gated fields={self.n_gates}"


class FieldPool(nn.Module):
    """Invariant pooling of fields: the maximum over the ``N`` channels of a regular field (group pooling)
    and the norm of every other field. The output has one invariant channel per field. Plain PyTorch."""

    def __init__(self, field_sizes: list[int], regular: bool):
        super().__init__()
        self.field_sizes, self.regular = list(field_sizes), regular
        self.register_buffer("_field", _field_index(self.field_sizes), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        if self.regular:
            return x.reshape(B, len(self.field_sizes), -1, H, W).amax(dim=2)
        sq = torch.zeros(B, len(self.field_sizes), H, W, dtype=x.dtype, device=x.device)
        return sq.index_add(1, self._field, x * x).clamp_min(1e-20).sqrt()

    def extra_repr(self) -> str:
        return f"fields={len(self.field_sizes)}, {'group max' if self.regular else 'norm'}"


@dataclass
class _Layer:
    conv_out: object        # escnn FieldType produced by the convolution
    feature: object         # escnn FieldType after the non-linearity
    nonlinearity: nn.Module


class SteerableCNN(nn.Module):
    """A small steerable CNN classifier: steerable convolutions, non-linearities, average pooling, invariant
    field pooling, a spatial mean and a linear layer.

    Args:
        group: ``"C<N>"`` / ``"D<N>"`` (regular fields, ReLU) or ``"SO2"`` (irreducible fields).
        in_channels: channels of the input image (scalar fields).
        channels: fields per layer, e.g. ``(6, 6, 6)`` (for SO2: copies of the frequencies ``0..L``).
        kernel_size: odd filter size (default: 5).
        pool_after: layers followed by ``2x2`` average pooling (default: none).
        num_classes: output scores (default: 10); ``None`` returns the last layer's feature fields, which
            transform by the field type ``features_type`` (``out_action`` says how, for the checker).
        max_frequency: ``L`` for SO2 fields (default: 2).
        nonlinearity: for SO2, ``"norm"`` or ``"gated"`` (default: ``"norm"``).
        batch_norm: batch normalisation of regular fields (one statistic per field, shared by its ``N``
            channels) after each convolution; ``C_N``/``D_N`` only (default: ``False``).

    The output is invariant to the 90-degree rotations (and flips for ``D_N``) exactly, and to other group
    elements approximately (see the module docstring).

    Shapes:
        input ``(B, in_channels, H, W)``; output ``(B, num_classes)``.
    """

    def __init__(self, group: str = "C8", in_channels: int = 1, channels: tuple[int, ...] = (6, 6, 6),
                 kernel_size: int = 5, pool_after: tuple[int, ...] = (), num_classes: int | None = 10,
                 max_frequency: int = 2, nonlinearity: str = "norm", batch_norm: bool = False):
        super().__init__()
        _, enn = _escnn()
        kind, _ = _parse_group(group)
        if nonlinearity not in ("norm", "gated"):
            raise ValueError(f"nonlinearity must be 'norm' or 'gated', got {nonlinearity!r}")
        if len(channels) < 1:
            raise ValueError("channels must list at least one layer width")
        if batch_norm and kind == "SO2":
            raise ValueError("batch_norm is implemented for regular fields (C_N, D_N), not for SO2")
        self.group_name, self.in_channels, self.num_classes = group, in_channels, num_classes
        self.channels, self.pool_after, self.nonlinearity = tuple(channels), tuple(pool_after), nonlinearity
        gs = _gspace(group, max_frequency + 1)
        self.regular = kind != "SO2"
        in_type = enn.FieldType(gs, [gs.trivial_repr] * in_channels)
        self.in_type = in_type
        blocks: list[nn.Module] = []
        for i, c in enumerate(channels):
            layer = self._layer(gs, enn, c, max_frequency)
            blocks.append(SteerableConv2d(in_type, layer.conv_out, kernel_size, bias=not batch_norm))
            if batch_norm:
                blocks.append(GroupBatchNorm2d(c, layer.conv_out.size // c))   # regular fields of |G| channels
            blocks.append(layer.nonlinearity)
            if i in self.pool_after:
                blocks.append(nn.AvgPool2d(2))
            in_type = layer.feature
        self.features = nn.Sequential(*blocks)
        self.features_type = in_type
        self.pool = FieldPool([r.size for r in in_type.representations], regular=self.regular)
        self.head = nn.Linear(len(in_type.representations), num_classes) if num_classes is not None else None
        self.group, to_escnn = _checker_group(gs)
        self.in_action = ImageAction(self.group)
        self.out_action = (TrivialAction(self.group) if num_classes is not None
                           else _field_action(in_type, self.group, to_escnn, "features_type"))

    def _layer(self, gs, enn, c: int, L: int) -> _Layer:
        if self.regular:
            t = enn.FieldType(gs, [gs.regular_repr] * c)
            return _Layer(t, t, nn.ReLU())
        irreps = [gs.irrep(k) for k in range(L + 1)] * c                   # frequencies 0..L, c times
        feature = enn.FieldType(gs, irreps)
        if self.nonlinearity == "norm":
            return _Layer(feature, feature, NormReLU([r.size for r in irreps]))
        scalars = [gs.trivial_repr] * c
        gated = [gs.irrep(k) for k in range(1, L + 1)] * c
        conv_out = enn.FieldType(gs, [gs.trivial_repr] * len(gated) + scalars + gated)
        feature = enn.FieldType(gs, scalars + gated)
        return _Layer(conv_out, feature, GatedReLU(len(scalars), [r.size for r in gated]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != self.in_channels:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ShapeError(f"SteerableCNN expects images of shape (B, {self.in_channels}, H, W), got {got}")
        h = self.features(x)                            # (B, C, H', W') feature fields
        if self.head is None:
            return h
        h = self.pool(h)                                # (B, F, H', W') invariant fields
        return self.head(h.mean(dim=(-2, -1)))          # (B, num_classes)

    def export(self) -> nn.Sequential:
        """The same network from plain PyTorch modules only (escnn's exported ``nn.Conv2d`` layers)."""
        blocks = [b.export() if isinstance(b, SteerableConv2d) else copy.deepcopy(b) for b in self.features]
        if self.head is None:
            return nn.Sequential(*blocks)
        return nn.Sequential(*blocks, copy.deepcopy(self.pool), _SpatialMean(), copy.deepcopy(self.head))

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, (SteerableConv2d, nn.Linear, GroupBatchNorm2d)):
                m.reset_parameters()

    def extra_repr(self) -> str:
        return (f"group={self.group_name}, checked with {self.group}, "
                f"params={sum(p.numel() for p in self.parameters())}")


class _SpatialMean(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(-2, -1))
