"""gdl's GCN and GIN layers against PyTorch Geometric's ``GCNConv`` and ``GINConv`` on the same batch of graphs.

    python benchmarks/bench_gnn.py --device cpu
    python benchmarks/bench_gnn.py --device cuda --graphs 256 --channels 128

Times one forward + backward pass (median of ``--repeats`` after ``--warmup`` passes) of each layer on one batch
of ``--graphs`` random graphs (``--min-nodes`` to ``--max-nodes`` nodes, mean degree about ``--degree``), the
layers timed round-robin so that a change of machine load hits all of them alike. Both GIN layers share one MLP
object, so they do the same dense work; the GCN layers start from the same weights. Before timing, the outputs
of each pair are compared (the numerical cross-check; ``tests/test_sets_graphs.py`` asserts it too).
Ratios gdl / PyG are the output (goal: at most 1.10). A measurement, not a test.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch import nn

from gdl.data import random_graph_batch
from gdl.nn import GCNConv, GINConv


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(module: nn.Module, x: torch.Tensor, edge_index: torch.Tensor, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    module(x, edge_index).square().mean().backward()
    _sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--graphs", type=int, default=64)
    parser.add_argument("--min-nodes", type=int, default=20)
    parser.add_argument("--max-nodes", type=int, default=40)
    parser.add_argument("--degree", type=float, default=8.0, help="expected mean degree")
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    try:
        import torch_geometric
        from torch_geometric import nn as pyg
    except ImportError as err:
        raise SystemExit("this benchmark compares with PyTorch Geometric: pip install torch_geometric") from err
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    sizes = torch.randint(args.min_nodes, args.max_nodes + 1, (args.graphs,), generator=g).tolist()
    p = args.degree / (sum(sizes) / len(sizes) - 1)
    batch = random_graph_batch(g, sizes=tuple(sizes), in_dim=args.channels, p=min(p, 1.0)).to(device)
    x, ei = batch.x, batch.edge_index
    C = args.channels

    torch.manual_seed(0)
    gcn = GCNConv(C, C)
    nn.init.normal_(gcn.bias)
    pyg_gcn = pyg.GCNConv(C, C)
    pyg_gcn.load_state_dict(gcn.state_dict())
    gin = GINConv(C, C, hidden=C)
    pyg_gin = pyg.GINConv(gin.nn)
    models = {"gdl GCNConv": gcn, "PyG GCNConv": pyg_gcn, "gdl GINConv": gin, "PyG GINConv": pyg_gin}
    for m in models.values():
        m.to(device).train()
    with torch.no_grad():
        diff_gcn = (gcn(x, ei) - pyg_gcn(x, ei)).abs().max().item()
        diff_gin = (gin(x, ei) - pyg_gin(x, ei)).abs().max().item()

    times: dict[str, list[float]] = {name: [] for name in models}
    for i in range(args.warmup + args.repeats):
        for name, m in models.items():
            m.zero_grad(set_to_none=True)
            t = _step(m, x, ei, device)
            if i >= args.warmup:
                times[name].append(t)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    print(f"device: {device.type} ({dev_name}), torch {torch.__version__}, torch_geometric "
          f"{torch_geometric.__version__}, threads {torch.get_num_threads()}")
    print(f"batch: {batch.num_graphs} graphs, N={batch.num_nodes} nodes, E={batch.num_edges} directed edges, "
          f"C={C} channels in and out; median of {args.repeats} forward+backward passes after {args.warmup} "
          f"warm-up passes\n")
    print("| layer | median time (ms) | gdl / PyG |")
    print("|---|---|---|")
    for name, t in med.items():
        kind = name.split()[1]
        ratio = f"{t / med['PyG ' + kind]:.2f}" if name.startswith("gdl") else ""
        print(f"| {name} | {1e3 * t:.3f} | {ratio} |")
    print(f"\ncross-check, max |gdl - PyG| over the outputs (float32): GCNConv {diff_gcn:.1e}, GINConv {diff_gin:.1e}")
    for kind in ("GCNConv", "GINConv"):
        print(f"gdl {kind} / PyG {kind}: {med['gdl ' + kind] / med['PyG ' + kind]:.2f} (goal: <= 1.10)")


if __name__ == "__main__":
    main()
