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

from gdl._tree import leaves, named_leaves, tree_map
from gdl.groups import Action, FieldsAction, Group, GroupElement, RepAction, TrivialAction

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
    """The outcome of a check: one relative error per group element and output field, plus the structural checks
    (``batch independence``, ``padding``) that apply to batched inputs.

    Attributes:
        errors: ``(len(elements),)`` the worst field's error for each element.
        field_errors: ``{field: (len(elements),)}``, each field relative to its own magnitude.
        checks: ``{check: {field: error}}`` for the structural checks that were run.
    """

    name: str
    elements: list[GroupElement]
    errors: torch.Tensor
    tolerance: float
    dtype: torch.dtype
    kind: str = "equivariance"
    adversarial_steps: int = 0
    notes: list[str] = field(default_factory=list)
    field_errors: dict[str, torch.Tensor] = field(default_factory=dict)
    checks: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def worst(self) -> float:
        """The largest error of any element, field or structural check."""
        group_worst = float(self.errors.max()) if len(self.errors) else 0.0
        return max([group_worst] + [e for c in self.checks.values() for e in c.values()])

    @property
    def worst_element(self) -> GroupElement | None:
        return self.elements[int(self.errors.argmax())] if len(self.errors) else None

    @property
    def worst_field(self) -> str | None:
        """The output field with the largest error over the group elements."""
        if not self.field_errors:
            return None
        return max(self.field_errors, key=lambda k: float(self.field_errors[k].max()))

    @property
    def passed(self) -> bool:
        return self.worst <= self.tolerance

    def __str__(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        how = f", adversarial search {self.adversarial_steps} steps" if self.adversarial_steps else ""
        group_worst = float(self.errors.max()) if len(self.errors) else 0.0
        where = f" in field {self.worst_field!r}" if len(self.field_errors) > 1 else ""
        check_worst = max(((e, c, k) for c, errs in self.checks.items() for k, e in errs.items()), default=None)
        if check_worst is not None and check_worst[0] > group_worst:
            e, check, name = check_worst
            headline = f"worst relative error {e:.2e} in the {check} check, field {name!r}"
        else:
            headline = f"worst relative error {group_worst:.2e}{where} at {self.worst_element}"
        lines = [f"{verdict}: {self.kind} of {self.name}: {headline} (tolerance {self.tolerance:.0e}, {self.dtype}, "
                 f"{len(self.elements)} elements{how})"]
        if len(self.field_errors) > 1:
            for k, errs in self.field_errors.items():
                i = int(errs.argmax())
                mark = "  <-- above tolerance" if errs[i] > self.tolerance else ""
                lines.append(f"    field {k!r}: worst {float(errs[i]):.2e} at {self.elements[i]!r}{mark}")
        order = torch.argsort(self.errors, descending=True).tolist()
        for i in order[:8]:
            mark = "  <-- above tolerance" if self.errors[i] > self.tolerance else ""
            lines.append(f"    {self.elements[i]!r:>24}  {float(self.errors[i]):.2e}{mark}")
        if len(order) > 8:
            lines.append(f"    ... {len(order) - 8} more elements")
        for check, errs in self.checks.items():
            for k, e in errs.items():
                mark = "  <-- above tolerance" if e > self.tolerance else ""
                lines.append(f"    {check}: field {k!r} {e:.2e}{mark}")
        lines += [f"    note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"EquivarianceReport(worst={self.worst:.2e}, passed={self.passed})"


def _relative(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """max|a - b| / max|b| (differentiable; 0 for empty tensors)."""
    if not b.numel():
        return b.new_zeros(())
    den = b.abs().max()
    return (a - b).abs().max() / den.clamp_min(torch.finfo(den.dtype).tiny)


def _field_names(out: Any, out_action: Action | None) -> list[tuple[str, torch.Tensor]]:
    """The float leaves of an output with the names the report uses (a bare tensor takes the name of the one
    field of a FieldsAction)."""
    if torch.is_tensor(out) and isinstance(out_action, FieldsAction) and len(out_action.fields) == 1:
        return [(next(iter(out_action.fields)), out)]
    return [(k, t) for k, t in named_leaves(out) if t.is_floating_point()]


def _field_errors(lhs: Any, rhs: Any, out_action: Action | None) -> dict[str, torch.Tensor]:
    """Per-field relative error between f(g.x) and g.f(x)."""
    la, lb = _field_names(lhs, out_action), _field_names(rhs, out_action)
    if [k for k, _ in la] != [k for k, _ in lb]:
        raise ValueError(f"f(g.x) and g.f(x) have different fields: {[k for k, _ in la]} vs {[k for k, _ in lb]}")
    out = {}
    for (k, x), (_, y) in zip(la, lb):
        if x.shape != y.shape:
            raise ValueError(f"field {k!r}: f(g.x) has shape {tuple(x.shape)} but g.f(x) has shape {tuple(y.shape)}")
        if x.numel() == 0:
            raise ValueError(f"field {k!r}: the output is empty (shape {tuple(x.shape)}); an empty output cannot "
                             f"show equivariance, expected at least one element")
        out[k] = _relative(x, y)
    if not out:
        raise ValueError("the function returned no float tensors to compare")
    return out
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


def _generator(seed: int | torch.Generator) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int or a torch.Generator, got {type(seed).__name__}")
    return torch.Generator().manual_seed(seed)


def _elements(group: Group, elements, n_elements: int, gen: torch.Generator) -> list[GroupElement]:
    if elements is not None:
        return [group.check(g) for g in elements]
    if group.is_finite and group.order <= MAX_EXHAUSTIVE:
        return group.elements()
    return group.sample(n_elements, gen)


def _prepare(f, dtype: torch.dtype):
    if isinstance(f, torch.nn.Module):
        f = copy.deepcopy(f).to(dtype)
        f.eval()  # no dropout noise; batch-norm uses running statistics
    return f


def _is_graph_batch(x: Any) -> bool:
    return hasattr(x, "split") and hasattr(x, "level_of") and hasattr(x, "num_graphs")


def _is_padded(x: Any) -> bool:
    return isinstance(x, dict) and torch.is_tensor(x.get("mask")) and x["mask"].dtype == torch.bool \
        and x["mask"].ndim == 2


def _output_level(name: str, t: torch.Tensor, out_action: Action, n_nodes: int, n_graphs: int,
                  n_max: int | None = None) -> str | None:
    """node / graph / padded for an output field: as the FieldsAction states it, else from its shape."""
    if isinstance(out_action, FieldsAction):
        level = out_action.level(name)
        if level is not None:
            return level
    if n_max is not None and t.ndim >= 2 and t.shape[:2] == (n_graphs, n_max):
        return "padded"
    if t.ndim and t.shape[0] == n_nodes and n_nodes != n_graphs:
        return "node"
    if t.ndim and t.shape[0] == n_graphs:
        return "graph"
    return None


def _batch_independence(fm, x, out, out_action, notes) -> dict[str, float]:
    """Each graph (or padded set) alone must give what it gives inside the batch: a model that mixes the graphs of
    a batch, e.g. by normalising over the whole batch, fails here, since no relabelling within graphs can see it."""
    errors: dict[str, float] = {}
    with torch.no_grad():
        if _is_graph_batch(x):
            pieces = [fm(gb) for gb in x.split()]
            n, B, n_max = x.num_nodes, x.num_graphs, None
        else:
            B, n_max = x["mask"].shape
            pieces = [fm({k: (v[b:b + 1] if torch.is_tensor(v) and v.ndim and v.shape[0] == B else v)
                          for k, v in x.items()}) for b in range(B)]
            n = -1
        full = _field_names(out, out_action)
        parts = [_field_names(p, out_action) for p in pieces]
        for j, (name, t) in enumerate(full):
            level = _output_level(name, t, out_action, n, B, n_max)
            if level not in ("node", "graph", "padded"):
                notes.append(f"batch independence: cannot tell whether field {name!r} of shape {tuple(t.shape)} is "
                             f"per node or per graph; skipped (state it in the out_action)")
                continue
            joined = torch.cat([p[j][1] for p in parts], 0)
            if joined.shape != t.shape:
                notes.append(f"batch independence: field {name!r} has shape {tuple(t.shape)} in the batch but "
                             f"{tuple(joined.shape)} from the graphs one by one; skipped")
                continue
            if level == "padded":
                mask = x["mask"]
                errors[name] = float(_relative(joined[mask], t[mask]))
            else:
                errors[name] = float(_relative(joined, t))
    return errors


def _padding_leak(fm, x, out, out_action, gen) -> dict[str, float]:
    """Random values in the padding must change nothing at the valid positions (or in per-set outputs)."""
    mask = x["mask"]
    B, n_max = mask.shape
    noisy = {}
    for k, v in x.items():
        if torch.is_tensor(v) and v.is_floating_point() and v.shape[:2] == (B, n_max):
            noise = torch.randn(v.shape, generator=gen, dtype=v.dtype).to(v.device) * (1 + v.abs().max())
            pad = ~mask.reshape(B, n_max, *([1] * (v.ndim - 2)))
            noisy[k] = torch.where(pad, noise, v)
        else:
            noisy[k] = v
    errors = {}
    with torch.no_grad():
        other = _field_names(fm(noisy), out_action)
        for (name, t), (_, u) in zip(_field_names(out, out_action), other):
            level = _output_level(name, t, out_action, -1, B, n_max)
            if level == "padded":
                errors[name] = float(_relative(u[mask], t[mask]))
            elif level == "graph":
                errors[name] = float(_relative(u, t))
    return errors


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
    seed: int | torch.Generator = 0,
    atol: float | None = None,
    structure_checks: bool = True,
) -> EquivarianceReport:
    """Measure :math:`\\varepsilon(g)` for every checked group element, field by field.

    Args:
        f: a callable or ``nn.Module`` (deep-copied, cast to ``dtype`` and put in eval mode).
        inputs: a tensor, a tuple/dict of tensors, a :class:`gdl.data.GraphBatch`, or a callable
            ``generator -> inputs``. Default: the input action's ``random_input``.
        group, in_action, out_action: default to the module's attributes. For structured outputs (a dict,
            a GraphBatch) use a :class:`~gdl.groups.FieldsAction` that says what each output field is.
        elements: the elements to check (default: all elements of a finite group with at most
            64 elements, else ``n_elements`` samples).
        dtype: float dtype of inputs and module (default float64, so round-off is ~1e-15).
        adversarial_steps: if > 0, for each element run that many Adam steps of gradient ascent on the
            inputs to maximise :math:`\\varepsilon(g)`, and report the largest error seen (random inputs can
            hide violations).
        seed: an int or a ``torch.Generator``: every random choice (inputs, sampled elements, padding noise)
            is drawn from it, so a caller (a grader) can use secret seeds. Default 0, reproducible.
        atol: tolerance (default: :func:`default_tolerance` of ``dtype``).
        structure_checks: for a GraphBatch input with several graphs, or a padded dict input (a boolean
            ``mask`` of shape ``(B, N_max)``), also check that each graph alone gives the same outputs as in the
            batch (``batch independence``) and that random padding changes nothing (``padding``).

    Returns:
        an :class:`EquivarianceReport`: per-element and per-field errors, the worst case, the structural checks.
    """
    group, in_action, out_action = _resolve(f, group, in_action, out_action)
    gen = _generator(seed)
    if inputs is None:
        inputs = in_action.random_input(4, dtype=dtype, generator=gen)
    elif callable(inputs) and not torch.is_tensor(inputs) and not _is_graph_batch(inputs):
        inputs = inputs(gen)
    x = tree_map(lambda t: t.to(dtype) if t.is_floating_point() else t, inputs)
    floats = [t for t in leaves(x) if t.is_floating_point()]
    if floats and sum(t.numel() for t in floats) == 0:
        raise ValueError(f"the input is empty (shapes {[tuple(t.shape) for t in floats]}); expected at least one "
                         f"element to check {_name(f)} on")
    if isinstance(f, torch.nn.Module):
        device = next((p.device for p in f.parameters()), None)
        if device is not None:
            x = tree_map(lambda t: t.to(device), x)
    fm = _prepare(f, dtype)
    elems = _elements(group, elements, n_elements, gen)

    def errors_of(g: GroupElement, xin) -> dict[str, torch.Tensor]:
        return _field_errors(fm(in_action(g, xin)), out_action(g, fm(xin)), out_action)

    per_field: dict[str, list[float]] = {}
    for g in elems:
        if adversarial_steps <= 0:
            with torch.no_grad():
                errs = {k: float(v) for k, v in errors_of(g, x).items()}
        else:
            xa = tree_map(lambda t: t.detach().clone().requires_grad_(t.is_floating_point()), x)
            params = [t for t in leaves(xa) if t.requires_grad]
            opt = torch.optim.Adam(params, lr=adversarial_lr)
            errs = {}
            for _ in range(adversarial_steps + 1):
                opt.zero_grad()
                e = errors_of(g, xa)
                for k, v in e.items():
                    errs[k] = max(errs.get(k, 0.0), float(v.detach()))
                total = torch.stack(list(e.values())).max()
                if not total.requires_grad:
                    break
                (-total).backward()
                opt.step()
        for k, v in errs.items():
            per_field.setdefault(k, []).append(v)
    field_errors = {k: torch.tensor(v, dtype=torch.float64) for k, v in per_field.items()}
    errors = torch.stack(list(field_errors.values())).amax(0) if field_errors else torch.zeros(0)

    checks: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    if structure_checks and (_is_graph_batch(x) and x.num_graphs > 1 or _is_padded(x)):
        with torch.no_grad():
            out = fm(x)
        checks["batch independence"] = _batch_independence(fm, x, out, out_action, notes)
        if _is_padded(x) and not bool(x["mask"].all()):
            checks["padding"] = _padding_leak(fm, x, out, out_action, gen)
    return EquivarianceReport(
        name=_name(f), elements=elems, errors=errors.to(torch.float64),
        tolerance=default_tolerance(dtype) if atol is None else atol, dtype=dtype,
        kind="invariance" if isinstance(out_action, TrivialAction) else "equivariance",
        adversarial_steps=adversarial_steps, notes=notes, field_errors=field_errors, checks=checks,
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
