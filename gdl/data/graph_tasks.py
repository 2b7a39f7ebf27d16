"""Graph data sets generated offline with networkx, in the :func:`gdl.data.collate` format.

- :func:`random_graph_batch`: small random graphs with random node and edge features (checks, benchmarks).
- :func:`hub_graphs`: classify a graph as grown by preferential attachment (Barabasi-Albert: a few hubs) or
  drawn uniformly at random with the same numbers of nodes and edges (Erdos-Renyi :math:`G(n, m)`). The
  property is structural (the spread of the degrees), but networkx numbers a Barabasi-Albert graph's nodes in
  the order they arrived, so the hubs carry the smallest labels: a model that reads node labels can exploit
  that, and fails once the nodes are relabelled (:func:`relabel_nodes`).
- :func:`wl_pairs`: pairs of non-isomorphic graphs that the 1-dimensional Weisfeiler-Leman test, and hence
  every message-passing GNN on constant node features, cannot tell apart.

Graphs are undirected: each edge appears in ``edge_index`` in both directions. Node features of the structural
tasks are constant (``x = 1``), so a model sees nothing but the graph.
"""

from __future__ import annotations

from typing import Any

import torch

from gdl.data.graphs import GraphBatch, collate

__all__ = ["from_networkx", "random_graph_batch", "hub_graphs", "relabel_nodes", "wl_pairs", "triangles"]


def from_networkx(graph: Any, x: torch.Tensor | None = None, **fields: Any) -> dict[str, torch.Tensor]:
    """A networkx graph as a dict ``{"x": (n, 1) ones or x, "edge_index": (2, 2|E|), **fields}``; nodes are
    numbered in ``graph.nodes`` order."""
    nodes = list(graph.nodes)
    index = {v: i for i, v in enumerate(nodes)}
    pairs = [(index[a], index[b]) for a, b in graph.edges if a != b]
    ei = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2).T
    ei = torch.cat([ei, ei.flip(0)], dim=1)
    if x is None:
        x = torch.ones(len(nodes), 1)
    if x.shape[0] != len(nodes):
        raise ValueError(f"x has {x.shape[0]} rows, the graph has {len(nodes)} nodes")
    return {"x": x, "edge_index": ei, **{k: torch.as_tensor(v) for k, v in fields.items()}}


def random_graph_batch(generator: torch.Generator | int = 0, sizes: tuple[int, ...] = (3, 5, 7), in_dim: int = 4,
                       edge_dim: int | None = None, p: float = 0.5, dtype: torch.dtype | None = None) -> GraphBatch:
    """A batch of random undirected graphs (each pair joined with probability ``p``) of the given ``sizes``,
    with node features ``x`` (N, in_dim) and, if ``edge_dim``, edge features ``edge_attr`` (E, edge_dim), all
    standard normal."""
    g = generator if isinstance(generator, torch.Generator) else torch.Generator().manual_seed(generator)
    dtype = dtype or torch.get_default_dtype()
    items = []
    for n in sizes:
        iu = torch.triu_indices(n, n, offset=1)
        keep = torch.rand(iu.shape[1], generator=g) < p
        ei = iu[:, keep]
        ei = torch.cat([ei, ei.flip(0)], dim=1)
        item = {"x": torch.randn(n, in_dim, generator=g, dtype=dtype), "edge_index": ei}
        if edge_dim is not None:
            item["edge_attr"] = torch.randn(ei.shape[1], edge_dim, generator=g, dtype=dtype)
        items.append(item)
    return collate(items)


def hub_graphs(n_graphs: int, min_nodes: int = 10, max_nodes: int = 16, *, attach: int = 2,
               seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Half Barabasi-Albert graphs (label 1, ``attach`` edges per new node), half uniform random graphs with the
    same node and edge counts (label 0), in random order.

    Returns:
        dicts ``{"x": (n, 1) ones, "edge_index", "y": () long label}``.
    """
    import networkx as nx

    if not 2 <= attach < min_nodes <= max_nodes:
        raise ValueError(f"need 2 <= attach < min_nodes <= max_nodes, got attach={attach}, "
                         f"min_nodes={min_nodes}, max_nodes={max_nodes}")
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n_graphs):
        n = int(torch.randint(min_nodes, max_nodes + 1, (), generator=g))
        s = int(torch.randint(0, 2**31 - 1, (), generator=g))
        ba = nx.barabasi_albert_graph(n, attach, seed=s)
        graph = ba if i % 2 else nx.gnm_random_graph(n, ba.number_of_edges(), seed=s)
        out.append(from_networkx(graph, y=torch.tensor(i % 2)))
    order = torch.randperm(n_graphs, generator=g).tolist()
    return [out[i] for i in order]


def relabel_nodes(graphs: list[dict[str, torch.Tensor]], seed: int = 0,
                  node_keys: tuple[str, ...] = ("x",)) -> list[dict[str, torch.Tensor]]:
    """The same graphs with their nodes renumbered by a random permutation each: node ``i`` becomes ``p[i]``
    (node fields in ``node_keys`` move with their nodes; ``edge_index`` is renamed; other fields are kept)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for d in graphs:
        n = d["x"].shape[0]
        p = torch.randperm(n, generator=g)
        new = dict(d)
        for k in node_keys:
            moved = torch.empty_like(d[k])
            moved[p] = d[k]
            new[k] = moved
        new["edge_index"] = p[d["edge_index"]]
        out.append(new)
    return out


def triangles(graph: dict[str, torch.Tensor]) -> int:
    """Number of triangles of an undirected graph in the dict format (:math:`\\mathrm{tr}(A^3) / 6`)."""
    n = graph["x"].shape[0]
    a = torch.zeros(n, n, dtype=torch.float64)
    a[graph["edge_index"][1], graph["edge_index"][0]] = 1.0
    return int(round(float(torch.trace(a @ a @ a)) / 6))


def wl_pairs() -> list[tuple[str, Any, Any]]:
    """Pairs ``(name, G1, G2)`` of non-isomorphic networkx graphs with the same 1-WL colour histograms:

    - a 6-cycle vs two disjoint triangles (both 2-regular on 6 nodes);
    - the triangular prism vs the complete bipartite graph :math:`K_{3,3}` (both 3-regular on 6 nodes);
    - the cube graph vs two disjoint copies of :math:`K_4` (both 3-regular on 8 nodes).
    """
    import networkx as nx

    return [
        ("6-cycle vs two triangles", nx.cycle_graph(6), nx.disjoint_union(nx.complete_graph(3), nx.complete_graph(3))),
        ("prism vs K3,3", nx.circular_ladder_graph(3), nx.complete_bipartite_graph(3, 3)),
        ("cube vs two K4", nx.hypercube_graph(3), nx.disjoint_union(nx.complete_graph(4), nx.complete_graph(4))),
    ]
