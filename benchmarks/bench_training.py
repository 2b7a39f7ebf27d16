"""The training loop's own cost: one epoch of ``gdl.training.train`` against a bare loop over the same batches.

    python benchmarks/bench_training.py --device cpu
    python benchmarks/bench_training.py --device cuda --scale full

The bare loop is the limit for a model: its batches are collated before the clock starts, and each step is only
``loss_fn(model(batch), batch)``, ``zero_grad``, ``backward`` and ``step`` with a fresh ``gdl.training.adam`` per
epoch (as ``train`` makes one per call). Each model is timed several ways, round-robin (one epoch of each per round, so
a change of machine load hits all of them alike; the median over ``--repeats`` rounds after ``--warmup``):

- ``bare``: the loop above;
- ``train, GraphDataset``: ``train(model, GraphDataset(graphs), ...)`` for one epoch (the data set materialised once,
  batches gathered by index on the device);
- ``train, list``: ``train(model, graphs, ...)``, the call the chapters make; it materialises the data set at the
  start of the call, which one epoch does not amortise (a run of many epochs does);
- ``train, collate``: ``train(..., preload=False)``, every batch collated from the list in Python (the old path);
- ``train, GraphDataset, fused Adam``: the first with ``fused=True`` (one optimiser kernel; still divided by the
  plain-Adam bare loop, so it shows what fusing saves);
- with ``--before REV``, also ``train`` as it was at git revision ``REV`` (loaded from ``git show``), for a
  before/after ratio in the same run.

The first three use PyTorch's default Adam, like the bare loop. The workloads are the chapters' small-scale
settings: chapter 9's GNN and EGNN on 200 charged five-body systems (batch 25, hidden 32), chapter 8's SchNet
with forces on 40 rattled ethanol molecules (one batch per epoch) and on 200 in batches of 25, and chapter 8's
small DimeNet++ with forces on the 40. ``--bare-only`` times the bare loop alone: the model's own cost, to compare
two versions of the models (run it in each checkout; ``benchmarks/count_ops.py`` counts their operations).
``--scale full`` uses chapter 9's full sizes (3000 systems, batch 100, hidden 64). Goal: ``train, GraphDataset`` /
``bare`` at most 1.2. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import copy
import statistics
from pathlib import Path

import torch
from _common import add_common_arguments, ethanol_batch, set_up, timed

from gdl.data import GraphDataset, collate, nbody_splits, unbatch
from gdl.nn import EGNN, CoordinateGNN, DimeNetPlusPlus, SchNet
from gdl.nn.atomistic import EnergyForces, energy_force_loss
from gdl.training import adam, train

GOAL = 1.2


def _mse(prediction, batch):
    return ((prediction - batch.target) ** 2).mean()


def workloads(scale: str, device: torch.device) -> dict:
    """``name -> (build, graphs, loss_fn, batch_size, lr)`` at the chapters' settings."""
    n, batch, hidden = (200, 25, 32) if scale == "small" else (3000, 100, 64)
    graphs = nbody_splits(n, 2, 2, seed=0)[0].graphs()
    out = {
        f"ch. 9 GNN, N-body ({n} systems, batch {batch})":
            (lambda: CoordinateGNN(1, hidden, 4, edge_features=1, node_features=("q",)), graphs, _mse, batch, 3e-3),
        f"ch. 9 EGNN, N-body ({n} systems, batch {batch})":
            (lambda: EGNN(1, hidden, 4, edge_features=1, velocity=True, node_features=("q",)), graphs, _mse,
             batch, 3e-3),
    }
    molecules = unbatch(ethanol_batch(200, torch.device("cpu")))

    def schnet():
        return EnergyForces(SchNet(num_types=10, hidden_channels=32, num_filters=32, num_interactions=3,
                                   num_gaussians=25, cutoff=2.0))

    out["ch. 8 SchNet + forces, ethanol (40 frames, batch 40)"] = (schnet, molecules[:40], energy_force_loss(1.0),
                                                                   40, 5e-3)
    out["ch. 8 SchNet + forces, ethanol (200 frames, batch 25)"] = (schnet, molecules, energy_force_loss(1.0),
                                                                    25, 5e-3)

    def dimenet():                                   # chapter 8's small-scale size, 2 Angstrom cutoff
        return EnergyForces(DimeNetPlusPlus(num_types=10, cutoff=2.0, hidden_channels=16, num_blocks=1,
                                            int_emb_size=8, basis_emb_size=4, out_emb_channels=16,
                                            num_spherical=4, num_radial=4))

    out["ch. 8 DimeNet++ + forces, ethanol (40 frames, batch 40)"] = (dimenet, molecules[:40],
                                                                      energy_force_loss(1.0), 40, 1e-2)
    return out


def bare_epoch(model, batches, loss_fn, lr, fused=False) -> None:
    """The limit: pre-collated batches, the same optimiser, nothing else."""
    opt = adam(model.parameters(), lr=lr, fused=fused)    # the optimiser train uses
    model.train()
    for b in batches:
        loss = loss_fn(model(b), b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def train_at(rev: str):
    """``gdl.training.train`` as it was at git revision ``rev`` (its module text executed in a fresh namespace)."""
    import subprocess
    import sys
    import types

    text = subprocess.run(["git", "show", f"{rev}:gdl/training.py"], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parent.parent).stdout
    module = types.ModuleType(f"gdl_training_{rev}")
    sys.modules[module.__name__] = module              # dataclasses look their module up there
    exec(compile(text, f"gdl/training.py@{rev}", "exec"), module.__dict__)
    return module.train


def time_workload(build, graphs, loss_fn, bs, lr, device, repeats, warmup, before=None, only=None
                  ) -> dict[str, float]:
    """Median seconds per epoch of the variants (those in ``only``, if given), round-robin."""
    torch.manual_seed(0)
    model = build().to(device)
    data = GraphDataset(graphs, device=device)
    order = torch.randperm(len(graphs), generator=torch.Generator().manual_seed(0))
    batches = [collate([graphs[i] for i in order[s:s + bs].tolist()]).to(device) for s in range(0, len(graphs), bs)]
    common = dict(epochs=1, batch_size=bs, lr=lr, loss_fn=loss_fn, device=device, progress=False)
    variants = {
        "bare": lambda m: bare_epoch(m, batches, loss_fn, lr),
        "fused": lambda m: train(m, data, None, fused=True, **common),
        "dataset": lambda m: train(m, data, None, **common),
        "list": lambda m: train(m, graphs, None, **common),
        "collate": lambda m: train(m, graphs, None, preload=False, **common),
    }
    if before is not None:
        variants["before"] = lambda m: before(m, graphs, None, **common)
    if only:
        variants = {k: v for k, v in variants.items() if k in only}
    models = {k: copy.deepcopy(model) for k in variants}
    times = {k: [] for k in variants}
    for i in range(warmup + repeats):
        for k, run in variants.items():
            t = timed(lambda k=k, run=run: run(models[k]), device)
            if i >= warmup:
                times[k].append(t)
    return {k: statistics.median(v) for k, v in times.items()}


def host_batching(repeats: int) -> dict[str, float]:
    """Seconds of batching alone (no model) for one full-scale chapter-9 epoch: 30 training batches of 100
    systems in a shuffled order and 8 validation batches of 256, by per-batch ``collate`` and by ``GraphDataset``."""
    train_graphs, val_graphs = (s.graphs() for s in nbody_splits(3000, 2000, 2, seed=0)[:2])
    stores = GraphDataset(train_graphs), GraphDataset(val_graphs)

    def old():
        order = torch.randperm(3000)
        for s in range(0, 3000, 100):
            collate([train_graphs[i] for i in order[s:s + 100].tolist()])
        for s in range(0, 2000, 256):
            collate(val_graphs[s:s + 256])

    def new():
        for _ in stores[0].batches(torch.randperm(3000), 100):
            pass
        for _ in stores[1].batches(None, 256):
            pass

    times = {"collate": [], "GraphDataset": []}
    for _ in range(repeats):
        for name, fn in (("collate", old), ("GraphDataset", new)):
            times[name].append(timed(fn, torch.device("cpu")))
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, repeats=15, warmup=2)
    parser.add_argument("--scale", default="small", choices=["small", "full"])
    parser.add_argument("--only", default="", help="run the workloads whose name contains this text")
    parser.add_argument("--before", default=None, help="also time train as it was at this git revision")
    parser.add_argument("--bare-only", action="store_true",
                        help="time the bare loop alone (the model's own cost, e.g. before/after a model change)")
    args = parser.parse_args()
    device = set_up(args)
    before = train_at(args.before) if args.before else None
    print(f"median of {args.repeats} epochs after {args.warmup} warm-up epochs, the variants round-robin\n")
    if args.bare_only:
        print("| workload | bare loop (ms/epoch) |\n|---|---:|")
        for name, (build, graphs, loss_fn, bs, lr) in workloads(args.scale, device).items():
            if args.only in name:
                med = time_workload(build, graphs, loss_fn, bs, lr, device, args.repeats, args.warmup,
                                    only=("bare",))
                print(f"| {name} | {1e3 * med['bare']:.1f} |")
        return
    extra = f" train at {args.before} |" if before else ""
    print("| workload | bare loop (ms/epoch) | train, GraphDataset | train, list | train, collate (old path) | "
          "train, GraphDataset, fused Adam |" + extra)
    print("|---|---:|---:|---:|---:|---:|" + ("---:|" if before else ""))
    verdicts = []
    for name, (build, graphs, loss_fn, bs, lr) in workloads(args.scale, device).items():
        if args.only not in name:
            continue
        med = time_workload(build, graphs, loss_fn, bs, lr, device, args.repeats, args.warmup, before)
        r = {k: med[k] / med["bare"] for k in med}
        tail = f" {r['before']:.2f} |" if before else ""
        print(f"| {name} | {1e3 * med['bare']:.1f} | {r['dataset']:.2f} | {r['list']:.2f} | {r['collate']:.2f} | "
              f"{r['fused']:.2f} |" + tail)
        verdicts.append((name, r["dataset"], r.get("before")))
    if args.scale == "full":
        host = host_batching(args.repeats)
        print(f"\nbatching alone, one full-scale chapter-9 epoch (30 x 100 + 8 x 256 systems), median of "
              f"{args.repeats}: per-batch collate {1e3 * host['collate']:.1f} ms, GraphDataset "
              f"{1e3 * host['GraphDataset']:.1f} ms ({host['collate'] / host['GraphDataset']:.0f}x less)")
    print()
    for name, ratio, old in verdicts:
        was = f"; train at {args.before}: {old:.2f}" if old is not None else ""
        print(f"{name}: train / bare loop {ratio:.2f} (goal: <= {GOAL}, {'met' if ratio <= GOAL else 'NOT met'}{was})")


if __name__ == "__main__":
    main()
