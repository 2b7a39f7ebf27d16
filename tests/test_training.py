"""The one training loop on structured data (lists of graphs batched by collate) and early stopping."""

import pytest
import torch
from torch import nn

from gdl.data import GraphBatch
from gdl.training import evaluate, fit, train


def _graph_sum_data(n_graphs=64, seed=0):
    """Graphs of 2..6 nodes with 2 features; target: the sum over nodes of x0 * x1 (a set function)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_graphs):
        n = int(torch.randint(2, 7, (1,), generator=g))
        x = torch.randn(n, 2, generator=g)
        out.append({"x": x, "y": (x[:, 0] * x[:, 1]).sum()})
    return out


class SumPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.phi = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 1))

    def forward(self, batch: GraphBatch):
        h = self.phi(batch.x).squeeze(-1)
        return torch.zeros(batch.num_graphs, dtype=h.dtype, device=h.device).index_add_(0, batch.batch, h)


def _mse(out, batch):
    return ((out - batch.y) ** 2).mean()


def test_fit_trains_on_a_list_of_graphs_with_targets_in_the_batch():
    data = _graph_sum_data()
    before = evaluate(SumPool(), data, None, loss_fn=_mse, device="cpu")["loss"]
    model = fit(SumPool, data, None, loss_fn=_mse, epochs=60, batch_size=16, lr=1e-2, device="cpu",
                progress=False)
    after = evaluate(model, data, None, loss_fn=_mse, device="cpu")["loss"]
    assert after < 0.1 * before
    again = fit(SumPool, data, None, loss_fn=_mse, epochs=60, batch_size=16, lr=1e-2, device="cpu",
                progress=False)
    assert evaluate(again, data, None, loss_fn=_mse, device="cpu")["loss"] == after   # seeded


def test_targets_may_be_a_tensor_with_one_row_per_graph():
    data = _graph_sum_data(16)
    y = torch.stack([d.pop("y") for d in data])
    model = SumPool()
    hist = train(model, data, y, loss_fn=nn.functional.mse_loss, epochs=3, batch_size=8, device="cpu",
                 progress=False)
    assert len(hist.loss) == 3
    with pytest.raises(ValueError, match="one row per graph"):
        train(model, data, y[:3], loss_fn=nn.functional.mse_loss, epochs=1, device="cpu", progress=False)
    with pytest.raises(ValueError, match="loss_fn"):
        train(model, data, None, epochs=1, device="cpu", progress=False)


def test_early_stopping_restores_the_best_epoch():
    train_set, val_set = _graph_sum_data(32, seed=1), _graph_sum_data(32, seed=2)
    torch.manual_seed(0)
    model = SumPool()
    hist = train(model, train_set, None, loss_fn=_mse, epochs=400, batch_size=8, lr=3e-2, device="cpu",
                 progress=False, val=(val_set, None), patience=5)
    assert hist.epochs < 400                                  # stopped early
    assert hist.best_epoch == min(range(len(hist.val_loss)), key=hist.val_loss.__getitem__)
    assert hist.epochs - 1 - hist.best_epoch == 5             # exactly `patience` epochs without improvement
    final = evaluate(model, val_set, None, loss_fn=_mse, device="cpu")["loss"]
    assert final == pytest.approx(hist.val_loss[hist.best_epoch], rel=1e-6)


def test_evaluation_keeps_gradients_only_for_models_that_differentiate_their_inputs():
    """Graph models are evaluated without autograd; force models (EnergyForces) with it; a model that takes
    gradients without saying so is still evaluated correctly."""
    from gdl.data import GraphBatch, collate
    from gdl.training import evaluate

    g = torch.Generator().manual_seed(0)
    graphs = [{"x": torch.randn(4, 3, generator=g), "edge_index": torch.tensor([[0, 1, 2], [1, 2, 3]]),
               "y": torch.randn(1, generator=g)} for _ in range(6)]
    seen = []

    class Probe(torch.nn.Module):
        def __init__(self, differentiate: bool):
            super().__init__()
            self.lin, self.differentiate = torch.nn.Linear(3, 1), differentiate

        def forward(self, batch: GraphBatch):
            seen.append(torch.is_grad_enabled())
            x = batch.x.detach().requires_grad_(self.differentiate)
            out = self.lin(x).squeeze(-1)
            if self.differentiate:                  # a force-like quantity, taken without declaring it
                (grad,) = torch.autograd.grad(out.sum(), x)
                out = out + grad.sum(-1)
            return torch.zeros(batch.num_graphs).index_add(0, batch.batch, out)

    batch = collate(graphs)
    loss = lambda out, b: ((out - b.y) ** 2).mean()                        # noqa: E731
    evaluate(Probe(False), graphs, None, loss_fn=loss)
    assert seen and not any(seen), "gradients were on for a model that does not need them"
    seen.clear()
    result = evaluate(Probe(True), graphs, None, loss_fn=loss)
    assert seen[-1] and result["loss"] >= 0
    assert batch.num_graphs == 6
