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

import torch
from _common import add_common_arguments, round_robin, set_up
from torch import nn

from gdl.data import random_graph_batch
from gdl.nn import GCNConv, GINConv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, repeats=50, warmup=5)
    parser.add_argument("--graphs", type=int, default=64)
    parser.add_argument("--min-nodes", type=int, default=20)
    parser.add_argument("--max-nodes", type=int, default=40)
    parser.add_argument("--degree", type=float, default=8.0, help="expected mean degree")
    parser.add_argument("--channels", type=int, default=64)
    args = parser.parse_args()
    try:
        import torch_geometric
        from torch_geometric import nn as pyg
    except ImportError as err:
        raise SystemExit("this benchmark compares with PyTorch Geometric: pip install torch_geometric") from err
    device = set_up(args, f"torch_geometric {torch_geometric.__version__}")
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

    med = round_robin(models, lambda m, data: m(*data).square().mean().backward(), (x, ei), args.repeats,
                      args.warmup, device)
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
        ratio = med["gdl " + kind] / med["PyG " + kind]
        print(f"gdl {kind} / PyG {kind}: {ratio:.2f} (goal: <= 1.10, {'met' if ratio <= 1.10 else 'NOT met'})")


if __name__ == "__main__":
    main()
