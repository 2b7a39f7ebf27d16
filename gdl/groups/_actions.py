"""Actions: how a group element moves a tensor of data.

An action :math:`(g, x) \\mapsto g \\cdot x` satisfies :math:`e \\cdot x = x` and
:math:`g \\cdot (h \\cdot x) = (gh) \\cdot x`. Each :class:`Action` validates the shape of what it is given and
raises :class:`~gdl.groups.ShapeError` naming the expected and the received shape.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

import torch

from gdl._tree import max_abs_diff
from gdl.groups._errors import GroupMismatchError, ShapeError
from gdl.groups._finite import CyclicGroup, DihedralGroup, SymmetricGroup, TranslationGroup2D
from gdl.groups._group import Group, GroupElement
from gdl.groups._rep import Rep
from gdl.groups._wallpaper import _Wallpaper

__all__ = ["Action", "TrivialAction", "RepAction", "ImageAction", "SetAction", "TupleAction"]


class Action(abc.ABC):
    """Base class. Subclasses set ``group`` and implement :meth:`_act` (and :meth:`check_input`)."""

    group: Group

    def __call__(self, g: GroupElement, x: Any) -> Any:
        self.group.check(g)
        self.check_input(x)
        return self._act(g, x)

    @abc.abstractmethod
    def _act(self, g: GroupElement, x: Any) -> Any: ...

    def check_input(self, x: Any) -> None:
        """Raise :class:`ShapeError` if ``x`` cannot be acted on."""

    def random_input(self, batch: int = 4, dtype: torch.dtype = torch.float64,
                     generator: torch.Generator | None = None):
        """A random input this action can act on, if the action knows its shape."""
        raise NotImplementedError(f"{self} cannot invent inputs; pass inputs= explicitly")

    def axioms_error(self, x: Any, elements: Sequence[GroupElement] | None = None, n: int = 8,
                     seed: int = 0) -> dict[str, float]:
        """Measure :math:`\\lVert e\\cdot x - x\\rVert` and :math:`\\lVert g\\cdot(h\\cdot x) - (gh)\\cdot x\\rVert`
        (max-abs, worst over pairs) on the given data."""
        if elements is None:
            g_ = self.group
            elements = g_.elements() if g_.is_finite and g_.order <= 16 else g_.sample(n, seed)
        ident = max_abs_diff(self(self.group.identity(), x), x)
        compat = max(max_abs_diff(self(g, self(h, x)), self(g * h, x))
                     for g in elements for h in elements)
        return {"identity": ident, "compatibility": compat}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.group})"


class TrivialAction(Action):
    """:math:`g \\cdot x = x`: the output action of an invariant function."""

    def __init__(self, group: Group):
        self.group = group

    def _act(self, g, x):
        return x


class RepAction(Action):
    """Feature vectors transforming by a representation: :math:`g \\cdot x = \\rho(g) x` on the last axis.

    Shapes: ``(..., M)`` with ``M = rep.dim``.
    """

    def __init__(self, rep: Rep):
        self.rep, self.group = rep, rep.group

    def check_input(self, x):
        if not torch.is_tensor(x) or x.ndim < 1 or x.shape[-1] != self.rep.dim:
            got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ShapeError(f"{self} expects a tensor of shape (..., {self.rep.dim}), got {got}")

    def _act(self, g, x):
        m = self.rep.matrix(g).to(dtype=x.dtype, device=x.device)
        return x @ m.T                                   # (..., M)

    def random_input(self, batch=4, dtype=torch.float64, generator=None):
        return self.rep.randn(batch, dtype=dtype, generator=generator)

    def __repr__(self) -> str:
        return f"RepAction({self.rep})"


class ImageAction(Action):
    """Exact actions on images and feature maps of shape ``(..., C, H, W)``.

    - :class:`TranslationGroup2D` ``(dy, dx)``: periodic shift, ``torch.roll`` (the grid must match).
    - :class:`CyclicGroup` ``n`` in {1, 2, 4}: rotation about the image centre by ``4k/n`` quarter turns,
      ``torch.rot90`` (counter-clockwise as displayed). Needs square images.
    - :class:`DihedralGroup` ``n`` in {1, 2, 4}: ``(f, k)`` flips left-right first (``torch.flip`` on W),
      then rotates.
    - :class:`~gdl.groups.P4` / :class:`~gdl.groups.P4M` of an ``n x n`` grid: the C4/D4 part as above, then
      the periodic shift.

    Other angles are not exact on a pixel grid; see the resampling action in this package.

    Args:
        group: one of the groups above.
        fiber: optional representation of ``group`` mixing the channels: ``C = F * fiber.dim``, the channel
            axis read as ``F`` fields of ``fiber.dim`` channels each (escnn's convention), each field
            multiplied by ``fiber.matrix(g)``. With ``fiber=RegularRep(C4)`` this is how p4 feature maps
            transform: rotate the plane and cycle the four orientation channels. For P4/P4M the fiber may be a
            representation of the point group (C4/D4): shifts do not mix channels.
    """

    def __init__(self, group: Group, fiber: Rep | None = None):
        ok = (isinstance(group, (TranslationGroup2D, _Wallpaper))
              or (isinstance(group, (CyclicGroup, DihedralGroup)) and group.n in (1, 2, 4)))
        if not ok:
            raise GroupMismatchError(
                f"ImageAction acts exactly only with translations, C1, C2, C4, D1, D2, D4, P4 or P4M; got {group}")
        point = group.point_group if isinstance(group, _Wallpaper) else group
        if fiber is not None and fiber.group not in (group, point):
            raise GroupMismatchError(f"fiber {fiber} is a representation of {fiber.group}, not of {group}")
        self.group, self.fiber = group, fiber

    def check_input(self, x):
        if not torch.is_tensor(x) or x.ndim < 3:
            got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ShapeError(f"{self} expects images of shape (..., C, H, W), got {got}")
        H, W = x.shape[-2:]
        if isinstance(self.group, TranslationGroup2D) and (H, W) != self.group.shape:
            raise ShapeError(f"{self} acts on {self.group.shape[0]}x{self.group.shape[1]} grids, "
                             f"got images of shape {tuple(x.shape)}")
        if isinstance(self.group, _Wallpaper) and (H, W) != (self.group.n, self.group.n):
            raise ShapeError(f"{self} acts on {self.group.n}x{self.group.n} grids, got images of shape "
                             f"{tuple(x.shape)}")
        if isinstance(self.group, (CyclicGroup, DihedralGroup)) and self.group.n == 4 and H != W:
            raise ShapeError(f"{self} rotates by 90 degrees and needs square images, got {tuple(x.shape)}")
        if self.fiber is not None and x.shape[-3] % self.fiber.dim != 0:
            raise ShapeError(f"{self} expects C to be a multiple of fiber.dim={self.fiber.dim}, "
                             f"got images of shape {tuple(x.shape)}")

    def _act(self, g, x):
        g_full, grp, shift = g, self.group, None
        if isinstance(grp, _Wallpaper):
            g, shift = grp.rotation_part(g), grp.translation_part(g).value
            grp = grp.point_group
        if isinstance(grp, TranslationGroup2D):
            y = torch.roll(x, shifts=g.value, dims=(-2, -1))
        else:
            f, k = g.value if isinstance(grp, DihedralGroup) else (0, g.value)
            y = torch.flip(x, dims=(-1,)) if f else x
            y = torch.rot90(y, k * 4 // grp.n, dims=(-2, -1))
        if shift is not None:
            y = torch.roll(y, shifts=shift, dims=(-2, -1))
        if self.fiber is not None:
            d = self.fiber.dim
            m = self.fiber.matrix(g if self.fiber.group == grp else g_full).to(dtype=x.dtype, device=x.device)
            y = y.unflatten(-3, (-1, d))                 # (..., F, d, H, W)
            y = torch.einsum("ij,...fjhw->...fihw", m, y).flatten(-4, -3)
        return y

    def random_input(self, batch=4, dtype=torch.float64, generator=None):
        """Random images ``(batch, C, H, W)``: the group's grid (9x9 for C_n/D_n), ``C = 2 * fiber.dim`` or 2."""
        grp = self.group
        H, W = grp.shape if isinstance(grp, TranslationGroup2D) else \
            (grp.n, grp.n) if isinstance(grp, _Wallpaper) else (9, 9)
        C = 2 * (self.fiber.dim if self.fiber is not None else 1)
        return torch.randn(batch, C, H, W, dtype=dtype, generator=generator)

    def __repr__(self) -> str:
        return f"ImageAction({self.group}" + (f", fiber={self.fiber})" if self.fiber else ")")


class SetAction(Action):
    """Permutations of the elements of a set (or the nodes of a point cloud): shape ``(..., N, C)``,
    :math:`(g \\cdot x)_{g(i)} = x_i`, i.e. ``x[..., g^{-1}(j), :]`` at position ``j``.

    Args:
        group: :class:`SymmetricGroup` of ``N``.
        dim: the axis of the set elements (default: -2).
    """

    def __init__(self, group: SymmetricGroup, dim: int = -2):
        if not isinstance(group, SymmetricGroup):
            raise GroupMismatchError(f"SetAction needs a SymmetricGroup, got {group}")
        self.group, self.dim = group, dim

    def check_input(self, x):
        if not torch.is_tensor(x) or x.ndim < abs(self.dim) or x.shape[self.dim] != self.group.n:
            got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ShapeError(f"{self} expects {self.group.n} set elements along axis {self.dim}, got {got}")

    def _act(self, g, x):
        inv = torch.tensor(g.inverse().value, device=x.device)
        return x.index_select(self.dim, inv)

    def random_input(self, batch=4, dtype=torch.float64, generator=None):
        return torch.randn(batch, self.group.n, 3, dtype=dtype, generator=generator)


class TupleAction(Action):
    """Acts component-wise on a tuple of data, e.g. ``(positions, features)`` of a molecule."""

    def __init__(self, *actions: Action):
        if not actions:
            raise ValueError("TupleAction needs at least one action")
        for a in actions[1:]:
            if a.group != actions[0].group:
                raise GroupMismatchError(f"all actions must share one group, got {actions[0].group} "
                                         f"and {a.group}")
        self.actions, self.group = actions, actions[0].group

    def check_input(self, x):
        if not isinstance(x, (tuple, list)) or len(x) != len(self.actions):
            got = f"{type(x).__name__} of length {len(x)}" if isinstance(x, (tuple, list)) else \
                type(x).__name__
            raise ShapeError(f"{self} expects a tuple of {len(self.actions)} parts, got {got}")

    def _act(self, g, x):
        return tuple(a(g, xi) for a, xi in zip(self.actions, x))

    def random_input(self, batch=4, dtype=torch.float64, generator=None):
        return tuple(a.random_input(batch, dtype=dtype, generator=generator) for a in self.actions)

    def __repr__(self) -> str:
        return f"TupleAction({', '.join(map(repr, self.actions))})"
