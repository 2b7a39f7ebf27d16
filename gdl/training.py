"""A small, seeded, device-agnostic training loop shared by the chapters.

``train`` runs mini-batch Adam on tensors already in memory (the course's data sets are small), with an
optional augmentation applied to each batch, and returns the loss per epoch; ``evaluate`` returns the
mean loss and, for classification, the accuracy. Runs are reproducible: the shuffling, the augmentation
and the model's initialisation (when ``seed`` is given to :func:`fit`) come from one seed.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from gdl._runtime import device as default_device
from gdl._tree import shape_of
from gdl.data.graphs import GraphBatch, GraphDataset, collate

__all__ = ["STOP_REASONS", "History", "adam", "train", "evaluate", "accuracy", "fit", "count_parameters", "he_init_",
           "learning_curve"]

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


STOP_REASONS = ("converged", "cap", "diverged")


def _drops(values: list[float], least: float) -> bool:
    """Whether the least-squares line through ``values`` (one per epoch) drops over them by more than ``least``
    and more than two standard errors of that drop."""
    w = len(values)
    mean_t, mean_v = (w - 1) / 2, sum(values) / w
    sxx = sum((t - mean_t) ** 2 for t in range(w))
    slope = sum((t - mean_t) * (x - mean_v) for t, x in enumerate(values)) / sxx
    residual = sum((x - mean_v - slope * (t - mean_t)) ** 2 for t, x in enumerate(values)) / max(w - 2, 1)
    noise = 2 * math.sqrt(residual / sxx) * (w - 1)             # two standard errors of the drop
    return -slope * (w - 1) > max(least, noise)


@dataclass
class History:
    """What :func:`train` returns: the mean training loss of every epoch and, with validation data, the
    validation loss of every epoch and the epoch whose weights were kept (early stopping).

    ``stop_reason`` says why training ended: ``"converged"`` (early stopping: ``patience`` epochs without a
    better validation loss), ``"cap"`` (the epoch limit was reached first) or ``"diverged"`` (a loss became
    non-finite, or the validation loss rose above ``1000`` times that of the first epoch). The yardstick is the
    first epoch, not the best one: a model that fits almost exactly (best loss near zero) may spike by a large
    factor of its best and recover, which is noise, not divergence."""

    loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    stop_reason: str | None = None
    patience: int | None = None

    @property
    def epochs(self) -> int:
        return len(self.loss)

    def still_falling(self, window: int | None = None, tol: float = 0.01) -> bool:
        r"""Whether the validation loss still fell over the last ``window`` epochs (default: ``patience``).

        The least-squares line through the last ``w`` validation losses, :math:`v_t \approx a + b t`, shows a
        *drop* when :math:`-b (w - 1)` exceeds both ``tol`` times the best loss and two standard errors of that
        drop (noise alone does not count). The loss is "still falling" when the whole window and its second half
        (the last :math:`\lfloor w/2 \rfloor` epochs) both show a drop: a sustained decline, not the tail of
        one noisy excursion. Also true when the window holds a new best. With fewer than ``window + 1`` epochs
        there is nothing to compare, and the answer is ``True`` (not shown to have stopped falling).

        Testing the half as well keeps a slow steady decline flagged while cutting the chance that noise alone is
        flagged several-fold (simulated: from 3 % to 0.4 % of runs for independent noise, from 9-11 % to 3 % for
        correlated noise, at windows of 25 to 40 epochs), which matters for chapters that train hundreds of runs."""
        v = self.val_loss
        w = window if window is not None else (self.patience or 10)
        if w < 2:
            raise ValueError(f"window must be at least 2 epochs, got {w}")
        if len(v) < w + 1:
            return True
        tail, best = v[-w:], min(v)
        if min(tail) < min(v[:-w]):
            return True
        return _drops(tail, tol * abs(best)) and (w < 6 or _drops(tail[-(w // 2):], tol * abs(best)))

    @property
    def converged(self) -> bool:
        """True only when early stopping ended the run (not the epoch cap, not divergence) and the validation
        loss no longer fell over the last ``patience`` epochs (:meth:`still_falling`)."""
        return self.stop_reason == "converged" and not self.still_falling()


def _is_structured(x: Any) -> bool:
    """A list of graphs (dicts of tensors or GraphBatch objects, or a :class:`GraphDataset`) rather than one
    tensor of samples."""
    if isinstance(x, GraphDataset):
        return True
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
        xb = x.gather(idx) if isinstance(x, GraphDataset) else collate_fn([x[i] for i in idx.tolist()])
        return xb, (y[idx] if y is not None else xb)
    return x[idx], y[idx]


def adam(params: Any, lr: float = 3e-3, weight_decay: float = 0.0, fused: bool = False) -> torch.optim.Adam:
    r"""The optimiser of :func:`train`: Adam,

    .. math:: m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t,\quad v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2,\quad
              \theta_t = \theta_{t-1} - \eta\, \frac{m_t / (1 - \beta_1^t)}{\sqrt{v_t / (1 - \beta_2^t)} + \epsilon},

    in PyTorch's multi-tensor ("foreach") form on every device: one call per operation for all parameter tensors
    instead of one per tensor (on a GPU that is PyTorch's default already; on the CPU it gives bitwise the same
    parameters as the per-tensor loop, tested, with about a third fewer operations per step for chapter 9's
    models). With ``fused=True``, PyTorch's fused kernel (one kernel for all parameters; about 4x cheaper per
    step for chapter 9's GNN on a CPU) when every parameter is a float tensor on the CPU or a CUDA device: the
    update rule is the same, but the rounding differs, so long runs drift apart from the default's."""
    params = list(params)
    fused = fused and bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda")
                                           for p in params)
    if fused:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, foreach=True)


def _fits(nbytes: int, dev: torch.device) -> bool:
    """Whether a data set of ``nbytes`` may live on ``dev`` next to the model: always on the host, on a GPU
    when it takes at most half of the free memory."""
    if dev.type == "cuda":
        return nbytes <= torch.cuda.mem_get_info(dev)[0] // 2
    return True


def _on(t: Any, dev: torch.device) -> Any:
    """``t`` on ``dev``, without a copy (or, for a batch, a re-validation) when it is already there."""
    return t if t.device == dev else t.to(dev)


class _Batches:
    """Where the minibatches of one data set come from.

    The fast path (``preload`` not ``False``, the default ``collate``): the whole data set is materialised once,
    graphs as one :class:`~gdl.data.GraphDataset`, tensors as they are, on ``dev`` when it fits (on the host
    when an augmentation runs, since augmentations work on host batches); each epoch gathers its order once and
    each step takes a slice of it, with no Python collate of a list of graphs. Otherwise (``preload=False``, a
    custom ``collate_fn``, or graphs that do not collate as one batch) each step collates its graphs, as before.
    Both give the same batches in the same order."""

    def __init__(self, x: Any, y: torch.Tensor | None, collate_fn: Callable, dev: torch.device,
                 preload: bool | None, augment: Augment | None = None):
        self.x, self.y, self.collate_fn, self.n = x, y, collate_fn, len(x)
        self.structured = _is_structured(x)
        host = augment is not None                    # augmentations transform host batches
        if preload is False and isinstance(x, GraphDataset):
            preload = None                            # already materialised: nothing to fall back to
        if preload is False or (self.structured and collate_fn is not collate and not isinstance(x, GraphDataset)):
            return
        if self.structured:
            if not isinstance(x, GraphDataset):
                try:
                    x = GraphDataset(x)
                except (TypeError, ValueError):
                    if preload:
                        raise
                    return                            # per-batch collate will name what does not fit
                if len(x) != self.n:                  # items that were batches of several graphs
                    return
            nbytes = x.nbytes
        else:
            nbytes = x.numel() * x.element_size()
        if y is not None:
            nbytes += y.numel() * y.element_size()
        if not host and (preload or _fits(nbytes, dev)):
            x = x.to(dev)
            y = None if y is None else y.to(dev)
        self.x, self.y = x, y

    def __len__(self) -> int:
        return self.n

    def epoch(self, order: torch.Tensor | None, batch_size: int) -> Iterator[tuple[int, Any, Any]]:
        """``(size, inputs, targets)`` of consecutive batches of the samples in ``order`` (host indices;
        ``None``: stored order); targets are the batch itself when ``y`` is ``None``. On the fast path the whole
        order is gathered once per epoch and each batch is a slice of it."""
        y = self.y
        if isinstance(self.x, GraphDataset):
            if y is not None and order is not None:
                y = y[_on(order, y.device)]
            for start, xb in zip(range(0, self.n, batch_size), self.x.batches(order, batch_size)):
                yield xb.num_graphs, xb, (xb if y is None else y[start:start + batch_size])
            return
        if order is None:
            order = torch.arange(self.n)
        if not self.structured:
            x = self.x[_on(order, self.x.device)]
            y = y[_on(order, y.device)]
            for start in range(0, self.n, batch_size):
                yield len(x[start:start + batch_size]), x[start:start + batch_size], y[start:start + batch_size]
            return
        for start in range(0, self.n, batch_size):
            idx = order[start:start + batch_size]
            yield (len(idx), *_batch(self.x, y, idx, self.collate_fn))


def train(model: nn.Module, x: Any, y: torch.Tensor | None, *, epochs: int = 20, batch_size: int = 64,
          lr: float = 3e-3, weight_decay: float = 0.0, loss_fn: Callable | None = None,
          augment: Augment | None = None, seed: int = 0, device: torch.device | str | None = None,
          progress: bool | str = True, val: tuple[Any, torch.Tensor | None] | None = None,
          patience: int | None = None, collate_fn: Callable = collate, preload: bool | None = None,
          fused: bool = False, until_flat: bool = False) -> History:
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
        preload: materialise the data set once (graphs as one :class:`gdl.data.GraphDataset`) on ``device`` and
            gather each batch by index (``True``); collate every batch from the list (``False``); or the first
            when the data fit in device memory, else on the host (``None``, the default). The batches, and so the
            losses, are the same either way; the first path saves the per-step Python work.
        fused: use the fused Adam kernel (:func:`adam`): fewer kernel launches per step, different rounding.
        until_flat: with ``patience``, do not stop while the validation loss is still falling
            (:meth:`History.still_falling` over the last ``patience`` epochs): training goes on, epoch by epoch,
            until the trend flattens (``"converged"``), a new best resets the wait, or ``epochs`` is reached
            (``"cap"``). A run that ends ``"converged"`` is then :attr:`History.converged` by construction; runs
            that would have stopped on a flat loss stop exactly where they did without it.
    """
    _check_data(x, y)
    if y is None and loss_fn is None:
        raise ValueError("with y=None the targets live in the batch: pass loss_fn(output, batch)")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    if val is not None:
        _check_data(*val)
    dev = _resolve(device)
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn
    data = _Batches(x, y, collate_fn, dev, preload, augment)
    val_data = None if val is None else _Batches(*val, collate_fn, dev, preload)
    model.to(dev).train()
    opt = adam(model.parameters(), lr=lr, weight_decay=weight_decay, fused=fused)
    g = torch.Generator().manual_seed(seed)
    history = History(stop_reason="cap", patience=patience)
    best, best_state, waited = math.inf, None, 0
    label = progress if isinstance(progress, str) else "train"
    bar = tqdm(range(epochs), desc=label, disable=progress is False, leave=False)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(x), generator=g)
        losses, sizes = [], []
        for size, xb, yb in data.epoch(order, batch_size):
            if augment is not None:
                xb = augment(xb, g)
                if y is None:
                    yb = xb
            xb, yb = _on(xb, dev), _on(yb, dev)
            loss = loss_fn(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach())              # read once per epoch: no host-device sync per step
            sizes.append(size)
        history.loss.append(_mean(losses, sizes))
        if not math.isfinite(history.loss[-1]):
            history.stop_reason = "diverged"
            break
        if val is not None:
            v = _evaluate(model, val_data, loss_fn, dev, batch_size=256)["loss"]
            history.val_loss.append(v)
            if not math.isfinite(v) or v > 1000 * history.val_loss[0]:
                history.stop_reason = "diverged"
                break
            if v < best:
                best, waited, history.best_epoch = v, 0, epoch
                best_state = copy.deepcopy(model.state_dict())
            else:
                waited += 1
            bar.set_postfix(val_loss=f"{v:.3g}", refresh=False)   # shown at the bar's next (rate-limited) refresh
            if patience is not None and waited >= patience and not (until_flat and history.still_falling()):
                history.stop_reason = "converged"
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


def evaluate(model: nn.Module, x: Any, y: torch.Tensor | None, *, batch_size: int = 256,
             loss_fn: Callable | None = None, device: torch.device | str | None = None,
             collate_fn: Callable = collate, preload: bool | None = None) -> dict[str, float]:
    """Mean loss on ``(x, y)`` and, when ``y`` holds class labels, the accuracy (fraction correct).

    ``x`` may be a list of graphs as in :func:`train` (then ``y=None`` means ``loss_fn(output, batch)``);
    ``preload`` as in :func:`train`. Gradients are off, except for models that differentiate their inputs
    (forces from an energy: a module with ``differentiates_inputs = True``, such as ``EnergyForces``)."""
    _check_data(x, y)
    if y is None and loss_fn is None:
        raise ValueError("with y=None the targets live in the batch: pass loss_fn(output, batch)")
    dev = _resolve(device)
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn
    model.to(dev)
    return _evaluate(model, _Batches(x, y, collate_fn, dev, preload), loss_fn, dev, batch_size)


def _resolve(device: torch.device | str | None) -> torch.device:
    """The device as tensors report it (``cuda`` becomes ``cuda:0``), so that ``t.device == dev`` holds."""
    dev = torch.device(device) if device is not None else default_device(verbose=False)
    return torch.empty(0, device=dev).device


def _mean(values: list[torch.Tensor], sizes: list[int]) -> float:
    """:math:`\\sum_b n_b v_b / \\sum_b n_b` of per-batch scalars, read from the device once."""
    v = torch.stack(values).cpu().double()
    return float((v * torch.tensor(sizes, dtype=torch.float64)).sum()) / sum(sizes)


def _differentiates_inputs(model: nn.Module) -> bool:
    """Whether ``model`` differentiates its output with respect to its inputs (forces :math:`-\\partial E/\\partial x`
    by autograd): a module says so with a true ``differentiates_inputs`` attribute
    (:class:`gdl.nn.atomistic.EnergyForces`)."""
    return any(getattr(m, "differentiates_inputs", False) for m in model.modules())


def _evaluate(model: nn.Module, data: _Batches, loss_fn: Callable, dev: torch.device, batch_size: int
              ) -> dict[str, float]:
    """:func:`evaluate` of a model already on ``dev`` (``train`` calls it every epoch). Gradients stay off
    unless the model differentiates its inputs; a model that does so without saying it is evaluated again with
    them on."""
    grad = data.structured and _differentiates_inputs(model)
    try:
        return _evaluate_pass(model, data, loss_fn, dev, batch_size, grad)
    except RuntimeError as err:
        if grad or "does not require grad" not in str(err):
            raise
        return _evaluate_pass(model, data, loss_fn, dev, batch_size, True)


def _evaluate_pass(model: nn.Module, data: _Batches, loss_fn: Callable, dev: torch.device, batch_size: int,
                   grad: bool) -> dict[str, float]:
    model.eval()
    losses, sizes, correct = [], [], []
    classify = data.y is not None and data.y.dtype == torch.long and data.y.ndim == 1
    with torch.set_grad_enabled(grad):
        for size, xb, yb in data.epoch(None, batch_size):
            xb, yb = _on(xb, dev), _on(yb, dev)
            out = model(xb)
            losses.append(loss_fn(out, yb).detach())
            sizes.append(size)
            if classify:
                correct.append((out.argmax(dim=-1) == yb).sum())
    result = {"loss": _mean(losses, sizes)}
    if classify:
        result["accuracy"] = int(torch.stack(correct).sum()) / len(data)
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
        one dict per run: ``model``, ``n``, ``seed``, ``epochs`` (trained), ``best_epoch`` (1-based, as in
            :mod:`gdl.experiments`), ``train_loss`` (at
        the kept epoch), ``stop_reason`` and ``converged`` (see :class:`History`) and one accuracy per test set.
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
            best = (history.best_epoch + 1) if history.best_epoch is not None else history.epochs   # 1-based
            row = {"model": name, "n": n, "seed": seed, "epochs": history.epochs, "best_epoch": best,
                   "train_loss": history.loss[best - 1], "stop_reason": history.stop_reason,
                   "converged": history.converged}
            for test, xy in tests.items():
                row[test] = accuracy(model, *xy(split), device=device)
            rows.append(row)
            bar.update()
    bar.close()
    return rows
