"""A small, seeded, device-agnostic training loop shared by the chapters.

``train`` runs mini-batch Adam on tensors already in memory (the course's data sets are small), with an
optional augmentation applied to each batch, and returns the loss per epoch; ``evaluate`` returns the
mean loss and, for classification, the accuracy. Runs are reproducible: the shuffling, the augmentation
and the model's initialisation (when ``seed`` is given to :func:`fit`) come from one seed.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from gdl._runtime import device as default_device
from gdl._tree import shape_of
from gdl.data.graphs import GraphBatch, collate

__all__ = ["History", "train", "evaluate", "accuracy", "fit", "count_parameters", "he_init_", "learning_curve"]

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass
class History:
    """What :func:`train` returns: the mean training loss of every epoch and, with validation data, the
    validation loss of every epoch and the epoch whose weights were kept (early stopping)."""

    loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int | None = None

    @property
    def epochs(self) -> int:
        return len(self.loss)


def _is_structured(x: Any) -> bool:
    """A list of graphs (dicts of tensors or GraphBatch objects) rather than one tensor of samples."""
    return isinstance(x, (list, tuple)) and len(x) > 0 and isinstance(x[0], (Mapping, GraphBatch))


def _check_data(x: Any, y: Any) -> None:
    if _is_structured(x):
        if y is not None and (not isinstance(y, torch.Tensor) or len(y) != len(x)):
            raise ValueError(f"y must be None (targets inside the graphs) or a tensor with one row per graph "
                             f"({len(x)}), got {shape_of(y)}")
        return
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"x and y must be tensors (or x a list of graphs), got {type(x).__name__} and "
                        f"{type(y).__name__}")
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x and y must hold the same, non-zero number of samples, got {len(x)} and {len(y)}")


def _batch(x: Any, y: Any, idx: torch.Tensor, collate_fn: Callable) -> tuple[Any, Any]:
    """Samples ``idx`` of ``(x, y)``: tensor rows, or graphs batched by ``collate_fn`` (``y`` may be ``None``,
    then the loss reads its targets from the batch)."""
    if _is_structured(x):
        xb = collate_fn([x[i] for i in idx.tolist()])
        return xb, (y[idx] if y is not None else xb)
    return x[idx], y[idx]


def train(model: nn.Module, x: Any, y: torch.Tensor | None, *, epochs: int = 20, batch_size: int = 64,
          lr: float = 3e-3, weight_decay: float = 0.0, loss_fn: Callable | None = None,
          augment: Augment | None = None, seed: int = 0, device: torch.device | str | None = None,
          progress: bool | str = True, val: tuple[Any, torch.Tensor | None] | None = None,
          patience: int | None = None, collate_fn: Callable = collate) -> History:
    """Train ``model`` in place with Adam on ``(x, y)`` and return the per-epoch training loss.

    Each epoch visits the samples in a seeded random order; ``augment(batch, generator)`` (for example
    :class:`gdl.data.RandomRotation`) transforms each batch on the CPU before it moves to ``device``.

    .. math::  \\theta \\leftarrow \\operatorname{Adam}\\Big(\\nabla_\\theta \\tfrac{1}{|B|}
               \\sum_{i \\in B} \\ell\\big(f_\\theta(a(x_i)), y_i\\big)\\Big)

    With validation data, the loss on ``val`` is measured after every epoch, the weights of the best epoch are
    restored at the end, and training stops early after ``patience`` epochs without improvement (so ``epochs``
    is an upper bound: train to convergence, not for a fixed small number of steps).

    Args:
        model: the network; moved to ``device``.
        x, y: inputs and targets (first axis: samples); or ``x`` a list of graphs (dicts of tensors in the
            :func:`gdl.data.collate` format) batched with ``collate_fn``, and ``y`` a tensor with one row per
            graph or ``None``, in which case ``loss_fn(output, batch)`` reads the targets from the batch.
        epochs, batch_size, lr, weight_decay: optimisation settings.
        loss_fn: ``loss_fn(output, target)`` (default: cross-entropy, for class labels).
        augment: optional ``augment(x_batch, generator) -> x_batch``.
        seed: seeds the order of the batches and the augmentation.
        device: where to train (default: :func:`gdl.device`).
        progress: show a tqdm bar (``True``), hide it (``False``), or a string used as its label.
        val: optional ``(x_val, y_val)`` for early stopping and best-epoch selection.
        patience: stop after this many epochs without a better validation loss (default: never stop early).
        collate_fn: how a list of graphs becomes a batch (default :func:`gdl.data.collate`).
    """
    _check_data(x, y)
    if y is None and loss_fn is None:
        raise ValueError("with y=None the targets live in the batch: pass loss_fn(output, batch)")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    if val is not None:
        _check_data(*val)
    dev = torch.device(device) if device is not None else default_device(verbose=False)
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn
    model.to(dev).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    history = History()
    best, best_state, waited = math.inf, None, 0
    label = progress if isinstance(progress, str) else "train"
    bar = tqdm(range(epochs), desc=label, disable=progress is False, leave=False)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(x), generator=g)
        total, count = 0.0, 0
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            xb, yb = _batch(x, y, idx, collate_fn)
            if augment is not None:
                xb = augment(xb, g)
                if y is None:
                    yb = xb
            xb, yb = xb.to(dev), yb.to(dev)
            loss = loss_fn(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            count += len(idx)
        history.loss.append(total / count)
        if val is not None:
            v = evaluate(model, *val, loss_fn=loss_fn, device=dev, collate_fn=collate_fn)["loss"]
            history.val_loss.append(v)
            if v < best:
                best, waited, history.best_epoch = v, 0, epoch
                best_state = copy.deepcopy(model.state_dict())
            else:
                waited += 1
            bar.set_postfix(val_loss=f"{v:.3g}", refresh=False)   # shown at the bar's next (rate-limited) refresh
            if patience is not None and waited >= patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


def evaluate(model: nn.Module, x: Any, y: torch.Tensor | None, *, batch_size: int = 256,
             loss_fn: Callable | None = None, device: torch.device | str | None = None,
             collate_fn: Callable = collate) -> dict[str, float]:
    """Mean loss on ``(x, y)`` and, when ``y`` holds class labels, the accuracy (fraction correct).

    ``x`` may be a list of graphs as in :func:`train` (then ``y=None`` means ``loss_fn(output, batch)``).
    Gradients stay enabled for graphs, since models that return forces differentiate their energy."""
    _check_data(x, y)
    if y is None and loss_fn is None:
        raise ValueError("with y=None the targets live in the batch: pass loss_fn(output, batch)")
    dev = torch.device(device) if device is not None else default_device(verbose=False)
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn
    model.to(dev).eval()
    total, correct = 0.0, 0
    classify = y is not None and y.dtype == torch.long and y.ndim == 1
    structured = _is_structured(x)
    with torch.set_grad_enabled(structured):
        for start in range(0, len(x), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(x)))
            xb, yb = _batch(x, y, idx, collate_fn)
            xb, yb = xb.to(dev), yb.to(dev)
            out = model(xb)
            total += loss_fn(out, yb).item() * len(idx)
            if classify:
                correct += (out.argmax(dim=-1) == yb).sum().item()
    result = {"loss": total / len(x)}
    if classify:
        result["accuracy"] = correct / len(x)
    return result


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kwargs) -> float:
    """Fraction of ``x`` whose arg-max class equals ``y``."""
    return evaluate(model, x, y, **kwargs)["accuracy"]


def fit(build: Callable[[], nn.Module], x: Any, y: torch.Tensor | None, *, seed: int = 0,
        **train_kwargs) -> nn.Module:
    """Seed torch, build a fresh model with ``build()``, train it with :func:`train` and return it (the
    :class:`History` is attached as ``model.history``)."""
    torch.manual_seed(seed)
    model = build()
    model.history = train(model, x, y, seed=seed, **train_kwargs)
    return model


def he_init_(model: nn.Module) -> nn.Module:
    """He (Kaiming) normal initialisation of every ``Conv2d``/``Linear`` weight, zero biases; returns ``model``.

    :math:`w \\sim \\mathcal{N}(0, 2 / \\text{fan-in})` keeps the activations' scale through ReLU layers;
    the G-CNN and steerable layers of ``gdl`` use the same rule for their expanded filters, so comparisons
    between them and a plain CNN are not decided by the initial scale.
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def learning_curve(models: dict[str, tuple[Callable[[], nn.Module], Augment | None]],
                   data: Callable[[int, int], Any], sizes: list[int], seeds: list[int], *,
                   tests: dict[str, Callable[[Any], tuple[Any, Any]]] | None = None, max_epochs: int = 1000,
                   patience: int = 10, min_patience_steps: int = 200, batch_size: int = 64, lr: float = 3e-3,
                   device: torch.device | str | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """Test accuracy against the number of training samples, for several models and seeds, each run trained
    to convergence.

    With a validation set (``split.x_val``, ``split.y_val``) every run uses early stopping: it stops once the
    validation loss has not improved for ``max(patience, ceil(min_patience_steps / steps_per_epoch))``
    epochs (so a tiny training set still gets ``min_patience_steps`` gradient steps to improve), and keeps the
    weights of its best epoch; ``max_epochs`` bounds it. Without one, every run takes ``max_epochs`` epochs.
    Batches hold ``min(batch_size, max(1, n // 4))`` samples, so every epoch has at least four steps.

    Args:
        models: ``name -> (build, augment)``; ``build()`` returns a fresh model, ``augment`` may be ``None``.
        data: ``data(n, seed)`` returns an object with ``x_train, y_train, x_test, y_test`` (and optionally
            ``x_val, y_val``).
        sizes, seeds: training-set sizes and seeds to run.
        tests: ``name -> (split -> (x, y))``, the test sets to score (default: ``{"accuracy": x_test, y_test}``).

    Returns:
        one dict per run: ``model``, ``n``, ``seed``, ``epochs`` (trained), ``best_epoch``, ``train_loss`` (at
        the kept epoch) and one accuracy per test set.
    """
    if tests is None:
        tests = {"accuracy": lambda split: (split.x_test, split.y_test)}
    if max_epochs < 1 or patience < 1:
        raise ValueError(f"max_epochs and patience must be positive, got {max_epochs} and {patience}")
    rows = []
    runs = [(n, seed) for seed in seeds for n in sizes]
    bar = tqdm(total=len(runs) * len(models), desc="learning curve", disable=not progress)
    for n, seed in runs:
        split = data(n, seed)
        bs = min(batch_size, max(1, n // 4))
        steps_per_epoch = math.ceil(n / bs)
        val = None
        if getattr(split, "x_val", None) is not None:
            val = (split.x_val, split.y_val)
        wait = max(patience, math.ceil(min_patience_steps / steps_per_epoch))
        for name, (build, augment) in models.items():
            model = fit(build, split.x_train, split.y_train, seed=seed, epochs=max_epochs, batch_size=bs, lr=lr,
                        augment=augment, device=device, progress=False, val=val,
                        patience=wait if val is not None else None)
            history = model.history
            best = history.best_epoch if history.best_epoch is not None else history.epochs - 1
            row = {"model": name, "n": n, "seed": seed, "epochs": history.epochs, "best_epoch": best,
                   "train_loss": history.loss[best]}
            for test, xy in tests.items():
                row[test] = accuracy(model, *xy(split), device=device)
            rows.append(row)
            bar.update()
    bar.close()
    return rows
