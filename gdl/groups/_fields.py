"""One action for structured data: each named field says what it is, and the group acts on each accordingly.

A field's *spec* is ``"[level] role"``:

- **role** (what the numbers are): ``scalar`` (unchanged), ``vector`` (:math:`v \\mapsto Q v`), ``pseudovector``
  (:math:`v \\mapsto \\det(Q)\\, Q v`, e.g. angular momentum), ``point`` (:math:`x \\mapsto Q x + t`), or
  ``irreps:<e3nn irreps>`` (:math:`v \\mapsto D(Q) v` with e3nn's block-diagonal Wigner matrices, e.g.
  ``irreps:2x0e+1x1o``);
- **level** (how a relabelling of the nodes moves it): ``node`` (first axis: the nodes, which move with the
  permutation), ``graph`` or ``edge`` (not moved: graph fields belong to the whole graph, edges keep their
  order while ``edge_index`` is relabelled), or ``padded`` (``(B, N_max, ...)``, the valid entries first in
  each row, permuted within each row while padding stays in place).

For a node permutation :math:`\\sigma` and a rigid motion :math:`(Q, t)` a node field of role ``vector`` goes to

.. math::  (g \\cdot v)_{\\sigma(i)} = Q\\, v_i ,

and ``edge_index`` to :math:`(i, j) \\mapsto (\\sigma(i), \\sigma(j))`. On a :class:`gdl.data.GraphBatch` the level
of each field is known; on a dict or a bare tensor it is part of the spec.
"""

from __future__ import annotations

from typing import Any

import torch

from gdl._tree import shape_of
from gdl.groups._actions import Action
from gdl.groups._continuous import O2, O3, SE3, SO2, SO3
from gdl.groups._errors import GroupMismatchError, ShapeError
from gdl.groups._finite import CyclicGroup, DihedralGroup
from gdl.groups._group import Group, GroupElement
from gdl.groups._product import BatchSymmetricGroup, ProductGroup

__all__ = ["FieldsAction", "FieldSpec"]

ROLES = ("scalar", "vector", "pseudovector", "point")
LEVELS = ("node", "edge", "graph", "padded")
_GEOMETRIC = (SE3, SO3, O3, SO2, O2, CyclicGroup, DihedralGroup)   # SE3 covers E3


def _irreps_matrix(irreps, Q: torch.Tensor) -> torch.Tensor:
    """Block-diagonal :math:`\\bigoplus_i p_i^{(1-d)/2} D^{l_i}(dQ)`, :math:`d = \\det Q`, in float64 (gdl's exact
    Wigner-D; e3nn's own ``D_from_matrix`` works in the default dtype)."""
    from gdl.groups._irreps import wigner_D

    Q = Q.detach().cpu().double()
    d = float(torch.linalg.det(Q).sign())
    blocks = []
    for mul, (l, p) in irreps:
        D = wigner_D(l, d * Q) * (p ** ((1 - d) / 2))
        blocks += [D] * mul
    return torch.block_diag(*blocks) if blocks else torch.zeros(0, 0, dtype=torch.float64)


class FieldSpec:
    """What one field is: its ``level`` (or ``None`` = taken from the data) and its ``role``."""

    def __init__(self, spec: str):
        words = spec.split()
        if not 1 <= len(words) <= 2:
            raise ValueError(f"a field spec is '[level] role', e.g. 'node vector', got {spec!r}")
        level, role = (None, words[0]) if len(words) == 1 else words
        if level is not None and level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r} in {spec!r}")
        if role not in ROLES and not role.startswith("irreps:"):
            raise ValueError(f"role must be one of {ROLES} or 'irreps:<e3nn irreps>', got {role!r} in {spec!r}")
        self.level, self.role, self.spec = level, role, spec
        self.irreps = None
        if role.startswith("irreps:"):
            from e3nn import o3

            self.irreps = o3.Irreps(role.removeprefix("irreps:"))

    def __repr__(self) -> str:
        return self.spec


class FieldsAction(Action):
    """Act on a :class:`gdl.data.GraphBatch`, a dict of tensors, or one tensor, field by field.

    The group is a geometric group (E(3), SE(3), O(3), SO(3), or a plane group), a
    :class:`~gdl.groups.BatchSymmetricGroup` (node relabelling), or a :class:`~gdl.groups.ProductGroup` of one of
    each. Fields not named are scalars (on a dict: ``default``).

    Args:
        group: the group acting.
        default: spec of fields not named (default ``"scalar"``; its level comes from the data).
        **fields: ``name="[level] role"``, e.g. ``pos="point"``, ``forces="node vector"``,
            ``energy="graph scalar"``. With exactly one named field the action also accepts a bare tensor
            (the output of a model that returns one tensor).

    Examples:
        >>> G = ProductGroup(E3(), BatchSymmetricGroup(batch.sizes))             # doctest: +SKIP
        >>> FieldsAction(G, pos="point")                                         # doctest: +SKIP
        >>> FieldsAction(G, energy="graph scalar", forces="node vector")         # doctest: +SKIP
    """

    def __init__(self, group: Group, default: str = "scalar", **fields: str):
        self.group = group
        self.fields = {k: FieldSpec(v) for k, v in fields.items()}
        self.default = FieldSpec(default)
        self._geo_index = self._perm_index = None
        if isinstance(group, ProductGroup):
            self._geo_index = group.factor_index(_GEOMETRIC)
            self._perm_index = group.factor_index(BatchSymmetricGroup)
            known = {i for i in (self._geo_index, self._perm_index) if i is not None}
            if len(known) != len(group.factors):
                raise GroupMismatchError(f"FieldsAction acts with a geometric group and/or a BatchSymmetricGroup; "
                                         f"{group} has other factors")
        elif isinstance(group, _GEOMETRIC):
            self._geo_index = -1
        elif isinstance(group, BatchSymmetricGroup):
            self._perm_index = -1
        else:
            raise GroupMismatchError(f"FieldsAction needs E3/SE3/O3/SO3, a plane group, a BatchSymmetricGroup or a "
                                     f"ProductGroup of them; got {group}")
        geo = self.geometric_group
        self.d = None if geo is None else (3 if isinstance(geo, (SE3, SO3, O3)) else 2)
        for name, spec in self.fields.items():
            if spec.irreps is not None and self.d != 3:
                raise GroupMismatchError(f"field {name!r}: irreps need a 3D rotation group, the group is {group}")
            if spec.role != "scalar" and geo is None:
                raise GroupMismatchError(f"field {name!r} is a {spec.role}, but {group} has no geometric factor")

    # --- the parts of g ------------------------------------------------------------------------------
    @property
    def geometric_group(self) -> Group | None:
        if self._geo_index is None:
            return None
        return self.group if self._geo_index == -1 else self.group.factors[self._geo_index]

    @property
    def permutation_group(self) -> BatchSymmetricGroup | None:
        if self._perm_index is None:
            return None
        return self.group if self._perm_index == -1 else self.group.factors[self._perm_index]

    def _split(self, g: GroupElement) -> tuple[GroupElement | None, GroupElement | None]:
        def part(i):
            if i is None:
                return None
            return g if i == -1 else self.group.part(g, i)
        return part(self._geo_index), part(self._perm_index)

    def _motion(self, g_geo: GroupElement) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Q, t)`` in float64."""
        grp = g_geo.group
        if isinstance(grp, SE3):
            return g_geo.value[0], g_geo.value[1]
        return grp.standard_matrix(g_geo.value), torch.zeros(self.d, dtype=torch.float64)

    # --- acting on one tensor ------------------------------------------------------------------------
    def _act_tensor(self, name: str, spec: FieldSpec, level: str | None, x: torch.Tensor, g_geo, g_perm):
        level = spec.level or level
        if g_perm is not None and level is None:
            raise ShapeError(f"{self}: say whether field {name!r} is a node, graph, edge or padded field "
                             f"(e.g. {name}='node {spec.role}')")
        if g_geo is not None and spec.role != "scalar":
            Q, t = self._motion(g_geo)
            Q, t = Q.to(dtype=x.dtype, device=x.device), t.to(dtype=x.dtype, device=x.device)
            if spec.irreps is not None:
                if x.shape[-1] != spec.irreps.dim:
                    raise ShapeError(f"{self}: field {name!r} has irreps {spec.irreps} of dim {spec.irreps.dim}, "
                                     f"got shape {shape_of(x)}")
                x = x @ _irreps_matrix(spec.irreps, Q).T.to(dtype=x.dtype, device=x.device)
            else:
                if x.shape[-1] != self.d or not x.is_floating_point():
                    raise ShapeError(f"{self}: field {name!r} is a {spec.role} and needs float shape (..., {self.d}), "
                                     f"got {shape_of(x)}")
                x = x @ Q.T
                if spec.role == "pseudovector":
                    x = x * torch.linalg.det(Q.cpu().double()).to(dtype=x.dtype)
                if spec.role == "point":
                    x = x + t
        if g_perm is not None and level in ("node", "padded"):
            grp = self.permutation_group
            if level == "node":
                p = grp.node_permutation(g_perm, device=x.device)
                if x.shape[0] != len(p):
                    raise ShapeError(f"{self}: node field {name!r} needs first axis {len(p)} (the nodes of graphs of "
                                     f"sizes {grp.sizes}), got {shape_of(x)}")
                out = torch.empty_like(x)
                out[p] = x                                        # (g.x)_{p(i)} = x_i
                x = out
            else:
                if x.ndim < 2 or x.shape[0] != len(grp.sizes):
                    raise ShapeError(f"{self}: padded field {name!r} needs shape (B={len(grp.sizes)}, N_max, ...), "
                                     f"got {shape_of(x)}")
                q = grp.padded_permutation(g_perm, x.shape[1], device=x.device)   # (B, N_max)
                out = torch.empty_like(x)
                rows = torch.arange(x.shape[0], device=x.device)[:, None].expand_as(q)
                out[rows, q] = x
                x = out
        return x

    # --- Action interface ----------------------------------------------------------------------------
    def check_input(self, x: Any) -> None:
        if hasattr(x, "named_tensors") and hasattr(x, "level_of"):
            missing = [k for k in self.fields if k not in x.keys()]
            if missing:
                raise ShapeError(f"{self}: the batch has no field(s) {missing}; its fields are {x.keys()}")
            grp = self.permutation_group
            if grp is not None:
                grp.check_sizes(x.sizes, "the GraphBatch")
        elif isinstance(x, dict):
            missing = [k for k in self.fields if k not in x]
            if missing:
                raise ShapeError(f"{self}: the input has no key(s) {missing}; its keys are {list(x)}")
        elif torch.is_tensor(x):
            if len(self.fields) != 1:
                raise ShapeError(f"{self} names {len(self.fields)} fields and cannot act on one tensor "
                                 f"{shape_of(x)}; return a dict from the model")
        else:
            raise ShapeError(f"{self} acts on a GraphBatch, a dict of tensors or one tensor, got {type(x).__name__}")

    def _act(self, g: GroupElement, x: Any) -> Any:
        g_geo, g_perm = self._split(g)
        if torch.is_tensor(x):
            (name, spec), = self.fields.items()
            return self._act_tensor(name, spec, None, x, g_geo, g_perm)
        if isinstance(x, dict):
            return {k: (self._act_tensor(k, self.fields.get(k, self.default), None, v, g_geo, g_perm)
                        if torch.is_tensor(v) else v) for k, v in x.items()}
        new = {}
        for k, t in x.fields().items():
            spec = self.fields.get(k, self.default)
            new[k] = self._act_tensor(k, spec, x.level_of(k), t, g_geo, g_perm)
        if g_perm is not None and x.edge_index is not None:
            p = self.permutation_group.node_permutation(g_perm, device=x.edge_index.device)
            new["edge_index"] = p[x.edge_index]                # (i, j) -> (p(i), p(j)), same edge order
        return x.replace(**new)

    def random_input(self, batch: int = 4, dtype=torch.float64, generator=None):
        """A random GraphBatch: graphs of the group's sizes (or 3 graphs of 4, 5, 6 nodes), each named field of
        its role, node features ``x`` (2 scalars), and a random symmetric edge list."""
        from gdl.data.graphs import collate

        sizes = self.permutation_group.sizes if self.permutation_group is not None else (4, 5, 6)
        items = []
        for n in sizes:
            item = {"x": torch.randn(n, 2, dtype=dtype, generator=generator)}
            for k, spec in self.fields.items():
                dim = spec.irreps.dim if spec.irreps is not None else (self.d if spec.role != "scalar" else 2)
                item[k] = torch.randn(n, dim, dtype=dtype, generator=generator)
            i, j = torch.triu_indices(n, n, 1)
            keep = torch.rand(i.shape[0], generator=generator) < 0.5
            item["edge_index"] = torch.cat([torch.stack([i[keep], j[keep]]), torch.stack([j[keep], i[keep]])], 1)
            items.append(item)
        return collate(items)

    def level(self, name: str) -> str | None:
        """The level stated for field ``name`` (``None``: from the data)."""
        return self.fields.get(name, self.default).level

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.fields.items())
        return f"FieldsAction({self.group}" + (f", {inner})" if inner else ")")
