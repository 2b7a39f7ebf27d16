"""gdl SchNet against PyTorch Geometric's SchNet, and the cost of gdl's radius graph against the number of atoms.

    python benchmarks/bench_atomistic.py --device cpu
    python benchmarks/bench_atomistic.py --device cuda --molecules 256

1. **SchNet, forward + backward** on the same batch (``--molecules`` rattled ethanol molecules, 9 atoms each): gdl's
   :class:`gdl.nn.SchNet` and ``torch_geometric.nn.models.SchNet`` with the same sizes and the same weights (gdl
   uses PyG's parameter names, so the state dict is copied across), both given gdl's radius graph (PyG through its
   ``interaction_graph`` hook; its own radius graph needs the compiled ``torch_cluster``). Two passes are timed:
   *energy* (forward, backward of the energy to the weights) and *energy + forces* (a training step: forces by
   autograd with ``create_graph=True``, a loss on both, backward), both wrapped in the same
   :class:`gdl.nn.EnergyForces`. Round-robin, median of ``--repeats``.
2. **Radius graph** (``gdl.nn.radius_graph``, cutoff 5 Angstrom) for one system of N atoms at liquid density
   (0.1 atoms per cubic Angstrom, ~ water), by every method (``auto``, dense all-pairs, cell list, and on the host
   the sweep and the SciPy-backed ``kdtree`` check), against SciPy's ``cKDTree`` (build + ``query_pairs``: the
   unordered pairs only, so a strict reference); then batches of small molecules. Goal: ``auto`` (PyTorch and
   NumPy, no SciPy) at most 2 x ``cKDTree`` from 100 to 10,000 atoms. ``--clock cpu`` times CPU time.

This is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics

import torch
from _common import add_common_arguments, energy_step, ethanol_batch, force_step, round_robin, set_up, timed

from gdl.nn import EnergyForces, SchNet
from gdl.nn.neighbours import AUTO_CELLS_ABOVE_GPU, AUTO_SWEEP_UP_TO, radius_graph


class PyGEnergy(torch.nn.Module):
    """PyG's SchNet behind the GraphBatch interface, fed gdl's radius graph."""

    def __init__(self, pyg_model):
        super().__init__()
        self.model = pyg_model

    def forward(self, batch):
        return self.model(batch.z, batch.pos, batch.batch).squeeze(-1)


def _pyg_schnet(args):
    from torch_geometric.nn.models import SchNet as PyGSchNet

    def interaction_graph(pos, batch):
        edge_index = radius_graph(pos, args.cutoff, batch)
        return edge_index, (pos[edge_index[0]] - pos[edge_index[1]]).norm(dim=-1)

    return PyGSchNet(hidden_channels=args.hidden, num_filters=args.hidden, num_interactions=args.interactions,
                     num_gaussians=args.gaussians, cutoff=args.cutoff, interaction_graph=interaction_graph)






def bench_schnet(args, device) -> None:
    torch.manual_seed(0)
    ours = SchNet(hidden_channels=args.hidden, num_filters=args.hidden, num_interactions=args.interactions,
                  num_gaussians=args.gaussians, cutoff=args.cutoff)
    try:
        theirs = _pyg_schnet(args)
    except ImportError:
        print("torch_geometric is not installed: only gdl is timed")
        theirs = None
    models = {"gdl SchNet": EnergyForces(ours).to(device).train()}
    if theirs is not None:
        theirs.load_state_dict(ours.state_dict())
        models["PyG SchNet (same radius graph)"] = EnergyForces(PyGEnergy(theirs)).to(device).train()
    batch = ethanol_batch(args.molecules, device)
    if theirs is not None:
        with torch.no_grad():
            a, b = (m.eval()(batch)["energy"].detach() for m in models.values())
        print(f"same weights, same outputs: max |E_gdl - E_PyG| = {float((a - b).abs().max()):.1e}")
        for m in models.values():
            m.train()
    print(f"batch: {args.molecules} ethanol molecules ({batch.num_nodes} atoms, "
          f"{radius_graph(batch.pos, args.cutoff, batch.batch).shape[1]} edges), hidden {args.hidden}, "
          f"{args.interactions} interactions, {args.gaussians} Gaussians; median of {args.repeats} passes after "
          f"{args.warmup} warm-up passes, round-robin\n")
    verdicts = []
    print("| pass | model | median time (ms) | time / gdl |")
    print("|---|---|---:|---:|")
    for label, step in (("energy: forward + backward", energy_step),
                        ("energy + forces: training step (double backward)", force_step)):
        med = round_robin(models, step, batch, args.repeats, args.warmup, device)
        for name, t in med.items():
            print(f"| {label} | {name} | {1e3 * t:.2f} | {t / med['gdl SchNet']:.2f} |")
        verdicts.append((label, med))
    print()
    for label, med in verdicts:
        if len(med) > 1:
            ratio = med["gdl SchNet"] / min(t for name, t in med.items() if name != "gdl SchNet")
            verdict = "met" if ratio <= 1.1 else "NOT met"
            print(f"{label}: gdl SchNet / PyG SchNet {ratio:.2f} (goal: <= 1.1, as the other layers; {verdict})")


def _ckdtree(pos, cutoff):
    """The reference: SciPy's k-d tree, built and queried for the unordered pairs (i < j) within the cutoff."""
    from scipy.spatial import cKDTree

    return cKDTree(pos.detach().cpu().numpy()).query_pairs(cutoff, output_type="ndarray")


def _load() -> str:
    """The 1, 5 and 15 minute load averages (the radius graph's ratio to cKDTree grows with the machine's load)."""
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:                                     # not on every platform
        return "unknown"


def bench_neighbours(args, device) -> None:
    """Round-robin medians of every method and of ``cKDTree`` per system size, and batches of small molecules
    (the case that sets ``auto``'s threshold on the host)."""
    host = device.type == "cpu"
    methods = ["auto", "dense"] + (["sweep"] if host else []) + ["cells"] + (["kdtree"] if host else [])
    print(f"\nradius graph, cutoff {args.cutoff} Angstrom, one system at 0.1 atoms / A^3; median of "
          f"{args.nl_repeats}, round-robin in a shuffled order; dense only up to {args.dense_max} atoms; "
          f"load average {_load()} at the start\n")
    print("| atoms | edges | cKDTree (ms) | " + " | ".join(f"{m} (ms)" for m in methods) + " | auto / cKDTree |")
    print("|---:|---:|---:|" + "---:|" * len(methods) + "---:|")
    sizes = [int(s) for s in args.atoms.split(",")]
    shuffle = random.Random(0)
    verdicts = []
    for n in sizes:
        side = (n / 0.1) ** (1 / 3)
        pos = torch.rand(n, 3, generator=torch.Generator().manual_seed(n)).to(device) * side
        steps = {"cKDTree": lambda p=pos: _ckdtree(p, args.cutoff)}
        for m in methods:
            if m != "dense" or n <= args.dense_max:
                steps[m] = lambda m=m, p=pos: radius_graph(p, args.cutoff, method=m)
        times = {k: [] for k in steps}
        names = list(steps)
        for _ in range(args.nl_repeats):
            shuffle.shuffle(names)          # a new order every round: no method always follows the same one
            for k in names:
                times[k].append(timed(steps[k], device))
        med = {k: statistics.median(v) for k, v in times.items()}
        ei = radius_graph(pos, args.cutoff)
        ratio = med["auto"] / med["cKDTree"]
        verdicts.append((n, ratio))
        cells = " | ".join(f"{1e3 * med[m]:.2f}" if m in med else "-" for m in methods)
        print(f"| {n} | {ei.shape[1]} | {1e3 * med['cKDTree']:.2f} | {cells} | {ratio:.2f} |")
    print("\nbatches of rattled ethanol molecules (9 atoms each), cutoff 5 A:\n")
    batch_methods = ["dense"] + (["sweep"] if host else []) + ["cells"]
    print("| molecules | atoms | " + " | ".join(f"{m} (ms)" for m in batch_methods) + " | auto picks |")
    print("|---:|---:|" + "---:|" * len(batch_methods) + "---|")
    picks = "sweep" if host and 9 <= AUTO_SWEEP_UP_TO else "dense" if 9 <= AUTO_CELLS_ABOVE_GPU else "cells"
    for b in (8, 64, 512):
        batch = ethanol_batch(b, device)
        steps = {m: lambda x=batch, m=m: radius_graph(x.pos, args.cutoff, x.batch, method=m) for m in batch_methods}
        times = {k: [] for k in steps}
        for _ in range(args.nl_repeats):
            for k, step in steps.items():
                times[k].append(timed(step, device))
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"| {b} | {batch.num_nodes} | " + " | ".join(f"{1e3 * med[m]:.2f}" for m in batch_methods)
              + f" | {picks} |")
    print(f"\nload average {_load()} at the end\n")
    for n, ratio in verdicts:
        verdict = "met" if ratio <= 2 else "NOT met"
        print(f"radius graph, {n} atoms: auto / cKDTree {ratio:.2f} (goal: <= 2.0, {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, repeats=21, warmup=3)
    parser.add_argument("--molecules", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--interactions", type=int, default=3)
    parser.add_argument("--gaussians", type=int, default=50)
    parser.add_argument("--cutoff", type=float, default=5.0)
    parser.add_argument("--atoms", default="100,300,1000,3000,10000", help="system sizes for the radius graph")
    parser.add_argument("--nl-repeats", type=int, default=7)
    parser.add_argument("--dense-max", type=int, default=3000, help="largest system timed with the dense method")
    parser.add_argument("--skip-schnet", action="store_true", help="time the radius graph only")
    args = parser.parse_args()
    device = set_up(args)
    if not args.skip_schnet:
        bench_schnet(args, device)
    bench_neighbours(args, device)


if __name__ == "__main__":
    main()
