"""Neighbour lists in pure PyTorch: the radius graph of a batch of atomic systems, and angle triplets.

The *radius graph* joins every ordered pair of distinct atoms of the same system that lie within a cutoff,

.. math::  \\mathcal{E} = \\{(j \\to i) : b_i = b_j,\\ i \\ne j,\\ \\lVert x_j - x_i \\rVert < r_c\\},

stored like PyTorch Geometric's ``edge_index``: row 0 holds the source ``j`` (the neighbour that sends a
message), row 1 the target ``i`` (the atom that receives it). Edges never cross systems of a batch, and nothing is
ever dropped: ``max_neighbours`` only *checks* the largest neighbourhood (raising, or warning, when it is
exceeded), unlike PyG's ``radius_graph(max_num_neighbors=32)``, which silently keeps an arbitrary subset.

Three methods give the same edges (as a set; all return them sorted by target, then source):

- ``"dense"``: all pairs within each system (a batched ``cdist`` on padded blocks), :math:`O(B\\, n_{\\max}^2)`
  time, at most ``chunk`` distances in memory at once; fastest for small molecules, and on a GPU;
- ``"cells"``: a cell list (atoms binned into cubes of side :math:`r_c`, pairs taken only from the 27 adjacent
  cubes), :math:`O(N)` time for a bounded density; pure PyTorch, so it runs on any device;
- ``"kdtree"``: SciPy's ``cKDTree`` finds candidate pairs within a slightly larger radius (systems of a batch
  moved apart along x so that they cannot meet), then the same squared-distance test as the other two methods
  decides, so the edge set is identical; host tensors only, :math:`O(N \\log N)`.

``"auto"`` picks by the largest system of the batch: on the host ``"kdtree"`` above :data:`AUTO_KDTREE_ABOVE`
atoms, on other devices ``"cells"`` above :data:`AUTO_CELLS_ABOVE` atoms, ``"dense"`` below (thresholds
measured with ``benchmarks/bench_atomistic.py``).

*Triplets* (for DimeNet++) are pairs of edges ``k -> j`` and ``j -> i`` with ``k != i``: the angle at ``j``
between :math:`x_k - x_j` and :math:`x_i - x_j` is what a distance-only model cannot see.

Examples:
    >>> pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0.0, 1.5, 0]])
    >>> radius_graph(pos, cutoff=1.2).tolist()
    [[1, 0], [0, 1]]
    >>> t = triplets(radius_graph(pos, cutoff=2.0), num_nodes=3)
    >>> len(t.idx_kj)          # 3 atoms, every pair of edges meeting at a middle atom
    6
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch

__all__ = ["radius_graph", "neighbour_counts", "edge_vectors", "triplets", "Triplets", "triplet_angles",
           "triplet_cosines", "METHODS"]

METHODS = ("auto", "dense", "cells", "kdtree")
#: On a GPU, ``"auto"`` switches from the dense method to the cell list above this many atoms in one system.
AUTO_CELLS_ABOVE = 1000
#: On the host, ``"auto"`` switches from the dense method to the k-d tree above this many atoms in one system.
AUTO_KDTREE_ABOVE = 150


def _check_inputs(pos: torch.Tensor, cutoff: float, batch: torch.Tensor | None) -> torch.Tensor:
    if not torch.is_tensor(pos) or pos.ndim != 2 or pos.shape[1] != 3 or not pos.is_floating_point():
        raise ValueError(f"pos must be a float tensor of shape (N, 3), got "
                         f"{tuple(pos.shape) if torch.is_tensor(pos) else type(pos).__name__}")
    if not torch.isfinite(pos).all():
        bad = (~torch.isfinite(pos)).any(1).nonzero().flatten().tolist()
        raise ValueError(f"pos has NaN or infinite coordinates at atoms {bad[:10]}{' ...' if len(bad) > 10 else ''}")
    if not float(cutoff) > 0:
        raise ValueError(f"cutoff must be positive, got {cutoff}")
    if batch is None:
        return torch.zeros(len(pos), dtype=torch.long, device=pos.device)
    if not torch.is_tensor(batch) or batch.ndim != 1 or batch.is_floating_point() or len(batch) != len(pos):
        raise ValueError(f"batch must be an integer tensor of shape (N,) = ({len(pos)},), got "
                         f"{tuple(batch.shape) if torch.is_tensor(batch) else type(batch).__name__}")
    if len(batch) > 1 and bool((batch[1:] < batch[:-1]).any()):
        raise ValueError("batch must be sorted (the atoms of each system contiguous, as collate makes them)")
    return batch


def _dense_pairs(pos: torch.Tensor, cutoff: float, batch: torch.Tensor, chunk: int) -> torch.Tensor:
    """All same-system pairs from padded (B, n_max, 3) blocks, ``chunk`` distances at a time: (2, E) sorted by
    target then source."""
    dev = pos.device
    counts = torch.bincount(batch)
    ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    B, n_max = len(counts), int(counts.max())
    local = torch.arange(len(pos), device=dev) - ptr[batch]
    padded = pos.new_zeros(B, n_max, 3)
    padded[batch, local] = pos
    valid = torch.zeros(B, n_max, dtype=torch.bool, device=dev)
    valid[batch, local] = True
    graphs_per_chunk = max(1, chunk // (n_max * n_max))
    rows_per_chunk = n_max if graphs_per_chunk > 1 else max(1, min(n_max, chunk // n_max))
    cols = torch.arange(n_max, device=dev)
    out = []
    for g0 in range(0, B, graphs_per_chunk):
        g1 = min(B, g0 + graphs_per_chunk)
        for r0 in range(0, n_max, rows_per_chunk):
            r1 = min(n_max, r0 + rows_per_chunk)
            # squared differences summed exactly as the cell list does, so both methods agree at the cutoff
            d2 = (padded[g0:g1, None, :] - padded[g0:g1, r0:r1, None]).pow(2).sum(-1)    # (G, R, n_max)
            keep = (d2 < cutoff * cutoff) & valid[g0:g1, r0:r1, None] & valid[g0:g1, None, :]
            keep &= (torch.arange(r0, r1, device=dev)[:, None] != cols[None, :])
            g, r, c = keep.nonzero(as_tuple=True)                     # row-major: sorted by target, then source
            base = ptr[g0 + g]
            out.append(torch.stack([base + c, base + r0 + r]))
    return torch.cat(out, 1) if out else torch.zeros(2, 0, dtype=torch.long, device=dev)


_OFFSETS = torch.tensor([[a, b, c] for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)])


def _cell_pairs(pos: torch.Tensor, cutoff: float, batch: torch.Tensor) -> torch.Tensor:
    """Cell list: bin atoms into cubes of side ``cutoff``; candidates come from the 27 adjacent cubes."""
    dev = pos.device
    with torch.no_grad():
        p = pos.detach()
        num_graphs = int(batch.max()) + 1
        lo = torch.full((num_graphs, 3), float("inf"), dtype=p.dtype, device=dev)
        lo = lo.scatter_reduce(0, batch[:, None].expand(-1, 3), p, "amin")
        cell = torch.floor((p - lo[batch]) / cutoff).long() + 1     # (N, 3), >= 1 so neighbours stay >= 0
        dims = int(cell.max()) + 2
        def key(b, c):                                            # one integer per (system, cube)
            return ((b * dims + c[:, 0]) * dims + c[:, 1]) * dims + c[:, 2]
        k = key(batch, cell)
        order = torch.argsort(k)
        k_sorted = k[order]
        uniq, counts = torch.unique_consecutive(k_sorted, return_counts=True)
        starts = torch.cumsum(counts, 0) - counts
        # candidate cubes of every atom: (N, 27)
        nb = cell[:, None, :] + _OFFSETS.to(dev)[None]
        nk = key(batch[:, None].expand(-1, 27).reshape(-1), nb.reshape(-1, 3))
        slot = torch.searchsorted(uniq, nk).clamp(max=len(uniq) - 1)
        found = uniq[slot] == nk
        cnt = torch.where(found, counts[slot], torch.zeros_like(slot))
        st = starts[slot]
        ii = torch.repeat_interleave(torch.arange(len(p), device=dev).repeat_interleave(27), cnt)
        first = torch.repeat_interleave(torch.cumsum(cnt, 0) - cnt, cnt)
        jj = order[torch.repeat_interleave(st, cnt) + torch.arange(len(ii), device=dev) - first]
        d2 = (p[jj] - p[ii]).pow(2).sum(-1)
        keep = (d2 < cutoff * cutoff) & (ii != jj)
        ii, jj = ii[keep], jj[keep]
        perm = torch.argsort(ii * len(p) + jj)
    return torch.stack([jj[perm], ii[perm]])


def _kdtree_pairs(pos: torch.Tensor, cutoff: float, batch: torch.Tensor) -> torch.Tensor:
    """Candidates from ``cKDTree.query_pairs`` within :math:`r_c (1 + 10^{-4})` (in float64), kept by the exact
    test of the other methods; both directions, sorted by one integer sort of ``target * N + source``.

    Float32 and float64 positions are tested in NumPy with the same arithmetic as PyTorch's
    ``(x_j - x_i).pow(2).sum(-1) < r_c^2`` (products, then the three terms summed left to right, the threshold
    rounded to the positions' dtype), which saves the fixed cost of a dozen PyTorch calls on small systems."""
    import numpy as np
    from scipy.spatial import cKDTree

    p = pos.detach()
    n = len(p)
    x = p.double().numpy().copy()
    if int(batch[-1]) > 0:                                   # systems side by side along x, 2 r_c apart
        b = batch.numpy()
        B = int(b[-1]) + 1
        lo, hi = np.full(B, np.inf), np.full(B, -np.inf)
        np.minimum.at(lo, b, x[:, 0])
        np.maximum.at(hi, b, x[:, 0])
        width = hi - lo + 2 * cutoff
        x[:, 0] += (np.cumsum(width) - width - lo)[b]
    margin = 1 + max(1e-4, 16 * torch.finfo(p.dtype).eps)   # covers the rounding of the test in p's dtype
    pairs = cKDTree(x).query_pairs(cutoff * margin, output_type="ndarray")
    i, j = np.ascontiguousarray(pairs[:, 0]), np.ascontiguousarray(pairs[:, 1])
    if p.dtype in (torch.float32, torch.float64):
        q = p.numpy()
        d = q[j] - q[i]
        d2 = d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] + d[:, 2] * d[:, 2]
        keep = d2 < q.dtype.type(cutoff * cutoff)
    else:
        ti, tj = torch.from_numpy(i.astype(np.int64)), torch.from_numpy(j.astype(np.int64))
        keep = ((p.index_select(0, tj) - p.index_select(0, ti)).pow(2).sum(-1) < cutoff * cutoff).numpy()
    i, j = i[keep], j[keep]
    dtype = np.int32 if n * n < 2**31 else np.int64
    i, j = i.astype(dtype), j.astype(dtype)
    key = np.concatenate([j * dtype(n) + i, i * dtype(n) + j])   # target * N + source, both directions
    key = np.sort(key) if len(key) < 2**16 else torch.sort(torch.from_numpy(key)).values.numpy()
    return torch.from_numpy(np.stack([key % n, key // n]).astype(np.int64))


def radius_graph(pos: torch.Tensor, cutoff: float, batch: torch.Tensor | None = None, *,
                 max_neighbours: int | None = None, on_overflow: str = "raise", method: str = "auto",
                 chunk: int = 2**22) -> torch.Tensor:
    """Edges ``j -> i`` between distinct atoms of the same system closer than ``cutoff``.

    .. math::  (j \\to i) \\in \\mathcal{E} \\iff b_i = b_j,\\ i \\ne j,\\ \\lVert x_j - x_i \\rVert < r_c

    Args:
        pos: ``(N, 3)`` positions (no NaN or infinity).
        cutoff: :math:`r_c`, in the units of ``pos``.
        batch: ``(N,)`` sorted system index of each atom (default: one system).
        max_neighbours: if given, the largest allowed number of neighbours of one atom; more is an error
            (``on_overflow="raise"``) or a warning (``"warn"``). Edges are never dropped.
        on_overflow: ``"raise"`` (default) or ``"warn"``.
        method: ``"dense"``, ``"cells"``, ``"kdtree"`` (host tensors) or ``"auto"`` (see the module's
            description); all give the same edges.
        chunk: the dense method's largest number of candidate pairs held at once.

    Returns:
        ``edge_index`` ``(2, E)`` long, row 0 the source ``j``, row 1 the target ``i``, sorted by target then
        source; both directions of every pair are present.

    Raises:
        ValueError: naming ``pos``, ``batch``, ``cutoff``, ``method`` or the atom with too many neighbours.
    """
    batch = _check_inputs(pos, cutoff, batch)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if on_overflow not in ("raise", "warn"):
        raise ValueError(f"on_overflow must be 'raise' or 'warn', got {on_overflow!r}")
    if len(pos) == 0:
        return torch.zeros(2, 0, dtype=torch.long, device=pos.device)
    if method == "kdtree" and pos.device.type != "cpu":
        raise ValueError(f"method='kdtree' needs host tensors, got pos on {pos.device}: use 'cells' or 'dense'")
    if method == "auto":
        largest = int(torch.bincount(batch).max())
        if pos.device.type == "cpu":
            method = "kdtree" if largest > AUTO_KDTREE_ABOVE else "dense"
        else:
            method = "cells" if largest > AUTO_CELLS_ABOVE else "dense"
    cutoff = float(cutoff)
    with torch.no_grad():
        if method == "dense":
            edge_index = _dense_pairs(pos.detach(), cutoff, batch, chunk)
        elif method == "cells":
            edge_index = _cell_pairs(pos, cutoff, batch)
        else:
            edge_index = _kdtree_pairs(pos, cutoff, batch)
    if max_neighbours is not None:
        counts = neighbour_counts(edge_index, len(pos))
        worst = int(counts.argmax())
        if int(counts[worst]) > max_neighbours:
            msg = (f"atom {worst} has {int(counts[worst])} neighbours within cutoff {cutoff}, more than "
                   f"max_neighbours={max_neighbours} ({int((counts > max_neighbours).sum())} atoms exceed it); "
                   f"no edge was dropped: lower the cutoff or raise max_neighbours")
            if on_overflow == "raise":
                raise ValueError(msg)
            warnings.warn(msg, stacklevel=2)
    return edge_index


def neighbour_counts(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """``(N,)`` number of incoming edges of every atom."""
    return torch.bincount(edge_index[1], minlength=num_nodes)


def edge_vectors(pos: torch.Tensor, edge_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(vec, dist)``: :math:`x_j - x_i` ``(E, 3)`` (from the receiving atom to its neighbour) and its length
    ``(E,)``. Differentiable in ``pos`` (forces flow through it)."""
    vec = pos[edge_index[0]] - pos[edge_index[1]]
    return vec, vec.norm(dim=-1)


class Triplets(NamedTuple):
    """Pairs of edges ``k -> j -> i`` (``k != i``): atoms ``i, j, k`` ``(T,)`` and the edge indices
    ``idx_kj``, ``idx_ji`` ``(T,)`` into ``edge_index``."""

    i: torch.Tensor
    j: torch.Tensor
    k: torch.Tensor
    idx_kj: torch.Tensor
    idx_ji: torch.Tensor


def triplets(edge_index: torch.Tensor, num_nodes: int) -> Triplets:
    """Every pair of edges ``k -> j`` and ``j -> i`` with ``k != i`` (DimeNet's directional messages).

    For each edge ``j -> i`` all edges arriving at ``j`` are listed; the count is
    :math:`\\sum_{(j \\to i)} (\\deg j - 1)`.
    """
    if edge_index.ndim != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must have shape (2, E), got {tuple(edge_index.shape)}")
    src, dst = edge_index
    dev = edge_index.device
    order = torch.argsort(dst, stable=True)                   # edges grouped by their target
    deg = torch.bincount(dst, minlength=num_nodes)
    ptr = torch.cumsum(deg, 0) - deg
    rep = deg[src]                                             # edges into j, for each edge j -> i
    idx_ji = torch.repeat_interleave(torch.arange(src.numel(), device=dev), rep)
    first = torch.repeat_interleave(torch.cumsum(rep, 0) - rep, rep)
    idx_kj = order[ptr[src[idx_ji]] + torch.arange(len(idx_ji), device=dev) - first]
    i, j, k = dst[idx_ji], src[idx_ji], src[idx_kj]
    keep = k != i
    return Triplets(i[keep], j[keep], k[keep], idx_kj[keep], idx_ji[keep])


def triplet_angles(pos: torch.Tensor, t: Triplets) -> torch.Tensor:
    """``(T,)`` angle at ``j`` between :math:`x_k - x_j` and :math:`x_i - x_j`, in radians, computed as
    ``atan2(|a x b|, a . b)`` (stable gradients near 0 and pi)."""
    a = pos[t.k] - pos[t.j]
    b = pos[t.i] - pos[t.j]
    return torch.atan2(torch.linalg.cross(a, b).norm(dim=-1), (a * b).sum(-1))


def triplet_cosines(pos: torch.Tensor, t: Triplets) -> torch.Tensor:
    """``(T,)`` :math:`\\cos\\alpha_{kji}`, the cosine of the angle at ``j``; smooth everywhere except at
    coincident atoms, so models feed this (not the angle) to Legendre / spherical-harmonic bases."""
    a = pos[t.k] - pos[t.j]
    b = pos[t.i] - pos[t.j]
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
