"""A small, seeded, device-agnostic training loop shared by the chapters.

``train`` runs mini-batch Adam on tensors already in memory (the course's data sets are small), with an
optional augmentation applied to each batch, and returns the loss per epoch; ``evaluate`` returns the
mean loss and, for classification, the accuracy. Runs are reproducible: the shuffling, the augmentation
and the model's initialisation (when ``seed`` is given to :func:`fit`) come from one seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from gdl._runtime import device as default_device

__all__ = ["History", "train", "evaluate", "accuracy", "fit", "count_parameters", "he_init_", "learning_curve"]

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass
class History:
    """What :func:`train` returns: the mean training loss of every epoch."""

    loss: list[float] = field(default_factory=list)


def _check_data(x: torch.Tensor, y: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"x and y must be tensors, got {type(x).__name__} and {type(y).__name__}")
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x and y must hold the same, non-zero number of samples, got {len(x)} and {len(y)}")


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int = 20, batch_size: int = 64,
          lr: float = 3e-3, weight_decay: float = 0.0, loss_fn: Callable | None = None,
          augment: Augment | None = None, seed: int = 0, device: torch.device | str | None = None,
          progress: bool | str = True) -> History:
    """Train ``model`` in place with Adam on ``(x, y)`` and return the per-epoch training loss.

    Each epoch visits the samples in a seeded random order; ``augment(batch, generator)`` (for example
    :class:`gdl.data.RandomRotation`) transforms each batch on the CPU before it moves to ``device``.

    .. math::  \\theta \\leftarrow \\operatorname{Adam}\\Big(\\nabla_\\theta \\tfrac{1}{|B|}
               \\sum_{i \\in B} \\ell\\big(f_\\theta(a(x_i)), y_i\\big)\\Big)

    Args:
        model: the network; moved to ``device``.
        x, y: inputs and targets (first axis: samples).
        epochs, batch_size, lr, weight_decay: optimisation settings.
        loss_fn: ``loss_fn(output, target)`` (default: cross-entropy, for class labels).
        augment: optional ``augment(x_batch, generator) -> x_batch``.
        seed: seeds the order of the batches and the augmentation.
        device: where to train (default: :func:`gdl.device`).
        progress: show a tqdm bar (``True``), hide it (``False``), or a string used as its label.
    """
    _check_data(x, y)
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    dev = torch.device(device) if device is not None else default_device(verbose=False)
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn
    model.to(dev).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    history = History()
    label = progress if isinstance(progress, str) else "train"
    for _ in tqdm(range(epochs), desc=label, disable=progress is False, leave=False):
        order = torch.randperm(len(x), generator=g)
        total, count = 0.0, 0
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            xb, yb = x[idx], y[idx]
            if augment is not None:
                xb = augment(xb, g)
            xb, yb = xb.to(dev), yb.to(dev)
            loss = loss_fn(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            count += len(idx)
        history.loss.append(total / count)
    return history


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 256,
             loss_fn: Callable | None = None, device: torch.device | str | None = None) -> dict[str, float]:
    """Mean loss on ``(x, y)`` and, when ``y`` holds class labels, the accuracy (fraction correct)."""
    _check_data(x, y)
    dev = torch.device(device) if device is not None else default_device(verbose=False)
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn
    model.to(dev).eval()
    total, correct = 0.0, 0
    classify = y.dtype == torch.long and y.ndim == 1
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size].to(dev), y[start:start + batch_size].to(dev)
        out = model(xb)
        total += loss_fn(out, yb).item() * len(xb)
        if classify:
            correct += (out.argmax(dim=-1) == yb).sum().item()
    result = {"loss": total / len(x)}
    if classify:
        result["accuracy"] = correct / len(x)
    return result


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kwargs) -> float:
    """Fraction of ``x`` whose arg-max class equals ``y``."""
    return evaluate(model, x, y, **kwargs)["accuracy"]


def fit(build: Callable[[], nn.Module], x: torch.Tensor, y: torch.Tensor, *, seed: int = 0,
        **train_kwargs) -> nn.Module:
    """Seed torch, build a fresh model with ``build()``, train it with :func:`train` and return it."""
    torch.manual_seed(seed)
    model = build()
    train(model, x, y, seed=seed, **train_kwargs)
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
                   data: Callable[[int, int], Any], sizes: list[int], seeds: list[int], *, steps: int = 200,
                   batch_size: int = 32, lr: float = 3e-3, device: torch.device | str | None = None,
                   progress: bool = True) -> list[dict[str, Any]]:
    """Test accuracy against the number of training samples, for several models and seeds.

    Every run takes the same number of gradient ``steps`` (so small training sets are not under-trained):
    ``epochs = round(steps * batch_size / n)``.

    Args:
        models: ``name -> (build, augment)``; ``build()`` returns a fresh model, ``augment`` may be ``None``.
        data: ``data(n, seed)`` returns an object with ``x_train, y_train, x_test, y_test``.
        sizes, seeds: training-set sizes and seeds to run.

    Returns:
        one dict per run: ``model``, ``n``, ``seed``, ``accuracy``.
    """
    rows = []
    runs = [(n, seed) for seed in seeds for n in sizes]
    bar = tqdm(total=len(runs) * len(models), desc="learning curve", disable=not progress)
    for n, seed in runs:
        split = data(n, seed)
        bs = min(batch_size, n)
        epochs = max(1, round(steps * bs / n))
        for name, (build, augment) in models.items():
            model = fit(build, split.x_train, split.y_train, seed=seed, epochs=epochs, batch_size=bs, lr=lr,
                        augment=augment, device=device, progress=False)
            acc = accuracy(model, split.x_test, split.y_test, device=device)
            rows.append({"model": name, "n": n, "seed": seed, "accuracy": acc})
            bar.update()
    bar.close()
    return rows
