"""Input rules shared by every model in ``gdl.nn``: one dtype rule and one rule for NaN.

- **dtype**: floating-point inputs are cast to the model's dtype (the dtype of its first floating-point parameter
  or buffer), as ``nn.Linear`` users expect after ``model.double()``. Gradients flow back through the cast, so
  forces on float32 positions from a float64 model are float32 numbers computed in float64.
- **NaN or infinity** in the features a model reads is a ``ValueError`` naming the tensor and the first bad rows,
  never a silent NaN output. Padding slots (``mask`` ``False``) are not read, so NaN there is allowed.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["model_dtype", "to_model_dtype", "check_finite", "sum_is_finite", "name_bad_atoms"]


def model_dtype(module: nn.Module) -> torch.dtype | None:
    """The dtype of ``module``'s first floating-point parameter (or buffer); ``None`` if it has none."""
    for t in module.parameters():
        if t.is_floating_point():
            return t.dtype
    for t in module.buffers():
        if t.is_floating_point():
            return t.dtype
    return None


def to_model_dtype(module: nn.Module, *tensors: torch.Tensor | None):
    """``tensors`` with every floating-point one cast to :func:`model_dtype` (others, and ``None``, unchanged).
    Returns one tensor for one argument, else a tuple."""
    dtype = model_dtype(module)
    out = tuple(t.to(dtype) if torch.is_tensor(t) and t.is_floating_point() and dtype is not None
                and t.dtype != dtype else t for t in tensors)
    return out[0] if len(out) == 1 else out


def sum_is_finite(*tensors: torch.Tensor) -> torch.Tensor:
    """A 0-dim bool tensor (read it with ``bool``, one wait for the device): whether the sum of all entries of
    ``tensors`` is finite, which holds when every entry is finite (and fails for NaN, infinity, or an overflowing
    sum). Tested as :math:`s - s = 0`: infinity minus infinity and NaN give NaN, so two operations where
    ``torch.isfinite`` takes four."""
    s = tensors[0].detach().sum() if len(tensors) == 1 else torch.stack([t.detach().sum() for t in tensors]).sum()
    return (s - s) == 0


def name_bad_atoms(pos: torch.Tensor) -> None:
    """Raise ``ValueError`` naming the first atoms (rows of the ``(N, 3)`` positions) with a NaN or infinite
    coordinate, if any: the search after a sum that was not finite (:func:`sum_is_finite`)."""
    bad = (~torch.isfinite(pos)).any(1).nonzero().flatten().tolist()
    if bad:
        raise ValueError(f"pos has NaN or infinite coordinates at atoms {bad[:10]}{' ...' if len(bad) > 10 else ''}")


def check_finite(t: torch.Tensor, name: str, owner: str, mask: torch.Tensor | None = None) -> None:
    """Raise ``ValueError`` if ``t`` has NaN or infinite entries (only where ``mask`` is ``True``, if given),
    naming ``owner``, the tensor ``name`` and the first bad rows (indices along the masked dimensions).

    A finite sum means every entry is finite, so one reduction settles the common case; the row search (several
    passes over ``t``, about 40x dearer on a (1920, 64) input) runs only when the sum is not finite: to name the
    rows, or to find none when a sum of finite entries overflowed or the bad entries are masked out."""
    if not torch.is_tensor(t) or not t.is_floating_point() or t.device.type == "meta":
        return
    if bool(sum_is_finite(t)):
        return
    bad = ~torch.isfinite(t)
    k = mask.ndim if mask is not None else max(1, t.ndim - 1)            # the dimensions that index rows
    if mask is not None:
        bad = bad & mask.reshape(mask.shape + (1,) * (t.ndim - mask.ndim))
    rows = bad.reshape(*bad.shape[:k], -1).any(-1).nonzero()
    if len(rows):
        where = [int(r[0]) if k == 1 else tuple(int(v) for v in r) for r in rows[:10]]
        raise ValueError(f"{owner}: {name} has NaN or infinite entries at {'rows' if k == 1 else 'positions'} "
                         f"{where}{' ...' if len(rows) > 10 else ''}")
