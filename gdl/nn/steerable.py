"""Steerable CNNs (Weiler & Cesa 2019), built by gdl from the kernel constraint of chapter 4.

Weiler & Cesa, `General E(2)-Equivariant Steerable CNNs <https://arxiv.org/abs/1911.08251>`_ (NeurIPS 2019).

A steerable convolution maps a field of type :math:`\\rho_{in}` to a field of type :math:`\\rho_{out}` with a
filter :math:`\\kappa: \\mathbb{R}^2 \\to \\mathbb{R}^{C_{out} \\times C_{in}}` constrained by

.. math::  \\kappa(g x) = \\rho_{out}(g)\\, \\kappa(x)\\, \\rho_{in}(g)^{-1} \\qquad \\text{for all } g \\in G,

so the filter is a learned combination :math:`\\kappa = \\sum_i w_i \\kappa_i` of a fixed basis of solutions; only
the :math:`w_i` are trained. ``G`` is :math:`C_N` (rotations by multiples of :math:`2\\pi/N`), :math:`D_N` (with
mirrors), :math:`SO(2)` or :math:`O(2)`. Fields (:class:`FieldType`) are regular (:math:`C_N`, :math:`D_N`, with a
point-wise ReLU) or irreducible of frequency :math:`0..L` (with a norm or a gated non-linearity), mixed as needed.
The basis is solved once per pair of field types (:mod:`gdl.nn._steerable_fields`: rings times circular
harmonics, the course's solver, a change of basis for regular fields), sampled on the pixel grid in float64 and
kept as a buffer; ``forward`` expands it into an ordinary ``conv2d`` filter with one ``einsum``.

**Exact and approximate equivariance.** A rotation by 90 degrees (and the mirror) maps grid points to grid points,
so for any ``G`` that contains it (``N`` divisible by 4, :math:`SO(2)`, :math:`O(2)`) the layers are equivariant
to it up to float64 round-off (about 1e-15). Other angles (45 degrees for :math:`C_8`) move grid points off the
grid: the error is then set by how well the sampled filter represents its rotated self; it falls as the filter
grows or the band limit drops (chapter 5 measures it).

escnn (the reference implementation) is not needed: it depends on lie_learn, which pins numpy < 2 and has no
wheels for CPython 3.13. The tests compare against filters and outputs recorded from escnn
(``scripts/record_escnn_reference.py``). :meth:`SteerableCNN.export` returns plain PyTorch modules.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gdl.groups import (
    O2,
    CyclicGroup,
    DihedralGroup,
    GroupMismatchError,
    ImageAction,
    MatrixRep,
    ShapeError,
    TrivialAction,
)
from gdl.nn._steerable_fields import (
    REGULAR,
    STEERABLE_GROUPS,
    FieldType,
    Irrep,
    _rings,
    band_limits,
    pair_basis,
    planar_group,
)
from gdl.nn.gcnn import GroupBatchNorm2d

__all__ = ["STEERABLE_GROUPS", "FieldType", "Irrep", "escnn_available", "SteerableConv2d", "NormReLU",
           "GatedReLU", "FieldPool", "NormBatchNorm2d", "SteerableCNN", "band_limits"]


def escnn_available() -> bool:
    """Whether the reference implementation escnn can be imported (only the cross-check tests use it)."""
    try:
        import escnn  # noqa: F401
    except ImportError:
        return False
    return True


def _checker_group(group):
    """The largest subgroup of the pixel grid's symmetries in ``group`` (C4 or D4; C2/D2/C1/D1 when N is not
    divisible by 4) and the map from its element values to ``group``'s: ``torch.rot90`` by ``k`` quarter turns is
    the rotation by :math:`k\\pi/2`, ``torch.flip`` along ``W`` the mirror :math:`x \\mapsto -x`."""
    n = getattr(group, "n", 0)
    quarters = 4 if n == 0 or n % 4 == 0 else (2 if n % 2 == 0 else 1)
    mirror = isinstance(group, (DihedralGroup, O2))
    checker = DihedralGroup(quarters) if mirror else CyclicGroup(quarters)

    def embed(value):
        f, k = value if mirror else (0, value)
        turn = k * n // quarters if n else k * math.pi / 2
        return (f, turn) if mirror else turn

    return checker, embed


def _field_action(field_type: FieldType, checker, embed, name: str) -> ImageAction:
    """``ImageAction(checker, fiber=...)`` for a whole field type (one fibre of ``field_type.size`` channels)."""
    fiber = MatrixRep(checker, lambda g: field_type.matrix(embed(g.value)), name=name, tolerance=1e-9)
    return ImageAction(checker, fiber=fiber)


def _as_band(band, kernel_size: int) -> tuple[int, ...]:
    default = band_limits(kernel_size)
    if band is None:
        return default
    if isinstance(band, int) and not isinstance(band, bool):
        if band < 0:
            raise ValueError(f"band (the largest angular frequency) must be >= 0, got {band}")
        return tuple(min(f, band) for f in default)
    band = tuple(band)
    if len(band) != len(default):
        raise ValueError(f"band needs one limit per ring 0..{kernel_size // 2} ({len(default)} numbers), got {band}")
    return band


class SteerableConv2d(nn.Module):
    """A steerable convolution between two field types of one group, on plain ``(B, C, H, W)`` tensors.

    .. math::  \\kappa(g x) = \\rho_{out}(g)\\, \\kappa(x)\\, \\rho_{in}(g)^{-1}, \\qquad
               \\kappa = \\sum_{i} w_i \\kappa_i

    For every pair of distinct field types ``(x, y)`` the solved basis ``(D_xy, d_x, d_y, k, k)`` is stored once
    (zero-padded to the largest field and concatenated over the pairs into the buffer ``basis``); every pair of
    fields ``(a, b)`` owns ``D_xy`` weights. ``forward`` gathers the weights into ``(F_out, F_in, D)`` and
    contracts them with the basis in one ``einsum``; in eval mode without autograd the expanded filter is cached
    until the weights change (their ``_version``).

    Args:
        in_type, out_type: :class:`FieldType` of one group.
        kernel_size: odd filter size (default: 5).
        bias: a learnable bias per invariant field (trivial irreps, and regular fields: the same bias on all
            channels of the field); other irreps get none (default: ``True``).
        band: band limits per ring (default: escnn's, :func:`band_limits`), or an int capping all of them.

    Shapes:
        input ``(B, in_type.size, H, W)``; output ``(B, out_type.size, H, W)``.
    """

    def __init__(self, in_type: FieldType, out_type: FieldType, kernel_size: int = 5, bias: bool = True,
                 band: int | tuple[int, ...] | None = None):
        super().__init__()
        for name, t in (("in_type", in_type), ("out_type", out_type)):
            if not isinstance(t, FieldType):
                raise TypeError(f"{name} must be a gdl.nn.steerable.FieldType, got {type(t).__name__}")
        if out_type.group_name != in_type.group_name:
            raise GroupMismatchError(f"out_type is a field type of {out_type.group_name}, expected one of "
                                     f"{in_type.group_name} (the group of in_type)")
        if not isinstance(kernel_size, int) or kernel_size % 2 != 1 or kernel_size < 1:
            raise ValueError(f"kernel_size must be a positive odd integer (a centred filter), got {kernel_size!r}")
        self.in_type, self.out_type, self.kernel_size = in_type, out_type, kernel_size
        self.band = _as_band(band, kernel_size)
        self._build_basis()
        self.weight = nn.Parameter(torch.empty(self.num_weights))
        invariant = [f == REGULAR or f == Irrep(0) for f in out_type.fields]
        self.bias = nn.Parameter(torch.zeros(sum(invariant))) if bias and any(invariant) else None
        if self.bias is not None:                                       # channel -> bias (or the zero slot)
            idx, n = [], 0
            for dim, inv in zip(out_type.field_dims(), invariant):
                idx += [n if inv else sum(invariant)] * dim
                n += inv
            self.register_buffer("_bias_index", torch.tensor(idx), persistent=False)
        self.group, self._embed = _checker_group(in_type.group)
        self.in_action = _field_action(in_type, self.group, self._embed, "in_type")
        self.out_action = _field_action(out_type, self.group, self._embed, "out_type")
        self._cache = None
        self.reset_parameters()

    def _build_basis(self) -> None:
        g, k = self.in_type.group_name, self.kernel_size
        kinds_out = list(dict.fromkeys(self.out_type.fields))
        kinds_in = list(dict.fromkeys(self.in_type.fields))
        dims_out, dims_in = self.out_type.field_dims(), self.in_type.field_dims()
        P_out, P_in = max(dims_out), max(dims_in)
        blocks, offset, size = [], {}, {}
        d_all = 0
        for x in kinds_out:
            for y in kinds_in:
                b = pair_basis(g, x, y, k, self.band)                     # (D_xy, d_x, d_y, k, k)
                blocks.append(F.pad(b, (0, 0, 0, 0, 0, P_in - b.shape[2], 0, P_out - b.shape[1])))
                offset[x, y], size[x, y] = d_all, b.shape[0]
                d_all += b.shape[0]
        self.register_buffer("basis", torch.cat(blocks), persistent=False)   # float64 (D, P_out, P_in, k, k)
        self.pair_sizes = dict(size)
        t_out, t_in = self.out_type.fields, self.in_type.fields
        self.num_weights = sum(size[x, y] for x in t_out for y in t_in)
        homogeneous = len(kinds_out) == 1 and len(kinds_in) == 1
        if homogeneous:
            self._index = None
        else:                                                          # weight of (field a, field b, basis d)
            index = torch.full((len(t_out), len(t_in), d_all), self.num_weights, dtype=torch.long)
            n = 0
            for a, x in enumerate(t_out):
                for b, y in enumerate(t_in):
                    index[a, b, offset[x, y]:offset[x, y] + size[x, y]] = torch.arange(n, n + size[x, y])
                    n += size[x, y]
            self.register_buffer("_index", index, persistent=False)
        pad_out, pad_in = any(d != P_out for d in dims_out), any(d != P_in for d in dims_in)
        rows = [a * P_out + p for a, d in enumerate(dims_out) for p in range(d)]
        cols = [b * P_in + q for b, d in enumerate(dims_in) for q in range(d)]
        self.register_buffer("_rows", torch.tensor(rows) if pad_out else None, persistent=False)
        self.register_buffer("_cols", torch.tensor(cols) if pad_in else None, persistent=False)

    def rings(self):
        r"""The filter space of one channel pair, :class:`~gdl.nn._steerable_fields.RingHarmonics` (a gdl
        ``Rep``: how the group acts on the ring-harmonic coefficients): the basis between fields of types
        :math:`\rho_{in}, \rho_{out}` solves :math:`W \rho_{in}(g) = (\rho_{out}(g) \\otimes P(g)) W`."""
        return _rings(self.in_type.group_name, self.kernel_size, self.band)

    def expand(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The ``conv2d`` filter ``(C_out, C_in, k, k)`` and bias ``(C_out,)`` (or ``None``) of the weights:
        :math:`\\kappa = \\sum_i w_i \\kappa_i`, one contraction."""
        w = self.weight
        Fo, Fi = len(self.out_type), len(self.in_type)
        if self._index is None:
            w = w.view(Fo, Fi, -1)
        else:
            w = torch.cat([w, w.new_zeros(1)]).index_select(0, self._index.flatten()).view(self._index.shape)
            #   (F_out, F_in, D), zeros off-pair; index_select has a cheap backward (index_add)
        k = self.kernel_size
        filt = torch.einsum("abd,dpqkl->apbqkl", w, self.basis.to(w.dtype))
        filt = filt.reshape(Fo * self.basis.shape[1], Fi * self.basis.shape[2], k, k)
        if self._rows is not None:
            filt = filt.index_select(0, self._rows)
        if self._cols is not None:
            filt = filt.index_select(1, self._cols)
        bias = None
        if self.bias is not None:
            bias = torch.cat([self.bias, self.bias.new_zeros(1)]).index_select(0, self._bias_index)
        return filt, bias

    def _filter(self):
        if self.training or (torch.is_grad_enabled() and self.weight.requires_grad):
            self._cache = None
            return self.expand()
        key = (self.weight._version, id(self.weight), self.weight.dtype, self.weight.device,
               None if self.bias is None else (self.bias._version, id(self.bias)), self.basis._version)
        if self._cache is None or self._cache[0] != key:
            with torch.no_grad():
                self._cache = (key, self.expand())
        return self._cache[1]

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """He initialisation: standard-normal weights scaled so that the expanded filter has the standard
        deviation :math:`\\sqrt{2 / (C_{in} k^2)}`; zero bias."""
        self._cache = None
        if self.weight.numel():
            self.weight.normal_()
            filt, _ = self.expand()
            target = math.sqrt(2.0 / (self.in_type.size * self.kernel_size**2))
            self.weight.mul_(target / filt.std().clamp_min(1e-12))
        if self.bias is not None:
            self.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != self.in_type.size:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ShapeError(f"SteerableConv2d expects (B, {self.in_type.size}, H, W) for {self.in_type}, "
                             f"got {got}")
        filt, bias = self._filter()
        return F.conv2d(x, filt, bias, padding=self.kernel_size // 2)

    @torch.no_grad()
    def export(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` with the expanded filter (same dtype and device)."""
        filt, bias = self.expand()
        conv = nn.Conv2d(self.in_type.size, self.out_type.size, self.kernel_size, padding=self.kernel_size // 2,
                         bias=bias is not None, device=filt.device, dtype=filt.dtype)
        conv.weight.copy_(filt)
        if bias is not None:
            conv.bias.copy_(bias)
        return conv

    def __deepcopy__(self, memo):
        self._cache, cache = None, self._cache       # never copy a cached filter (it may belong to another dtype)
        try:
            new = self.__class__.__new__(self.__class__)
            memo[id(self)] = new
            for key, value in self.__dict__.items():
                new.__dict__[key] = copy.deepcopy(value, memo)
        finally:
            self._cache = cache
        return new

    def extra_repr(self) -> str:
        return (f"{self.in_type} -> {self.out_type}, kernel_size={self.kernel_size}, band={self.band}, "
                f"basis weights={self.num_weights}")


def _sizes(fields) -> list[int]:
    return fields.field_dims() if isinstance(fields, FieldType) else list(fields)


def _field_index(sizes: list[int]) -> torch.Tensor:
    return torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))   # channel -> field


class NormReLU(nn.Module):
    """Norm non-linearity: each field keeps its direction, its norm goes through a biased ReLU,

    .. math::  f \\mapsto \\operatorname{ReLU}(\\lVert f \\rVert - b)\\, \\frac{f}{\\lVert f \\rVert},

    equivariant for any orthogonal field representation (rotations preserve norms). Plain PyTorch.

    Args:
        field_sizes: channels of each field, in order (a trivial field has size 1), or a :class:`FieldType`.
    """

    def __init__(self, field_sizes: list[int] | FieldType):
        super().__init__()
        self.field_sizes = _sizes(field_sizes)
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

    def __init__(self, field_sizes: list[int] | FieldType, regular: bool | None = None):
        super().__init__()
        if regular is None:
            if not isinstance(field_sizes, FieldType):
                raise ValueError("FieldPool needs regular=True/False when given field sizes instead of a FieldType")
            kinds = {f == REGULAR for f in field_sizes.fields}
            if len(kinds) != 1:
                raise ValueError(f"FieldPool pools fields of one kind (all regular or all irreps), got {field_sizes}")
            regular = kinds.pop()
        self.field_sizes, self.regular = _sizes(field_sizes), regular
        self.register_buffer("_field", _field_index(self.field_sizes), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        if self.regular:
            return x.reshape(B, len(self.field_sizes), -1, H, W).amax(dim=2)
        sq = torch.zeros(B, len(self.field_sizes), H, W, dtype=x.dtype, device=x.device)
        return sq.index_add(1, self._field, x * x).clamp_min(1e-20).sqrt()

    def extra_repr(self) -> str:
        return f"fields={len(self.field_sizes)}, {'group max' if self.regular else 'norm'}"


class NormBatchNorm2d(nn.Module):
    r"""Batch normalisation of irreducible fields that commutes with the group: every field is divided by the root
    mean square of its norm (over batch and space, per channel of the field), scaled by a learned
    :math:`\gamma_i`; trivial fields (1-dimensional, invariant) are also centred and shifted, as in ordinary batch
    norm:

    .. math::  f_i \mapsto \gamma_i \frac{f_i - \mu_i [i \text{ trivial}]}
               {\sqrt{\mathbb{E}\lVert f_i - \mu_i [i \text{ trivial}] \rVert^2 / d_i + \epsilon}}
               + \beta_i [i \text{ trivial}].

    A rotation keeps norms, so these statistics are invariant; only scalars are centred (subtracting a fixed mean
    vector from a rotating field would not commute with the rotation). Regular fields use
    :class:`~gdl.nn.GroupBatchNorm2d`.

    Args:
        field_type: the :class:`FieldType` of the input (irreducible fields).
        eps, momentum: as in ``nn.BatchNorm2d``.
    """

    def __init__(self, field_type: FieldType, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        if REGULAR in field_type.fields:
            raise ValueError(f"NormBatchNorm2d expects irreducible fields, got {field_type}; "
                             "use gdl.nn.GroupBatchNorm2d for regular fields")
        self.field_type, self.eps, self.momentum = field_type, eps, momentum
        dims = field_type.field_dims()
        n = len(dims)
        self.register_buffer("_field", _field_index(dims), persistent=False)
        self.register_buffer("_dims", torch.tensor(dims, dtype=torch.float32), persistent=False)
        self.register_buffer("_trivial", torch.tensor([f == Irrep(0) for f in field_type.fields]),
                             persistent=False)
        self.weight = nn.Parameter(torch.ones(n))
        self.bias = nn.Parameter(torch.zeros(n))
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("running_var", torch.ones(n))

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.fill_(1.0)
            self.bias.zero_()
            self.running_mean.zero_()
            self.running_var.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != self.field_type.size:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ShapeError(f"NormBatchNorm2d expects (B, {self.field_type.size}, H, W), got {got}")
        B, C, H, W = x.shape
        trivial = self._trivial.to(x.dtype)                                  # (F,)
        if self.training:
            ch_mean = x.mean(dim=(0, 2, 3))                                  # (C,)
            mean = ch_mean[self._trivial[self._field].nonzero().flatten()]   # trivial fields' means
            mu = torch.zeros(len(self._dims), dtype=x.dtype, device=x.device)
            mu = mu.masked_scatter(self._trivial, mean)
            centred = x - (mu * trivial)[self._field].view(1, C, 1, 1)
            sq = torch.zeros(len(self._dims), dtype=x.dtype, device=x.device)
            sq = sq.index_add(0, self._field, centred.square().mean(dim=(0, 2, 3)))
            var = sq / self._dims.to(x.dtype)                                 # mean square per channel of a field
            with torch.no_grad():
                self.running_mean.lerp_(mu.to(self.running_mean.dtype), self.momentum)
                self.running_var.lerp_(var.to(self.running_var.dtype), self.momentum)
        else:
            mu, var = self.running_mean.to(x.dtype) * trivial, self.running_var.to(x.dtype)
            centred = x - mu[self._field].view(1, C, 1, 1)
        scale = self.weight / (var + self.eps).sqrt()                          # (F,)
        shift = self.bias * trivial
        return centred * scale[self._field].view(1, C, 1, 1) + shift[self._field].view(1, C, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.field_type}"


@dataclass
class _Layer:
    conv_out: FieldType     # produced by the convolution
    feature: FieldType      # after the non-linearity
    nonlinearity: nn.Module


class SteerableCNN(nn.Module):
    """A small steerable CNN classifier: steerable convolutions, non-linearities, average pooling, invariant
    field pooling, a spatial mean and a linear layer.

    Args:
        group: ``"C<N>"`` / ``"D<N>"`` (regular fields, ReLU) or ``"SO2"`` / ``"O2"`` (irreducible fields).
        in_channels: channels of the input image (scalar fields).
        channels: fields per layer, e.g. ``(6, 6, 6)`` (for SO2/O2: copies of the frequencies ``0..L``).
        kernel_size: odd filter size (default: 5).
        pool_after: layers followed by ``2x2`` average pooling (default: none).
        num_classes: output scores (default: 10); ``None`` returns the last layer's feature fields, which
            transform by the field type ``features_type`` (``out_action`` says how, for the checker).
        max_frequency: ``L`` for SO2/O2 fields (default: 2).
        nonlinearity: for SO2/O2, ``"norm"`` or ``"gated"`` (default: ``"norm"``).
        batch_norm: batch normalisation after each convolution, respecting the fields: one statistic per regular
            field, shared by its ``|G|`` channels (:class:`~gdl.nn.GroupBatchNorm2d`), or per irreducible field
            on its norm (:class:`NormBatchNorm2d`) (default: ``False``).
        band: band limits of the filters (see :class:`SteerableConv2d`; default: escnn's).

    The output is invariant to the 90-degree rotations (and mirrors for ``D_N``, ``O2``) to float64 round-off,
    and to other group elements approximately (see the module docstring).

    Shapes:
        input ``(B, in_channels, H, W)``; output ``(B, num_classes)``.
    """

    def __init__(self, group: str = "C8", in_channels: int = 1, channels: tuple[int, ...] = (6, 6, 6),
                 kernel_size: int = 5, pool_after: tuple[int, ...] = (), num_classes: int | None = 10,
                 max_frequency: int = 2, nonlinearity: str = "norm", batch_norm: bool = False,
                 band: int | tuple[int, ...] | None = None):
        super().__init__()
        G = planar_group(group)
        if nonlinearity not in ("norm", "gated"):
            raise ValueError(f"nonlinearity must be 'norm' or 'gated', got {nonlinearity!r}")
        if len(channels) < 1:
            raise ValueError("channels must list at least one layer width")
        self.regular = G.is_finite
        self.group_name, self.in_channels, self.num_classes = str(G), in_channels, num_classes
        self.channels, self.pool_after, self.nonlinearity = tuple(channels), tuple(pool_after), nonlinearity
        in_type = FieldType(self.group_name, ["trivial"] * in_channels)
        self.in_type = in_type
        blocks: list[nn.Module] = []
        for i, c in enumerate(channels):
            layer = self._layer(c, max_frequency)
            blocks.append(SteerableConv2d(in_type, layer.conv_out, kernel_size, bias=not batch_norm, band=band))
            if batch_norm and self.regular:
                blocks.append(GroupBatchNorm2d(c, G.order))                 # regular fields of |G| channels
            elif batch_norm:
                blocks.append(NormBatchNorm2d(layer.conv_out))              # irreducible fields
            blocks.append(layer.nonlinearity)
            if i in self.pool_after:
                blocks.append(nn.AvgPool2d(2))
            in_type = layer.feature
        self.features = nn.Sequential(*blocks)
        self.features_type = in_type
        self.pool = FieldPool(in_type.field_dims(), regular=self.regular)
        self.head = nn.Linear(len(in_type), num_classes) if num_classes is not None else None
        self.group, embed = _checker_group(G)
        self.in_action = ImageAction(self.group)
        self.out_action = (TrivialAction(self.group) if num_classes is not None
                           else _field_action(in_type, self.group, embed, "features_type"))

    def _layer(self, c: int, L: int) -> _Layer:
        g = self.group_name
        if self.regular:
            t = FieldType(g, [REGULAR] * c)
            return _Layer(t, t, nn.ReLU())
        feature = FieldType(g, list(range(L + 1)) * c)                   # frequencies 0..L, c times
        if self.nonlinearity == "norm":
            return _Layer(feature, feature, NormReLU(feature.field_dims()))
        scalars = FieldType(g, [0] * c)
        gated = FieldType(g, list(range(1, L + 1)) * c)
        gates = FieldType(g, [0] * len(gated))
        return _Layer(gates + scalars + gated, scalars + gated, GatedReLU(c, gated.field_dims()))

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
        """The same network from plain PyTorch modules only (``nn.Conv2d`` with the expanded filters)."""
        blocks = [b.export() if isinstance(b, SteerableConv2d) else copy.deepcopy(b) for b in self.features]
        if self.head is None:
            return nn.Sequential(*blocks)
        return nn.Sequential(*blocks, copy.deepcopy(self.pool), _SpatialMean(), copy.deepcopy(self.head))

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, (SteerableConv2d, nn.Linear, GroupBatchNorm2d, NormBatchNorm2d)):
                m.reset_parameters()

    def extra_repr(self) -> str:
        return (f"group={self.group_name}, checked with {self.group}, "
                f"params={sum(p.numel() for p in self.parameters())}")


class _SpatialMean(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(-2, -1))
