"""Helpers for nested data ("pytrees"): a tensor, a tuple/list/dict of them, or a structure that knows its own
tensors (such as :class:`gdl.data.GraphBatch`, which implements ``map_tensors`` and ``named_tensors``).

Shared by :mod:`gdl.groups` (action axioms) and :mod:`gdl.testing` (the checker), so neither imports the other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["leaves", "named_leaves", "tree_map", "float_leaves", "max_abs_diff", "shape_of"]


def shape_of(x: Any) -> str:
    """How error messages show what they received: ``(3, 4) float32`` for a tensor, the type name otherwise."""
    if torch.is_tensor(x):
        return f"{tuple(x.shape)} {str(x.dtype).removeprefix('torch.')}"
    return type(x).__name__


def named_leaves(x: Any, prefix: str = "") -> list[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` for every tensor in ``x``; names are dict keys / field names / ``[i]`` indices."""
    if torch.is_tensor(x):
        return [(prefix or "output", x)]
    if hasattr(x, "named_tensors"):
        return [(f"{prefix}.{k}" if prefix else k, t) for k, t in x.named_tensors()]
    if isinstance(x, (tuple, list)):
        return [leaf for i, xi in enumerate(x) for leaf in named_leaves(xi, f"{prefix}[{i}]")]
    if isinstance(x, dict):
        return [leaf for k, v in x.items() for leaf in named_leaves(v, f"{prefix}.{k}" if prefix else str(k))]
    return []


def leaves(x: Any) -> list[torch.Tensor]:
    """Every tensor in ``x``, in a fixed order."""
    return [t for _, t in named_leaves(x)]


def tree_map(fn: Callable[[torch.Tensor], torch.Tensor], x: Any) -> Any:
    """``x`` with ``fn`` applied to every tensor (structure and non-tensor values kept)."""
    if torch.is_tensor(x):
        return fn(x)
    if hasattr(x, "map_tensors"):
        return x.map_tensors(fn)
    if isinstance(x, (tuple, list)):
        return type(x)(tree_map(fn, xi) for xi in x)
    if isinstance(x, dict):
        return {k: tree_map(fn, v) for k, v in x.items()}
    return x


def float_leaves(x: Any) -> list[torch.Tensor]:
    return [t for t in leaves(x) if t.is_floating_point()]


def max_abs_diff(a: Any, b: Any) -> float:
    """:math:`\\max |a - b|` over the float tensors of two structures of the same shape."""
    la, lb = float_leaves(a), float_leaves(b)
    if len(la) != len(lb):
        raise ValueError(f"the structures differ: {len(la)} vs {len(lb)} float tensors")
    return max((float((x - y).abs().max()) for x, y in zip(la, lb) if x.numel()), default=0.0)
