"""The book's experiment protocol: every comparison trains each model to convergence, with its own learning rate
chosen on validation data under one budget, over several seeds, and reports the spread, the best epoch, the
epochs used and why each run stopped.

A run is a :func:`gdl.training.fit` call with validation data and early stopping; its row records

- ``stop_reason``: ``"converged"``, ``"cap"`` (the epoch limit came first) or ``"diverged"``;
- ``converged``: :attr:`gdl.training.History.converged` (early stopping ended it *and* the validation loss no
  longer fell over the last ``patience`` epochs);
- ``best_epoch`` (1-based, the epoch whose weights were kept) and ``epochs`` (trained);
- one value per metric, each ``metric(model) -> float`` evaluated on the kept weights.

The learning rate of a model is the one of a small grid with the lowest best validation loss, every candidate
trained with the same epoch limit and patience (:func:`tune_lr`); a diverged candidate never wins.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
from torch import nn

from gdl.parallel import starmap
from gdl.parallel import workers as default_workers
from gdl.training import fit

__all__ = ["tune_lr", "run", "compare", "spread", "table", "describe", "assert_converged", "pick_lr", "sweep"]

Metric = Callable[[nn.Module], float]


def describe(row: Mapping[str, Any]) -> str:
    """One line about a run: ``"SchNet seed 1: converged after 84 epochs (best epoch 61)"``."""
    name = f"{row.get('model', 'run')} seed {row.get('seed', '?')}"
    extra = "" if row["stop_reason"] != "converged" or row["converged"] else ", validation loss still falling"
    return (f"{name}: {row['stop_reason']} after {row['epochs']} epochs (best epoch {row['best_epoch']}, "
            f"lr {row['lr']:g}){extra}")


def run(build: Callable[[], nn.Module], x: Any, y: Any, *, val: tuple[Any, Any], lr: float, seed: int = 0,
        metrics: Mapping[str, Metric] | None = None, name: str = "model", **train_kwargs) -> dict[str, Any]:
    """Train one fresh ``build()`` with early stopping on ``val`` and return its row (see the module).

    Args:
        build: returns a fresh model.
        x, y, val: training data and ``(x_val, y_val)`` as for :func:`gdl.training.train`.
        lr, seed: learning rate and seed of the run.
        metrics: ``name -> metric(model)``, evaluated on the kept (best-epoch) weights.
        name: the model's name in the row.
        train_kwargs: passed to :func:`gdl.training.fit` (``epochs``, ``patience``, ``loss_fn`` ...).
    """
    if val is None:
        raise ValueError("the protocol needs validation data (val=(x_val, y_val)) to stop and select epochs")
    if train_kwargs.get("patience") is None:
        raise ValueError("the protocol needs early stopping: pass patience=<epochs without improvement>")
    train_kwargs.setdefault("progress", False)
    model = fit(build, x, y, seed=seed, lr=lr, val=val, **train_kwargs)
    h = model.history
    row = {"model": name, "seed": seed, "lr": lr, "epochs": h.epochs,
           "best_epoch": (h.best_epoch + 1) if h.best_epoch is not None else None,
           "best_val_loss": min(h.val_loss) if h.val_loss else math.inf,
           "stop_reason": h.stop_reason, "converged": h.converged}
    if h.stop_reason != "diverged":
        for key, metric in (metrics or {}).items():
            row[key] = float(metric(model))
    else:
        row.update({key: math.nan for key in (metrics or {})})
    row["_model"] = model
    return row


def tune_lr(build: Callable[[], nn.Module], x: Any, y: Any, *, val: tuple[Any, Any], lrs: Sequence[float],
            seed: int = 0, return_row: bool = False, workers: int | None = None,
            **train_kwargs) -> tuple[float, dict[float, float]] | tuple[float, dict[float, float], dict]:
    """The learning rate of ``lrs`` whose run reaches the lowest validation loss, every candidate trained with
    the same ``train_kwargs`` (so the same epoch limit and patience: one budget).

    Returns:
        ``(best_lr, {lr: best validation loss})``; a diverged run scores ``inf``. With ``return_row=True`` also
        the winning run's row (see :func:`run`; ``train_kwargs`` may hold ``metrics`` and ``name``), so that it
        can serve as the run of ``seed`` instead of being trained again. The candidates train at the same time
        in ``workers`` processes (default :func:`gdl.parallel.workers`; see :mod:`gdl.parallel`).
    """
    if not lrs:
        raise ValueError("lrs must hold at least one learning rate")
    rows = starmap(_run, [(dict(build=build, x=x, y=y, val=val, lr=lr, seed=seed, **train_kwargs),) for lr in lrs],
                   workers=workers, progress=False)
    best, scores = pick_lr(dict(zip(lrs, rows)))
    return (best, scores, rows[list(lrs).index(best)]) if return_row else (best, scores)


def _run(kwargs: dict[str, Any]) -> dict[str, Any]:
    """:func:`run` with its arguments in one dict: one call of :func:`gdl.parallel.starmap`."""
    return run(**kwargs)


def pick_lr(rows: Mapping[float, dict[str, Any]]) -> tuple[float, dict[float, float]]:
    """The learning rate whose run has the lowest best validation loss (a diverged run scores ``inf``), and every
    score; the scores are also stored in the winning row as ``lr_scores``.

    Args:
        rows: ``lr -> row`` of :func:`run`, the candidates trained under one budget (for a chapter that trains
            them itself, e.g. in parallel with :func:`gdl.parallel.starmap`).
    """
    scores = {lr: row["best_val_loss"] if row["stop_reason"] != "diverged" else math.inf for lr, row in rows.items()}
    best = min(scores, key=scores.__getitem__)
    if not math.isfinite(scores[best]):
        raise RuntimeError(f"every learning rate in {list(rows)} diverged")
    rows[best]["lr_scores"] = scores
    return best, scores


def sweep(run_one: Callable[..., dict[str, Any]], jobs: Iterable[Sequence[Any]], *, seeds: Iterable[int],
          lrs: Sequence[float] | Callable[[tuple], Sequence[float]], tune_seed: int | None = None,
          workers: int | None = None, desc: str | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """The protocol for jobs (a model, or a model at one training-set size ...) that each get their own learning
    rate: ``run_one(*job, seed, lr)`` trains one run and returns its row (as :func:`run` does).

    For every job, each candidate learning rate trains at ``tune_seed`` (default: the first seed) and
    :func:`pick_lr` keeps the one with the lowest best validation loss; that run is the job's run for
    ``tune_seed``, and its other seeds train with the same rate. The runs are independent, so the candidates of
    all jobs form one :func:`gdl.parallel.starmap` and the remaining (job, seed) runs a second: with ``workers``
    processes (default :func:`gdl.parallel.workers`) they train at the same time, with the rows they would have
    one after another. Where every (job, seed, candidate) run fits in two rounds of the workers, all of them train
    in one map instead (the losing candidates' runs at the other seeds are discarded): the same rows in about
    half the wall time, for work the idle workers would not have done anyway.

    Args:
        run_one: ``run_one(*job, seed, lr) -> row``; with several workers it must be picklable by cloudpickle (a
            function defined in a notebook is).
        jobs: one tuple of arguments per job.
        lrs: the candidates, the same for every job or ``lrs(job)``; a single candidate is used as it is.

    Returns:
        one row per (job, seed), jobs in the order given, seeds in that order within a job; every row holds the
        candidates' scores as ``lr_scores`` (empty where there was a single candidate).
    """
    jobs, seeds = [tuple(job) for job in jobs], list(seeds)
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    tune_seed = seeds[0] if tune_seed is None else tune_seed
    candidates = {job: list(lrs(job) if callable(lrs) else lrs) for job in jobs}
    for job, grid in candidates.items():
        if not grid:
            raise ValueError(f"no learning rate to try for job {job}")
    chosen, scores, done = {}, {}, {}
    tries = [(job, lr) for job in jobs if len(candidates[job]) > 1 for lr in candidates[job]]
    # every (job, seed, candidate) at once when at most two rounds of the workers hold them: the other seeds' runs
    # at the losing candidates are thrown away, the rows are the same, and the wall time is one phase, not two
    every = list(dict.fromkeys([(job, tune_seed, lr) for job, lr in tries]
                               + [(job, seed, lr) for job in jobs for seed in seeds for lr in candidates[job]]))
    k = default_workers() if workers is None else int(workers)
    speculate = 1 < k and len(every) <= 2 * k
    if speculate:
        ran = dict(zip(every, starmap(run_one, [(*job, seed, lr) for job, seed, lr in every], workers=k,
                                      progress=progress, desc=f"{desc}: every seed and rate" if desc else None)))
        tried = [ran[job, tune_seed, lr] for job, lr in tries]
    else:
        tried = starmap(run_one, [(*job, tune_seed, lr) for job, lr in tries], workers=k, progress=progress,
                        desc=f"{desc}: learning rates" if desc else None)
    for job in jobs:
        if len(candidates[job]) == 1:
            chosen[job], scores[job] = candidates[job][0], {}
            continue
        mine = {lr: row for (j, lr), row in zip(tries, tried) if j == job}
        chosen[job], scores[job] = pick_lr(mine)
        done[job] = mine[chosen[job]]
    todo = [(job, seed) for job in jobs for seed in seeds if not (job in done and seed == tune_seed)]
    if speculate:
        trained = {(job, seed): ran[job, seed, chosen[job]] for job, seed in todo}
    else:
        trained = dict(zip(todo, starmap(run_one, [(*job, seed, chosen[job]) for job, seed in todo], workers=k,
                                         progress=progress, desc=f"{desc}: seeds" if desc else None)))
    rows = []
    for job in jobs:
        for seed in seeds:
            row = done[job] if job in done and seed == tune_seed else trained[job, seed]
            row["lr_scores"] = scores[job]
            rows.append(row)
    return rows


def _compare_run(models: Mapping[str, Callable[[], nn.Module]], common: dict[str, Any], name: str, seed: int,
                 lr: float) -> dict[str, Any]:
    """One run of :func:`compare`: model ``name`` at ``seed`` and ``lr``."""
    return run(models[name], lr=lr, seed=seed, name=name, **common)


def compare(models: Mapping[str, Callable[[], nn.Module]], x: Any, y: Any, *, val: tuple[Any, Any],
            seeds: Iterable[int], lrs: Sequence[float] | Mapping[str, float],
            metrics: Mapping[str, Metric] | None = None, tune_seed: int = 0, workers: int | None = None,
            **train_kwargs) -> list[dict[str, Any]]:
    """Train every model on the same data for every seed, each with its own tuned learning rate
    (:func:`sweep` with one job per model).

    Args:
        models: ``name -> build``.
        lrs: a grid searched per model as :func:`tune_lr` does (seed ``tune_seed``; the winning run is reused as
            that seed's run), or ``name -> lr`` already chosen.
        workers: runs trained at the same time, each in its own process (default :func:`gdl.parallel.workers`:
            one at the small scale). First every model's learning-rate candidates, then every remaining
            (model, seed) run; the rows are the same as one after another, to round-off.
        seeds, metrics, train_kwargs: as in :func:`run`.

    Returns:
        one row per (model, seed), models in the order given; the chosen learning rate is in ``row["lr"]`` and
        the grid's scores in ``row["lr_scores"]``.
    """
    if not isinstance(lrs, Mapping) and not lrs:
        raise ValueError("lrs must hold at least one learning rate")
    common = dict(x=x, y=y, val=val, metrics=metrics, **train_kwargs)
    grid = (lambda job: [lrs[job[0]]]) if isinstance(lrs, Mapping) else list(lrs)
    return sweep(partial(_compare_run, models, common), [(name,) for name in models], seeds=seeds, lrs=grid,
                 tune_seed=tune_seed, workers=workers, progress=False)


def spread(rows: Iterable[Mapping[str, Any]], key: str, **where: Any) -> dict[str, float]:
    """Mean, standard deviation (over seeds, ``ddof=0``), minimum and maximum of ``key`` over the rows that
    match ``where`` (e.g. ``model="SchNet", n=40``)."""
    values = np.array([r[key] for r in rows if all(r.get(k) == v for k, v in where.items())], dtype=float)
    if len(values) == 0:
        raise ValueError(f"no rows match {where}")
    return {"mean": float(values.mean()), "std": float(values.std()), "min": float(values.min()),
            "max": float(values.max()), "n": len(values)}


def table(rows: Sequence[Mapping[str, Any]], metrics: Mapping[str, str], by: Sequence[str] = ("model",)) -> str:
    """A Markdown table: one line per group ``by``, each metric as mean ± std over seeds, then the learning
    rate, the mean best epoch and epochs used (with their ranges) and the stop reasons.

    Args:
        metrics: ``key -> format`` (e.g. ``{"F": "{:.0f}"}``).
    """
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in by), []).append(r)
    head = [*by, *metrics, "lr", "best epoch", "epochs", "stop"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(by) + "---:|" * (len(head) - len(by))]
    for key, sel in groups.items():
        cells = [str(k) for k in key]
        for m, fmt in metrics.items():
            s = spread(sel, m)
            cells.append(f"{fmt.format(s['mean'])} ± {fmt.format(s['std'])}")
        cells.append(", ".join(sorted({f"{r['lr']:g}" for r in sel})))
        for k in ("best_epoch", "epochs"):
            s = spread(sel, k)
            cells.append(f"{s['mean']:.0f} ({s['min']:.0f}-{s['max']:.0f})")
        reasons = [r["stop_reason"] + ("" if r["converged"] or r["stop_reason"] != "converged" else "*")
                   for r in sel]
        cells.append(", ".join(f"{reasons.count(x)} {x}" for x in dict.fromkeys(reasons)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def assert_converged(rows: Iterable[Mapping[str, Any]]) -> None:
    """Raise ``AssertionError`` naming every run that did not converge (capped, diverged, or stopped while its
    validation loss was still falling)."""
    bad = [describe(r) for r in rows if not r["converged"]]
    if bad:
        raise AssertionError("runs that did not converge:\n" + "\n".join(bad))
