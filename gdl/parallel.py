"""Independent training runs at the same time, one per worker process.

The course's models are small: a training step is a few thousand tiny operations, and its time is what the host
spends issuing them (about 10 to 60 microseconds each, on a CPU core or in front of a GPU), not arithmetic. A
chapter that trains many independent runs (seeds, learning rates, training-set sizes) is therefore bound by one
core issuing operations one after another, while the other cores, and most of the GPU, wait. :func:`starmap`
hands the runs to ``workers`` processes instead, so ``k`` cores issue operations for ``k`` runs at once; on a
GPU all of them share the device, which has room for many such streams of small kernels.

A run gives the same result in a worker as in the notebook's own process (to floating-point round-off: a worker
uses one thread per core, and a reduction split over a different number of threads adds in another order): every
call starts from the random state the caller had when the map began (Python's, NumPy's and torch's global
generators), in a worker as in this process, and the map leaves the caller's state as it found it. So nothing a
run draws depends on the runs before it or on the number of workers, and neither does anything the notebook draws
after the map (runs normally seed themselves too: :func:`gdl.training.fit` seeds torch from the run's seed).
Results come back in the order of the calls.

Workers are separate Python processes started afresh (joblib's ``loky`` backend), not forks, so CUDA works in
them; functions defined in a notebook are sent to them by value (cloudpickle), and so are the tensors they use.
"""

from __future__ import annotations

import os
import random
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from gdl._runtime import scaled

__all__ = ["workers", "starmap"]

#: At most this many worker processes by default (each holds its own copy of torch and, on a GPU, a CUDA context
#: of a few hundred MB).
MAX_DEFAULT_WORKERS = 16


def workers() -> int:
    """How many runs the experiment helpers train at the same time.

    ``GDL_WORKERS`` sets it (``1``: every run in this process, one after another). By default: 1 at
    ``GDL_SCALE=small`` (the book's tests already execute one chapter per core), and at ``GDL_SCALE=full`` one per
    CPU core this process may use, at most :data:`MAX_DEFAULT_WORKERS`.
    """
    value = os.environ.get("GDL_WORKERS", "").strip()
    if value:
        try:
            k = int(value)
        except ValueError:
            k = 0
        if k < 1:
            raise ValueError(f"GDL_WORKERS={value!r} is not a positive whole number of worker processes")
        return k
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return scaled(small=1, full=max(1, min(cores, MAX_DEFAULT_WORKERS)))


_default_workers = workers      # starmap's argument of the same name hides the function


def _random_state() -> tuple:
    """The global generators' states: Python's, NumPy's and torch's (CPU; CUDA's where CUDA is initialised)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda


def _set_random_state(state: tuple) -> None:
    python, numpy_state, torch_state, cuda = state
    random.setstate(python)
    np.random.set_state(numpy_state)
    torch.set_rng_state(torch_state)
    if cuda is not None and torch.cuda.is_available() and torch.cuda.device_count() >= len(cuda):
        torch.cuda.set_rng_state_all(cuda)


def _call(fn: Callable[..., Any], args: tuple, state: tuple, in_worker: bool = False) -> Any:
    """``fn(*args)`` from the random state ``state``: one call of :func:`starmap`, here or in a worker. A worker
    runs whatever its call maps one run at a time (``GDL_WORKERS=1`` there), so workers never start workers."""
    if in_worker:
        os.environ["GDL_WORKERS"] = "1"
    _set_random_state(state)
    return fn(*args)


def starmap(fn: Callable[..., Any], calls: Iterable[Sequence[Any]], *, workers: int | None = None,
            desc: str | None = None, progress: bool = True) -> list[Any]:
    """``[fn(*args) for args in calls]``, the calls shared among ``workers`` processes.

    Args:
        fn: one run; with ``workers > 1`` it and its arguments must be picklable by cloudpickle (functions and
            lambdas defined in a notebook are), and so must what it returns.
        calls: the argument tuples, one per run.
        workers: processes to use (default :func:`workers`); with 1, or a single call, the runs execute here,
            one after another, exactly as the list comprehension would.
        desc: label of the progress bar (one tick per finished run).

    Returns:
        the results, in the order of ``calls``. A run that raises stops the whole map with its exception. Every
        call starts from the random state this process had when the map began, which it has again afterwards.
    """
    calls = [tuple(args) for args in calls]
    k = _default_workers() if workers is None else int(workers)
    if k < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    k = min(k, len(calls))
    state = _random_state()
    bar = tqdm(total=len(calls), desc=desc, disable=not progress)
    results = []
    try:
        if k <= 1:
            for args in calls:
                results.append(_call(fn, args, state))
                bar.update()
        else:
            from joblib import Parallel, delayed

            # max_nbytes=None: arrays travel by value (no read-only memory maps an in-place operation would fail on)
            pool = Parallel(n_jobs=k, backend="loky", return_as="generator", max_nbytes=None)
            with warnings.catch_warnings():
                # loky replaces a worker whose memory grew by 300 MB after a call (runs that hold large data sets
                # do), finished work kept, and warns about it: not the reader's concern
                warnings.filterwarnings("ignore", message="A worker stopped while some jobs", category=UserWarning)
                for result in pool(delayed(_call)(fn, args, state, True) for args in calls):
                    results.append(result)
                    bar.update()
    finally:
        bar.close()
        _set_random_state(state)
    return results
