"""Radius graph: the k-d tree method gives exactly the edges (and order) of the dense and cell-list methods."""

import pytest
import torch

from gdl.nn import neighbours
from gdl.nn.neighbours import radius_graph


def _all_methods(pos, cutoff, batch=None):
    before = pos.clone()
    out = {m: radius_graph(pos, cutoff, batch, method=m) for m in ("dense", "sweep", "cells", "kdtree")}
    assert torch.equal(pos, before)                               # no method moves the atoms it is given
    for m in ("sweep", "cells", "kdtree"):
        assert torch.equal(out[m], out["dense"]), m
    return out["dense"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sizes", [[1], [2], [40], [7, 1, 20, 12, 3], [300]])
def test_kdtree_equals_dense_and_cells(dtype, sizes):
    g = torch.Generator().manual_seed(len(sizes))
    n = sum(sizes)
    pos = (torch.randn(n, 3, generator=g, dtype=torch.float64) * 3).to(dtype)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    ei = _all_methods(pos, 2.5, batch)
    if n > 2:
        assert ei.shape[1] > 0
    assert bool((batch[ei[0]] == batch[ei[1]]).all())            # never across systems, though they overlap
    key = ei[1] * n + ei[0]
    assert bool((key[1:] > key[:-1]).all())                       # sorted by target, then source


def test_pairs_exactly_at_the_cutoff_are_left_out_by_every_method():
    grid = torch.stack(torch.meshgrid(*[torch.arange(4.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
    ei = _all_methods(grid, 1.0)                                  # spacing 1 = cutoff: no edge (strict <)
    assert ei.shape[1] == 0
    assert _all_methods(grid, 1.0 + 1e-6).shape[1] == 2 * 3 * 4 * 4 * 3   # just above: the grid's bonds


def test_float32_distances_at_the_cutoff_decide_alike():
    g = torch.Generator().manual_seed(3)
    pos = torch.rand(500, 3, generator=g) * 10
    d = (pos[1:] - pos[0]).pow(2).sum(-1).sqrt()
    for cutoff in d[:20].tolist():                                # cutoffs equal to pair distances
        _all_methods(pos, cutoff)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_many_pairs_exactly_at_the_cutoff(dtype):
    """Cutoffs equal (after rounding) to pair distances: all methods draw the line at the same pairs."""
    g = torch.Generator().manual_seed(4)
    pos = (torch.rand(300, 3, generator=g, dtype=torch.float64) * 12).to(dtype)
    d2 = (pos[:, None] - pos[None]).pow(2).sum(-1)
    for a, b in torch.randint(0, 300, (15, 2), generator=g).tolist():
        if a != b:
            _all_methods(pos, float(d2[a, b]) ** 0.5)


def test_auto_picks_by_size_and_the_host_only_methods_want_host_tensors(monkeypatch):
    dense, sweep = neighbours.AUTO_DENSE_UP_TO, neighbours.AUTO_SWEEP_UP_TO
    calls = []
    for name in ("_dense_pairs", "_sweep_pairs", "_cell_pairs", "_kdtree_pairs"):
        real = getattr(neighbours, name)
        monkeypatch.setattr(neighbours, name, lambda *a, real=real, name=name, **k: calls.append(name) or real(*a, **k))
    for n in (dense, dense + 1, sweep, sweep + 1):                            # one system
        radius_graph(torch.randn(n, 3), 1.0)
    for n in (9, sweep + 1):                                                  # batches of three systems of n atoms
        radius_graph(torch.randn(3 * n, 3), 1.0, torch.arange(3).repeat_interleave(n))
    assert calls == ["_dense_pairs", "_sweep_pairs", "_sweep_pairs", "_cell_pairs",    # auto never uses SciPy
                     "_sweep_pairs", "_cell_pairs"]
    small = torch.randn(10, 3)
    with pytest.raises(ValueError, match="method must be one of"):
        radius_graph(small, 1.0, method="kd-tree")
    if torch.cuda.is_available():
        for method in ("kdtree", "sweep"):
            with pytest.raises(ValueError, match=f"method='{method}' needs host tensors"):
                radius_graph(small.to("cuda"), 1.0, method=method)


def _reference(pos, cutoff, batch):
    """Every pair by brute force, in float64 bookkeeping but with the library's test in pos's dtype."""
    n = len(pos)
    d = pos[None, :, :] - pos[:, None, :]                          # d[i, j] = x_j - x_i
    d = d * d
    d2 = (d[..., 0] + d[..., 1]) + d[..., 2]
    mask = (d2 < cutoff * cutoff) & (batch[:, None] == batch[None]) & ~torch.eye(n, dtype=torch.bool)
    i, j = mask.nonzero(as_tuple=True)                             # row-major: target, then source
    return torch.stack([j, i])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_every_method_equals_brute_force_on_batches_of_different_extents(dtype):
    g = torch.Generator().manual_seed(7)
    sizes = [50, 1, 0, 200, 3, 120]                                 # an empty system in the middle
    parts = [torch.rand(s, 3, generator=g, dtype=torch.float64) * (1 + 20 * (s > 100)) + 1000 * i
             for i, s in enumerate(sizes)]                          # far from the origin, dense and sparse
    pos = torch.cat(parts).to(dtype)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    ref = _reference(pos, 2.0, batch)
    assert ref.shape[1] > 1000
    for method in ("dense", "sweep", "cells", "kdtree", "auto"):
        if method == "kdtree" and dtype == torch.float16:
            continue
        assert torch.equal(radius_graph(pos, 2.0, batch, method=method), ref), method
    assert torch.equal(radius_graph(pos, 2.0, batch, method="dense", chunk=100), ref)


def test_cells_coarsen_a_huge_sparse_grid_and_stay_exact():
    g = torch.Generator().manual_seed(8)
    pos = torch.cat([torch.rand(300, 3, generator=g, dtype=torch.float64) * 6,
                     torch.rand(300, 3, generator=g, dtype=torch.float64) * 6 + 1e4])   # two far clusters
    ref = _reference(pos, 1.5, torch.zeros(600, dtype=torch.long))
    for method in ("cells", "dense", "sweep"):
        assert torch.equal(radius_graph(pos, 1.5, method=method), ref), method


def test_cells_on_a_lattice_with_pairs_at_and_next_to_the_cutoff():
    grid = torch.stack(torch.meshgrid(*[torch.arange(12.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
    for cutoff in (1.0, 2.0, 2.0 ** 0.5, 3.0 ** 0.5, 2.0000001, 1.9999999):
        ref = _reference(grid, cutoff, torch.zeros(len(grid), dtype=torch.long))
        assert torch.equal(radius_graph(grid, cutoff, method="cells"), ref), cutoff


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dense_blocks_of_rows_equal_brute_force(dtype):
    g = torch.Generator().manual_seed(9)
    pos = (torch.rand(700, 3, generator=g, dtype=torch.float64) * 19).to(dtype)   # 700 atoms: several row blocks
    ref = _reference(pos, 5.0, torch.zeros(700, dtype=torch.long))
    assert 700 * 700 > neighbours._DIRECT_BLOCK
    for chunk in (2**22, 1000):
        assert torch.equal(radius_graph(pos, 5.0, method="dense", chunk=chunk), ref)
    assert torch.equal(radius_graph(pos, 5.0, method="cells"), ref)


def test_dense_pairs_found_by_pytorch_as_on_a_gpu_equal_numpys(monkeypatch):
    """Off the host the dense method finds its pairs with PyTorch (:func:`_torch_flat_close`) and assembles them in
    tensors on pos's device; run that path here, in several blocks of rows and in one."""
    g = torch.Generator().manual_seed(16)
    pos = torch.rand(700, 3, generator=g, dtype=torch.float64) * 19
    ref = _reference(pos, 5.0, torch.zeros(700, dtype=torch.long))
    monkeypatch.setattr(neighbours, "_flat_close", neighbours._torch_flat_close)
    for chunk in (2**22, 1000):
        assert torch.equal(radius_graph(pos, 5.0, method="dense", chunk=chunk), ref), chunk
    assert torch.equal(radius_graph(pos[:300], 5.0, method="dense"), _reference(pos[:300], 5.0, torch.zeros(300,
                       dtype=torch.long)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_sweep_in_blocks_of_rows_and_with_int64_keys_equals_brute_force(monkeypatch, dtype):
    g = torch.Generator().manual_seed(14)
    pos = (torch.rand(500, 3, generator=g, dtype=torch.float64) * torch.tensor([4.0, 30.0, 9.0])).to(dtype)
    ref = _reference(pos, 2.5, torch.zeros(500, dtype=torch.long))
    assert ref.shape[1] > 5000
    for chunk in (2**22, 1000, 1):                                  # one block, many blocks, one row at a time
        assert torch.equal(radius_graph(pos, 2.5, method="sweep", chunk=chunk), ref), chunk
    monkeypatch.setattr(neighbours, "_INT32_KEYS", 0)              # keys sorted as int64
    assert torch.equal(radius_graph(pos, 2.5, method="sweep"), ref)


def test_sweep_where_every_atom_is_in_every_window():
    """Atoms spread across y and z but all within the cutoff along the sweep axis (y, the longest): the window
    holds every later atom, as the dense method's every pair."""
    g = torch.Generator().manual_seed(15)
    pos = torch.rand(300, 3, generator=g, dtype=torch.float64) * torch.tensor([0.4, 0.5, 0.1])
    ref = _reference(pos, 0.6, torch.zeros(300, dtype=torch.long))
    assert torch.equal(radius_graph(pos, 0.6, method="sweep"), ref)
    line = torch.zeros(6, 3)
    line[:, 0] = torch.arange(6.0)                                 # spacing exactly the cutoff: no edge
    assert radius_graph(line, 1.0, method="sweep").shape[1] == 0
    bonds = radius_graph(line, 1.0 + 1e-6, method="sweep")
    assert bonds.shape[1] == 10 and torch.equal(bonds, radius_graph(line, 1.0 + 1e-6, method="dense"))


def test_runs_concatenate_ranges_tagged_by_their_run_even_around_empty_runs():
    starts = torch.tensor([5, 2, 9, 0, 4, 7, 1, 3])
    lens = torch.tensor([0, 3, 0, 2, 1, 0, 4, 0])                  # empty runs first, inside and last
    v = neighbours._runs(starts, lens, int(lens.sum()), 4)         # runs tagged 0 1 2 3 0 1 2 3
    expected = [(r % 4) << 32 | e for r, (s, n) in enumerate(zip(starts.tolist(), lens.tolist()))
                for e in range(s, s + n)]
    assert v.tolist() == expected


def test_compact_keeps_the_entries_of_the_mask_in_order():
    g = torch.Generator().manual_seed(10)
    values = torch.randint(0, 2**40, (5000,), generator=g)
    for p in (0.0, 0.3, 1.0):
        mask = torch.rand(5000, generator=g) < p
        assert torch.equal(neighbours._compact(mask, values), values[mask])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cells_in_small_slices_and_with_int64_keys_equal_brute_force(monkeypatch, dtype):
    g = torch.Generator().manual_seed(11)
    pos = (torch.rand(400, 3, generator=g, dtype=torch.float64) * 16).to(dtype)
    ref = _reference(pos, 4.0, torch.zeros(400, dtype=torch.long))
    monkeypatch.setattr(neighbours, "_TEST_SLICE", 1000)           # candidates tested in many slices
    assert torch.equal(radius_graph(pos, 4.0, method="cells"), ref)
    monkeypatch.setattr(neighbours, "_INT32_KEYS", 0)              # keys sorted as int64
    assert torch.equal(radius_graph(pos, 4.0, method="cells"), ref)


def test_cells_equal_the_kdtree_on_a_large_system():
    g = torch.Generator().manual_seed(12)
    pos = torch.rand(3000, 3, generator=g) * 31                      # liquid density: > 2^15 candidates
    ei = radius_graph(pos, 5.0, method="cells")
    assert ei.shape[1] > 100_000
    assert torch.equal(ei, radius_graph(pos, 5.0, method="kdtree"))
    assert torch.equal(ei, radius_graph(pos, 5.0, method="sweep"))


def test_cells_when_the_extent_rounds_up_to_one_more_column():
    """extent / h just below 21 (h = r_c (1 + 64 eps) / 3), but extent * (1 / h) rounds to 21: the farthest atoms
    land one column past the extent's count, and their windows must still stay inside the grid."""
    cutoff, extent = 2.4458523123558242, 17.12096618649101
    h = cutoff * (1 + 64 * torch.finfo(torch.float64).eps) / 3
    assert int(extent / h) == 20 and int(extent * (1 / h)) == 21
    g = torch.Generator().manual_seed(13)
    pos = torch.rand(2500, 3, generator=g, dtype=torch.float64) * extent   # dense enough for the fine grid
    pos[0], pos[1] = 0.0, extent
    assert torch.equal(radius_graph(pos, cutoff, method="cells"), radius_graph(pos, cutoff, method="dense"))


@pytest.mark.parametrize("numpy_faster", [True, False])
def test_cells_sort_their_keys_with_numpy_or_torch_alike(monkeypatch, numpy_faster):
    """The host sorts the keys with NumPy where that measured faster, else with PyTorch's (padded) radix sort; the
    keys are distinct, so both give the same edges, with int32 and with int64 keys, padded or not."""
    g = torch.Generator().manual_seed(14)
    monkeypatch.setattr(neighbours, "_SORT_CHOICE", {"numpy_faster": numpy_faster})
    for n, side in ((400, 16.0), (1200, 23.0)):                      # below and above the radix sort's minimum
        pos = torch.rand(n, 3, generator=g, dtype=torch.float64) * side
        ref = _reference(pos, 4.0, torch.zeros(n, dtype=torch.long))
        assert torch.equal(radius_graph(pos, 4.0, method="cells"), ref), (n, numpy_faster)
        monkeypatch.setattr(neighbours, "_INT32_KEYS", 0)
        assert torch.equal(radius_graph(pos, 4.0, method="cells"), ref), (n, numpy_faster, "int64")
        monkeypatch.setattr(neighbours, "_INT32_KEYS", 2**31)
    assert isinstance(neighbours._numpy_sorts_faster(), bool)
