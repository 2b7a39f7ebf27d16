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
   (0.1 atoms per cubic Angstrom, ~ water), by the dense all-pairs method and by the cell list; the log-log slope
   between the two largest sizes gives the scaling exponent.

This is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time

import torch

from gdl.data import collate
from gdl.nn import EnergyForces, SchNet
from gdl.nn.neighbours import radius_graph


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _ethanol_batch(n: int, device: torch.device, seed: int = 0):
    from ase.build import molecule

    g = torch.Generator().manual_seed(seed)
    base = torch.as_tensor(molecule("CH3CH2OH").get_positions(), dtype=torch.float32)
    z = torch.as_tensor(molecule("CH3CH2OH").get_atomic_numbers())
    items = [{"pos": base + 0.1 * torch.randn(base.shape, generator=g), "z": z} for _ in range(n)]
    batch = collate(items).to(device)
    return batch.replace(energy=torch.randn(n, generator=g).to(device),
                         forces=torch.randn(batch.num_nodes, 3, generator=g).to(device))


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


def _energy_step(model, batch):
    model.forces = False
    model(batch)["energy"].sum().backward()


def _force_step(model, batch):
    model.forces = True
    out = model(batch)
    ((out["energy"] - batch.energy) ** 2).mean().add(((out["forces"] - batch.forces) ** 2).mean()).backward()


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
    batch = _ethanol_batch(args.molecules, device)
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
    print("| pass | model | median time (ms) | time / gdl |")
    print("|---|---|---:|---:|")
    for label, step in (("energy: forward + backward", _energy_step),
                        ("energy + forces: training step (double backward)", _force_step)):
        times: dict[str, list[float]] = {name: [] for name in models}
        for i in range(args.warmup + args.repeats):
            for name, m in models.items():
                m.zero_grad(set_to_none=True)
                _sync(device)
                start = time.perf_counter()
                step(m, batch)
                _sync(device)
                if i >= args.warmup:
                    times[name].append(time.perf_counter() - start)
        med = {name: statistics.median(ts) for name, ts in times.items()}
        for name, t in med.items():
            print(f"| {label} | {name} | {1e3 * t:.2f} | {t / med['gdl SchNet']:.2f} |")


def bench_neighbours(args, device) -> None:
    print(f"\nradius graph, cutoff {args.cutoff} Angstrom, one system at 0.1 atoms / A^3; best of {args.nl_repeats}\n")
    print("| atoms | edges | dense (ms) | cell list (ms) |")
    print("|---:|---:|---:|---:|")
    sizes = [int(s) for s in args.atoms.split(",")]
    results = {"dense": [], "cells": []}
    for n in sizes:
        side = (n / 0.1) ** (1 / 3)
        pos = torch.rand(n, 3, generator=torch.Generator().manual_seed(n)).to(device) * side
        row = {}
        for method in results:
            best = math.inf
            for _ in range(args.nl_repeats):
                _sync(device)
                start = time.perf_counter()
                ei = radius_graph(pos, args.cutoff, method=method)
                _sync(device)
                best = min(best, time.perf_counter() - start)
            row[method] = best
            results[method].append(best)
        print(f"| {n} | {ei.shape[1]} | {1e3 * row['dense']:.2f} | {1e3 * row['cells']:.2f} |")
    if len(sizes) >= 2:
        for method, ts in results.items():
            slope = math.log(ts[-1] / ts[-2]) / math.log(sizes[-1] / sizes[-2])
            print(f"- {method}: time ~ N^{slope:.2f} between N = {sizes[-2]} and {sizes[-1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--molecules", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--interactions", type=int, default=3)
    parser.add_argument("--gaussians", type=int, default=50)
    parser.add_argument("--cutoff", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--atoms", default="100,300,1000,3000,6000", help="system sizes for the radius graph")
    parser.add_argument("--nl-repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    print(f"device: {device.type} ({dev_name}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    bench_schnet(args, device)
    bench_neighbours(args, device)


if __name__ == "__main__":
    main()
