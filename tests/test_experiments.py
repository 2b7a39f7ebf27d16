"""The experiment protocol: stop reasons, the convergence check (which must fail on capped or still-improving
runs), divergence, the learning-rate sweep and the table."""

import math

import pytest
import torch
from torch import nn

from gdl.experiments import assert_converged, compare, spread, table, tune_lr
from gdl.training import History, _drops, train


def _regression(n=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]]) + 0.1 * torch.randn(n, 1, generator=g)
    return x, y


def _build():
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))


KW = {"loss_fn": nn.functional.mse_loss, "batch_size": 32, "device": "cpu", "progress": False}


def test_a_run_that_early_stopping_ends_converges():
    (x, y), val = _regression(), _regression(64, seed=1)
    torch.manual_seed(0)
    h = train(_build(), x, y, epochs=2000, lr=1e-2, val=val, patience=20, **KW)
    assert h.stop_reason == "converged" and h.epochs < 2000
    assert h.converged


def test_a_deliberately_capped_run_is_not_converged():
    (x, y), val = _regression(), _regression(64, seed=1)
    torch.manual_seed(0)
    h = train(_build(), x, y, epochs=5, lr=1e-3, val=val, patience=20, **KW)
    assert h.stop_reason == "cap" and h.epochs == 5
    assert not h.converged
    h = train(_build(), x, y, epochs=5, lr=1e-3, **KW)          # no validation data: always the cap
    assert h.stop_reason == "cap" and not h.converged


def test_a_diverging_run_is_flagged():
    (x, y), val = _regression(), _regression(64, seed=1)
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    h = train(model, x, 1e20 * y, epochs=50, lr=1e6, val=(val[0], 1e20 * val[1]), patience=10, **KW)
    assert h.stop_reason == "diverged" and h.epochs < 50
    assert not h.converged


def test_still_falling_detects_a_downward_trend_in_the_window():
    # early stopping fired (no new best in the last 5 epochs) but the trend over the window is down
    falling = History(loss=[1.0] * 12, val_loss=[1.0, 0.8, 0.6, 0.5, 0.45, 0.44, 0.43, 0.9, 0.7, 0.6, 0.5, 0.45],
                      best_epoch=6, stop_reason="converged", patience=5)
    assert falling.still_falling() and not falling.converged
    flat = History(loss=[1.0] * 12, val_loss=[1.0, 0.8, 0.6, 0.5, 0.45, 0.44, 0.43, 0.44, 0.45, 0.44, 0.46, 0.45],
                   best_epoch=6, stop_reason="converged", patience=5)
    assert not flat.still_falling() and flat.converged
    short = History(loss=[1.0] * 3, val_loss=[1.0, 0.9, 0.95], best_epoch=1, stop_reason="converged", patience=5)
    assert not short.converged                                  # too short to judge
    with pytest.raises(ValueError, match="window"):
        flat.still_falling(window=1)


def test_still_falling_needs_a_sustained_decline_not_the_end_of_one_excursion():
    # after the best (0.43) the loss comes back from an excursion within the first half of the window, then only
    # wobbles: the line through the whole window drops, the line through its second half does not
    back = [1.0, 0.8, 0.6, 0.5, 0.45, 0.44, 0.43, 0.60, 0.55, 0.50, 0.47, 0.45, 0.44, 0.46, 0.44, 0.45, 0.44]
    h = History(loss=[1.0] * len(back), val_loss=back, best_epoch=6, stop_reason="converged", patience=10)
    assert _drops(back[-10:], 0.01 * 0.43) and not _drops(back[-5:], 0.01 * 0.43)
    assert not h.still_falling() and h.converged
    # a slow decline that lasts to the end of the window is still falling
    slow = [1.0, 0.8, 0.6, 0.5, 0.45, 0.44, 0.43] + [0.47 - 0.003 * t + 0.001 * (-1) ** t for t in range(10)]
    h = History(loss=[1.0] * len(slow), val_loss=slow, best_epoch=6, stop_reason="converged", patience=10)
    assert h.still_falling() and not h.converged


def test_tune_lr_rejects_a_diverging_rate_and_compare_reports_every_seed():
    (x, y), val = _regression(), _regression(64, seed=1)
    kw = dict(KW, epochs=400, patience=15)
    lr, scores = tune_lr(lambda: nn.Linear(4, 1), x, y, val=val, lrs=[1e6, 1e-2], **kw)
    assert lr == 1e-2 and scores[1e6] > 100 * scores[1e-2]      # huge or inf (diverged)
    rows = compare({"mlp": _build, "linear": lambda: nn.Linear(4, 1)}, x, y, val=val, seeds=[0, 1, 2],
                   lrs=[3e-3, 3e-2], metrics={"val mse": lambda m: nn.functional.mse_loss(m(val[0]), val[1]).item()},
                   **kw)
    assert len(rows) == 6 and {r["seed"] for r in rows} == {0, 1, 2}
    assert all(r["stop_reason"] in ("converged", "cap") and r["best_epoch"] >= 1 for r in rows)
    s = spread(rows, "val mse", model="linear")
    assert s["min"] <= s["mean"] <= s["max"] and s["n"] == 3
    md = table(rows, {"val mse": "{:.3f}"})
    assert "best epoch" in md and md.count("\n") == 3
    assert_converged([r for r in rows if r["converged"]])
    with pytest.raises(AssertionError, match="did not converge"):
        assert_converged([dict(rows[0], converged=False, stop_reason="cap")])


def test_a_spike_far_above_a_near_zero_best_is_not_divergence():
    """A model that fits its target almost exactly may spike by a large factor of its best validation loss and
    recover; only a loss far above where training started (or a non-finite one) is divergence."""
    (x, y), val = _regression(), _regression(64, seed=1)
    torch.manual_seed(0)

    class Spiky(nn.Module):                       # near-exact from epoch 2 on, one spike of 9e4 x its best at 5
        def __init__(self):
            super().__init__()
            self.lin, self.calls = nn.Linear(4, 1), 0

        def forward(self, inp):
            if not self.training:
                self.calls += 1
                best = torch.full((len(inp), 1), 1e-4)
                scale = {1: 100.0, 5: 300.0}.get(self.calls, 1.0)
                return val[1] + scale * best if len(inp) == len(val[1]) else self.lin(inp)
            return self.lin(inp)

    h = train(Spiky(), x, y, epochs=12, lr=1e-3, val=val, patience=20, **KW)
    assert h.stop_reason == "cap" and max(h.val_loss) / min(h.val_loss) > 1e3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_adam_is_the_multi_tensor_form_with_the_per_tensor_loops_parameters(dtype):
    from gdl.training import adam

    def final(make):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1)).to(dtype)
        opt = make(model.parameters())
        g = torch.Generator().manual_seed(1)
        for _ in range(200):
            x = torch.randn(32, 4, generator=g, dtype=dtype)
            loss = (model(x) - x.sum(1, keepdim=True).sin()).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    opt = adam(nn.Linear(2, 2).parameters(), lr=1e-2, weight_decay=1e-4)
    assert opt.defaults["foreach"] is True and not opt.defaults["fused"]
    mine = final(lambda ps: adam(ps, lr=1e-2, weight_decay=1e-4))
    loop = final(lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=1e-4, foreach=False))
    assert torch.equal(mine, loop)                                 # bitwise: the chapters' runs are unchanged


def test_until_flat_keeps_training_while_the_validation_loss_still_falls():
    # a validation loss scripted per epoch: best at epoch 3, then a spike and a slow recovery that never beats it
    script = [1.0, 0.5, 0.45, 0.4, 0.9, 0.8, 0.7, 0.6, 0.55, 0.5, 0.47, 0.46, 0.45] + [0.45] * 30

    def scripted(output, target):
        if torch.is_grad_enabled():                                # a training step: an ordinary loss
            return (output - target).pow(2).mean()
        scripted.calls += 1
        return output.new_tensor(script[scripted.calls - 1])

    (x, y), val = _regression(), _regression(64, seed=1)
    runs = {}
    for flat in (False, True):
        scripted.calls = 0
        torch.manual_seed(0)
        runs[flat] = train(nn.Linear(4, 1), x, y, epochs=40, lr=1e-3, val=val, patience=5, loss_fn=scripted,
                           batch_size=1000, progress=False, until_flat=flat)
    plain, patient = runs[False], runs[True]
    assert plain.stop_reason == "converged" and plain.epochs == 9 and not plain.converged   # stopped mid-descent
    assert patient.stop_reason == "converged" and patient.converged and patient.epochs > plain.epochs
    assert patient.best_epoch == plain.best_epoch == 3


def _fake_run(name, size, seed, lr):
    """A row as gdl.experiments.run returns it, without training: model "b" does best at the larger rate."""
    loss = abs(lr - (0.1 if name == "b" else 0.01)) + size / 1000 + seed / 100
    return {"model": name, "n": size, "seed": seed, "lr": lr, "best_val_loss": loss,
            "stop_reason": "diverged" if lr > 0.5 else "converged"}


@pytest.mark.parametrize("workers", [1, 2])
def test_sweep_tunes_each_job_then_trains_its_other_seeds(workers):
    from gdl.experiments import sweep

    jobs = [("a", 10), ("b", 10), ("b", 20)]
    rows = sweep(_fake_run, jobs, seeds=[3, 4], lrs=[0.01, 0.1, 1.0], workers=workers, progress=False)
    assert [(r["model"], r["n"], r["seed"]) for r in rows] == [(*job, s) for job in jobs for s in (3, 4)]
    assert [r["lr"] for r in rows] == [0.01, 0.01, 0.1, 0.1, 0.1, 0.1]       # the diverged 1.0 never wins
    assert rows[0]["lr_scores"][1.0] == math.inf and rows[0]["lr_scores"] is rows[1]["lr_scores"]
    # per-job candidates; a single candidate is used as it is, with no scores
    rows = sweep(_fake_run, jobs, seeds=[0], lrs=lambda job: [0.3] if job[0] == "a" else [0.01, 0.1],
                 workers=workers, progress=False)
    assert [r["lr"] for r in rows] == [0.3, 0.1, 0.1] and rows[0]["lr_scores"] == {}
    with pytest.raises(ValueError, match="no learning rate"):
        sweep(_fake_run, jobs, seeds=[0], lrs=[], progress=False)


def test_sweep_runs_every_seed_and_rate_at_once_when_the_workers_hold_them_with_the_same_rows():
    from gdl.experiments import sweep

    jobs = [("b", 10)]                                   # 1 job x 2 seeds x 2 rates = 4 runs: two rounds of 2 workers
    one = sweep(_fake_run, jobs, seeds=[3, 4], lrs=[0.01, 0.1], workers=1, progress=False)
    both = sweep(_fake_run, jobs, seeds=[3, 4], lrs=[0.01, 0.1], workers=2, progress=False)
    assert both == one and [r["lr"] for r in both] == [0.1, 0.1]
    assert sweep(_fake_run, jobs, seeds=[4], lrs=[0.01, 0.1], tune_seed=3, workers=2, progress=False) == [one[1]]
