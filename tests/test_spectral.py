"""Laplacian positional encodings, SignNet and the node-deleted subgraph GNN (gdl.nn.spectral)."""

import networkx as nx
import pytest
import torch

from gdl.data import collate, from_networkx, random_graph_batch, wl_pairs
from gdl.groups import BatchSymmetricGroup, FieldsAction
from gdl.nn import GNN
from gdl.nn.spectral import LapPEGNN, NodeDeletedGNN, laplacian_eigenvectors, node_deleted_subgraphs
from gdl.testing import equivariance_error

F64 = torch.float64


def _graphs():
    b = random_graph_batch(0, sizes=(6, 8, 7), in_dim=1, p=0.5, dtype=F64)
    return b.replace(x=torch.ones_like(b.x))


def _check(model, batch, out):
    G = BatchSymmetricGroup(batch.sizes)
    return equivariance_error(model, batch, group=G, in_action=FieldsAction(G), out_action=FieldsAction(G, out=out))


def test_laplacian_eigenvectors_solve_the_eigenproblem_and_pad_small_graphs():
    graphs = [nx.petersen_graph(), nx.path_graph(3)]
    batch = collate([from_networkx(g) for g in graphs]).to(F64)
    u, lam = laplacian_eigenvectors(batch, k=4)
    assert u.shape == (13, 4) and lam.shape == (2, 4)
    for b, g in enumerate(graphs):
        L = torch.tensor(nx.laplacian_matrix(g).toarray(), dtype=F64)
        rows = batch.batch == b
        assert torch.allclose(L @ u[rows], u[rows] * lam[b], atol=1e-12)
        assert torch.allclose(u[rows].sum(0), torch.zeros(4, dtype=F64), atol=1e-12)   # orthogonal to 1
    assert (u[batch.batch == 1][:, 2:] == 0).all() and (lam[1, 2:] == 0).all()          # 3 nodes: u_1, u_2 only


def test_node_deleted_subgraphs_are_g_minus_v():
    graphs = [nx.petersen_graph(), nx.gnm_random_graph(7, 11, seed=3)]
    batch = collate([from_networkx(g) for g in graphs])
    node, edge_index, subgraph, graph = node_deleted_subgraphs(batch)
    assert torch.equal(graph, batch.batch)
    assert (subgraph[1:] >= subgraph[:-1]).all()
    offset = 0
    for g in graphs:
        for v in g.nodes:
            s = offset + v
            mine = {(int(node[a]) - offset, int(node[b]) - offset) for a, b in edge_index.T.tolist()
                    if subgraph[a] == s}
            assert all(subgraph[b] == s for a, b in edge_index.T.tolist() if subgraph[a] == s)
            want = {(a, b) for a, b in g.edges if v not in (a, b)}
            assert mine == want | {(b, a) for a, b in want}
            assert sorted(int(i) - offset for i in node[subgraph == s]) == [u for u in g.nodes if u != v]
        offset += len(g)


def test_raw_eigenvectors_fail_the_permutation_check_signnet_passes():
    graphs = _graphs()
    _, lam = laplacian_eigenvectors(graphs, 4)
    assert (lam[:, 1:] - lam[:, :-1]).min() > 1e-3          # simple spectrum: only signs are ambiguous
    torch.manual_seed(0)
    assert not _check(LapPEGNN(1, 16, 3, k=3, sign="raw").double(), graphs, "node scalar").passed
    torch.manual_seed(0)
    report = _check(LapPEGNN(1, 16, 3, k=3, sign="signnet").double(), graphs, "node scalar")
    assert report.passed and report.worst < 1e-12


def test_signnet_fails_with_repeated_eigenvalues():
    cycles = collate([from_networkx(nx.cycle_graph(8)), from_networkx(nx.cycle_graph(7))]).to(F64)
    torch.manual_seed(0)
    assert not _check(LapPEGNN(1, 16, 3, k=3, sign="signnet").double(), cycles, "node scalar").passed


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_node_deleted_gnn_is_invariant_and_separates_the_1wl_pairs(seed):
    torch.manual_seed(seed)
    ds = NodeDeletedGNN(1, 16, 3).double()
    assert _check(ds, _graphs(), "graph scalar").passed
    torch.manual_seed(seed)
    gin = GNN(1, 16, 3, num_layers=3, conv="gin", readout="sum").double()
    for _, a, b in wl_pairs():
        pair = collate([from_networkx(a), from_networkx(b)]).to(F64)
        out = ds(pair).detach()
        assert (out[0] - out[1]).abs().max() > 1e-3 * out.abs().max()
        out = gin(pair).detach()
        assert (out[0] - out[1]).abs().max() < 1e-12 * out.abs().max()


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="sign must be one of"):
        LapPEGNN(1, 8, 1, sign="abs")
    with pytest.raises(ValueError, match="readout"):
        LapPEGNN(1, 8, 1, readout="max")
    with pytest.raises(ValueError, match="k must be at least 1"):
        laplacian_eigenvectors(_graphs(), 0)
    with pytest.raises(ValueError, match="x must have 2 channels"):
        NodeDeletedGNN(2, 8, 1)(_graphs())
    with pytest.raises(ValueError, match="missing 'x'"):
        NodeDeletedGNN(1, 8, 1)(collate([{"pos": torch.zeros(3, 3)}]))
