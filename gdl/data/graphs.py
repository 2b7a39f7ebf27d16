"""Batches of graphs, sets and atomic systems in PyTorch Geometric's layout.

A batch of :math:`B` graphs with :math:`n_1, \\dots, n_B` nodes is one big disconnected graph with
:math:`N = \\sum_b n_b` nodes: node fields are concatenated along their first axis, ``edge_index`` is offset by
the number of nodes before each graph, and the *batch vector* says which graph each node belongs to,

.. math::  \\mathrm{batch}_i = b \\quad\\text{for}\\quad \\mathrm{ptr}_b \\le i < \\mathrm{ptr}_{b+1},
           \\qquad \\mathrm{ptr}_b = \\textstyle\\sum_{c < b} n_c .

Every field has a *level*: ``node`` (first axis ``N``), ``edge`` (first axis ``E``, keys starting with ``edge_``)
or ``graph`` (first axis ``B``). The level decides how a node permutation acts on it (see
:class:`gdl.groups.FieldsAction`): node fields move with their nodes, ``edge_index`` is relabelled, edge and
graph fields stay where they are.

Examples:
    >>> g1 = {"x": torch.randn(3, 4), "edge_index": torch.tensor([[0, 1], [1, 0]]), "y": torch.tensor(1.0)}
    >>> g2 = {"x": torch.randn(2, 4), "edge_index": torch.tensor([[0], [1]]), "y": torch.tensor(0.0)}
    >>> batch = collate([g1, g2])
    >>> batch.x.shape, batch.edge_index.tolist(), batch.batch.tolist(), batch.y.shape
    (torch.Size([5, 4]), [[0, 1, 3], [1, 0, 4]], [0, 0, 0, 1, 1], torch.Size([2]))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch

from gdl._tree import shape_of

__all__ = ["GraphBatch", "GraphDataset", "collate", "unbatch", "GRAPH_KEYS"]

#: Keys that :func:`collate` treats as one value per graph (stacked, not concatenated) unless told otherwise.
GRAPH_KEYS = ("y", "energy", "dipole", "label", "charge", "num_nodes_target")
LEVELS = ("node", "edge", "graph")


class GraphBatch:
    """A batch of graphs (or sets, or atomic systems): node, edge and graph fields, ``edge_index`` and the batch
    vector. Fields read as attributes (``batch.x``, ``batch.pos``, ``batch.energy``).

    Args:
        node: fields with first axis ``N`` (node features ``x``, positions ``pos``, atomic numbers ``z`` ...).
        edge: fields with first axis ``E`` (``edge_attr`` ...).
        graph: fields with first axis ``B`` (targets such as ``energy`` or ``y``).
        edge_index: ``(2, E)`` integer tensor of (source, target) node indices, or ``None`` (a batch of sets, or
            atoms whose neighbours a model finds itself).
        batch: ``(N,)`` integer tensor, sorted, the graph of each node.
        num_graphs: ``B`` (graphs may be empty only at the end when given explicitly).

    Raises:
        ValueError: naming the field whose shape or values do not fit.
    """

    def __init__(self, node: Mapping[str, torch.Tensor], edge: Mapping[str, torch.Tensor] | None = None,
                 graph: Mapping[str, torch.Tensor] | None = None, edge_index: torch.Tensor | None = None,
                 batch: torch.Tensor | None = None, num_graphs: int | None = None):
        node, edge, graph = dict(node), dict(edge or {}), dict(graph or {})
        if not node and batch is None:
            raise ValueError("a GraphBatch needs at least one node field (or the batch vector)")
        n = len(batch) if batch is not None else len(next(iter(node.values())))
        if batch is None:
            batch = torch.zeros(n, dtype=torch.long, device=next(iter(node.values())).device)
        if num_graphs is None:
            num_graphs = int(batch.max()) + 1 if n else 0
        object.__setattr__(self, "_data", {"node": node, "edge": edge, "graph": graph})
        object.__setattr__(self, "edge_index", edge_index)
        object.__setattr__(self, "batch", batch)
        object.__setattr__(self, "num_graphs", int(num_graphs))
        self.validate()

    @classmethod
    def _trusted(cls, node: dict, edge: dict, graph: dict, edge_index: torch.Tensor | None, batch: torch.Tensor,
                 num_graphs: int) -> GraphBatch:
        """A batch built by gdl itself from a validated one (:class:`GraphDataset`): no checks, so no reads of
        device values (each would make the host wait for the GPU)."""
        self = object.__new__(cls)
        object.__setattr__(self, "_data", {"node": node, "edge": edge, "graph": graph})
        object.__setattr__(self, "edge_index", edge_index)
        object.__setattr__(self, "batch", batch)
        object.__setattr__(self, "num_graphs", int(num_graphs))
        return self

    # --- structure ---------------------------------------------------------------------------------
    def validate(self) -> None:
        """Check every shape against ``N``, ``E`` and ``B``; raise ``ValueError`` naming the field."""
        b, n, B = self.batch, self.num_nodes, self.num_graphs
        values = b.device.type != "meta"   # a meta tensor has shapes but no values to check
        if not torch.is_tensor(b) or b.ndim != 1 or b.is_floating_point():
            raise ValueError(f"batch must be an integer tensor of shape (N,), got {shape_of(b)}")
        if values and n and (bool((b[1:] < b[:-1]).any()) or int(b.min()) < 0 or int(b.max()) >= B):
            raise ValueError(f"batch must be sorted with values in 0..{B - 1} (num_graphs={B}), got "
                             f"{b.tolist()[:20]}{' ...' if n > 20 else ''}")
        for level, expected in (("node", n), ("graph", B)):
            for k, t in self._data[level].items():
                if not torch.is_tensor(t) or t.ndim < 1 or t.shape[0] != expected:
                    raise ValueError(f"{level} field {k!r} must have first axis {expected} "
                                     f"({'N nodes' if level == 'node' else 'B graphs'}), got {shape_of(t)}")
        ei = self.edge_index
        if ei is not None:
            if not torch.is_tensor(ei) or ei.ndim != 2 or ei.shape[0] != 2 or ei.is_floating_point():
                raise ValueError(f"edge_index must be an integer tensor of shape (2, E), got {shape_of(ei)}")
            if values and ei.numel() and (int(ei.min()) < 0 or int(ei.max()) >= n):
                raise ValueError(f"edge_index refers to nodes {int(ei.min())}..{int(ei.max())}, but the batch has "
                                 f"nodes 0..{n - 1}")
            if values and ei.numel() and bool((b[ei[0]] != b[ei[1]]).any()):
                raise ValueError("edge_index has edges between different graphs of the batch")
        e = 0 if ei is None else ei.shape[1]
        for k, t in self._data["edge"].items():
            if not torch.is_tensor(t) or t.ndim < 1 or t.shape[0] != e:
                raise ValueError(f"edge field {k!r} must have first axis E={e} (the edges of edge_index), "
                                 f"got {shape_of(t)}")

    @property
    def num_nodes(self) -> int:
        return int(self.batch.shape[0])

    @property
    def num_edges(self) -> int:
        return 0 if self.edge_index is None else int(self.edge_index.shape[1])

    @property
    def sizes(self) -> list[int]:
        """Nodes per graph, ``[n_1, ..., n_B]``."""
        return torch.bincount(self.batch, minlength=self.num_graphs).tolist()

    @property
    def ptr(self) -> torch.Tensor:
        """``(B + 1,)`` offsets: graph ``b`` owns nodes ``ptr[b]:ptr[b+1]``."""
        counts = torch.bincount(self.batch, minlength=self.num_graphs)
        return torch.cat([counts.new_zeros(1), counts.cumsum(0)])

    @property
    def device(self) -> torch.device:
        return self.batch.device

    def fields(self, level: str | None = None) -> dict[str, torch.Tensor]:
        """The fields of one level (``"node"``, ``"edge"``, ``"graph"``), or all of them."""
        if level is None:
            return {**self._data["node"], **self._data["edge"], **self._data["graph"]}
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        return dict(self._data[level])

    def level_of(self, key: str) -> str:
        """``"node"``, ``"edge"`` or ``"graph"``: where field ``key`` lives."""
        for level in LEVELS:
            if key in self._data[level]:
                return level
        if key in ("batch",):
            return "node"
        raise KeyError(f"GraphBatch has no field {key!r}; fields: {self.keys()}")

    def keys(self) -> list[str]:
        return [k for level in LEVELS for k in self._data[level]]

    def __getattr__(self, name: str) -> torch.Tensor:
        data = self.__dict__.get("_data")
        if data is not None:
            for level in LEVELS:
                if name in data[level]:
                    return data[level][name]
        raise AttributeError(f"GraphBatch has no field {name!r}; fields: "
                             f"{[k for lv in LEVELS for k in (data or {}).get(lv, {})]}")

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.fields()[key] if key in self.keys() else getattr(self, key)

    def __contains__(self, key: str) -> bool:
        return key in self.keys()

    def __setattr__(self, name, value):
        raise AttributeError("GraphBatch is immutable: use batch.replace(name=value)")

    def __repr__(self) -> str:
        parts = [f"{k}={list(t.shape)}" for level in LEVELS for k, t in self._data[level].items()]
        if self.edge_index is not None:
            parts.append(f"edge_index={list(self.edge_index.shape)}")
        return f"GraphBatch(num_graphs={self.num_graphs}, num_nodes={self.num_nodes}, {', '.join(parts)})"

    # --- new batches from this one -----------------------------------------------------------------
    def replace(self, **fields: torch.Tensor) -> GraphBatch:
        """A new batch with fields replaced (or added: a new field goes to the level its first axis fits,
        node first). ``edge_index`` and ``batch`` may be replaced too."""
        data = {lv: dict(self._data[lv]) for lv in LEVELS}
        edge_index, batch = self.edge_index, self.batch
        for k, v in fields.items():
            if k == "edge_index":
                edge_index = v
                continue
            if k == "batch":
                batch = v
                continue
            try:
                level = self.level_of(k)
            except KeyError:
                level = next((lv for lv, size in (("node", self.num_nodes), ("edge", self.num_edges),
                                                  ("graph", self.num_graphs))
                              if torch.is_tensor(v) and v.ndim and v.shape[0] == size), "node")
            data[level][k] = v
        return GraphBatch(data["node"], data["edge"], data["graph"], edge_index, batch, self.num_graphs)

    def map_tensors(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> GraphBatch:
        """Apply ``fn`` to every tensor (fields, ``edge_index``, ``batch``); used by ``.to`` and the checker."""
        data = {lv: {k: fn(t) for k, t in self._data[lv].items()} for lv in LEVELS}
        ei = None if self.edge_index is None else fn(self.edge_index)
        return GraphBatch(data["node"], data["edge"], data["graph"], ei, fn(self.batch), self.num_graphs)

    def named_tensors(self) -> list[tuple[str, torch.Tensor]]:
        out = [(k, t) for lv in LEVELS for k, t in self._data[lv].items()]
        if self.edge_index is not None:
            out.append(("edge_index", self.edge_index))
        return out + [("batch", self.batch)]

    def to(self, *args, **kwargs) -> GraphBatch:
        """Move to a device (``batch.to("cuda")``); a float dtype casts the float fields only."""
        dtype = kwargs.pop("dtype", None)
        rest = []
        for a in args:
            if isinstance(a, torch.dtype):
                dtype = a
            else:
                rest.append(a)

        def move(t: torch.Tensor) -> torch.Tensor:
            t = t.to(*rest, **kwargs)
            return t.to(dtype) if dtype is not None and t.is_floating_point() else t

        return self.map_tensors(move)

    def graph(self, b: int) -> GraphBatch:
        """Graph ``b`` alone, as a batch of one."""
        if not 0 <= b < self.num_graphs:
            raise IndexError(f"graph index {b} out of range for a batch of {self.num_graphs} graphs")
        return self._graph(b, self.ptr)

    def _graph(self, b: int, ptr: torch.Tensor) -> GraphBatch:
        lo, hi = int(ptr[b]), int(ptr[b + 1])
        node = {k: t[lo:hi] for k, t in self._data["node"].items()}
        graph = {k: t[b:b + 1] for k, t in self._data["graph"].items()}
        edge, ei = {}, None
        if self.edge_index is not None:
            keep = (self.edge_index[0] >= lo) & (self.edge_index[0] < hi)
            ei = self.edge_index[:, keep] - lo
            edge = {k: t[keep] for k, t in self._data["edge"].items()}
        return GraphBatch(node, edge, graph, ei, self.batch.new_zeros(hi - lo), 1)

    def split(self) -> list[GraphBatch]:
        """The graphs of the batch, each as a batch of one."""
        ptr = self.ptr                                    # once, not once per graph
        return [self._graph(b, ptr) for b in range(self.num_graphs)]

    # --- padded layout (B, N_max, ...) -------------------------------------------------------------
    def to_padded(self, key: str, fill: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Node field ``key`` as ``(B, N_max, ...)`` with the valid entries first in each row, and the boolean
        mask ``(B, N_max)`` of valid entries."""
        x = self._data["node"].get(key)
        if x is None:
            raise KeyError(f"to_padded needs a node field; {key!r} is not one of {list(self._data['node'])}")
        sizes = self.sizes
        n_max = max(sizes, default=0)
        pos = torch.arange(self.num_nodes, device=x.device) - self.ptr.to(x.device)[self.batch]
        out = x.new_full((self.num_graphs, n_max, *x.shape[1:]), fill)
        out[self.batch, pos] = x
        mask = torch.zeros(self.num_graphs, n_max, dtype=torch.bool, device=x.device)
        mask[self.batch, pos] = True
        return out, mask

    # --- ASE ---------------------------------------------------------------------------------------
    @classmethod
    def from_atoms(cls, atoms: Iterable[Any], dtype: torch.dtype | None = None) -> GraphBatch:
        """A batch of atomic systems from ASE ``Atoms``: ``pos`` (N, 3), ``z`` (N,) atomic numbers, and, when a
        calculator has results, ``energy`` (B,) and ``forces`` (N, 3). Units are ASE's (Angstrom, eV)."""
        dtype = dtype or torch.get_default_dtype()
        items = []
        for i, a in enumerate(atoms):
            if not hasattr(a, "get_positions") or not hasattr(a, "get_atomic_numbers"):
                raise TypeError(f"from_atoms expects ase.Atoms, got {type(a).__name__} at position {i}")
            item = {"pos": torch.as_tensor(a.get_positions(), dtype=dtype),
                    "z": torch.as_tensor(a.get_atomic_numbers(), dtype=torch.long)}
            results = getattr(getattr(a, "calc", None), "results", {}) or {}
            if "energy" in results:
                item["energy"] = torch.tensor(float(results["energy"]), dtype=dtype)
            if "forces" in results:
                item["forces"] = torch.as_tensor(results["forces"], dtype=dtype)
            items.append(item)
        return collate(items)

    def to_atoms(self) -> list[Any]:
        """ASE ``Atoms``, one per graph, from ``z`` and ``pos`` (energy and forces attached when present)."""
        from ase import Atoms
        from ase.calculators.singlepoint import SinglePointCalculator

        out = []
        for g in self.split():
            atoms = Atoms(numbers=g.z.cpu().numpy(), positions=g.pos.detach().cpu().double().numpy())
            res = {}
            if "energy" in g:
                res["energy"] = float(g.energy[0])
            if "forces" in g:
                res["forces"] = g.forces.detach().cpu().double().numpy()
            if res:
                atoms.calc = SinglePointCalculator(atoms, **res)
            out.append(atoms)
        return out


def collate(items: Sequence[Mapping[str, Any] | GraphBatch], graph_keys: Iterable[str] = GRAPH_KEYS, *,
            device: torch.device | str | None = None) -> GraphBatch:
    """Batch graphs given as dicts of tensors (or batches) into one :class:`GraphBatch`.

    ``edge_index`` is offset by the nodes of the graphs before it; keys starting with ``edge_`` are edge fields;
    keys in ``graph_keys`` (default :data:`GRAPH_KEYS`) hold one value per graph and are stacked; every other
    tensor is a node field whose first axis is the graph's node count (all node fields must agree).
    ``device``: where the batch goes, every field in one call (``collate(graphs, device=gdl.device())`` equals
    ``collate(graphs).to(gdl.device())``); default: where the graphs are.

    Raises:
        ValueError: naming the item and the field that does not fit.
    """
    items = list(items)
    if not items:
        raise ValueError("collate needs at least one graph")
    graph_keys = set(graph_keys)
    parts = []
    for it in items:
        if isinstance(it, GraphBatch):
            parts.extend(_as_dict(g) for g in it.split())
        elif isinstance(it, Mapping):
            parts.append((dict(it), None))
        else:
            raise TypeError(f"collate expects dicts of tensors or GraphBatch objects, got {type(it).__name__}")
    node, edge, graph, ei, batch = {}, {}, {}, [], []
    offset = 0
    keys = set(parts[0][0])
    for i, (d, levels) in enumerate(parts):
        if set(d) != keys:
            raise ValueError(f"graph {i} has fields {sorted(d)}, but graph 0 has {sorted(keys)}")
        levels = levels or {k: ("edge" if k.startswith("edge_") else "graph" if k in graph_keys else "node")
                            for k in d if k != "edge_index"}
        n = None
        for k, v in d.items():
            if k == "edge_index" or levels[k] != "node":
                continue
            v = torch.as_tensor(v)
            if v.ndim < 1:
                raise ValueError(f"node field {k!r} of graph {i} must have a first axis (nodes), got {shape_of(v)}; "
                                 f"pass graph_keys=[..., {k!r}] if it is one value per graph")
            if n is not None and v.shape[0] != n:
                raise ValueError(f"graph {i}: node field {k!r} has {v.shape[0]} rows, other node fields have {n}")
            n = v.shape[0]
        if n is None:
            raise ValueError(f"graph {i} has no node field (fields: {sorted(d)})")
        for k, v in d.items():
            v = torch.as_tensor(v)
            if k == "edge_index":
                if v.ndim != 2 or v.shape[0] != 2 or v.is_floating_point():
                    raise ValueError(f"graph {i}: edge_index must be an integer tensor (2, E), got {shape_of(v)}")
                if v.numel() and (int(v.min()) < 0 or int(v.max()) >= n):
                    raise ValueError(f"graph {i}: edge_index refers to nodes {int(v.min())}..{int(v.max())}, "
                                     f"but the graph has {n} nodes")
                ei.append(v + offset)
            else:
                target = {"node": node, "edge": edge, "graph": graph}[levels[k]]
                target.setdefault(k, []).append(v.unsqueeze(0) if levels[k] == "graph" else v)
        batch.append(torch.full((n,), i, dtype=torch.long))
        offset += n
    if ei and len(ei) != len(parts):
        raise ValueError("some graphs have an edge_index and others do not")
    cat = {lv: {k: torch.cat(v) for k, v in d.items()} for lv, d in (("node", node), ("edge", edge), ("graph", graph))}
    here = next(iter(cat["node"].values())).device
    out = GraphBatch(cat["node"], cat["edge"], cat["graph"], torch.cat(ei, 1) if ei else None,
                     torch.cat(batch).to(here), len(parts))
    return out if device is None else out.to(device)


def _as_dict(g: GraphBatch) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    d, levels = {}, {}
    for level in LEVELS:
        for k, t in g.fields(level).items():
            d[k] = t[0] if level == "graph" else t
            levels[k] = level
    if g.edge_index is not None:
        d["edge_index"] = g.edge_index
    return d, levels


def unbatch(batch: GraphBatch) -> list[dict[str, torch.Tensor]]:
    """The graphs of a batch as dicts (``edge_index`` relative to each graph; graph fields without the batch
    axis): the inverse of :func:`collate`."""
    return [_as_dict(g)[0] for g in batch.split()]


class GraphDataset:
    """A data set of graphs held as one collated :class:`GraphBatch` (on a device), from which minibatches are
    gathered by index, with no Python loop over graphs.

    Graph :math:`b` of the store owns nodes :math:`\\mathrm{node\\_ptr}_b \\le i < \\mathrm{node\\_ptr}_{b+1}` and
    edges :math:`\\mathrm{edge\\_ptr}_b \\le e < \\mathrm{edge\\_ptr}_{b+1}` (CSR-style offsets; the edges of one
    graph are contiguous, as :func:`collate` writes them). For a minibatch :math:`i_1, \\dots, i_k` with node
    counts :math:`n_j` and new offsets :math:`p_j = \\sum_{l<j} n_l`, node :math:`t` of the minibatch that
    belongs to graph :math:`j` is stored node :math:`t - p_j + \\mathrm{node\\_ptr}_{i_j}`, and an edge's
    endpoints move by the same shift. :meth:`gather` builds these index tensors with ``repeat_interleave`` on the
    device and reads every field with one ``index_select``; the result equals
    ``collate([graphs[i] for i in idx])`` exactly (every field, the same edge order).

    Args:
        graphs: a list of graphs (dicts of tensors in the :func:`collate` format) or one :class:`GraphBatch`.
        device: where to hold the store (default: where the graphs are).
        graph_keys: passed to :func:`collate`.

    Examples:
        >>> graphs = [{"x": torch.ones(n, 2), "edge_index": torch.tensor([[0], [n - 1]])} for n in (2, 3, 4)]
        >>> GraphDataset(graphs).gather(torch.tensor([2, 0])).batch.tolist()
        [0, 0, 0, 0, 1, 1]
    """

    def __init__(self, graphs: Sequence[Mapping[str, Any] | GraphBatch] | GraphBatch,
                 device: torch.device | str | None = None, graph_keys: Iterable[str] = GRAPH_KEYS):
        store = graphs if isinstance(graphs, GraphBatch) else collate(graphs, graph_keys)
        B = store.num_graphs
        node_counts = torch.bincount(store.batch, minlength=B)
        ei = store.edge_index
        if ei is not None:
            edge_graph = store.batch[ei[0]]
            if edge_graph.numel() > 1 and bool((edge_graph[1:] < edge_graph[:-1]).any()):
                order = torch.argsort(edge_graph, stable=True)     # group the edges by graph, keeping their order
                store = store.replace(edge_index=ei[:, order],
                                      **{k: t[order] for k, t in store.fields("edge").items()})
                edge_graph = edge_graph[order]
            edge_counts = torch.bincount(edge_graph, minlength=B)
        else:
            edge_counts = torch.zeros_like(node_counts)
        zero = node_counts.new_zeros(1)
        self._node_ptr = torch.cat([zero, node_counts.cumsum(0)]).cpu()    # host copies: the index arithmetic on
        self._edge_ptr = torch.cat([zero, edge_counts.cumsum(0)]).cpu()    # k graphs needs no device reads
        self.store = store
        if device is not None:
            self.store = self._move(torch.device(device))

    def _move(self, device: torch.device) -> GraphBatch:
        s = self.store
        return GraphBatch._trusted({k: t.to(device) for k, t in s.fields("node").items()},
                                   {k: t.to(device) for k, t in s.fields("edge").items()},
                                   {k: t.to(device) for k, t in s.fields("graph").items()},
                                   None if s.edge_index is None else s.edge_index.to(device), s.batch.to(device),
                                   s.num_graphs)

    def to(self, device: torch.device | str) -> GraphDataset:
        """The same data set held on ``device`` (the offsets stay on the host)."""
        out = object.__new__(GraphDataset)
        out._node_ptr, out._edge_ptr, out.store = self._node_ptr, self._edge_ptr, self.store
        out.store = out._move(torch.device(device))
        return out

    def __len__(self) -> int:
        return self.store.num_graphs

    @property
    def device(self) -> torch.device:
        return self.store.device

    @property
    def nbytes(self) -> int:
        """Bytes held by the store's tensors."""
        return sum(t.numel() * t.element_size() for _, t in self.store.named_tensors())

    def gather(self, idx: torch.Tensor | Sequence[int]) -> GraphBatch:
        """Graphs ``idx`` (in that order) as one batch, equal to ``collate`` of those graphs.

        Raises:
            IndexError: naming the index that is out of range.
        """
        return self._gather(idx)[0]

    def batches(self, order: torch.Tensor | Sequence[int] | None = None, batch_size: int = 64
                ) -> Iterator[GraphBatch]:
        """The graphs in ``order`` (default: stored order) in consecutive batches of ``batch_size``, each equal
        to ``gather(order[s:s + batch_size])``.

        The whole order is gathered once, so each batch is a contiguous range of the result: its node, edge and
        graph fields are views, and only ``edge_index`` and the batch vector are shifted (two tensor operations
        per batch)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if order is None:
            whole, n_cnt, e_cnt = self.store, self._node_ptr.diff(), self._edge_ptr.diff()
        else:
            whole, n_cnt, e_cnt = self._gather(order)
        k = whole.num_graphs
        n_ptr = torch.cat([n_cnt.new_zeros(1), n_cnt.cumsum(0)]).tolist()
        e_ptr = torch.cat([e_cnt.new_zeros(1), e_cnt.cumsum(0)]).tolist()
        node, edge, graph = whole.fields("node"), whole.fields("edge"), whole.fields("graph")
        for g0 in range(0, k, batch_size):
            g1 = min(g0 + batch_size, k)
            n0, n1, e0, e1 = n_ptr[g0], n_ptr[g1], e_ptr[g0], e_ptr[g1]
            ei = None if whole.edge_index is None else whole.edge_index[:, e0:e1] - n0
            yield GraphBatch._trusted({key: t[n0:n1] for key, t in node.items()},
                                      {key: t[e0:e1] for key, t in edge.items()},
                                      {key: t[g0:g1] for key, t in graph.items()}, ei,
                                      whole.batch[n0:n1] - g0, g1 - g0)

    def _gather(self, idx: torch.Tensor | Sequence[int]) -> tuple[GraphBatch, torch.Tensor, torch.Tensor]:
        """:meth:`gather`, and the node and edge count of each gathered graph (on the host)."""
        idx = torch.as_tensor(idx, dtype=torch.long).cpu().reshape(-1)
        B = len(self)
        if idx.numel() == 0:
            raise ValueError("gather needs at least one graph index, got none")
        lo, hi = torch.aminmax(idx)
        if int(lo) < -B or int(hi) >= B:
            bad = idx[(idx < -B) | (idx >= B)][0]
            raise IndexError(f"graph index {int(bad)} out of range for a data set of {B} graphs")
        if int(lo) < 0:
            idx = idx % B
        s, dev = self.store, self.store.device
        n_lo, e_lo = self._node_ptr[idx], self._edge_ptr[idx]
        n_cnt, e_cnt = self._node_ptr[idx + 1] - n_lo, self._edge_ptr[idx + 1] - e_lo
        n_new, e_new = n_cnt.cumsum(0) - n_cnt, e_cnt.cumsum(0) - e_cnt
        N, E = int(n_new[-1] + n_cnt[-1]), int(e_new[-1] + e_cnt[-1])
        # one host-to-device copy of the per-graph numbers: counts, node shifts, edge shifts, graph indices
        small = torch.stack([n_cnt, n_lo - n_new, e_cnt, e_lo - e_new, idx]).to(dev, non_blocking=True)
        graphs = torch.arange(len(idx), device=dev)
        batch = torch.repeat_interleave(graphs, small[0], output_size=N)
        node_idx = torch.arange(N, device=dev) + small[1].index_select(0, batch)
        node = {k: t.index_select(0, node_idx) for k, t in s.fields("node").items()}
        graph = {k: t.index_select(0, small[4]) for k, t in s.fields("graph").items()}
        edge, ei = {}, None
        if s.edge_index is not None:
            edge_batch = torch.repeat_interleave(graphs, small[2], output_size=E)
            edge_idx = torch.arange(E, device=dev) + small[3].index_select(0, edge_batch)
            shift = small[1].index_select(0, edge_batch)
            ei = (s.edge_index.index_select(1, edge_idx) - shift).to(s.edge_index.dtype)
            edge = {k: t.index_select(0, edge_idx) for k, t in s.fields("edge").items()}
        return GraphBatch._trusted(node, edge, graph, ei, batch, len(idx)), n_cnt, e_cnt
