"""benchmarks/estimate_full_scale.py: its operation counter counts known operations, its run count matches what
``gdl.experiments.compare`` trains, and one measured epoch adds up from its steps and its validation pass."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gdl.experiments
from gdl.training import History

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "estimate_full_scale.py"


@pytest.fixture(scope="module")
def est():
    spec = importlib.util.spec_from_file_location("estimate_full_scale", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["estimate_full_scale"] = module
    spec.loader.exec_module(module)
    return module


def test_counter_counts_kernels_and_skips_views(est):
    x, w, b = torch.randn(4, 3), torch.randn(5, 3), torch.randn(5)
    assert est.count_ops(lambda: F.linear(x, w, b)) == 1              # addmm; the transpose of w is a view
    assert est.count_ops(lambda: x.view(12).unsqueeze(0).expand(2, 12).t()) == 0         # views only
    assert est.count_ops(lambda: (x + 1).relu().sum()) == 3
    with est.OpCounter() as counter:
        torch.mm(x, w.t())
        torch.mm(x, w.t())
    assert counter.ops == 2 and counter.by_name == {"mm": 2}


def test_runs_per_model_match_compare(est, monkeypatch):
    calls = []

    def fake_fit(build, x, y, seed=0, lr=None, **kw):
        calls.append((seed, lr))
        model = nn.Linear(1, 1)
        model.history = History(loss=[1.0], val_loss=[1.0 + lr], best_epoch=0, stop_reason="converged", patience=5)
        return model

    monkeypatch.setattr(gdl.experiments, "fit", fake_fit)
    for lrs, seeds in (([1e-2, 3e-2], [0, 1, 2]), ([3e-3, 1e-2], [0, 1, 2, 3, 4]), ([1e-3, 3e-3, 1e-2], [0])):
        calls.clear()
        gdl.experiments.compare({"a": nn.Linear}, torch.zeros(2, 1), torch.zeros(2, 1), val=(0, 0), seeds=seeds,
                                lrs=lrs, patience=1)
        assert len(calls) == est.runs_compare(len(lrs), len(seeds)), (lrs, seeds, calls)


def test_one_epoch_adds_up(est):
    """An epoch of gdl.training.train issues its steps, one validation pass and a few bookkeeping operations."""
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    xv, yv = torch.randn(20, 4), torch.randint(0, 3, (20,))

    def make():
        return (lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))), dict(
            x=x, y=y, val=(xv, yv), batch_size=16)

    group = est.Group("t", "t", "mlp", 1, 10, 5, "test", make)
    m = est.measure(group, time_epoch=False)
    assert m["steps"] == 4 and m["host_ops"] == 0
    assert m["step_ops"] > 10 and m["val_ops"] > 2
    overhead = m["epoch_ops"] - (4 * m["step_ops"] + m["val_ops"])
    assert 0 <= overhead < 60, m


def test_gru_counts_as_fused_calls(est):
    from gdl.data import GraphDataset, digit_sets
    from gdl.nn import DeepSets, GRUSetBaseline

    data = digit_sets(40, 2, 6, part="train", seed=0)

    def make(build):
        return lambda: (build, dict(x=GraphDataset(data), y=None, val=(GraphDataset(data[:10]), None),
                                    batch_size=20, loss_fn=lambda out, b: F.smooth_l1_loss(out, b.y)))

    gru = est.measure(est.Group("t", "t", "gru", 1, 1, 1, "", make(lambda: GRUSetBaseline(64, 8, 1))),
                      time_epoch=False)
    sets = est.measure(est.Group("t", "t", "ds", 1, 1, 1, "", make(lambda: DeepSets(64, 16, 1))),
                       time_epoch=False)
    assert gru["rnn_cpu_ops"] > 20                  # the CPU unrolls the GRU over the set's elements ...
    assert gru["step_ops"] < sets["step_ops"] + 60  # ... which the GPU count replaces by cuDNN's fused calls


def test_adam_step_counts_foreach_kernels_not_its_host_counters(est):
    """foreach Adam issues the same few operations for 2 or 8 parameter tensors; its per-parameter arithmetic on
    the step counters (0-dimensional, on the host on CUDA too) is counted apart."""
    counts = {}
    for layers in (1, 4):
        model = nn.Sequential(*[nn.Linear(3, 3) for _ in range(layers)])
        opt = est._foreach_adam(model.parameters())
        for _ in range(2):
            opt.zero_grad()
            model(torch.randn(2, 3)).sum().backward()
            with est.OpCounter() as counter:
                opt.step()
        counts[layers] = (counter.ops, counter.host_scalar_ops)
    assert counts[1][0] == counts[4][0] > 3, counts
    assert counts[4][1] > counts[1][1] > 0, counts


def test_list_schedule_hands_each_run_to_the_first_free_worker(est):
    assert est.list_schedule([3.0, 1.0, 1.0, 1.0], 2) == 3.0          # 3 | 1 + 1 + 1
    assert est.list_schedule([1.0, 1.0, 1.0, 3.0], 2) == 4.0          # in order: 1 + 1 | 1 + 3
    assert est.list_schedule([2.0] * 5, 1) == 10.0
    assert est.list_schedule([2.0] * 5, 16) == 2.0


def test_parallel_seconds_schedules_the_phases_of_the_sections_that_run_in_workers(est):
    def group(chapter, section, runs, **kw):
        return est.Group(chapter, section, "m", runs, 10, 10, "test", lambda: None, **kw)

    compare = group("08", "cutoff 4.5 A, n=25", 4)       # 2 learning rates, then 2 seeds: 10 s each
    one_phase = group("04", "octagon learning curves", 6)
    unlisted = group("99", "not parallel", 3)
    secs = {id(compare): 40.0, id(one_phase): 60.0, id(unlisted): 30.0}

    def cost(g):
        return secs[id(g)]

    assert est.parallel_seconds([compare], cost, 1) == 40.0                  # one worker: one after another
    assert est.parallel_seconds([compare], cost, 16) == 20.0                 # two phases of one run's length
    assert est.parallel_seconds([compare], cost, 2) == 20.0
    assert est.parallel_seconds([one_phase], cost, 4) == 20.0                # 6 runs of 10 s on 4 workers
    assert est.parallel_seconds([unlisted], cost, 16) == 30.0                # not in PARALLEL_PHASES: serial
    no_tuning = group("08", "cutoff 4.5 A, n=25", 3, first_phase=0)          # every run in the second phase
    secs[id(no_tuning)] = 30.0
    assert est.parallel_seconds([compare, no_tuning], cost, 16) == 20.0      # 10 s, then 10 s (5 runs at once)
    assert est.parallel_seconds([compare, no_tuning], cost, 2) == 10.0 + 30.0      # 5 runs of 10 s on 2 workers
    swept = group("09", "N-body", 4)                     # sweep: 2 candidates x 3 seeds = 6 runs at once if they fit
    secs[id(swept)] = 40.0
    assert est.parallel_seconds([swept], cost, 16) == 10.0                   # 6 <= 32: one round
    assert est.parallel_seconds([swept], cost, 2) == 20.0                    # 6 > 4: two phases, 2 + 2 runs
    # chapter 8: the largest size's seeds at every rate in the first phase when all of it fits in two rounds
    big = group("08", "learning curves, 2 A", 4, first_phase=2, ahead=(6, 0))          # 4 runs of 30 s
    small = group("08", "learning curves, 2 A", 3, first_phase=0)                      # 3 runs of 10 s
    secs[id(big)], secs[id(small)] = 120.0, 30.0
    assert est.parallel_seconds([big, small], cost, 16) == 30.0 + 10.0                 # 6 long runs, then 3 short
    assert est.parallel_seconds([big, small], cost, 2) == 30.0 + 50.0                  # 6 > 4: 2, then 30 30 10 10 10
