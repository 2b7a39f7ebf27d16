"""Independent runs in worker processes (gdl.parallel): the same results, in the same order, as one after
another, for module functions and for closures (sent by value, as a notebook's functions are)."""

import os
import time

import pytest
import torch
from torch import nn

from gdl.experiments import compare, tune_lr
from gdl.parallel import starmap, workers


def _square_plus(a, b):
    return a * a + b


def _pid_after(delay):
    time.sleep(delay)
    return os.getpid()


def test_starmap_keeps_the_order_of_the_calls_in_one_process_and_in_several():
    calls = [(a, b) for a in range(5) for b in (0, 10)]
    serial = starmap(_square_plus, calls, workers=1, progress=False)
    assert serial == [a * a + b for a, b in calls]
    assert starmap(_square_plus, calls, workers=2, progress=False) == serial


def test_starmap_runs_in_other_processes_and_sends_closures_by_value():
    offset = torch.tensor([3.0, 4.0])                      # captured by the lambda: must travel with it
    result = starmap(lambda k: (offset * k).tolist(), [(1,), (2,)], workers=2, progress=False)
    assert result == [[3.0, 4.0], [6.0, 8.0]]
    pids = starmap(_pid_after, [(0.5,), (0.5,)], workers=2, progress=False)
    assert os.getpid() not in pids                         # the work happened in worker processes


def test_starmap_with_one_worker_runs_here():
    assert starmap(_pid_after, [(0,), (0,)], workers=1, progress=False) == [os.getpid()] * 2


def test_an_error_in_a_worker_reaches_the_caller():
    with pytest.raises(ZeroDivisionError):
        starmap(lambda k: 1 / k, [(1,), (0,)], workers=2, progress=False)


def test_workers_reads_gdl_workers_and_the_scale(monkeypatch):
    monkeypatch.setenv("GDL_WORKERS", "3")
    assert workers() == 3
    for bad in ("0", "-2", "many"):
        monkeypatch.setenv("GDL_WORKERS", bad)
        with pytest.raises(ValueError, match="GDL_WORKERS"):
            workers()
    monkeypatch.delenv("GDL_WORKERS")
    monkeypatch.setenv("GDL_SCALE", "small")
    assert workers() == 1                                   # the small scale: one run at a time, here
    monkeypatch.setenv("GDL_SCALE", "full")
    assert 1 <= workers() <= 16


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return x, x.sum(1, keepdim=True) ** 2


def _build():
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))


KW = {"loss_fn": nn.functional.mse_loss, "batch_size": 16, "device": "cpu", "progress": False, "epochs": 40,
      "patience": 5}


def test_compare_in_worker_processes_gives_the_rows_of_one_process():
    (x, y), val = _data(64, 0), _data(32, 1)
    metrics = {"val mse": lambda m: float(nn.functional.mse_loss(m(val[0]), val[1]).detach())}
    models = {"tanh": _build, "wide": lambda: nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 1))}
    kwargs = dict(val=val, seeds=[0, 1], lrs=(1e-2, 3e-2), metrics=metrics, **KW)
    serial = compare(models, x, y, workers=1, **kwargs)
    parallel = compare(models, x, y, workers=2, **kwargs)
    assert [(r["model"], r["seed"], r["lr"]) for r in parallel] == [(r["model"], r["seed"], r["lr"]) for r in serial]
    for a, b in zip(serial, parallel):
        assert a["epochs"] == b["epochs"] and a["stop_reason"] == b["stop_reason"]
        assert a["val mse"] == pytest.approx(b["val mse"], rel=1e-5)
        assert a["lr_scores"] == pytest.approx(b["lr_scores"], rel=1e-5)
        for p, q in zip(a["_model"].parameters(), b["_model"].parameters()):     # the trained models come back
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_tune_lr_in_worker_processes_picks_the_same_rate():
    (x, y), val = _data(64, 0), _data(32, 1)
    one = tune_lr(_build, x, y, val=val, lrs=(1e-3, 1e-2, 3e-2), workers=1, **KW)
    two = tune_lr(_build, x, y, val=val, lrs=(1e-3, 1e-2, 3e-2), workers=2, **KW)
    assert one[0] == two[0] and one[1] == pytest.approx(two[1], rel=1e-5)


def _draws(_):
    import random

    import numpy as np
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_every_call_starts_from_the_callers_random_state_and_leaves_it_unchanged():
    import random

    import numpy as np
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    expected = _draws(None)                              # what a call drawing from the global generators sees
    for k in (1, 2):
        random.seed(5)
        np.random.seed(5)
        torch.manual_seed(5)
        results = starmap(_draws, [(i,) for i in range(3)], workers=k, progress=False)
        assert results == [expected] * 3, k              # not the runs before it, not the number of workers
        assert _draws(None) == expected, k               # the caller's generators are where the map found them


def _nested(_):
    return starmap(_pid_after, [(0,), (0,)], progress=False), os.getpid()


def test_a_worker_maps_its_own_calls_in_its_own_process(monkeypatch):
    monkeypatch.setenv("GDL_WORKERS", "2")
    for inner, pid in starmap(_nested, [(0,), (1,)], progress=False):
        assert inner == [pid, pid]                       # no workers of workers


_HELD = []


def _hold_memory(megabytes):
    """Keeps `megabytes` alive in the worker, so that loky's leak check replaces the worker after the call."""
    import numpy as np
    time.sleep(1.1)                                       # loky checks a worker's memory at most once a second
    _HELD.append(np.ones(megabytes * 2**17))
    return len(_HELD)


def test_a_worker_replaced_for_its_memory_loses_nothing_and_warns_no_one(recwarn):
    results = starmap(_hold_memory, [(0,)] * 2 + [(400,)] * 4, workers=2, progress=False)
    assert len(results) == 6 and all(r >= 1 for r in results)
    assert not [w for w in recwarn if "worker stopped" in str(w.message)]
