"""The one equivariance checker of gdl, used by the package tests, the notebooks and the grader.

For a function :math:`f` with input action :math:`g \\cdot_{in} x` and output action :math:`g \\cdot_{out} y`,
the error of a group element :math:`g` on inputs :math:`x` is the relative deviation

.. math::  \\varepsilon(g) = \\frac{\\max \\lvert f(g \\cdot_{in} x) - g \\cdot_{out} f(x) \\rvert}
                                {\\max \\lvert g \\cdot_{out} f(x) \\rvert},

zero for an exactly equivariant :math:`f` and of the order of the float round-off for an equivariant network.
Invariance is the special case of a trivial output action.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from gdl.groups import Action, Group, GroupElement, RepAction, TrivialAction

__all__ = ["EquivarianceReport", "equivariance_error", "assert_equivariant", "assert_invariant",
           "default_tolerance"]

#: Relative tolerance by dtype (round-off of a network of moderate depth, with a wide margin).
_TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 5e-2}
#: Finite groups up to this size are checked on every element.
MAX_EXHAUSTIVE = 64


def default_tolerance(dtype: torch.dtype) -> float:
    """The relative tolerance the checker uses for ``dtype``."""
    return _TOLERANCE.get(dtype, 1e-4)


@dataclass
class EquivarianceReport:
    """The outcome of a check: one relative error per group element."""

    name: str
    elements: list[GroupElement]
    errors: torch.Tensor
    tolerance: float
    dtype: torch.dtype
    kind: str = "equivariance"
    adversarial_steps: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def worst(self) -> float:
        return float(self.errors.max()) if len(self.errors) else 0.0

    @property
    def worst_element(self) -> GroupElement | None:
        return self.elements[int(self.errors.argmax())] if len(self.errors) else None

    @property
    def passed(self) -> bool:
        return self.worst <= self.tolerance

    def __str__(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        how = f", adversarial search {self.adversarial_steps} steps" if self.adversarial_steps else ""
        lines = [f"{verdict}: {self.kind} of {self.name}: worst relative error {self.worst:.2e} "
                 f"at {self.worst_element} (tolerance {self.tolerance:.0e}, {self.dtype}, "
                 f"{len(self.elements)} elements{how})"]
        order = torch.argsort(self.errors, descending=True).tolist()
        for i in order[:8]:
            mark = "  <-- above tolerance" if self.errors[i] > self.tolerance else ""
            lines.append(f"    {self.elements[i]!r:>24}  {float(self.errors[i]):.2e}{mark}")
        if len(order) > 8:
            lines.append(f"    ... {len(order) - 8} more elements")
        lines += [f"    note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"EquivarianceReport(worst={self.worst:.2e}, passed={self.passed})"


# --- pytree helpers: inputs and outputs may be tensors or (nested) tuples of tensors ------------
def _leaves(x: Any) -> list[torch.Tensor]:
    if torch.is_tensor(x):
        return [x]
    if isinstance(x, (tuple, list)):
        return [leaf for xi in x for leaf in _leaves(xi)]
    if isinstance(x, dict):
        return [leaf for v in x.values() for leaf in _leaves(v)]
    return []


def _map(fn: Callable[[torch.Tensor], torch.Tensor], x: Any) -> Any:
    if torch.is_tensor(x):
        return fn(x)
    if isinstance(x, (tuple, list)):
        return type(x)(_map(fn, xi) for xi in x)
    if isinstance(x, dict):
        return {k: _map(fn, v) for k, v in x.items()}
    return x


def _float_leaves(x: Any) -> list[torch.Tensor]:
    return [t for t in _leaves(x) if t.is_floating_point()]


def _max_abs_diff(a: Any, b: Any) -> float:
    la, lb = _float_leaves(a), _float_leaves(b)
    if len(la) != len(lb):
        raise ValueError(f"outputs have different structures: {len(la)} vs {len(lb)} tensors")
    return max((float((x - y).abs().max()) for x, y in zip(la, lb) if x.numel()), default=0.0)


def _relative_error(lhs: Any, rhs: Any) -> torch.Tensor:
    """max|lhs - rhs| / max|rhs| over all float leaves (differentiable)."""
    la, lb = _float_leaves(lhs), _float_leaves(rhs)
    if len(la) != len(lb):
        raise ValueError(f"f(g.x) and g.f(x) have different structures: {len(la)} vs {len(lb)} tensors")
    for x, y in zip(la, lb):
        if x.shape != y.shape:
            raise ValueError(f"f(g.x) has shape {tuple(x.shape)} but g.f(x) has shape {tuple(y.shape)}")
    num = torch.stack([(x - y).abs().max() for x, y in zip(la, lb) if x.numel()]).max()
    den = torch.stack([y.abs().max() for y in lb if y.numel()]).max()
    return num / den.clamp_min(torch.finfo(den.dtype).tiny)


def _resolve(f, group, in_action, out_action):
    """Fill in group and actions from the module's attributes (``group``, ``in_action``,
    ``out_action``, or ``rep_in``/``rep_out``)."""
    if in_action is None:
        in_action = getattr(f, "in_action", None)
        if in_action is None and getattr(f, "rep_in", None) is not None:
            in_action = RepAction(f.rep_in)
    if out_action is None:
        out_action = getattr(f, "out_action", None)
        if out_action is None and getattr(f, "rep_out", None) is not None:
            out_action = RepAction(f.rep_out)
    if group is None:
        group = getattr(f, "group", None) or (in_action.group if in_action is not None else None)
    if group is None or in_action is None or out_action is None:
        missing = [n for n, v in (("group", group), ("in_action", in_action),
                                  ("out_action", out_action)) if v is None]
        raise ValueError(f"cannot check {_name(f)}: pass {', '.join(missing)} (or give the module "
                         f"group/in_action/out_action or rep_in/rep_out attributes)")
    for what, action in (("in_action", in_action), ("out_action", out_action)):
        if not isinstance(action, Action):
            raise TypeError(f"{what} must be a gdl.groups.Action, got {type(action).__name__}")
        if action.group != group:
            from gdl.groups import GroupMismatchError

            raise GroupMismatchError(f"{what} {action} acts with {action.group}, but the check is "
                                     f"for {group}")
    return group, in_action, out_action


def _name(f) -> str:
    if isinstance(f, torch.nn.Module):
        return type(f).__name__
    return getattr(f, "__name__", type(f).__name__)


def _elements(group: Group, elements, n_elements: int, seed: int) -> list[GroupElement]:
    if elements is not None:
        return [group.check(g) for g in elements]
    if group.is_finite and group.order <= MAX_EXHAUSTIVE:
        return group.elements()
    return group.sample(n_elements, seed)


def _prepare(f, dtype: torch.dtype):
    if isinstance(f, torch.nn.Module):
        f = copy.deepcopy(f).to(dtype)
        f.eval()  # no dropout noise; batch-norm uses running statistics
    return f


def equivariance_error(
    f: Callable,
    inputs: Any = None,
    *,
    group: Group | None = None,
    in_action: Action | None = None,
    out_action: Action | None = None,
    elements: Sequence[GroupElement] | None = None,
    n_elements: int = 16,
    dtype: torch.dtype = torch.float64,
    adversarial_steps: int = 0,
    adversarial_lr: float = 0.05,
    seed: int = 0,
    atol: float | None = None,
) -> EquivarianceReport:
    """Measure :math:`\\varepsilon(g)` for every checked group element.

    Args:
        f: a callable or ``nn.Module`` (deep-copied, cast to ``dtype`` and put in eval mode).
        inputs: a tensor or tuple of tensors (a batch), or a callable ``generator -> inputs``.
            Default: the input action's ``random_input``.
        group, in_action, out_action: default to the module's attributes.
        elements: the elements to check (default: all elements of a finite group with at most
            64 elements, else ``n_elements`` samples drawn with ``seed``).
        dtype: float dtype of inputs and module (default float64, so round-off is ~1e-15).
        adversarial_steps: if > 0, for each element run that many Adam steps of gradient ascent on the
            inputs to maximise :math:`\\varepsilon(g)`, and report the largest error seen (random inputs can
            hide violations).
        seed: seeds element sampling, random inputs and the ascent.
        atol: tolerance (default: :func:`default_tolerance` of ``dtype``).

    Returns:
        an :class:`EquivarianceReport` with per-element errors and the worst case.
    """
    group, in_action, out_action = _resolve(f, group, in_action, out_action)
    gen = torch.Generator().manual_seed(seed)
    if inputs is None:
        inputs = in_action.random_input(4, dtype=dtype, generator=gen)
    elif callable(inputs) and not torch.is_tensor(inputs):
        inputs = inputs(gen)
    x = _map(lambda t: t.to(dtype) if t.is_floating_point() else t, inputs)
    if isinstance(f, torch.nn.Module):
        device = next((p.device for p in f.parameters()), None)
        if device is not None:
            x = _map(lambda t: t.to(device), x)
    fm = _prepare(f, dtype)
    elems = _elements(group, elements, n_elements, seed)

    def error(g: GroupElement, xin) -> torch.Tensor:
        return _relative_error(fm(in_action(g, xin)), out_action(g, fm(xin)))

    errors = []
    for g in elems:
        if adversarial_steps <= 0:
            with torch.no_grad():
                errors.append(float(error(g, x)))
            continue
        xa = _map(lambda t: t.detach().clone().requires_grad_(t.is_floating_point()), x)
        params = [t for t in _leaves(xa) if t.requires_grad]
        opt = torch.optim.Adam(params, lr=adversarial_lr)
        best = 0.0
        for _ in range(adversarial_steps + 1):
            opt.zero_grad()
            err = error(g, xa)
            best = max(best, float(err.detach()))
            if not err.requires_grad:
                break
            (-err).backward()
            opt.step()
        errors.append(best)
    return EquivarianceReport(
        name=_name(f), elements=elems, errors=torch.tensor(errors, dtype=torch.float64),
        tolerance=default_tolerance(dtype) if atol is None else atol, dtype=dtype,
        kind="invariance" if isinstance(out_action, TrivialAction) else "equivariance",
        adversarial_steps=adversarial_steps,
    )


def assert_equivariant(f: Callable, inputs: Any = None, **kwargs) -> EquivarianceReport:
    """Check :math:`f(g \\cdot x) = g \\cdot f(x)`; raise ``AssertionError`` with the report if any element's
    error exceeds the tolerance. Takes the arguments of :func:`equivariance_error`; returns the report."""
    report = equivariance_error(f, inputs, **kwargs)
    if not report.passed:
        raise AssertionError(str(report))
    return report


def assert_invariant(f: Callable, inputs: Any = None, *, group: Group | None = None,
                     in_action: Action | None = None, **kwargs) -> EquivarianceReport:
    """Check :math:`f(g \\cdot x) = f(x)` (equivariance with a trivial output action)."""
    if in_action is None:
        in_action = getattr(f, "in_action", None)
        if in_action is None and getattr(f, "rep_in", None) is not None:
            in_action = RepAction(f.rep_in)
    if group is None:
        group = getattr(f, "group", None) or (in_action.group if in_action is not None else None)
    if group is None:
        raise ValueError(f"cannot check {_name(f)}: pass group= and in_action=")
    return assert_equivariant(f, inputs, group=group, in_action=in_action,
                              out_action=TrivialAction(group), **kwargs)
