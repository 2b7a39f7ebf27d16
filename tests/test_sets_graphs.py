"""DeepSets, message passing (GCN, GIN, MPNN), the Transformer encoder and their data: permutation equivariance
with the one checker on batches of graphs of different sizes, bad input, PyG cross-checks, data sets."""

import networkx as nx
import pytest
import torch

from gdl.data import (
    collate,
    digit_pool,
    digit_sets,
    from_networkx,
    hub_graphs,
    random_graph_batch,
    relabel_nodes,
    triangles,
    wl_pairs,
)
from gdl.groups import BatchSymmetricGroup, FieldsAction
from gdl.nn import (
    GNN,
    AdjacencyMLP,
    AttentionMessagePassing,
    DeepSets,
    DeepSetsLayer,
    GCNConv,
    GINConv,
    GRUSetBaseline,
    MessagePassing,
    MPNNConv,
    MultiHeadSelfAttention,
    TransformerEncoder,
    complete_graph,
)
from gdl.nn.message_passing import (
    check_batch,
    check_edge_index,
    global_pool,
    scatter,
    scatter_max,
    scatter_mean,
    scatter_softmax,
    scatter_sum,
)
from gdl.testing import assert_equivariant, equivariance_error

SIZES = [(3, 5, 7), (2, 4)]


def perm_actions(batch, out="node scalar", **inputs):
    G = BatchSymmetricGroup(batch.sizes if hasattr(batch, "sizes") else batch)
    return {"group": G, "in_action": FieldsAction(G, **inputs), "out_action": FieldsAction(G, out=out)}


# --- scatter and the MessagePassing base -------------------------------------------------------------------------
@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_scatter_matches_a_loop(reduce, dtype):
    g = torch.Generator().manual_seed(0)
    src = torch.randn(20, 3, generator=g, dtype=dtype)
    index = torch.randint(0, 6, (20,), generator=g)
    index[index == 5] = 4                      # node 5 receives nothing: 0 for every reduction
    out = scatter(src, index, 6, reduce)
    for i in range(6):
        rows = src[index == i]
        if len(rows) == 0:
            expected = torch.zeros(3, dtype=dtype)
        else:
            expected = {"sum": rows.sum(0), "mean": rows.mean(0), "max": rows.max(0).values}[reduce]
        torch.testing.assert_close(out[i], expected)
    assert {"sum": scatter_sum, "mean": scatter_mean, "max": scatter_max}[reduce](src, index, 6).equal(out)


def test_scatter_softmax_normalises_per_target():
    g = torch.Generator().manual_seed(1)
    score = 50 * torch.randn(30, 2, generator=g, dtype=torch.float64)      # large: the shift keeps it finite
    index = torch.randint(0, 5, (30,), generator=g)
    w = scatter_softmax(score, index, 5)
    assert torch.isfinite(w).all() and (w >= 0).all()
    present = torch.bincount(index, minlength=5) > 0
    torch.testing.assert_close(scatter_sum(w, index, 5)[present], torch.ones(int(present.sum()), 2,
                                                                              dtype=torch.float64))


def test_message_passing_gathers_by_name_and_reports_missing_arguments():
    class Diff(MessagePassing):
        def __init__(self):
            super().__init__(aggr="sum")

        def forward(self, x, edge_index, w):
            return self.propagate(edge_index, x=x, w=w)

        def message(self, x_i, x_j, w, index, num_nodes):
            assert num_nodes == 3 and index.shape == (w.shape[0],)
            return w.unsqueeze(-1) * (x_j - x_i)

        def update(self, aggregated, x):
            return x + aggregated

    x = torch.tensor([[0.0], [1.0], [3.0]])
    ei = torch.tensor([[0, 1, 2], [1, 2, 0]])
    out = Diff()(x, ei, torch.tensor([1.0, 2.0, 0.5]))
    torch.testing.assert_close(out, torch.tensor([[1.5], [0.0], [-1.0]]))
    with pytest.raises(TypeError, match="needs 'w'"):
        Diff().propagate(ei, x=x)
    with pytest.raises(ValueError, match="aggr"):
        MessagePassing(aggr="median")
    assert "aggr='sum'" in repr(Diff())


# --- bad input names the tensor ------------------------------------------------------------------------------------
def test_bad_edge_index_batch_and_mask_are_named():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"edge_index refers to nodes 0\.\.7.*only 4 nodes"):
        GINConv(3, 5)(x, torch.tensor([[0, 7], [1, 0]]))
    with pytest.raises(ValueError, match="edge_index must be an integer tensor of shape"):
        check_edge_index(torch.zeros(3, 2, dtype=torch.long), 4)
    with pytest.raises(ValueError, match="batch must be sorted"):
        global_pool(x, torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="batch has 3 entries, but there are 4 nodes"):
        check_batch(torch.tensor([0, 0, 1]), 4)
    xp, mask = torch.randn(2, 5, 3), torch.ones(2, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="'mask' must be a bool tensor of shape"):
        DeepSets(3, 8, 1)(xp, mask)
    with pytest.raises(ValueError, match="'mask' must be a bool tensor"):
        TransformerEncoder(3, 8)(xp, torch.ones(2, 5))
    with pytest.raises(ValueError, match=r"node features 'x' must have shape \(N, 3\)"):
        GCNConv(3, 4)(torch.randn(4, 2), torch.tensor([[0], [1]]))
    with pytest.raises(ValueError, match="edge_attr"):
        MPNNConv(3, 4, edge_dim=2)(x, torch.tensor([[0], [1]]), torch.randn(2, 2))
    batch = random_graph_batch(0, sizes=(3, 4), in_dim=3)
    with pytest.raises(ValueError, match="edge_attr"):
        GNN(3, 8, 1, conv="mpnn", edge_dim=2)(batch)
    with pytest.raises(ValueError, match="node field 'x' must have shape"):
        DeepSets(5, 8, 1)(batch)


# --- permutation equivariance with the one checker, several batch sizes, float32/float64 ---------------------------
@pytest.mark.parametrize("sizes", SIZES, ids=str)
@pytest.mark.parametrize("conv", ["gcn", "gin", "mpnn"])
@pytest.mark.parametrize("readout", ["node", "sum", "mean", "max"])
def test_gnn_is_equivariant_and_its_readouts_invariant(conv, readout, sizes, dtype):
    batch = random_graph_batch(0, sizes=sizes, in_dim=4, edge_dim=2 if conv == "mpnn" else None)
    torch.manual_seed(0)
    model = GNN(4, 8, 3, num_layers=2, conv=conv, readout=readout, edge_dim=2 if conv == "mpnn" else None)
    out = "node scalar" if readout == "node" else "graph scalar"
    report = assert_equivariant(model, batch, dtype=dtype, **perm_actions(batch, out))
    assert "batch independence" in str(report)


@pytest.mark.parametrize("sizes", SIZES, ids=str)
@pytest.mark.parametrize("readout", ["node", "mean"])
def test_transformer_without_positions_is_equivariant(readout, sizes, dtype):
    batch = random_graph_batch(1, sizes=sizes, in_dim=4)
    torch.manual_seed(0)
    model = TransformerEncoder(4, 16, 2, heads=2, readout=readout)
    assert_equivariant(model, batch, dtype=dtype, **perm_actions(batch, "node scalar" if readout == "node"
                                                                 else "graph scalar"))


@pytest.mark.parametrize("positional", ["sinusoidal", "learned"])
def test_positional_encodings_break_the_symmetry(positional):
    batch = random_graph_batch(1, sizes=(3, 5, 7), in_dim=4)
    torch.manual_seed(0)
    model = TransformerEncoder(4, 16, 2, positional=positional)
    report = equivariance_error(model, batch, **perm_actions(batch))
    assert not report.passed and report.worst > 1e-3
    with pytest.raises(AssertionError):
        assert_equivariant(model, batch, **perm_actions(batch))


@pytest.mark.parametrize("sizes", SIZES, ids=str)
@pytest.mark.parametrize("pool", ["sum", "mean", "max"])
def test_deepsets_is_invariant_on_graph_batches_and_padded_sets(pool, sizes, dtype):
    batch = random_graph_batch(2, sizes=sizes, in_dim=4)
    torch.manual_seed(0)
    model = DeepSets(4, 8, 3, pool=pool)
    assert_equivariant(model, batch, dtype=dtype, **perm_actions(batch, "graph scalar"))
    x, mask = batch.to_padded("x")
    G = BatchSymmetricGroup(batch.sizes)
    padded = FieldsAction(G, x="padded scalar", mask="padded scalar")
    report = assert_equivariant(model, {"x": x, "mask": mask}, group=G, in_action=padded, dtype=dtype,
                                out_action=FieldsAction(G, out="graph scalar"))
    assert "padding" in str(report)
    torch.testing.assert_close(model(x, mask), model(batch))


@pytest.mark.parametrize("pool", ["sum", "mean", "max"])
def test_deepsets_layer_is_equivariant(pool, dtype):
    batch = random_graph_batch(3, sizes=(3, 5, 7), in_dim=4)
    torch.manual_seed(0)
    layer = DeepSetsLayer(4, 6, pool=pool)
    assert_equivariant(layer, batch, dtype=dtype, **perm_actions(batch))
    x, mask = batch.to_padded("x")
    G = BatchSymmetricGroup(batch.sizes)
    assert_equivariant(layer, {"x": x, "mask": mask}, group=G, dtype=dtype,
                       in_action=FieldsAction(G, x="padded scalar", mask="padded scalar"),
                       out_action=FieldsAction(G, out="padded scalar"))
    torch.testing.assert_close(layer(x, mask)[mask], layer(batch))


def test_the_baselines_are_not_invariant():
    batch = random_graph_batch(4, sizes=(4, 6, 8), in_dim=4)
    torch.manual_seed(0)
    gru = GRUSetBaseline(4, 8, 2)
    assert not equivariance_error(gru, batch, **perm_actions(batch, "graph scalar")).passed
    torch.manual_seed(0)
    mlp = AdjacencyMLP(8, 16, 2)
    assert not equivariance_error(mlp, batch, **perm_actions(batch, "graph scalar")).passed


# --- attention is message passing on the complete graph ------------------------------------------------------------
def test_attention_equals_message_passing_on_the_complete_graph(dtype):
    torch.manual_seed(0)
    att = MultiHeadSelfAttention(8, 2).to(dtype)
    batch = random_graph_batch(5, sizes=(3, 5, 7), in_dim=8, dtype=dtype)
    x, mask = batch.to_padded("x")
    dense = att(x, mask)[mask]
    edges = complete_graph(batch.batch)
    assert edges.shape == (2, 9 + 25 + 49)
    torch.testing.assert_close(AttentionMessagePassing(att)(batch.x, edges), dense)


# --- PyTorch Geometric cross-checks: same weights, same outputs ----------------------------------------------------
def test_gcn_and_gin_equal_pytorch_geometric(dtype):
    pyg = pytest.importorskip("torch_geometric.nn")
    batch = random_graph_batch(6, sizes=(3, 5, 7, 9), in_dim=5, dtype=dtype)
    torch.manual_seed(0)
    ours = GCNConv(5, 4).to(dtype)
    torch.nn.init.normal_(ours.bias)
    theirs = pyg.GCNConv(5, 4).to(dtype)
    theirs.load_state_dict(ours.state_dict())
    torch.testing.assert_close(ours(batch.x, batch.edge_index), theirs(batch.x, batch.edge_index))
    gin = GINConv(5, 4, hidden=6, eps=0.3).to(dtype)
    ref = pyg.GINConv(gin.nn, eps=0.3)
    torch.testing.assert_close(gin(batch.x, batch.edge_index), ref(batch.x, batch.edge_index))


# --- modules: parameters, repr, reset ------------------------------------------------------------------------------
def test_gcn_parameter_count_repr_and_reset():
    conv = GCNConv(5, 4)
    assert sum(p.numel() for p in conv.parameters()) == 5 * 4 + 4
    assert repr(conv) == "GCNConv(5, 4)"
    with torch.no_grad():
        conv.lin.weight.fill_(7.0)
    conv.reset_parameters()
    assert conv.lin.weight.abs().max() < 7.0
    assert "eps=0.5" in repr(GINConv(3, 3, eps=0.5))
    assert "positional='learned'" in repr(TransformerEncoder(3, 8, positional="learned"))
    # DeepSets: phi 4->8->8, rho 8->8->1; a linear rho (rho_layers=1) is 8->1
    assert sum(p.numel() for p in DeepSets(4, 8, 1).parameters()) == (4 * 8 + 8) + 2 * (8 * 8 + 8) + (8 + 1)
    assert sum(p.numel() for p in DeepSets(4, 8, 1, rho_layers=1).parameters()) == (4 * 8 + 8) + (8 * 8 + 8) + 9


# --- data -----------------------------------------------------------------------------------------------------------
def test_digit_sets_sum_their_digits_from_disjoint_pools():
    sets = digit_sets(50, 2, 10, seed=0)
    assert all(2 <= len(s["x"]) <= 10 and float(s["y"]) == float(s["digit"].sum()) for s in sets)
    assert digit_sets(5, seed=3)[0]["x"].equal(digit_sets(5, seed=3)[0]["x"])
    train, test = digit_pool("train")[0], digit_pool("test")[0]
    assert len(train) + len(test) == 1797
    assert not (torch.cdist(train, test) == 0).all(dim=1).any()  # no test image is also a training image
    batch = collate(digit_sets(4, 100, 100, part="test", seed=1))
    assert batch.sizes == [100] * 4 and batch.y.shape == (4,)
    with pytest.raises(ValueError, match="min_size"):
        digit_sets(3, 5, 2)
    with pytest.raises(ValueError, match="part"):
        digit_pool("validation")


def test_hub_graphs_and_relabelling():
    graphs = hub_graphs(40, seed=0)
    labels = torch.stack([g["y"] for g in graphs])
    assert int(labels.sum()) == 20
    moved = relabel_nodes(graphs, seed=1)
    for a, b in zip(graphs[:10], moved[:10]):
        assert triangles(a) == triangles(b)
        ga, gb = (nx.Graph(d["edge_index"].T.tolist()) for d in (a, b))
        assert nx.is_isomorphic(ga, gb)
    batch = collate(graphs[:5])
    assert batch.y.dtype == torch.long and batch.x.shape[1] == 1


def test_wl_pairs_fool_gin_but_differ_in_triangles():
    for name, a, b in wl_pairs():
        assert not nx.is_isomorphic(a, b), name
        da, db = from_networkx(a), from_networkx(b)
        assert triangles(da) != triangles(db), name
        batch = collate([da, db])
        for seed in range(3):
            torch.manual_seed(seed)
            gin = GNN(1, 16, 4, num_layers=3, conv="gin", readout="sum").double()
            out = gin(batch.to(torch.float64))
            torch.testing.assert_close(out[0], out[1], rtol=1e-12, atol=1e-12)


def test_data_and_baseline_bad_input():
    with pytest.raises(ValueError, match="attach"):
        hub_graphs(4, min_nodes=3, max_nodes=2)
    with pytest.raises(ValueError, match="x has 2 rows"):
        from_networkx(nx.path_graph(3), x=torch.ones(2, 1))
    x, mask = torch.randn(2, 4, 3), torch.tensor([[True, False, True, False], [True, True, True, True]])
    with pytest.raises(ValueError, match="valid entries first"):
        GRUSetBaseline(3, 4, 1)(x, mask)
    with pytest.raises(ValueError, match="positional must be one of"):
        TransformerEncoder(3, 8, positional="rotary")
    with pytest.raises(ValueError, match="conv must be one of"):
        GNN(3, 8, 1, conv="gat")
    with pytest.raises(ValueError, match="edge_dim is needed by conv='mpnn'"):
        GNN(3, 8, 1, conv="mpnn")
