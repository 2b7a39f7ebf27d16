"""Scaling of the equivariant-basis solver: representation size M vs wall-clock time, per method.

Run: ``.venv/bin/python benchmarks/bench_weight_sharing.py`` (prints a Markdown table; about a minute on 2 cores).
Each row is the best of 3 solves from a cold cache (``_solve.cache_clear()``), timing only the solve, not the
construction of the representations. The ratios in the last column are measured in the same run.

Families (M = the size of the larger representation):

- ``pixels``: invariant filters on a k x k grid, Trivial(D4) -> the D4 pixel permutation representation (orbits);
- ``regular``: Regular(C_n) -> Regular(C_n), the circulant (group-convolution) weights (orbits; D = n);
- ``rotated``: a dense orthogonal change of basis Q^T Regular(D_n) Q -> Standard + Trivial (block);
- ``dense``: the plain SVD on the same problems while it fits (M_out * M_in <= 2500).
"""

from __future__ import annotations

import time

import torch

from gdl.groups import CyclicGroup, DefiningRep, DihedralGroup, MatrixRep, RegularRep, TrivialRep
from gdl.weight_sharing import constraint_residual, equivariant_basis, pixel_filter_rep
from gdl.weight_sharing._solver import _solve


def _rotated_regular(n: int) -> MatrixRep:
    group, reg = DihedralGroup(n), RegularRep(DihedralGroup(n))
    q = torch.linalg.qr(torch.randn(2 * n, 2 * n, dtype=torch.float64, generator=torch.Generator().manual_seed(n)))[0]
    mats = {g.value: q.T @ reg.matrix(g) @ q for g in group.elements()}     # precomputed: time the solver only
    return MatrixRep(group, lambda g: mats[g.value], name=f"Q^T Regular(D{n}) Q")


def _time(rep_in, rep_out, method, repeat: int = 3):
    """Best of ``repeat`` cold solves (the machine is shared: the minimum is the least disturbed run)."""
    times = []
    for _ in range(repeat):
        _solve.cache_clear()
        t0 = time.perf_counter()
        basis = equivariant_basis(rep_in, rep_out, method)
        times.append(time.perf_counter() - t0)
    return min(times), basis.shape[0], constraint_residual(basis, rep_in, rep_out)


def main() -> None:
    torch.set_num_threads(2)
    rows = []
    for k in (5, 11, 16, 22):                                            # k^2 = 25 .. 484
        rep = pixel_filter_rep(DihedralGroup(4), k)
        for method in ("orbits", "block") + (("dense",) if k <= 11 else ()):
            rows.append(("pixels", f"Trivial(D4) -> {k}x{k} pixels", rep.dim, method, *_time(TrivialRep(rep.group),
                                                                                               rep, method)))
    for n in (16, 32, 64, 128, 256):
        rep = RegularRep(CyclicGroup(n))
        for method in ("orbits", "block") + (("dense",) if n * n <= 2500 else ()):
            rows.append(("regular", f"Regular(C{n}) -> Regular(C{n})", n, method, *_time(rep, rep, method)))
    for n in (16, 32, 64, 128, 256):
        rep = _rotated_regular(n)
        out = DefiningRep(rep.group) + TrivialRep(rep.group)
        for method in ("block",) + (("dense",) if n <= 64 else ()):
            rows.append(("rotated", f"Q^T Regular(D{n}) Q -> Std + Triv", 2 * n, method, *_time(rep, out, method)))
    print("| family | problem | M | method | D | time (s) | residual |")
    print("|---|---|---:|---|---:|---:|---:|")
    for fam, problem, m, method, dt, d, res in rows:
        print(f"| {fam} | {problem} | {m} | {method} | {d} | {dt:.3f} | {res:.1e} |")
    by = {(r[0], r[2], r[3]): r[4] for r in rows}
    print()
    for fam, method in (("pixels", "orbits"), ("regular", "orbits"), ("regular", "block"), ("rotated", "block")):
        pts = sorted((m, t) for (f, m, me), t in by.items() if f == fam and me == method and m >= 64)
        lm = torch.log(torch.tensor([float(m) for m, _ in pts]))
        lt = torch.log(torch.tensor([t for _, t in pts]))
        slope = float(((lm - lm.mean()) * (lt - lt.mean())).sum() / ((lm - lm.mean()) ** 2).sum())
        print(f"{fam}/{method}: time ~ M^{slope:.1f} for M = {pts[0][0]}..{pts[-1][0]}; "
              f"largest M = {pts[-1][0]}: {pts[-1][1]:.2f} s")


if __name__ == "__main__":
    main()
