"""Group-equivariant convolutional networks (G-CNNs) for the wallpaper groups p4 and p4m.

Cohen & Welling, `Group Equivariant Convolutional Networks <https://arxiv.org/abs/1602.07576>`_ (ICML 2016).

A plain convolution slides one filter over all *translations*. A G-CNN slides it over all translations
*and* all rotations (p4: the four rotations by multiples of 90 degrees; p4m: those and their mirror images),
so a feature map has one channel per group element :math:`g \\in G` (a *regular* feature field).

The **lifting convolution** takes a plain image :math:`f: \\mathbb{Z}^2 \\to \\mathbb{R}^{C}` to a map on
the roto-translation group,

.. math::  [f \\star \\psi](g, x) = \\sum_{y \\in \\mathbb{Z}^2} \\sum_{c} f_c(y)\\, \\psi_c\\big(g^{-1}(y - x)\\big),

and the **group convolution** takes such a map to another one,

.. math::  [F \\star \\Psi](g, x) = \\sum_{y} \\sum_{h \\in G} \\sum_{c} F_c(h, y)\\,
           \\Psi_c\\big(g^{-1} h,\\; g^{-1}(y - x)\\big).

Both are equivariant: rotating the input by :math:`r` rotates every feature map spatially *and* cycles
its group axis, :math:`[L_r F](g, x) = F(r^{-1} g, r^{-1} x)`. **Group pooling** (max or mean over
:math:`g`) then gives maps that just rotate, and a spatial mean on top gives rotation-invariant features.

Implementation: for every output element :math:`g` the filter is rotated (flipped) spatially and its
group axis permuted by :math:`h \\mapsto g^{-1}h`; the :math:`|G|` transformed copies are stacked into one
ordinary ``conv2d`` weight of shape ``(C_out*G, C_in*G, k, k)``. One gather builds that weight, one
``conv2d`` applies it, so the cost is that of a plain convolution with the expanded channel counts, and
:meth:`export` hands back exactly that plain ``nn.Conv2d``. Rotations by 90 degrees and flips permute the
pixels of a square grid, so equivariance is exact up to floating-point round-off (odd kernels, stride 1;
2x2 max pooling keeps it when the image side is even at every pooling step).

Feature maps are laid out as ``(B, C*G, H, W)`` with channel ``c*G + i`` holding field ``c`` at the
``i``-th element of ``group.elements()`` (fields are contiguous blocks, escnn's convention), which is what
``ImageAction(group, fiber=RegularRep(group))`` acts on.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gdl.groups import (
    CyclicGroup,
    DihedralGroup,
    Group,
    ImageAction,
    RegularRep,
    ShapeError,
    TrivialAction,
)

__all__ = [
    "GROUPS",
    "as_image_group",
    "LiftingConv2d",
    "GroupConv2d",
    "GroupPool",
    "GroupBatchNorm2d",
    "GCNN",
]

#: Short names of the groups a G-CNN can use: rotations by 90 degrees (p4) and those with mirrors (p4m).
GROUPS = {"p4": lambda: CyclicGroup(4), "p4m": lambda: DihedralGroup(4)}


def as_image_group(group: str | Group) -> Group:
    """Turn ``"p4"``/``"p4m"`` (or a ``CyclicGroup(4)``/``DihedralGroup(4)``) into the point group.

    Only groups that permute the pixels of a square grid are allowed, so equivariance is exact.
    """
    if isinstance(group, str):
        if group not in GROUPS:
            raise ValueError(f"unknown group {group!r}; expected one of {sorted(GROUPS)}")
        return GROUPS[group]()
    if isinstance(group, (CyclicGroup, DihedralGroup)) and group.n in (1, 2, 4):
        return group
    raise ValueError(
        f"a G-CNN on the pixel grid needs rotations by multiples of 90 degrees (and flips); got {group}. "
        "Use 'p4' (CyclicGroup(4)), 'p4m' (DihedralGroup(4)), or gdl.nn.steerable for other angles."
    )


def _group_tables(group: Group, kernel_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Index tables of a finite image group.

    Returns ``mul[i, j]`` (index of :math:`g_i g_j`), ``inv[i]`` (index of :math:`g_i^{-1}`) and
    ``spatial[i, p]``: the pixel of a ``k x k`` filter that lands on pixel ``p`` when the filter is
    transformed by :math:`g_i`, i.e. :math:`(L_{g}\\psi)(p) = \\psi(g^{-1} p)` is ``psi.flatten()[spatial[i]]``.
    """
    elements = list(group.elements())
    mul = torch.tensor([[group.index(g * h) for h in elements] for g in elements], dtype=torch.long)
    inv = torch.tensor([group.index(g.inverse()) for g in elements], dtype=torch.long)
    k = kernel_size
    grid = torch.arange(k * k, dtype=torch.float64).reshape(1, k, k)   # pixel labels
    act = ImageAction(group)
    spatial = torch.stack([act(g, grid).reshape(-1).round().long() for g in elements])  # (G, k*k)
    return mul, inv, spatial


def _check_kernel(kernel_size: int, padding_mode: str) -> None:
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be a positive odd integer (a centred filter), got {kernel_size!r}")
    if padding_mode not in ("zeros", "circular"):
        raise ValueError(f"padding_mode must be 'zeros' or 'circular', got {padding_mode!r}")


class _GroupConvBase(nn.Module):
    """Shared machinery: expanded weight, one ``conv2d``, input checks, ``export()``.

    The expanded filter is one gather from the flattened weight, ``torch.take(weight, flat)`` with a fixed index
    ``flat`` already shaped like the expanded filter (one operation forward, one accumulating ``put_`` backward,
    no reshapes in between: on a small layer the fixed cost per operation is what shows). When no gradient is
    needed (evaluation under ``torch.no_grad``, or frozen weights) it is built once and reused until a parameter
    changes (its ``_version`` counter, storage, device or dtype)."""

    in_fiber_is_regular: bool = False

    def __init__(self, in_channels, out_channels, kernel_size, group, bias, padding_mode):
        super().__init__()
        _check_kernel(kernel_size, padding_mode)
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.group = as_image_group(group)
        self.order = len(self.group.elements())
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.padding_mode = kernel_size, padding_mode
        mul, inv, spatial = _group_tables(self.group, kernel_size)
        self.register_buffer("_index", self._expansion_index(mul, inv, spatial), persistent=False)
        self.out_action = ImageAction(self.group, fiber=RegularRep(self.group))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.register_buffer("_bias_index", torch.arange(out_channels).repeat_interleave(self.order),
                             persistent=False)
        self._cache = None

    # subclasses: weight shape, index, input fibre
    def _expansion_index(self, mul, inv, spatial) -> torch.Tensor:
        raise NotImplementedError

    def _flat_index(self) -> torch.Tensor:
        """Index into ``weight.reshape(-1)`` of every entry of the expanded ``(C_out*G, C_in', k, k)`` filter."""
        raise NotImplementedError

    def _register_flat_index(self) -> None:
        k = self.kernel_size
        flat = self._flat_index().reshape(self.expanded_out_channels, self.expanded_in_channels, k, k)
        self.register_buffer("_flat", flat.long(), persistent=False)

    @property
    def expanded_in_channels(self) -> int:
        return self.in_channels * (self.order if self.in_fiber_is_regular else 1)

    @property
    def expanded_out_channels(self) -> int:
        return self.out_channels * self.order

    def reset_parameters(self) -> None:
        """He initialisation with the fan-in of the expanded convolution; zero bias."""
        fan_in = self.expanded_in_channels * self.kernel_size**2
        nn.init.normal_(self.weight, std=math.sqrt(2.0 / fan_in))
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def expanded_weight(self) -> torch.Tensor:
        """The ``(C_out*G, C_in', k, k)`` weight of the equivalent plain convolution (one gather)."""
        return torch.take(self.weight, self._flat)

    def _filter(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Expanded weight and bias: built every call when autograd needs them, else cached until a parameter
        changes."""
        w, b = self.weight, self.bias
        if torch.is_grad_enabled() and (w.requires_grad or (b is not None and b.requires_grad)):
            if self._cache is not None:
                self._cache = None
            return self.expanded_weight(), self.expanded_bias()
        params = [w] if b is None else [w, b]
        key = (torch.is_inference_mode_enabled(),
               *((p._version, p.data_ptr(), p.device, p.dtype) for p in params))
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self.expanded_weight(), self.expanded_bias())
        return self._cache[1], self._cache[2]

    def expanded_bias(self) -> torch.Tensor | None:
        """One bias per output *field*, repeated over its ``G`` channels (a per-channel bias would break
        equivariance, since the group action permutes the channels of a field)."""
        # a gather with a fixed index: repeat_interleave would rebuild its index (and a slower backward) per call
        return None if self.bias is None else torch.take(self.bias, self._bias_index)

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{type(self).__name__} expects a torch.Tensor, got {type(x).__name__}")
        c = self.expanded_in_channels
        if x.ndim != 4 or x.shape[1] != c:
            what = f"{self.in_channels} fields x |G|={self.order}" if self.in_fiber_is_regular else "channels"
            raise ShapeError(
                f"{type(self).__name__} expects input of shape (B, {c}, H, W) ({what}), "
                f"got {tuple(x.shape)}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the common case in few Python steps: on a small layer each microsecond here is a percent of the pass
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != self.expanded_in_channels:
            self._check_input(x)
        p = self.kernel_size // 2
        w, b = self.weight, self.bias
        if torch.is_grad_enabled() and (w.requires_grad or (b is not None and b.requires_grad)) \
                and self._cache is None:
            w, b = torch.take(w, self._flat), None if b is None else torch.take(b, self._bias_index)
        else:
            w, b = self._filter()
        if self.padding_mode == "circular":
            return F.conv2d(F.pad(x, (p, p, p, p), mode="circular"), w, b)
        return F.conv2d(x, w, b, padding=p)          # (B, C_out*G, H, W)

    def export(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` computing the same function (the expanded filter, frozen in)."""
        k = self.kernel_size
        conv = nn.Conv2d(
            self.expanded_in_channels, self.expanded_out_channels, k, padding=k // 2,
            padding_mode=self.padding_mode, bias=self.bias is not None,
        ).to(device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            conv.weight.copy_(self.expanded_weight())
            if self.bias is not None:
                conv.bias.copy_(self.expanded_bias())
        return conv

    def extra_repr(self) -> str:
        return (
            f"group={self.group} (|G|={self.order}), in_channels={self.in_channels}, "
            f"out_channels={self.out_channels} (x{self.order} = {self.expanded_out_channels} maps), "
            f"kernel_size={self.kernel_size}, padding_mode={self.padding_mode!r}, "
            f"bias={self.bias is not None}, params={sum(p.numel() for p in self.parameters())}"
        )


class LiftingConv2d(_GroupConvBase):
    """Lifting convolution: plain images in, regular feature fields on the group out.

    .. math::  [f \\star \\psi](g, x) = \\sum_{y \\in \\mathbb{Z}^2} \\sum_{c} f_c(y)\\,
               \\psi_c\\big(g^{-1}(y - x)\\big)

    Equivariance: :math:`[(L_r f) \\star \\psi](g, x) = [f \\star \\psi](r^{-1} g, r^{-1} x)`.

    Args:
        in_channels: channels of the input image (scalar fields).
        out_channels: number of output regular fields (each has ``|G|`` channels).
        kernel_size: odd filter size (default: 3).
        group: ``"p4"``, ``"p4m"`` or a ``CyclicGroup(4)``/``DihedralGroup(4)`` (default: ``"p4"``).
        bias: one learnable bias per output field (default: ``True``).
        padding_mode: ``"zeros"`` or ``"circular"``; both keep exact rotation equivariance
            (default: ``"zeros"``).

    Shapes:
        input ``(B, C_in, H, W)``; output ``(B, C_out*G, H, W)``.

    Examples:
        >>> layer = LiftingConv2d(1, 8, 3, group="p4")
        >>> layer(torch.zeros(2, 1, 12, 12)).shape
        torch.Size([2, 32, 12, 12])
    """

    in_fiber_is_regular = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 group: str | Group = "p4", bias: bool = True, padding_mode: str = "zeros"):
        super().__init__(in_channels, out_channels, kernel_size, group, bias, padding_mode)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.in_action = ImageAction(self.group)
        self._register_flat_index()
        self.reset_parameters()

    def _expansion_index(self, mul, inv, spatial):
        return spatial                                    # (G, k*k)

    def _flat_index(self) -> torch.Tensor:
        # expanded[o, g, i, p] = weight[o, i, spatial[g, p]]
        co, ci, k, _ = self.weight.shape
        o = torch.arange(co)[:, None, None, None]
        i = torch.arange(ci)[None, None, :, None]
        return (o * ci + i) * (k * k) + self._index[None, :, None, :]     # (C_out, G, C_in, k*k)


class GroupConv2d(_GroupConvBase):
    """Group convolution: regular feature fields on the group in and out.

    .. math::  [F \\star \\Psi](g, x) = \\sum_{y} \\sum_{h \\in G} \\sum_{c} F_c(h, y)\\,
               \\Psi_c\\big(g^{-1} h,\\; g^{-1}(y - x)\\big)

    The filter has one spatial slice per group element (``weight`` is ``(C_out, C_in, G, k, k)``). For the
    output element :math:`g` the slices are permuted by :math:`h \\mapsto g^{-1} h` and each is transformed
    spatially by :math:`g`.

    Args:
        in_channels: number of input regular fields (the input has ``in_channels * |G|`` channels).
        out_channels: number of output regular fields.
        kernel_size, group, bias, padding_mode: as in :class:`LiftingConv2d`.

    Shapes:
        input ``(B, C_in*G, H, W)``; output ``(B, C_out*G, H, W)``.

    Examples:
        >>> layer = GroupConv2d(8, 8, 3, group="p4m")
        >>> layer(torch.zeros(2, 64, 12, 12)).shape
        torch.Size([2, 64, 12, 12])
    """

    in_fiber_is_regular = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 group: str | Group = "p4", bias: bool = True, padding_mode: str = "zeros"):
        super().__init__(in_channels, out_channels, kernel_size, group, bias, padding_mode)
        G = self.order
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, G, kernel_size, kernel_size))
        self.in_action = ImageAction(self.group, fiber=RegularRep(self.group))
        self._register_flat_index()
        self.reset_parameters()

    def _expansion_index(self, mul, inv, spatial):
        # index[g, h, p] into the flattened (G, k*k) filter: slice g^{-1} h, pixel spatial[g, p]
        kk = spatial.shape[1]
        slices = mul[inv]                                  # slices[g, h] = index of g^{-1} h
        return slices[:, :, None] * kk + spatial[:, None, :]   # (G, G, k*k)

    def _flat_index(self) -> torch.Tensor:
        # expanded[o, g, i, h, p] = weight[o, i].flatten()[index[g, h, p]]
        co, ci, G, k, _ = self.weight.shape
        o = torch.arange(co)[:, None, None, None, None]
        i = torch.arange(ci)[None, None, :, None, None]
        return (o * ci + i) * (G * k * k) + self._index[None, :, None, :, :]   # (C_out, G, C_in, G, k*k)


class GroupPool(nn.Module):
    """Pool each regular field over the group axis: :math:`f_c(x) = \\max_{g \\in G} F_c(g, x)` (or the mean).

    The group action only permutes the ``G`` channels of a field, so the result is a scalar field that
    just rotates with the input: ``ImageAction(group)`` out.

    Shapes:
        input ``(B, C*G, H, W)``; output ``(B, C, H, W)``.
    """

    def __init__(self, group: str | Group = "p4", mode: str = "max"):
        super().__init__()
        if mode not in ("max", "mean"):
            raise ValueError(f"mode must be 'max' or 'mean', got {mode!r}")
        self.group = as_image_group(group)
        self.order = len(self.group.elements())
        self.mode = mode
        self.in_action = ImageAction(self.group, fiber=RegularRep(self.group))
        self.out_action = ImageAction(self.group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] % self.order != 0:
            raise ShapeError(
                f"GroupPool expects (B, C*{self.order}, H, W) regular fields of {self.group}, "
                f"got {tuple(x.shape)}"
            )
        B, _, H, W = x.shape
        x = x.reshape(B, -1, self.order, H, W)            # (B, C, G, H, W)
        return x.amax(dim=2) if self.mode == "max" else x.mean(dim=2)

    def extra_repr(self) -> str:
        return f"group={self.group}, mode={self.mode!r}"


class GroupBatchNorm2d(nn.Module):
    """Batch normalisation of regular fields: one mean, variance, scale and shift per *field*, shared by
    its ``G`` channels (statistics over batch, space and group axis), so it commutes with the group action,
    which only permutes the channels of a field:

    .. math::  \\hat F_c(g, x) = \\gamma_c \\frac{F_c(g, x) - \\mu_c}{\\sqrt{\\sigma_c^2 + \\epsilon}} + \\beta_c

    The one batch norm of regular fields in ``gdl``: the G-CNNs use it with ``"p4"``/``"p4m"``, the steerable
    CNNs (:mod:`gdl.nn.steerable`) with the order of their :math:`C_N`/:math:`D_N` regular fields.

    Args:
        num_fields: number of regular fields ``C``.
        group: ``"p4"``, ``"p4m"`` (or their groups), which also sets ``in_action``/``out_action`` for the
            checker; or the field size ``G`` as an integer, for regular fields of any finite group.
        **kwargs: passed to ``nn.BatchNorm3d`` (``eps``, ``momentum``...).

    Shapes:
        input and output ``(B, C*G, H, W)``.
    """

    def __init__(self, num_fields: int, group: str | Group | int = "p4", **kwargs):
        super().__init__()
        if not isinstance(num_fields, int) or num_fields < 1:
            raise ValueError(f"num_fields must be a positive integer, got {num_fields!r}")
        if isinstance(group, int):
            if group < 1:
                raise ValueError(f"the field size (group order) must be a positive integer, got {group}")
            self.group, self.order = None, group
            self.in_action = self.out_action = None
        else:
            self.group = as_image_group(group)
            self.order = len(self.group.elements())
            self.in_action = self.out_action = ImageAction(self.group, fiber=RegularRep(self.group))
        self.num_fields = num_fields
        self.bn = nn.BatchNorm3d(num_fields, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != self.num_fields * self.order:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ShapeError(
                f"GroupBatchNorm2d expects (B, {self.num_fields * self.order}, H, W) "
                f"({self.num_fields} fields x |G|={self.order}), got {got}"
            )
        B, _, H, W = x.shape
        y = self.bn(x.reshape(B, self.num_fields, self.order, H, W))  # (B, C, G, H, W)
        return y.reshape(B, -1, H, W)

    def reset_parameters(self) -> None:
        self.bn.reset_parameters()


class GCNN(nn.Module):
    """A small G-CNN (p4-CNN / p4m-CNN) classifier or feature extractor.

    ``LiftingConv2d -> ReLU [-> MaxPool2d(2)]`` then ``(GroupConv2d -> ReLU [-> MaxPool2d(2)])`` repeated,
    then group pooling; with ``num_classes`` a spatial mean and a linear layer give class scores that are
    *invariant* to the group (exactly, when every pooled side length is even).

    Args:
        in_channels: channels of the input image.
        channels: number of regular fields of each layer, e.g. ``(8, 8, 8)``.
        kernel_size: odd filter size (default: 3).
        group: ``"p4"`` or ``"p4m"`` (default: ``"p4"``).
        pool_after: indices of the layers followed by ``2x2`` max pooling (default: none).
        num_classes: if given, return ``(B, num_classes)`` invariant scores; otherwise the group-pooled
            ``(B, C_last, H', W')`` maps, which rotate with the input.
        padding_mode: ``"zeros"`` or ``"circular"`` (default: ``"zeros"``).
        group_pool: ``"max"`` or ``"mean"`` (default: ``"max"``).
        batch_norm: :class:`GroupBatchNorm2d` after each convolution (default: ``False``).

    Shapes:
        input ``(B, C_in, H, W)``; output ``(B, num_classes)`` or ``(B, C_last, H', W')``.
    """

    def __init__(self, in_channels: int = 1, channels: tuple[int, ...] = (8, 8, 8), kernel_size: int = 3,
                 group: str | Group = "p4", pool_after: tuple[int, ...] = (), num_classes: int | None = None,
                 padding_mode: str = "zeros", group_pool: str = "max", batch_norm: bool = False):
        super().__init__()
        if len(channels) < 1:
            raise ValueError("channels must list at least one layer width")
        bad = [i for i in pool_after if not 0 <= i < len(channels)]
        if bad:
            raise ValueError(f"pool_after indices {bad} are outside 0..{len(channels) - 1}")
        self.group = as_image_group(group)
        self.in_channels, self.channels, self.num_classes = in_channels, tuple(channels), num_classes
        self.pool_after = tuple(pool_after)
        layers: list[nn.Module] = []
        c_in = in_channels
        for i, c in enumerate(channels):
            conv = LiftingConv2d if i == 0 else GroupConv2d
            layers.append(conv(c_in, c, kernel_size, self.group, bias=not batch_norm, padding_mode=padding_mode))
            if batch_norm:
                layers.append(GroupBatchNorm2d(c, self.group))
            layers.append(nn.ReLU())
            if i in self.pool_after:
                layers.append(nn.MaxPool2d(2))
            c_in = c
        self.features = nn.Sequential(*layers)
        self.pool = GroupPool(self.group, group_pool)
        self.head = nn.Linear(channels[-1], num_classes) if num_classes is not None else None
        self.in_action = ImageAction(self.group)
        self.out_action = TrivialAction(self.group) if num_classes is not None else ImageAction(self.group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != self.in_channels:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ShapeError(f"GCNN expects images of shape (B, {self.in_channels}, H, W), got {got}")
        h = self.pool(self.features(x))                  # (B, C, H', W')
        if self.head is None:
            return h
        return self.head(h.mean(dim=(-2, -1)))          # (B, num_classes)

    def reset_parameters(self) -> None:
        for m in self.modules():
            if m is not self and hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def extra_repr(self) -> str:
        return f"group={self.group}, params={sum(p.numel() for p in self.parameters())}"
