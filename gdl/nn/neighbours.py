"""Neighbour lists in PyTorch: the radius graph of a batch of atomic systems, and angle triplets.

The *radius graph* joins every ordered pair of distinct atoms of the same system that lie within a cutoff,

.. math::  \\mathcal{E} = \\{(j \\to i) : b_i = b_j,\\ i \\ne j,\\ \\lVert x_j - x_i \\rVert < r_c\\},

stored like PyTorch Geometric's ``edge_index``: row 0 holds the source ``j`` (the neighbour that sends a
message), row 1 the target ``i`` (the atom that receives it). Edges never cross systems of a batch, and nothing is
ever dropped: ``max_neighbours`` only *checks* the largest neighbourhood (raising, or warning, when it is
exceeded), unlike PyG's ``radius_graph(max_num_neighbors=32)``, which silently keeps an arbitrary subset.

Four methods give the same edges in the same order (sorted by target, then source): every one decides with
the same squared-distance test (:func:`_sq_dist`: the three squared differences summed left to right, compared
with :math:`r_c^2` in the positions' dtype), so they agree to the last bit at the cutoff.

- ``"dense"``: all pairs within each system (padded per-system blocks), :math:`O(B\\, n_{\\max}^2)` time, at most
  ``chunk`` pairs in memory at once; one system's distances computed exactly, a batch's candidates from one matrix
  product per block (the Gram-matrix form of the distance, with a margin that bounds its rounding error), read
  off in target-then-source order (no sort); fastest for small systems and on a GPU;
- ``"sweep"`` (host tensors): the atoms sorted along their longest axis, each tested against a window of the
  next :math:`w` atoms, :math:`w` the most that lie within :math:`r_c` along that axis after any atom;
  :math:`O(N w)` candidates read from one sliding-window view (no gather), NumPy's comparison and sort; fastest
  on the host from a few hundred to a couple of thousand atoms, and for batches of small molecules;
- ``"cells"``: a cell list, :math:`O(N)` candidates for a bounded density plus one :math:`O(E \\log E)` integer
  sort: columns of side :math:`r_c / 3`, each atom looking at the upper half of its neighbourhood only and, in
  every column, at the run of atoms in the x-cells that its own cell can reach (a window fixed per column, see
  :func:`_cell_pairs`); PyTorch on any device, with NumPy's faster sort for the keys of host tensors where this
  machine measured it faster;
- ``"kdtree"``: SciPy's ``cKDTree`` finds candidate pairs within a slightly larger radius (systems of a batch
  moved apart along x so that they cannot meet), then the same test decides; host tensors only. It is kept as
  an independent check: ``"auto"`` never picks it.

``"auto"`` picks by the largest system of the batch. On the host: ``"dense"`` for one system of up to
:data:`AUTO_DENSE_UP_TO` atoms, else ``"sweep"`` up to :data:`AUTO_SWEEP_UP_TO` atoms, ``"cells"`` above; on other
devices ``"dense"`` up to :data:`AUTO_CELLS_ABOVE_GPU` atoms, ``"cells"`` above (thresholds measured with
``benchmarks/bench_atomistic.py``).

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

import math
import time
import warnings
from typing import NamedTuple

import numpy as np
import torch

from gdl.nn._checks import name_bad_atoms, sum_is_finite

__all__ = ["radius_graph", "neighbour_counts", "edge_vectors", "triplets", "Triplets", "triplet_angles",
           "triplet_cosines", "METHODS"]

METHODS = ("auto", "dense", "sweep", "cells", "kdtree")
#: On the host, ``"auto"`` takes the dense method for one system of up to this many atoms (measured crossover with
#: the sweep: between 300 and 400 atoms) ...
AUTO_DENSE_UP_TO = 350
#: ... and otherwise sweeps (:func:`_sweep_pairs`) up to this many atoms in the largest system, and uses the cell
#: list above (measured crossover: between 1500 and 2000 atoms; batches of small molecules sweep fastest)
AUTO_SWEEP_UP_TO = 1500
#: On a GPU, ``"auto"`` switches from the dense method to the cell list above this many atoms in one system.
AUTO_CELLS_ABOVE_GPU = 1000


def _check_inputs(pos: torch.Tensor, cutoff: float, batch: torch.Tensor | None) -> torch.Tensor | None:
    if not torch.is_tensor(pos) or pos.ndim != 2 or pos.shape[1] != 3 or not pos.is_floating_point():
        raise ValueError(f"pos must be a float tensor of shape (N, 3), got "
                         f"{tuple(pos.shape) if torch.is_tensor(pos) else type(pos).__name__}")
    if not bool(sum_is_finite(pos)):                    # one reduction; the atom search only when something is off
        name_bad_atoms(pos)
    if not float(cutoff) > 0:
        raise ValueError(f"cutoff must be positive, got {cutoff}")
    if batch is None:
        return None
    if not torch.is_tensor(batch) or batch.ndim != 1 or batch.is_floating_point() or len(batch) != len(pos):
        raise ValueError(f"batch must be an integer tensor of shape (N,) = ({len(pos)},), got "
                         f"{tuple(batch.shape) if torch.is_tensor(batch) else type(batch).__name__}")
    if len(batch) > 1 and bool((batch[1:] < batch[:-1]).any()):
        raise ValueError("batch must be sorted (the atoms of each system contiguous, as collate makes them)")
    return batch


def _sq_dist(xs: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(T,)`` :math:`\\lVert x_b - x_a \\rVert^2` of the pairs ``(a, b)``, the three squares summed left to right.

    Every method applies this one test (``< r_c^2`` in the positions' dtype), so they agree to the last bit at the
    cutoff. ``xs`` holds the positions as 4-float rows viewed as ``complex128`` (float32: one gather per endpoint)
    or is the ``(N, 3)`` positions themselves (other dtypes: one gather per coordinate)."""
    if xs.dtype == torch.complex128:
        d = xs.index_select(0, b).view(torch.float32).view(-1, 4)
        d.sub_(xs.index_select(0, a).view(torch.float32).view(-1, 4))
        d.mul_(d)
        return (d[:, 0] + d[:, 1]).add_(d[:, 2])
    d2 = None
    for c in range(3):
        x = xs[:, c].contiguous()
        d = x.index_select(0, b).sub_(x.index_select(0, a))
        d2 = d.mul_(d) if d2 is None else d2.add_(d.mul_(d))
    return d2


def _gatherable(p: torch.Tensor) -> torch.Tensor:
    """``p`` in the layout :func:`_sq_dist` gathers fastest."""
    if p.dtype == torch.float32:
        return torch.nn.functional.pad(p, (0, 1)).view(torch.complex128).flatten()
    return p


def _filter_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _torch_flat_close(d2: torch.Tensor, rc2: float) -> torch.Tensor:
    """Flat indices of the entries of ``d2`` below ``rc2``, a tensor on ``d2``'s device."""
    return (d2 < rc2).view(-1).nonzero().view(-1)


def _flat_close(d2: torch.Tensor, rc2: float) -> np.ndarray | torch.Tensor:
    """Flat indices of the entries of ``d2`` below ``rc2`` (rounded to ``d2``'s dtype, as PyTorch compares with a
    Python number): on the host a NumPy array (NumPy compares about ten times and finds the entries about 1.4 times
    faster than PyTorch there), else :func:`_torch_flat_close`."""
    if d2.device.type != "cpu":
        return _torch_flat_close(d2, rc2)
    if d2.dtype in (torch.float16, torch.float32, torch.float64):
        a = d2.numpy()
        return np.flatnonzero(a < a.dtype.type(rc2))
    return np.flatnonzero((d2 < rc2).numpy())


#: The dense method computes every distance of one system exactly, with no Gram-matrix filter, up to this many
#: coordinate differences (3 N^2).
_DIRECT_MAX = 3 * 800**2
#: ... in blocks of rows of at most this many pairs.
_DIRECT_BLOCK = 2**17
#: ... or in one block up to this many pairs (400 atoms: one block of 160,000 pairs, not 327 rows and then 73:
#: 9 % faster; at 500 atoms one block is 50 % slower than two)
_ONE_BLOCK_MAX = 200_000


def _dense_pairs(pos: torch.Tensor, cutoff: float, batch: torch.Tensor | None, num_graphs: int, chunk: int
                 ) -> torch.Tensor:
    """All same-system pairs, ``chunk`` at a time: (2, E) sorted by target then source.

    Candidates come from the Gram matrix, :math:`d^2_{ij} \\approx s_i + s_j - 2\\, c_i \\cdot c_j` with
    :math:`c = x - \\min_\\text{system} x` and :math:`s_i = \\lVert c_i \\rVert^2` (one matrix product per block),
    kept below :math:`r_c^2` plus a margin that bounds its rounding error; :func:`_sq_dist` then decides. The
    candidates come out of ``nonzero`` row by row, so no sort is needed."""
    p = pos.detach()
    dev = p.device
    fdt = _filter_dtype(p.dtype)
    rc2 = cutoff * cutoff
    n = len(p)
    if num_graphs == 1 and 3 * n * n <= _DIRECT_MAX:               # small: every distance, exactly
        x, y, z = p.T.contiguous()
        rows = max(1, min(chunk, _DIRECT_BLOCK) // n)               # blocks of rows that stay in the cache
        if chunk >= _DIRECT_BLOCK and n * n <= _ONE_BLOCK_MAX:       # ... or one block, when that is barely larger
            rows = n
        flats = []
        for r0 in range(0, n, rows):
            r1 = min(n, r0 + rows)
            d2 = x[None, :] - x[r0:r1, None]                        # d2[i, j] = (x_j - x_i)^2 + ..., in place
            d2.mul_(d2)
            t = y[None, :] - y[r0:r1, None]
            d2.add_(t.mul_(t))
            torch.sub(z[None, :], z[r0:r1, None], out=t)
            d2.add_(t.mul_(t)).diagonal(r0).fill_(math.inf)        # never an atom with itself
            flats.append(_flat_close(d2, rc2))
        # flat index r n + j of row r of the block from r0: target r0 + r, source j (row-major: already sorted);
        # NumPy's integer division where _flat_close answered in NumPy (4x faster than PyTorch's on the host)
        host = isinstance(flats[0], np.ndarray)
        xp = np if host else torch
        size = (2, sum(len(f) for f in flats))
        edge_index = np.empty(size, dtype=np.int64) if host else p.new_empty(size, dtype=torch.long)
        e0 = 0
        for r0, f in zip(range(0, n, rows), flats):
            src, tgt = edge_index[:, e0:e0 + len(f)]
            xp.floor_divide(f, n, out=tgt)
            xp.multiply(tgt, n, out=src)
            xp.subtract(f, src, out=src)
            tgt += r0
            e0 += len(f)
        return torch.from_numpy(edge_index) if host else edge_index
    if num_graphs == 1:
        c = p.to(fdt)
        c = (c - c.amin(0))[None]                                   # (1, n, 3)
        ptr = None
        valid = None
    else:
        counts = torch.bincount(batch, minlength=num_graphs)
        ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        n_max = int(counts.max())
        lo = torch.full((num_graphs, 3), float("inf"), dtype=fdt, device=dev)
        lo = lo.scatter_reduce(0, batch[:, None].expand(-1, 3), p.to(fdt), "amin")
        local = torch.arange(len(p), device=dev) - ptr[batch]
        c = p.new_zeros(num_graphs, n_max, 3, dtype=fdt)
        c[batch, local] = p.to(fdt) - lo[batch]
        valid = torch.zeros(num_graphs, n_max, dtype=torch.bool, device=dev)
        valid[batch, local] = True
    B, n_max = c.shape[:2]
    sq = (c * c).sum(-1)                                            # (B, n_max)
    # |computed - exact| <= ~10 u_f (s_i + s_j) for the filter, ~8 u_p r_c^2 for the test: 64 u covers both
    u_f, u_p = torch.finfo(fdt).eps, torch.finfo(p.dtype).eps
    thr = rc2 * (1 + 64 * u_p) + 64 * u_f * (2 * sq.max() + rc2)
    xs = _gatherable(p)
    graphs_per_chunk = max(1, chunk // (n_max * n_max))
    rows = n_max if graphs_per_chunk > 1 else max(1, min(n_max, chunk // n_max))
    out = []
    for g0 in range(0, B, graphs_per_chunk):
        g1 = min(B, g0 + graphs_per_chunk)
        for r0 in range(0, n_max, rows):
            r1 = min(n_max, r0 + rows)
            d2 = torch.baddbmm(sq[g0:g1, r0:r1, None], c[g0:g1, r0:r1], c[g0:g1].transpose(1, 2), alpha=-2)
            cand = d2.add_(sq[g0:g1, None, :]) < thr                  # (G, R, n_max)
            cand.diagonal(r0, 1, 2).fill_(False)
            if valid is not None:
                cand &= valid[g0:g1, r0:r1, None] & valid[g0:g1, None, :]
            g, r, s = cand.nonzero(as_tuple=True)                    # row-major: by target, then source
            if ptr is None:
                tgt, src = r + r0, s
            else:
                base = ptr[g + g0]
                tgt, src = base + r + r0, base + s
            keep = (_sq_dist(xs, tgt, src) < rc2).nonzero().flatten()
            out.append(torch.stack([src.index_select(0, keep), tgt.index_select(0, keep)]))
    return out[0] if len(out) == 1 else torch.cat(out, 1)


_STENCILS: dict = {}


def _half_stencil(k: int, reach: float, nx: int, ny: int, device: torch.device) -> torch.Tensor:
    """The cells every atom searches, as int64 ``(2, M, 1)`` offsets from its own cell in a grid of ``nx x ny x
    nz`` cells: row 0 the first cell, row 1 one past the last, of each of its ``M`` x-windows.

    Lengths are in columns (the columns' side across y and z is 1; each holds :data:`X_CELLS_PER_COLUMN` x-cells
    per unit length). The columns searched are the own column first (the whole window: the caller keeps only the
    atoms after the searching one), then those ``(dy, dz)`` with ``|dy|, |dz| <= k`` in the upper half plane
    (``dz > 0``, or ``dz == 0`` and ``dy > 0``) that some point of the own column reaches within ``reach``. Along x
    a column is searched over the x-cells within ``sqrt(reach^2 - g_y^2 - g_z^2)`` of the atom's own x-cell, ``g``
    being the smallest gap between the two columns: the same for every atom, so no per-atom arithmetic."""
    key = (k, reach, nx, ny, str(device))
    if key not in _STENCILS:
        if len(_STENCILS) > 64:
            _STENCILS.clear()
        kx, tol = X_CELLS_PER_COLUMN, 1e-9 * (nx + ny + k + 1.0)  # tol: covers the rounding of the cell indices
        lo, hi = [], []
        for dz in range(0, k + 1):
            for dy in range(-k, k + 1):
                if dz == 0 and dy < 0:
                    continue
                gy, gz = max(0.0, abs(dy) - 1 - tol), max(0.0, dz - 1 - tol)
                x2 = reach * reach - gy * gy - gz * gz
                if x2 <= 0:
                    continue
                wx = math.ceil(math.sqrt(x2) * kx + tol)           # x-cells on either side of the atom's own
                lo.append((dz * ny + dy) * nx - wx)
                hi.append((dz * ny + dy) * nx + wx + 1)
        _STENCILS[key] = torch.tensor([lo, hi], device=device)[:, :, None]
    return _STENCILS[key]


def _runs(starts: torch.Tensor, lens: torch.Tensor, total: int, tags: int) -> torch.Tensor:
    """The ranges ``[starts[r], starts[r] + lens[r])`` concatenated, each element packed with a tag of its run as
    ``tag << 32 | element``, the ``R`` runs tagged ``r mod tags`` (``tags`` divides ``R``): one cumulative sum of
    increments (1 inside a run; at the start of a run, the jump from the end of the previous one, in both the tag
    and the element; zero-length runs add their jumps at the same place)."""
    jump = torch.full_like(starts, 1 << 32)                       # the tag: one up, or back to 0 every tags runs
    jump[tags::tags] = (1 - tags) << 32
    jump[1:] -= starts[:-1] + lens[:-1]                           # the element: from the previous run's end
    jump.add_(starts)
    jump[:1] = starts[:1] - 1
    inc = torch.ones(total + 1, dtype=torch.long, device=starts.device)
    inc.scatter_add_(0, torch.cumsum(lens, 0).sub_(lens), jump)
    return torch.cumsum(inc[:total], 0)


#: The cell list tests its candidates in slices of this many, which stay in the cache with their temporaries.
_TEST_SLICE = 2**14


def _test_packed(xs: torch.Tensor, v: torch.Tensor, rc2: float) -> torch.Tensor:
    """``(T,)`` bool, :func:`_sq_dist` ``< rc2`` of the candidates ``v = a << 32 | b``, on the host in slices of
    about :data:`_TEST_SLICE`."""
    step = max(1, len(v))                                         # a GPU takes them at once
    if v.device.type == "cpu":                                    # the nearest whole number of slices
        step = -(-step // max(1, round(step / _TEST_SLICE)))
    close = torch.empty(len(v), dtype=torch.bool, device=v.device)
    ab = v.new_empty(2, min(len(v), step))
    for i in range(0, len(v), step):
        w = v[i:i + step]
        a, b = ab[:, :len(w)]
        torch.bitwise_right_shift(w, 32, out=a)
        torch.bitwise_and(w, 0xFFFFFFFF, out=b)
        torch.lt(_sq_dist(xs, a, b), rc2, out=close[i:i + step])
    return close


#: PyTorch sorts an integer vector of at least this many elements on the host by radix sort (``at::internal::
#: GRAIN_SIZE``), about five times faster per element than the comparison sort it uses below that size.
_RADIX_MIN = 32768


def _numpy_sorts_faster() -> bool:
    """Whether NumPy's sort (vectorised where the CPU allows: x86-simd-sort, Highway) beats PyTorch's radix sort on
    32768 distinct int32 keys on this machine: measured once, the first time the cell list needs it."""
    if "numpy_faster" not in _SORT_CHOICE:
        keys = torch.randperm(_RADIX_MIN, generator=torch.Generator().manual_seed(0)).to(torch.int32)
        times = []
        for sort in (lambda: torch.sort(keys).values, lambda: np.sort(keys.numpy())):
            sort()
            start = time.perf_counter()
            for _ in range(5):
                sort()
            times.append(time.perf_counter() - start)
        _SORT_CHOICE["numpy_faster"] = times[1] < times[0]
    return _SORT_CHOICE["numpy_faster"]


_SORT_CHOICE: dict[str, bool] = {}


def _both_ways_sorted(a: torch.Tensor, b: torch.Tensor, shift: int) -> torch.Tensor:
    """The keys ``t << shift | s`` of the directed pairs ``(a -> b)`` and ``(b -> a)`` (distinct), sorted ascending.

    They are written into one buffer. On the host NumPy sorts them where it is faster (:func:`_numpy_sorts_faster`:
    about 6x on a CPU with AVX2 or AVX-512); else a buffer shorter than :data:`_RADIX_MIN` (but long enough for the
    radix sort to pay: the measured crossover is about 8000) is filled up with the dtype's largest value so that
    PyTorch's radix sort applies, and the filling is cut off again. The keys are distinct, so every sort gives the
    same result."""
    m = len(a)
    host = a.device.type == "cpu"
    if host and _numpy_sorts_faster():                            # NumPy builds them too: cheaper calls
        an, bn = a.numpy(), b.numpy()
        key = np.empty(2 * m, dtype=an.dtype)
        np.left_shift(an, shift, out=key[:m])
        key[:m] |= bn
        np.left_shift(bn, shift, out=key[m:])
        key[m:] |= an
        key.sort()
        return torch.from_numpy(key)
    size = _RADIX_MIN if host and 4000 < m < _RADIX_MIN // 2 else 2 * m
    key = a.new_empty(size)
    torch.bitwise_left_shift(a, shift, out=key[:m]).bitwise_or_(b)
    torch.bitwise_left_shift(b, shift, out=key[m:2 * m]).bitwise_or_(a)
    key[2 * m:].fill_(torch.iinfo(key.dtype).max)
    return torch.sort(key).values[:2 * m]


def _compact(mask: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``values[mask]``: the kept entries' places by one cumulative sum, then one ``scatter_`` (the rejected entries
    all land on a slot that is cut off). Unlike ``nonzero``, no branch per entry, which a random mask makes
    expensive on the host."""
    place = torch.cumsum(mask, 0)
    out = values.new_empty(int(place[-1]) + 1)
    return out.scatter_(0, place.mul_(mask), values)[1:]


#: The keys ``t << s | s`` are sorted as int32 while they stay below this, else as int64.
_INT32_KEYS = 2**31


def _key_layout(n: int) -> tuple[int, torch.dtype]:
    """For ``n`` atoms: the shift ``s`` of the keys ``t << s | s`` (the bits of the largest index), and their
    dtype."""
    shift = max(1, (n - 1).bit_length())
    return shift, torch.int32 if n << shift <= _INT32_KEYS else torch.long


def _edges_from_keys(key: torch.Tensor, shift: int) -> torch.Tensor:
    """``edge_index`` (2, E) from the sorted keys ``t << shift | s``: row 0 the sources, row 1 the targets (by
    NumPy on the host, where it is faster)."""
    if key.device.type == "cpu":
        k, out = key.numpy(), np.empty((2, len(key)), dtype=np.int64)
        np.bitwise_and(k, (1 << shift) - 1, out=out[0])
        np.right_shift(k, shift, out=out[1])
        return torch.from_numpy(out)
    out = key.new_empty((2, len(key)), dtype=torch.long)
    torch.bitwise_and(key, (1 << shift) - 1, out=out[0])
    torch.bitwise_right_shift(key, shift, out=out[1])
    return out


#: The cell list's column side across y and z is :math:`r_c / 3`; along x its cells are this many times shorter.
CELLS_PER_CUTOFF, X_CELLS_PER_COLUMN = 3, 3


def _cell_pairs(pos: torch.Tensor, cutoff: float, batch: torch.Tensor | None, num_graphs: int) -> torch.Tensor:
    """Cell list: (2, E) sorted by target then source.

    The atoms of each system are binned into columns of side :math:`h \\approx r_c / 3` across y and z, and into
    cells of side :math:`h / 3` along each column, and sorted by cell. Each atom looks only at the columns of the
    upper half of its neighbourhood (the mirrored pairs come from the other atom) and at the rest of its own
    column, and in each column only at the x-cells that some point of its own cell could reach (see
    :func:`_half_stencil`): every such set is one contiguous run of the sorted atoms, found from the atom's cell
    alone, so the candidates are generated without a search (:func:`_runs`). :func:`_sq_dist` decides, and one
    integer sort of ``target << s | source`` over both directions gives the order."""
    p = pos.detach()
    dev = p.device
    n = len(p)
    reach = cutoff * (1 + 64 * torch.finfo(p.dtype).eps)        # beyond any pair the exact test can accept
    q = p.double()
    if num_graphs == 1:
        lo, hi = torch.aminmax(q, dim=0)
        ext = hi.sub_(lo).tolist()
        rel = q - lo
    else:
        lo = torch.full((num_graphs, 3), float("inf"), dtype=q.dtype, device=dev)
        rel = q - lo.scatter_reduce(0, batch[:, None].expand(-1, 3), q, "amin")[batch]
        ext = rel.amax(0).tolist()
    hy, kx = reach / CELLS_PER_CUTOFF, X_CELLS_PER_COLUMN
    limit = 32 * n + 4096                                         # cells; coarser ones if the grid is larger
    while True:
        k = math.ceil(reach / hy)
        k += k * hy < reach                                       # k columns cover the reach
        px = math.ceil(reach * kx / hy) + 2                       # empty x-cells at both ends: no clamping
        # one more column or layer than the extent needs: an index rounded up past the extent stays in the grid
        nx, ny, nz = int(ext[0] * kx / hy) + 1 + 2 * px, int(ext[1] / hy) + 2 + 2 * k, int(ext[2] / hy) + 2 + 2 * k
        if num_graphs * nx * ny * nz <= limit:
            break
        hy *= 1.01 * (num_graphs * nx * ny * nz / limit) ** (1 / 3)
    cell = rel.mul_(rel.new_tensor([kx / hy, 1 / hy, 1 / hy])).long()     # >= 0, so the cast floors
    cell = cell.mul_(torch.tensor([1, nx, nx * ny], device=dev)).sum(1).add_(px + k * nx * (ny + 1))
    if num_graphs > 1:
        cell += batch * (nx * ny * nz)
    cell, order = torch.sort(cell)
    cstart = torch.zeros(num_graphs * nx * ny * nz + 1, dtype=torch.long, device=dev)
    torch.cumsum(torch.bincount(cell, minlength=len(cstart) - 1), 0, out=cstart[1:])
    window = _half_stencil(k, reach / hy, nx, ny, dev)
    s0, s1 = cstart.index_select(0, window.add(cell).view(-1)).view(2, -1)   # (M N,) each: run m N + a
    s0[:n] = torch.arange(1, n + 1, device=dev)                   # own column: only the atoms after this one
    lens = s1.sub_(s0)
    total = int(lens.sum())
    if total == 0:
        return torch.zeros(2, 0, dtype=torch.long, device=dev)
    v = _runs(s0, lens, total, n)                                 # candidates a << 32 | b, sorted indices
    close = _test_packed(_gatherable(p.index_select(0, order)), v, cutoff * cutoff)
    v = _compact(close, v)
    if len(v) == 0:
        return torch.zeros(2, 0, dtype=torch.long, device=dev)
    shift, key_dtype = _key_layout(n)
    order = order.to(key_dtype)
    key = _both_ways_sorted(order.index_select(0, v >> 32), order.index_select(0, v & 0xFFFFFFFF), shift)
    return _edges_from_keys(key, shift)


#: The sweep holds at most this many candidate pairs at once (blocks of rows of its window that stay in the cache).
_SWEEP_BLOCK = 2**17


def _sweep_pairs(pos: torch.Tensor, cutoff: float, batch: torch.Tensor | None, num_graphs: int, chunk: int
                 ) -> torch.Tensor:
    """Sweep along one axis (host tensors): (2, E) sorted by target then source.

    The atoms are sorted along the axis of largest extent, :math:`u_{(1)} \\le \\dots \\le u_{(N)}` (the systems of a
    batch one after the other, at least :math:`2 r_c` apart). A pair can be closer than :math:`r_c` only if
    :math:`u_{(j)} - u_{(i)} < r_c`, so atom :math:`(i)` needs testing only against the next :math:`w` atoms, :math:`w`
    the widest such run over all atoms (found with one ``searchsorted``). Those :math:`N w` candidates form one
    sliding-window view of the sorted coordinates (no gather); the squared distances are computed on it block by
    block (the three squares summed left to right, as :func:`_sq_dist`), NumPy finds the ones below :math:`r_c^2`,
    and one integer sort of ``target << s | source`` over both directions (:func:`_both_ways_sorted`) gives the
    order. :math:`O(N w)` work: for a uniform system of side :math:`L`, :math:`w \\approx N r_c / L`."""
    p = pos.detach()
    n = len(p)
    rel = p.to(torch.float64, copy=True).numpy()            # a copy even of float64 positions
    rel -= rel.min(0)
    reach = cutoff * (1 + max(1e-4, 64 * torch.finfo(p.dtype).eps))   # beyond any pair the exact test can accept
    extent = rel.max(0)
    axis = int(extent.argmax())
    u = rel[:, axis]
    if num_graphs > 1:                                      # system g moved by g (extent + 2 reach): apart
        b = batch.numpy()
        u += b * (float(extent[axis]) + 2 * reach)
    order = np.argsort(u)
    us = u[order]
    w = int((np.searchsorted(us, us + reach) - np.arange(1, n + 1)).max())
    if w <= 0:
        return torch.zeros(2, 0, dtype=torch.long)
    c = p.new_empty((3, n + w))                             # sorted coordinates, w infinite ones after them
    torch.index_select(p.T, 1, torch.from_numpy(order), out=c[:, :n])
    c[:, n:] = math.inf
    rows = max(1, min(chunk, _SWEEP_BLOCK) // w)
    flats = []
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        d2 = None
        for k in range(3):                                  # d2[r, m] = |x_(r0 + r + 1 + m) - x_(r0 + r)|^2
            d = c[k, r0 + 1:r1 + w].unfold(0, w, 1) - c[k, r0:r1, None]
            d2 = d.mul_(d) if d2 is None else d2.add_(d.mul_(d))
        f = _flat_close(d2, cutoff * cutoff)
        if r0:
            f += r0 * w
        flats.append(f)
    f = flats[0] if len(flats) == 1 else np.concatenate(flats)
    i = f // w                                              # sorted positions: i, and j = i + 1 + (f mod w)
    j = f - i * w
    j += i + 1
    if num_graphs > 1:                                      # a window may run into the next system
        bs = b[order]
        same = bs[i] == bs[j]
        i, j = i[same], j[same]
    shift, key_dtype = _key_layout(n)
    o = torch.from_numpy(order).to(key_dtype)
    key = _both_ways_sorted(o.index_select(0, torch.from_numpy(i)), o.index_select(0, torch.from_numpy(j)), shift)
    return _edges_from_keys(key, shift)


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
        empty = ~np.isfinite(lo)                             # a system with no atoms takes no room
        lo[empty], hi[empty] = 0.0, -2 * cutoff
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
        keep = (_sq_dist(p, ti, tj) < cutoff * cutoff).numpy()
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
        method: ``"dense"``, ``"sweep"`` (host tensors), ``"cells"``, ``"kdtree"`` (host tensors) or ``"auto"``
            (see the module's description); all give the same edges.
        chunk: the dense method's and the sweep's largest number of candidate pairs held at once.

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
    if method in ("kdtree", "sweep") and pos.device.type != "cpu":
        raise ValueError(f"method={method!r} needs host tensors, got pos on {pos.device}: use 'cells' or 'dense'")
    if batch is None:                                  # one system: the methods need no batch vector
        num_graphs, largest = 1, len(pos)
    else:
        num_graphs = int(batch[-1]) + 1
        largest = int(torch.bincount(batch).max()) if method == "auto" else 0
    if method == "auto":
        if pos.device.type != "cpu":
            method = "cells" if largest > AUTO_CELLS_ABOVE_GPU else "dense"
        elif num_graphs == 1 and largest <= AUTO_DENSE_UP_TO:
            method = "dense"
        else:
            method = "cells" if largest > AUTO_SWEEP_UP_TO else "sweep"
    cutoff = float(cutoff)
    with torch.no_grad():
        if method == "dense":
            edge_index = _dense_pairs(pos, cutoff, batch, num_graphs, chunk)
        elif method == "sweep":
            edge_index = _sweep_pairs(pos, cutoff, batch, num_graphs, chunk)
        elif method == "cells":
            edge_index = _cell_pairs(pos, cutoff, batch, num_graphs)
        else:
            edge_index = _kdtree_pairs(pos, cutoff, torch.zeros(len(pos), dtype=torch.long) if batch is None
                                       else batch)
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
