"""Layers whose weights are coefficients on a basis of equivariant maps.

``EquivariantLinear`` is the layer of Finzi, Welling & Wilson (2021, https://arxiv.org/abs/2104.09459):

.. math::  y = W x + b, \\qquad W = \\sum_{k=1}^{D} \\theta_k B_k, \\qquad b = \\sum_{l=1}^{D_b} \\beta_l c_l,

with :math:`B_k` a basis of :math:`\\{W : W\\rho_{in}(g) = \\rho_{out}(g)W\\}` and :math:`c_l` a basis of the invariant
vectors :math:`\\rho_{out}(g)c = c` (any other bias would break equivariance). The number of trainable numbers is
:math:`D + D_b` instead of :math:`M_{out}M_{in} + M_{out}`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from gdl.groups import DirectSumRep, Rep, RepresentationError, ShapeError, TrivialRep
from gdl.weight_sharing._solver import _check_pair, _is_orthogonal, _is_skew, _permutation_of, equivariant_basis

__all__ = ["EquivariantLinear", "EquivariantNonlinearity", "EquivariantMLP"]


def _check_input(module: nn.Module, x: torch.Tensor, rep: Rep) -> None:
    if not torch.is_tensor(x) or x.ndim < 1 or x.shape[-1] != rep.dim:
        got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ShapeError(f"{type(module).__name__} expects input of shape (..., {rep.dim}) (rep_in = {rep}), "
                         f"got {got}")


class EquivariantLinear(nn.Module):
    """An equivariant linear layer :math:`y = \\sum_k \\theta_k B_k x + \\sum_l \\beta_l c_l`.

    .. math::  W \\rho_{in}(g) = \\rho_{out}(g) W, \\qquad \\rho_{out}(g) b = b \\qquad \\forall g \\in G.

    Args:
        rep_in, rep_out: representations of one group (:class:`~gdl.groups.GroupMismatchError` otherwise).
        bias: add a bias constrained to the invariant subspace of ``rep_out`` (default: ``True``).
        method: solver method, see :func:`~gdl.weight_sharing.equivariant_basis` (default: ``"auto"``).

    Shapes:
        input ``(..., M_in)``, output ``(..., M_out)``.

    The bases are solved once per pair of representations (cached in memory) and kept in float64; they are
    cast to the input's dtype in ``forward``, so a float64 layer is equivariant to round-off (~1e-15).

    Examples:
        >>> from gdl.groups import RegularRep, SymmetricGroup, PermutationRep
        >>> layer = EquivariantLinear(PermutationRep(SymmetricGroup(5)), PermutationRep(SymmetricGroup(5)))
        >>> layer.num_weights, layer.num_bias          # Deep Sets: a*x_i + b*sum(x), one shared bias
        (2, 1)
    """

    def __init__(self, rep_in: Rep, rep_out: Rep, bias: bool = True, method: str = "auto"):
        super().__init__()
        _check_pair(rep_in, rep_out)
        self.rep_in, self.rep_out, self.group = rep_in, rep_out, rep_in.group
        self._basis = equivariant_basis(rep_in, rep_out, method)                       # (D, M_out, M_in)
        self._bias_basis = (equivariant_basis(TrivialRep(self.group), rep_out, method)[..., 0]
                            if bias else None)                                          # (D_b, M_out)
        self.weight = nn.Parameter(torch.empty(self._basis.shape[0]))
        self.bias = nn.Parameter(torch.empty(self._bias_basis.shape[0])) if bias else None
        self.reset_parameters()

    @property
    def num_weights(self) -> int:
        """:math:`D`, the number of free weights."""
        return self._basis.shape[0]

    @property
    def num_bias(self) -> int:
        """:math:`D_b`, the number of free bias entries (0 without bias)."""
        return 0 if self._bias_basis is None else self._bias_basis.shape[0]

    def reset_parameters(self) -> None:
        """:math:`\\theta_k \\sim \\mathcal{N}(0, M_{out}/D)`, so :math:`\\mathbb{E}\\lVert W\\rVert_F^2 = M_{out}`
        (the LeCun scaling: unit-variance inputs give unit-variance outputs); bias zero."""
        std = (self.rep_out.dim / max(self.num_weights, 1)) ** 0.5
        with torch.no_grad():
            self.weight.normal_(0.0, std)
            if self.bias is not None:
                self.bias.zero_()

    def _cast(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """The float64 basis ``self.<name>`` on ``like``'s device and in its dtype, cached per (device, dtype): the
        basis is a constant, so converting it once instead of at every forward pass saves most of a small layer's
        time."""
        t = getattr(self, name)
        if t.device == like.device and t.dtype == like.dtype:
            return t
        cache = self.__dict__.setdefault("_device_cache", {})
        key = (name, str(like.device), like.dtype)
        if key not in cache:
            cache[key] = t.to(device=like.device, dtype=like.dtype)
        return cache[key]

    def weight_matrix(self) -> torch.Tensor:
        """:math:`W = \\sum_k \\theta_k B_k`, shape ``(M_out, M_in)``."""
        basis = self._cast("_basis", self.weight)                                   # (D, M_out, M_in)
        return (self.weight @ basis.flatten(1)).view(basis.shape[1:])

    def bias_vector(self) -> torch.Tensor | None:
        """:math:`b = \\sum_l \\beta_l c_l`, shape ``(M_out,)`` (``None`` without bias)."""
        if self.bias is None:
            return None
        return self.bias @ self._cast("_bias_basis", self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(self, x, self.rep_in)
        y = x @ self.weight_matrix().to(x.dtype).T                  # (..., M_out)
        b = self.bias_vector()
        return y if b is None else y + b.to(x.dtype)

    def __repr__(self) -> str:
        dense = self.rep_in.dim * self.rep_out.dim
        bias = f" + {self.num_bias} bias" if self.bias is not None else ""
        return (f"EquivariantLinear({self.rep_in} -> {self.rep_out}, {self.num_weights} weights{bias}; "
                f"a dense layer has {dense})")


def _summand_kind(rep: Rep) -> str:
    """``"pointwise"`` if every generator acts by a permutation matrix (and the Lie algebra by 0), ``"norm"`` if
    every group element acts orthogonally; otherwise raise."""
    mats = [rep.matrix(g) for g in rep.group.generators()]
    lie = [torch.as_tensor(x, dtype=torch.float64) for x in rep.lie_algebra()] if not rep.group.is_finite else []
    if all(_permutation_of(m) is not None for m in mats) and all(not x.any() for x in lie):
        return "pointwise"
    if all(_is_orthogonal(m) for m in mats) and all(_is_skew(x) for x in lie):
        return "norm"
    raise RepresentationError(f"EquivariantNonlinearity supports permutation representations (pointwise) and "
                              f"orthogonal ones (norm gate); {rep} is neither")


class EquivariantNonlinearity(nn.Module):
    """An equivariant nonlinearity on a direct sum of representations, summand by summand:

    - summands acting by **permutation matrices** (trivial, regular, permutation representations and their
      tensor products): any pointwise function, :math:`\\sigma(\\rho(g)x) = \\rho(g)\\sigma(x)` because a
      permutation only moves entries;
    - **orthogonal** summands (standard, irreducible, tensor-product representations of rotation groups): the
      norm gate :math:`x \\mapsto x\\, \\mathrm{sigmoid}(\\lVert x\\rVert + \\beta)` with a trainable scalar
      :math:`\\beta` per summand, equivariant because :math:`\\lVert\\rho(g)x\\rVert = \\lVert x\\rVert`.

    Anything else (non-orthogonal matrices) raises :class:`~gdl.groups.RepresentationError`.

    Args:
        rep: the representation of input and output (``rep_in = rep_out = rep``).
        activation: the pointwise function (default: ``torch.relu``).
    """

    def __init__(self, rep: Rep, activation: Callable[[torch.Tensor], torch.Tensor] = torch.relu):
        super().__init__()
        self.rep_in = self.rep_out = rep
        self.group, self.activation = rep.group, activation
        summands = rep.reps if isinstance(rep, DirectSumRep) else (rep,)
        pointwise, self._norm_slices, start = [], [], 0
        for r in summands:
            if _summand_kind(r) == "pointwise":
                pointwise.extend(range(start, start + r.dim))
            else:
                self._norm_slices.append((start, start + r.dim))
            start += r.dim
        self._pointwise = torch.tensor(pointwise, dtype=torch.long)
        self.gate_bias = nn.Parameter(torch.zeros(len(self._norm_slices)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(self, x, self.rep_in)
        if not self._norm_slices:                                            # every summand is pointwise
            return self.activation(x)
        out = torch.empty_like(x)
        idx = self._pointwise.to(x.device)
        out[..., idx] = self.activation(x[..., idx])
        for k, (a, b) in enumerate(self._norm_slices):
            v = x[..., a:b]
            norm = (v.pow(2).sum(-1, keepdim=True) + 1e-12).sqrt()          # invariant
            out[..., a:b] = v * torch.sigmoid(norm + self.gate_bias[k].to(x.dtype))
        return out

    def __repr__(self) -> str:
        return (f"EquivariantNonlinearity({self.rep_in}: {len(self._pointwise)} pointwise, "
                f"{len(self._norm_slices)} norm-gated)")


class EquivariantMLP(nn.Module):
    """A stack ``EquivariantLinear -> EquivariantNonlinearity -> ... -> EquivariantLinear``:

    .. math::  f = L_{n} \\circ \\sigma \\circ L_{n-1} \\circ \\dots \\circ \\sigma \\circ L_1, \\qquad
               f(\\rho_{in}(g)x) = \\rho_{out}(g) f(x),

    equivariant because every piece is. The hidden representation must suit
    :class:`EquivariantNonlinearity` (permutation or orthogonal summands).

    Args:
        rep_in, rep_out: input and output representations.
        rep_hidden: one representation (used for every hidden layer) or a sequence of them.
        num_hidden: the number of hidden layers when ``rep_hidden`` is a single representation (default: 2).
        activation: the pointwise function of the nonlinearity (default: ``torch.relu``).
    """

    def __init__(self, rep_in: Rep, rep_hidden: Rep | Sequence[Rep], rep_out: Rep, num_hidden: int = 2,
                 activation: Callable[[torch.Tensor], torch.Tensor] = torch.relu):
        super().__init__()
        hidden = [rep_hidden] * num_hidden if isinstance(rep_hidden, Rep) else list(rep_hidden)
        if not hidden:
            raise ValueError("EquivariantMLP needs at least one hidden representation")
        self.rep_in, self.rep_out, self.group = rep_in, rep_out, rep_in.group
        layers: list[nn.Module] = []
        reps = [rep_in] + hidden
        for a, b in zip(reps[:-1], reps[1:]):
            layers += [EquivariantLinear(a, b), EquivariantNonlinearity(b, activation)]
        layers.append(EquivariantLinear(hidden[-1], rep_out))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(self, x, self.rep_in)
        return self.net(x)

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        return f"EquivariantMLP({self.rep_in} -> {self.rep_out}, {len(self.net) // 2} hidden layers, {n} parameters)"
