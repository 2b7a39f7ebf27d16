"""Public catalogue of objects a question may hand to a submission (built on both sides from plain arrays).

A hidden question cannot ship code to the worker; it sends ``{"build": name, "args": [...]}`` and the worker
builds the object from this module. Everything here is public: what stays secret is the arrays (drawn from the
run's secret seed) and which of them the grader chose.
"""

from __future__ import annotations

import torch

__all__ = ["BUILDERS", "set_model"]


def set_model(lam, gam, position_bias, first_weight):
    """A model on sets ``x: (B, N, C) -> (B, N, C)``:

    .. math::  y_i = \\tanh\\big(x_i \\Lambda + \\bar{x} \\Gamma + b_i + w\\, x_{1}\\big),

    permutation equivariant exactly when the per-position bias ``b`` is constant over positions and ``w = 0``
    (a planted violation sets one of them).
    """
    lam, gam = torch.as_tensor(lam, dtype=torch.float64), torch.as_tensor(gam, dtype=torch.float64)
    bias = torch.as_tensor(position_bias, dtype=torch.float64)
    w = float(first_weight)

    def model(x):
        x = torch.as_tensor(x, dtype=torch.float64)
        if x.ndim != 3 or x.shape[1] != bias.shape[0] or x.shape[2] != lam.shape[0]:
            raise ValueError(f"this model takes sets of shape (B, {bias.shape[0]}, {lam.shape[0]}), "
                             f"got {tuple(x.shape)}")
        pooled = x.mean(1, keepdim=True)
        return torch.tanh(x @ lam + pooled @ gam + bias + w * x[:, :1])

    return model


BUILDERS = {"set_model": set_model}
