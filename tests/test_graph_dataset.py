"""The device-resident data path: GraphDataset.gather equals collate, and train/evaluate give the same losses
whether they gather batches from the materialised data set or collate them from the list."""

import pytest
import torch
from torch import nn

import gdl.training
from gdl.data import GraphBatch, GraphDataset, collate, nbody_splits
from gdl.training import adam, evaluate, fit, train


def _graphs(n=40, seed=0, int32=False):
    """Graphs of 1..6 nodes (some without edges), node/edge/graph fields of several shapes and dtypes."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        nodes, edges = int(torch.randint(1, 7, (1,), generator=g)), int(torch.randint(0, 9, (1,), generator=g))
        ei = torch.randint(0, nodes, (2, edges), generator=g)
        out.append({"x": torch.randn(nodes, 3, generator=g), "z": torch.randint(1, 9, (nodes,), generator=g),
                    "edge_index": ei.int() if int32 else ei, "edge_attr": torch.randn(edges, 2, generator=g),
                    "y": torch.randn(2, generator=g), "energy": torch.randn((), generator=g)})
    return out


def _assert_same(a: GraphBatch, b: GraphBatch):
    assert a.num_graphs == b.num_graphs and a.keys() == b.keys()
    for level in ("node", "edge", "graph"):
        assert list(a.fields(level)) == list(b.fields(level))
    for (ka, ta), (kb, tb) in zip(a.named_tensors(), b.named_tensors(), strict=True):
        assert ka == kb and ta.dtype == tb.dtype and ta.shape == tb.shape, ka
        assert torch.equal(ta, tb), ka                    # exactly, in the same (edge) order


@pytest.mark.parametrize("int32", [False, True])
def test_gather_equals_collate_of_the_same_list(int32):
    graphs = _graphs(int32=int32)
    data = GraphDataset(graphs)
    assert len(data) == len(graphs)
    g = torch.Generator().manual_seed(1)
    for k in (1, 7, 40):
        idx = torch.randperm(len(graphs), generator=g)[:k]
        batch = data.gather(idx)
        batch.validate()                                  # built unchecked: the checks must still pass
        _assert_same(batch, collate([graphs[i] for i in idx.tolist()]))
    _assert_same(data.gather([3, 3, 0]), collate([graphs[3], graphs[3], graphs[0]]))   # repeats too
    _assert_same(data.gather(torch.tensor([-1])), collate([graphs[-1]]))


def test_batches_are_slices_equal_to_gathering_each_chunk():
    graphs = _graphs(23, seed=4)
    data = GraphDataset(graphs)
    order = torch.randperm(23, generator=torch.Generator().manual_seed(2))
    chunks = list(data.batches(order, batch_size=5))
    assert [b.num_graphs for b in chunks] == [5, 5, 5, 5, 3]
    for s, b in zip(range(0, 23, 5), chunks, strict=True):
        _assert_same(b, collate([graphs[i] for i in order[s:s + 5].tolist()]))
    in_order = list(data.batches(batch_size=10))
    _assert_same(in_order[2], collate(graphs[20:]))
    with pytest.raises(ValueError, match="batch_size must be positive"):
        next(data.batches(order, 0))


def test_gather_from_a_batch_whose_edges_are_not_grouped_by_graph():
    graphs = _graphs(6)
    batch = collate(graphs)
    perm = torch.randperm(batch.num_edges, generator=torch.Generator().manual_seed(0))
    shuffled = batch.replace(edge_index=batch.edge_index[:, perm], edge_attr=batch.edge_attr[perm])
    out = GraphDataset(shuffled).gather([4, 1])
    ref = collate([graphs[4], graphs[1]])
    # the edge set of every graph is kept (the order within a graph follows the shuffled batch)
    def key(b):
        return sorted(zip(b.edge_index[0].tolist(), b.edge_index[1].tolist(), b.edge_attr[:, 0].tolist()))

    assert key(out) == key(ref)
    _assert_same(out.replace(edge_index=ref.edge_index, edge_attr=ref.edge_attr), ref)


def test_gather_names_bad_indices_and_sets_without_edges():
    data = GraphDataset([{"pos": torch.randn(n, 3)} for n in (2, 3)])
    assert data.gather([1]).edge_index is None and data.gather([1, 0]).num_nodes == 5
    with pytest.raises(IndexError, match="graph index 2 out of range for a data set of 2 graphs"):
        data.gather([0, 2])
    with pytest.raises(ValueError, match="at least one graph index"):
        data.gather([])
    assert data.nbytes == 5 * 3 * 4 + 5 * 8 and data.to("cpu").device == torch.device("cpu")


class _Net(nn.Module):
    """Uses node, edge and graph fields: a message along the edges, then a sum per graph."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 8)
        self.out = nn.Linear(8, 1)

    def forward(self, b: GraphBatch):
        h = torch.tanh(self.lin(b.x))
        msg = torch.zeros_like(h).index_add_(0, b.edge_index[1], h[b.edge_index[0]] * b.edge_attr[:, :1])
        node = self.out(h + msg).squeeze(-1)
        return torch.zeros(b.num_graphs).index_add_(0, b.batch, node)


def _mse(out, batch):
    return ((out - batch.energy) ** 2).mean()


def test_fast_path_gives_the_losses_of_the_collate_path():
    train_set, val_set = _graphs(48, seed=2), _graphs(20, seed=3)
    runs = {}
    for preload in (False, None, True):
        model = fit(_Net, train_set, None, loss_fn=_mse, epochs=3, batch_size=10, lr=1e-2, device="cpu",
                    progress=False, val=(val_set, None), preload=preload)
        runs[preload] = (model.history, evaluate(model, val_set, None, loss_fn=_mse, device="cpu",
                                                 preload=preload)["loss"])
    slow = runs[False]
    for fast in (runs[None], runs[True]):
        assert fast[0].loss[0] == pytest.approx(slow[0].loss[0], rel=1e-6)      # the first epoch, same batches
        assert fast[0].loss == pytest.approx(slow[0].loss, rel=1e-5)
        assert fast[0].val_loss == pytest.approx(slow[0].val_loss, rel=1e-5)
        assert fast[1] == pytest.approx(slow[1], rel=1e-5)


def test_fast_path_on_nbody_graphs_with_targets_as_a_tensor():
    train_set, _, _ = nbody_splits(30, 2, 2, seed=0)
    graphs = train_set.graphs()
    y = torch.stack([g.pop("target").sum() for g in graphs])
    losses = []
    for preload in (False, True):
        torch.manual_seed(0)

        class Energy(nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = nn.Linear(3, 1, dtype=graphs[0]["pos"].dtype)

            def forward(self, b):
                e = self.lin(b.pos + b.vel).squeeze(-1)
                return torch.zeros(b.num_graphs, dtype=e.dtype).index_add_(0, b.batch, e)

        model = Energy()
        losses.append(train(model, graphs, y, loss_fn=nn.functional.mse_loss, epochs=2, batch_size=7, seed=4,
                            device="cpu", progress=False, preload=preload).loss)
    assert losses[0] == pytest.approx(losses[1], rel=1e-10)


def test_the_fast_path_does_not_collate_per_step(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("collated a batch from the list")

    data = _graphs(24, seed=5)
    monkeypatch.setattr(gdl.training, "_batch", refuse)
    train(_Net(), data, None, loss_fn=_mse, epochs=2, batch_size=8, device="cpu", progress=False)
    evaluate(_Net(), data, None, loss_fn=_mse, device="cpu")
    with pytest.raises(AssertionError, match="collated"):
        train(_Net(), data, None, loss_fn=_mse, epochs=1, device="cpu", progress=False, preload=False)
    ds = GraphDataset(data)                             # a materialised data set is accepted as it is
    hist = train(_Net(), ds, None, loss_fn=_mse, epochs=2, batch_size=8, device="cpu", progress=False)
    assert hist.epochs == 2


def test_tensor_data_and_custom_collate_take_the_old_path_with_the_same_losses():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, 4, generator=g), torch.randint(0, 3, (50,), generator=g)
    runs = []
    for preload in (False, None):
        torch.manual_seed(0)
        model = nn.Linear(4, 3)
        runs.append((train(model, x, y, epochs=2, batch_size=16, device="cpu", progress=False, preload=preload).loss,
                     evaluate(model, x, y, device="cpu", preload=preload)))
    assert runs[0][0] == pytest.approx(runs[1][0], rel=1e-6)
    assert runs[0][1]["accuracy"] == runs[1][1]["accuracy"]
    calls = []

    def my_collate(items):
        calls.append(len(items))
        return collate(items)

    train(_Net(), _graphs(12), None, loss_fn=_mse, epochs=1, batch_size=5, device="cpu", progress=False,
          collate_fn=my_collate)
    assert calls == [5, 5, 2]                           # a custom collate is honoured, batch by batch


def test_train_equals_a_bare_loop_with_plain_adam():
    """train's Adam and its batches: the losses of a hand-written loop with PyTorch's default Adam."""
    data = _graphs(30, seed=6)
    torch.manual_seed(0)
    model = _Net()
    bare = _Net()
    bare.load_state_dict(model.state_dict())
    hist = train(model, data, None, loss_fn=_mse, epochs=3, batch_size=8, lr=1e-2, seed=5, device="cpu",
                 progress=False)
    g = torch.Generator().manual_seed(5)
    opt = torch.optim.Adam(bare.parameters(), lr=1e-2, foreach=False)
    losses = []
    for _ in range(3):
        order = torch.randperm(len(data), generator=g)
        total = 0.0
        for s in range(0, len(data), 8):
            idx = order[s:s + 8].tolist()
            loss = _mse(bare(collate([data[i] for i in idx])), collate([data[i] for i in idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / len(data))
    assert hist.loss == pytest.approx(losses, rel=1e-5)
    assert adam(model.parameters()).defaults["fused"] is None                      # PyTorch's default
    assert adam(model.parameters(), fused=True).defaults["fused"] is True
    assert adam([torch.zeros(2, dtype=torch.long)], fused=True).defaults["fused"] is None   # not float
    torch.manual_seed(0)
    fused = train(_Net(), data, None, loss_fn=_mse, epochs=3, batch_size=8, lr=1e-2, seed=5, device="cpu",
                  progress=False, fused=True)
    assert fused.loss == pytest.approx(losses, rel=1e-3)                          # same rule, other rounding
