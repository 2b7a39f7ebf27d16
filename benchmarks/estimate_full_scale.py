"""Estimated wall time of every chapter that trains at ``GDL_SCALE=full``, on one current GPU (issue 20).

No GPU was available when this was written, so the full-scale times of the chapters that did not finish on the
H200 are estimated, by this method:

1. **Runs.** Each chapter's full-scale training runs are listed from its source (models x sizes x seeds x learning
   rates): ``gdl.experiments.compare(models, seeds, lrs)`` trains ``len(lrs) + len(seeds) - 1`` runs per model
   (the learning-rate grid on ``tune_seed``, whose winning run is reused as that seed's run), ``tune_lr`` on the
   first seed followed by ``run`` for the other seeds the same, and chapter 8's ``protocol`` ``len(lrs) - 1 +
   sizes x seeds`` per arm. Data sizes, batch sizes, epoch caps and patience are the chapters' full-scale values.
2. **Operations.** Each model is built from ``gdl`` with the chapter's arguments at its full-scale size and fed
   full-scale batches. The ``TorchDispatchMode`` of ``benchmarks/count_ops.py`` counts the ATen operations (pure
   views and aliases skipped: they launch no kernel) of one training step (forward, loss, backward, Adam with
   ``foreach=True`` as on CUDA, its arithmetic on the host-side step counters not counted), of one validation
   pass, and of one whole epoch of ``gdl.training.train`` (``ops(2 epochs) - ops(1 epoch)``: every step, the
   validation pass, the per-epoch gather of the shuffled order, the loss bookkeeping and the copy of the best
   weights). One epoch is also timed on this CPU (one thread) for reference. Chapters 8 and 9 use the cached
   small-scale ethanol trajectory for their frames (the counts depend on the shapes, not on the frames).
3. **Time per operation.** The models are tiny, so a GPU step costs the host time of issuing its operations (Python,
   dispatcher, autograd, launch), not arithmetic: GPU time = operations x ``c`` (+ the host's augmentation, timed
   here on the CPU, which runs on the host in either case; a GRU, unrolled over time steps on the CPU, counts as
   cuDNN's fused calls). ``c`` is fitted on the three sections that finished on the H200 at full scale with every
   run's epochs printed (chapter 5's learning curves, chapter 10's dipole comparison, chapter 10b's five models):
   46-53 us per operation, with five to sixteen chapters sharing the GPU as ``make gpu-check`` runs them. One
   process alone may be faster: chapter 9's old-path epochs (issue 20: GNN 435 ms, EGNN 625 ms) give 24 us per
   operation of this count, the low end of the range printed. The arithmetic is checked, not assumed: the FLOPs
   of a step (``torch.utils.flop_counter``) over 50 TFLOP/s (an H200 in float32 without tensor cores) are at most
   a few thousandths of its launch time. The sections that did not finish on the H200 give lower bounds, which
   the estimates are checked against.
4. **Epochs.** The upper bound is the epoch cap of every run. The typical figure is what the runs took: the
   epochs printed by the H200 runs at full scale where they exist (chapters 5, 10 dipole, 10b; a losing
   learning-rate candidate, whose epochs were not printed, is taken to last as long as the mean of its job), else
   the mean best epoch printed by the small-scale run of the book (commit cd2edf1) plus the full-scale patience,
   capped. Chapter 4 trains every run to its cap by design (no validation set), so its two figures agree.
5. **Not training.** Chapter 8's molecular dynamics (4000 steps per run: a model call per step for the learned
   potentials, a GFN2-xTB call for the reference) is added from the operations of one model call and the timed
   GFN2-xTB call on this CPU. The GFN2-xTB trajectories the data come from (12,000 steps for 2400 frames) are
   cached per seed on disk: the table assumes the cache exists and prints their cost separately. Each chapter's
   checks before its first training section are added as the H200 took them (run 1); its test metrics, plots and
   later checks are not counted.
6. **For comparison, one CPU core**: the same runs and typical epochs at the seconds one epoch took on this CPU
   (one thread, CPU time of one ``train`` call of one epoch, set-up included; PyTorch's CPU Adam), the learned
   potentials' dynamics at their measured CPU call time. Most of these models are faster per epoch on one CPU
   core than the GPU estimate: their cost is per operation, and a CPU operation costs a few microseconds.

7. **Runs at the same time** (``--workers k``, default 16): the chapters' runs go through ``gdl.parallel.starmap``
   (``compare``, ``sweep``, chapter 4's and chapter 8's own calls), which spreads them over ``k`` worker processes
   at full scale; each section's runs are list-scheduled on ``k`` workers in the chapters' order, phase by phase
   (:func:`parallel_seconds`), with ``c`` unchanged by the number of processes sharing the GPU, as the H200 runs
   showed for up to sixteen.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/estimate_full_scale.py [--chapters 05,09] [--no-time]``
(about two to four minutes on one core of the shared 2-core machine).
"""

from __future__ import annotations

import argparse
import heapq
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import gdl
from gdl import training

sys.path.insert(0, str(Path(__file__).resolve().parent))
from count_ops import OpCounter as _CountOps  # noqa: E402

H200_FLOPS = 50e12          # float32 without tensor cores, a round figure below the H200's 67 TFLOP/s peak
#: s per operation of one process alone on the H200: chapter 9's old-path epochs (GNN 435 ms, EGNN 625 ms, issue 20)
#: over the difference of their operations per epoch counted here (the fallback when chapter 9 is not measured)
C_ALONE = 29.1e-6
#: c fitted on the three H200 sections by a full run of this script (2026-12-04, commit 8d0fd7f): used when the
#: chapters asked for hold none of those sections
C_FITTED = 60.9e-6
DEVICE = torch.device("cpu")
#: epochs of chapter 8's MLP runs at n = 400 (cap 20,000): the longest of the three seeds in the full-scale run
#: on this CPU (2026-12-04, 22:43 UTC, GDL_WORKERS=2): canonical frame 566, 4344 and 516; MLP + rotations 6762,
#: 10083 and 4446 (every run converged)
MLP_400_EPOCHS = {"MLP, canonical frame": 4344, "MLP + rotations": 10083}

#: sections whose independent runs ``gdl.parallel.starmap`` spreads over worker processes at the full scale (through
#: ``gdl.experiments.compare``, ``sweep``, or the chapter's own call), and their phases: 2 where the learning-rate
#: candidates of every job train first and the other seeds after them (``Group.first_phase`` runs of each group in
#: the first), 1 where every run is submitted at once, "sweep" for ``gdl.experiments.sweep`` (and ``compare``): two
#: phases, or one where every (job, seed, candidate) run fits in two rounds of the workers
PARALLEL_PHASES = {
    ("03", "augmentation vs invariance"): "sweep",     # sweep: 2 models x 2 learning rates, then 2 x 2 seeds
    ("04", "octagon learning curves"): 1,        # starmap: 8 sizes x 4 seeds x 2 models
    ("05", "learning curves"): "sweep",                # sweep: 13 jobs x 2 learning rates, then 13 x 4 seeds
    ("07", "sum of digits"): "sweep",                  # compare: 5 models x 2 learning rates, then 5 x 2 seeds
    ("07", "hub graphs"): "sweep",                     # sweep: 2 models x 2 learning rates, then 2 x 2 seeds
    ("08", "learning curves, 2 A"): 2,           # protocol: 4 arms x 2 learning rates (n = 400), then 4 x 14 runs
    ("08", "cutoff 4.5 A, n=25"): 2,
    ("08", "bent molecules, 1000"): 1,
    ("08", "MD potentials, 100 frames"): 1,      # 10 trained potentials and 5 GFN2-xTB runs, each with its dynamics
    ("09", "N-body"): "sweep",                         # compare: 3 models x 2 learning rates, then 3 x 2 seeds
    ("09", "ethanol, 2.0 A, n=100"): "sweep",          # sweep: 2 models x 2 learning rates, then 2 x 2 seeds
    ("10", "dipole, 4096"): "sweep",
    ("10", "energy, 4096 aligned"): "sweep",
    ("10", "digits"): "sweep",                         # sweep: 16 jobs x 2 learning rates, then 16 x 3 seeds
    ("10b", "five ways, 800 digits"): "sweep",
}
# every chapter that trains at full scale is listed: each spreads its runs over the workers


def list_schedule(lengths: list[float], k: int) -> float:
    """When the last of ``lengths`` finishes if each, in this order, goes to the first of ``k`` workers to be free
    (as joblib hands out ``starmap``'s calls)."""
    free = [0.0] * k
    for length in lengths:
        heapq.heapreplace(free, free[0] + length)
    return max(free)


def parallel_seconds(groups: list[Group], secs: Callable[[Group], float], k: int) -> float:
    """Wall time of a chapter's training when each section of :data:`PARALLEL_PHASES` spreads its runs over ``k``
    worker processes: every group's runs take ``secs(g) / g.runs`` each; the first phase (the learning-rate
    candidates, ``g.first_phase`` runs of each group, default 2; ``g.ahead`` where chapter 8 trains its largest
    size's seeds at every rate in that phase, if all of it fits in two rounds) and then the second are each
    list-scheduled in the chapter's order (:func:`list_schedule`); a ``sweep`` section whose every (job, seed,
    candidate) run fits in two rounds trains them all in one phase. Sections not listed run one after another. The
    time per operation is taken to stay ``c`` with ``k`` processes sharing the GPU (on the H200, sixteen chapters
    in parallel cost 56 us per operation, five 63 us)."""
    total = 0.0
    for section in dict.fromkeys(g.section for g in groups):
        sel = [g for g in groups if g.section == section]
        phases = PARALLEL_PHASES.get((sel[0].chapter, section))
        if phases is None or k <= 1:
            total += sum(secs(g) for g in sel)
            continue
        if phases == "sweep":          # L candidates and S seeds per group: runs = L + S - 1; at once L x S of them
            every = [(g, (g.first_phase or 2) * (g.runs - (g.first_phase or 2) + 1)) for g in sel]
            if sum(n for _, n in every) <= 2 * k:
                total += list_schedule([secs(g) / g.runs for g, n in every for _ in range(n)], k)
                continue
        first, second = [], []
        ahead = sum(g.ahead[0] if g.ahead else min(g.runs, g.first_phase or 0) for g in sel) <= 2 * k
        for g in sel:
            n_first = g.runs if phases == 1 else min(g.runs, 2 if g.first_phase is None else g.first_phase)
            n_second = g.runs - n_first
            if ahead and g.ahead:               # chapter 8: the largest size's seeds at every rate in phase one
                n_first, n_second = g.ahead
            first += [secs(g) / g.runs] * n_first
            second += [secs(g) / g.runs] * n_second
        total += list_schedule(first, k) + (list_schedule(second, k) if second else 0.0)
    return total


# ---------------------------------------------------------------------------------------------------------------
# counting
# ---------------------------------------------------------------------------------------------------------------
_IN_OPTIMIZER = [0]           # > 0 while an optimiser built by _foreach_adam steps


class OpCounter(_CountOps):
    """The operation counter of ``benchmarks/count_ops.py`` (ATen operations below autograd, pure views and aliases
    skipped: they launch no kernel), with ``ops`` (the total) and ``by_name``.

    Inside the step of an optimiser from :func:`_foreach_adam`, an operation whose tensors are all 0-dimensional
    is Adam's arithmetic on its step counters, which stay on the host on CUDA too (``capturable=False``): it is
    counted in ``host_scalar_ops``, not in ``ops``."""

    def __init__(self) -> None:
        super().__init__()
        self.host_scalar_ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if _IN_OPTIMIZER[0] and not func.is_view:
            tensors = [t for t in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
            if tensors and all(t.ndim == 0 for t in tensors):
                self.host_scalar_ops += 1
                return func(*args, **(kwargs or {}))
        return super().__torch_dispatch__(func, types, args, kwargs)

    @property
    def ops(self) -> int:
        return self.total

    @property
    def by_name(self) -> dict[str, int]:
        return dict(self.counts)


def count_ops(fn: Callable[[], Any]) -> int:
    """Operations (views excluded) that ``fn()`` dispatches."""
    with OpCounter() as counter:
        fn()
    return counter.ops


class _MarkedAdam(torch.optim.Adam):
    """Adam whose step tells :class:`OpCounter` that it runs."""

    def step(self, closure=None):
        _IN_OPTIMIZER[0] += 1
        try:
            return super().step(closure)
        finally:
            _IN_OPTIMIZER[0] -= 1


def _foreach_adam(params, lr=3e-3, weight_decay=0.0, fused=False):
    """What ``gdl.training.adam`` builds on CUDA: ``foreach`` Adam (PyTorch's default there; on the CPU it would
    use one operation per parameter tensor instead)."""
    return _MarkedAdam(list(params), lr=lr, weight_decay=weight_decay, foreach=True)


# ---------------------------------------------------------------------------------------------------------------
# the work of one group of runs
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Group:
    """Runs of one model on one data set: ``runs`` of them, each at most ``cap`` epochs; ``typical`` epochs per run
    (with where that figure comes from); ``make()`` returns ``(build, train_kwargs)`` for ``gdl.training.train``
    (``x``, ``y``, ``val``, ``batch_size``, ``loss_fn``, ``augment``, ``collate_fn``)."""

    chapter: str
    section: str
    name: str
    runs: int
    cap: int
    typical: float
    source: str
    make: Callable[[], tuple[Callable[[], nn.Module], dict]]
    extra_ops: int = 0                # operations of work that is not training (chapter 8's dynamics) ...
    extra_cpu_s: float = 0.0          # ... and host seconds of it (GFN2-xTB calls)
    extra_note: str = ""
    extra_on_cpu_s: float = 0.0       # seconds of that work with everything on this CPU (one core)
    first_phase: int | None = None    # runs in the first phase of gdl.parallel (learning-rate candidates; None: 2)
    ahead: tuple[int, int] | None = None  # (first, second) phase runs when the section trains ahead (chapter 8)
    measured: dict = field(default_factory=dict)


def _first_batch(kw: dict) -> tuple[Any, Any]:
    x, y, bs = kw["x"], kw["y"], kw["batch_size"]
    if isinstance(x, torch.Tensor):
        return x[:bs], y[:bs]
    if isinstance(x, gdl.data.GraphDataset):
        xb = next(iter(x.batches(None, bs)))
        return xb, (xb if y is None else y[:bs])
    xb = kw.get("collate_fn", gdl.data.collate)(x[:bs])
    return xb, (xb if y is None else y[:bs])


#: operations of a cuDNN GRU on CUDA: forward (the fused call, the weight flattening) and forward + backward
RNN_GPU_OPS = {"forward": 2, "forward+backward": 4}


def _rnn_ops(model: nn.Module, run_step: Callable[[], None]) -> tuple[int, int]:
    """Operations that the model's GRUs take on the CPU (where ``aten::gru`` unrolls over time steps) in one
    forward and in one forward + backward, on the inputs they see in ``run_step``; ``(0, 0)`` without a GRU."""
    seen = []
    hooks = [m.register_forward_hook(lambda mod, args, out: seen.append((mod, args)))
             for m in model.modules() if isinstance(m, nn.GRU)]
    run_step()
    for h in hooks:
        h.remove()
    if not seen:
        return 0, 0
    forward = backward = 0
    for mod, args in seen:
        packed = args[0]
        leaf = packed._replace(data=packed.data.detach().requires_grad_())
        forward += count_ops(lambda mod=mod, leaf=leaf: mod(leaf))
        backward += count_ops(lambda mod=mod, leaf=leaf: mod(leaf)[1].sum().backward())
    return forward, backward


def measure(group: Group, time_epoch: bool = True) -> dict:
    """Operations per training step, per validation pass and per epoch; FLOPs per step; CPU seconds per epoch.

    Two corrections turn the CPU's count into what a GPU run issues: augmentations run on the host in either
    case, so their operations are taken out of the epoch and their CPU seconds (timed here) put back in; and a
    GRU, which the CPU unrolls over time steps, counts as cuDNN's fused calls (:data:`RNN_GPU_OPS`)."""
    build, kw = group.make()
    loss_fn = kw.get("loss_fn") or F.cross_entropy
    torch.manual_seed(0)
    model = build()
    opt = _foreach_adam(model.parameters())
    xb, yb = _first_batch(kw)
    augment = kw.get("augment")
    steps = math.ceil(len(kw["x"]) / kw["batch_size"])
    out = {"steps": steps, "host_ops": 0, "host_s": 0.0}
    if augment is not None:
        raw = xb
        out["host_ops"] = steps * count_ops(lambda: augment(raw, torch.Generator().manual_seed(0)))
        times = []
        for k in range(3):
            start = time.process_time()
            augment(raw, torch.Generator().manual_seed(k))
            times.append(time.process_time() - start)
        out["host_s"] = steps * float(np.median(times))
        xb = augment(raw, torch.Generator().manual_seed(0))
        yb = xb if kw["y"] is None else yb

    def step():
        loss = loss_fn(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()                                              # Adam's state exists from here on
    step_ops = count_ops(step)
    with FlopCounterMode(display=False) as flops:
        step()
    rnn_f, rnn_fb = _rnn_ops(model, step)
    rnn_step = max(rnn_fb - RNN_GPU_OPS["forward+backward"], 0) if rnn_fb else 0
    rnn_val = max(rnn_f - RNN_GPU_OPS["forward"], 0) if rnn_f else 0
    out |= {"step_ops": step_ops - rnn_step, "step_flops": flops.get_total_flops(), "rnn_cpu_ops": rnn_fb}
    train_kw = {k: v for k, v in kw.items() if k not in ("x", "y")}
    val = train_kw.pop("val", None)
    val_batches = 0
    if val is not None:
        val_batches = 1 if "collate_fn" in kw else math.ceil(len(val[0]) / 256)
        out["val_ops"] = count_ops(lambda: training.evaluate(
            model, *val, loss_fn=loss_fn, batch_size=256, device=DEVICE,
            **({"collate_fn": kw["collate_fn"]} if "collate_fn" in kw else {}))) - val_batches * rnn_val
    else:
        out["val_ops"] = 0

    def fit(epochs):
        torch.manual_seed(0)
        training.train(build(), kw["x"], kw["y"], epochs=epochs, lr=1e-3, val=val, patience=None,
                       progress=False, device=DEVICE, **train_kw)

    original, training.adam = training.adam, _foreach_adam
    try:
        one, two = count_ops(lambda: fit(1)), count_ops(lambda: fit(2))
        epoch = two - one - steps * rnn_step - val_batches * rnn_val
        out["epoch_ops"], out["setup_ops"] = epoch, max(one - (two - one), 0)
        out["device_ops"] = epoch - out["host_ops"]     # what the GPU's host issues per epoch
        if time_epoch:
            start = time.process_time()
            fit(1)
            out["cpu_epoch_s"] = time.process_time() - start
    finally:
        training.adam = original
    return out


def epoch_seconds(m: dict, c: float) -> float:
    """GPU wall seconds of one epoch: the operations issued to the device at ``c`` each, plus the host's
    augmentation."""
    return m["device_ops"] * c + m["host_s"]


# ---------------------------------------------------------------------------------------------------------------
# the chapters' full-scale runs
# ---------------------------------------------------------------------------------------------------------------
def mse(output, target):
    return ((output - target) ** 2).mean()


def runs_compare(n_lrs: int, n_seeds: int) -> int:
    """Runs per model of ``compare``/``tune_lr`` + ``run``: the grid on one seed (its winner reused)."""
    return n_lrs + n_seeds - 1


def typical(best: float, patience: int, cap: int) -> float:
    """Epochs of a run whose best epoch is ``best``: it stops ``patience`` epochs later, or at the cap."""
    return min(cap, best + patience)


def chapter_03() -> list[Group]:
    from gdl.nn.canonical import random_rotations

    n, n_val, cap, patience = 16384, 1024, 1000, 30        # full=(16384, 1024, 1000, 30)

    class Coordinates(nn.Module):                        # the chapter's MLP on the 9 raw coordinates
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(9, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, 1))

        def forward(self, x):
            return self.net(x.flatten(-2))

    class Distances(Coordinates):                        # the same MLP on the three interatomic distances
        def __init__(self):
            super().__init__()
            self.net[0] = nn.Linear(3, 64)

        def forward(self, x):
            i, j = torch.triu_indices(3, 3, 1)
            return self.net((x[..., i, :] - x[..., j, :]).norm(dim=-1))

    def augment(x, g):
        return x @ random_rotations(len(x), g, x.dtype).transpose(-1, -2)

    def make(cls, aug):
        def inner():
            g = torch.Generator().manual_seed(0)
            x, xv = torch.randn(n, 3, 3, generator=g, dtype=torch.float64), torch.randn(n_val, 3, 3,
                                                                                         dtype=torch.float64)
            kw = dict(x=x, y=torch.randn(n, 1, dtype=torch.float64), val=(xv, torch.randn(n_val, 1,
                      dtype=torch.float64)), batch_size=256, loss_fn=mse, augment=aug)
            return (lambda: cls().double()), kw
        return inner

    runs = runs_compare(2, 3)
    src = "small-scale best epoch + patience 30"
    return [Group("03", "augmentation vs invariance", "augmented MLP", runs, cap, typical(83, patience, cap), src,
                  make(Coordinates, augment)),
            Group("03", "augmentation vs invariance", "invariant MLP", runs, cap, typical(202, patience, cap), src,
                  make(Distances, None))]


def chapter_04() -> list[Group]:
    from gdl.groups import DihedralGroup, PermutationRep, RegularRep, TrivialRep
    from gdl.weight_sharing import EquivariantMLP

    D8 = DihedralGroup(8)
    sizes, n_seeds, epochs = [8, 16, 32, 64, 128, 256, 512, 1024], 4, 2000      # 4 seeds since 2026-12-04 evening

    def equivariant():
        return EquivariantMLP(PermutationRep(D8), 2 * RegularRep(D8), TrivialRep(D8))

    def plain():
        return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))

    def make(build, n):
        def inner():
            x = torch.randn(n, 8)
            return build, dict(x=x, y=(x - x.roll(1, -1)).abs().sum(-1, keepdim=True), batch_size=n,
                               loss_fn=mse)
        return inner

    return [Group("04", "octagon learning curves", f"{name} MLP, N={n}", n_seeds, epochs, epochs,
                  "no early stopping: every run trains to the cap", make(build, n))
            for n in sizes for name, build in (("equivariant", equivariant), ("plain", plain))]


# chapter 5 on the H200 at full scale (run 2, 18:41 UTC, commit 9449678, patience 40): epochs of every seed's run
CH5_H200_EPOCHS = {
    ("CNN", 1000): [175, 243, 153, 115, 122],
    ("CNN + rotation augmentation", 20): [213, 139, 122, 121, 150],
    ("CNN + rotation augmentation", 50): [146, 190, 167, 196, 126],
    ("CNN + rotation augmentation", 100): [180, 155, 85, 124, 143],
    ("CNN + rotation augmentation", 200): [132, 150, 169, 136, 167],
    ("CNN + rotation augmentation", 500): [270, 459, 193, 208, 243],
    ("CNN + rotation augmentation", 1000): [404, 428, 389, 253, 391],
    ("p4-CNN", 20): [89, 103, 104, 109, 93],
    ("p4-CNN", 50): [110, 117, 101, 148, 108],
    ("p4-CNN", 100): [147, 160, 109, 118, 94],
    ("p4-CNN", 200): [220, 269, 183, 190, 105],
    ("p4-CNN", 500): [215, 175, 262, 166, 213],
    ("p4-CNN", 1000): [349, 565, 183, 229, 237],
}


def _digits(n: int, n_val: int, n_test: int = 400):
    return gdl.data.rotated_digits(n, n_test, n_val=n_val, rotation="none", size=8, content=8, seed=0)


def _digit_kw(n, n_val, augment, batch_size=None):
    s = _digits(n, n_val)
    return dict(x=s.x_train, y=s.y_train, val=(s.x_val, s.y_val), batch_size=batch_size or n // 2, augment=augment)


def _ch5_models():
    from gdl.nn import CNN, GCNN

    def cnn():
        return training.he_init_(CNN(1, 12, 3, kernel_size=3, padding_mode="zeros", num_classes=10,
                                     pool_after=(0, 1)))

    def p4_cnn():
        return GCNN(1, (6, 6, 6), kernel_size=3, group="p4", pool_after=(0, 1), num_classes=10)
    return cnn, p4_cnn


def chapter_05() -> list[Group]:
    from gdl.data import RandomRotation

    cnn, p4_cnn = _ch5_models()
    models = {"CNN": (cnn, None), "CNN + rotation augmentation": (cnn, RandomRotation("c4")), "p4-CNN": (p4_cnn, None)}
    groups = []
    for (name, n), epochs in CH5_H200_EPOCHS.items():
        build, aug = models[name]
        groups.append(Group("05", "learning curves", f"{name}, n={n}", runs_compare(2, 5), 1000,
                            float(np.mean(epochs)), "H200, full scale (losing lr: the job's mean)",
                            lambda build=build, aug=aug, n=n: (build, _digit_kw(n, 100, aug))))
    return groups


def chapter_07() -> list[Group]:
    from gdl.data import GraphDataset, digit_sets, hub_graphs
    from gdl.nn import GNN, AdjacencyMLP, DeepSets, GRUSetBaseline

    width, cap, patience, runs = 128, 400, 8, runs_compare(2, 3)          # 3 seeds at full scale

    def tanh_deepsets():
        model = DeepSets(64, width, 1, rho_layers=2)
        model.rho = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 1))
        return model

    def huber(out, batch):
        return F.smooth_l1_loss(out, batch.y)

    set_models = {   # name: (build, small-scale mean best epoch)
        "DeepSets, linear rho": (lambda: DeepSets(64, width, 1, rho_layers=1), 123),
        "DeepSets, ReLU rho": (lambda: DeepSets(64, width, 1, rho_layers=2), 126),
        "DeepSets, tanh rho": (tanh_deepsets, 60),
        # the chapter's positional sum: a DeepSets-sized phi and rho plus a dozen position operations (not counted)
        "positional sum (as DeepSets, linear rho)": (lambda: DeepSets(64, width, 1, rho_layers=1), 94),
        "GRU": (lambda: GRUSetBaseline(64, width // 2, 1, scale=50), 58),
    }

    def sets():
        return dict(x=GraphDataset(digit_sets(4000, 2, 10, part="train", seed=0)), y=None,
                    val=(GraphDataset(digit_sets(200, 2, 10, part="train", seed=1000)), None), batch_size=64,
                    loss_fn=huber)

    groups = [Group("07", "sum of digits", name, runs, cap, typical(best, patience, cap),
                    "small-scale best epoch + patience 8", lambda build=build: (build, sets()))
              for name, (build, best) in set_models.items()]

    def graphs():
        data = hub_graphs(3000, seed=0)
        train, val = data[:1800], data[1800:2400]
        return dict(x=GraphDataset(train), y=torch.stack([d["y"] for d in train]),
                    val=(GraphDataset(val), torch.stack([d["y"] for d in val])), batch_size=64)

    g_cap, g_patience = 300, 20
    for name, build, best in (("GIN", lambda: GNN(1, 32, 2, num_layers=3, conv="gin", readout="sum"), 35),
                              ("MLP on the adjacency matrix", lambda: AdjacencyMLP(16, 64, 2), 4)):
        groups.append(Group("07", "hub graphs", name, runs_compare(2, 3), g_cap, typical(best, g_patience, g_cap),
                            "small-scale best epoch + patience 20", lambda build=build: (build, graphs())))
    return groups


_FRAMES: list = []


def _ethanol_frames():
    """Ethanol configurations for the atomistic chapters: the small scale's cached GFN2-xTB trajectory (420 frames;
    operation counts depend on the shapes, not on which frames)."""
    if not _FRAMES:
        _FRAMES.extend(gdl.data.md_trajectory("ethanol", temperature=500, steps=5 * 420, interval=5, seed=0))
    return _FRAMES


def _ethanol_graphs(n: int, seed: int = 0) -> list:
    from gdl.data import GraphBatch, rotate_atoms, unbatch

    frames = _ethanol_frames()
    ids = np.random.default_rng(seed).choice(len(frames), n, replace=n > len(frames))
    return unbatch(GraphBatch.from_atoms(rotate_atoms([frames[i] for i in ids], seed=seed)))


def _xtb_call_seconds(calls: int = 20) -> float:
    """CPU seconds of one GFN2-xTB energy + forces call on ethanol (the reference dynamics and the data)."""
    from gdl.data.molecules import xtb_calculator

    atoms = _ethanol_frames()[0].copy()
    atoms.calc = xtb_calculator()
    atoms.get_forces()
    start = time.process_time()
    for k in range(calls):
        atoms.positions[0, 0] += 1e-4 * (-1) ** k        # a new geometry each call, so nothing is cached
        atoms.get_forces()
    return (time.process_time() - start) / calls


def _md_call(model: nn.Module, calls: int = 50) -> tuple[int, float]:
    """Operations of one ``GDLCalculator`` call (energy and forces of one ethanol molecule, float64), and its CPU
    seconds on this machine (median of ``calls``)."""
    from gdl.md import GDLCalculator

    calc = GDLCalculator(model.double(), device=DEVICE)
    atoms = _ethanol_frames()[0].copy()
    atoms.calc = calc
    atoms.get_forces()
    atoms.positions[0, 0] += 1e-3
    ops = count_ops(atoms.get_forces)
    times = []
    for k in range(calls):
        atoms.positions[0, 0] += 1e-4 * (-1) ** k
        start = time.process_time()
        atoms.get_forces()
        times.append(time.process_time() - start)
    return ops, float(np.median(times))


def chapter_08(xtb_s: float) -> list[Group]:
    from gdl.data import collate
    from gdl.nn import DimeNetPlusPlus, SchNet
    from gdl.nn.atomistic import CoordinateMLP, EnergyForces, energy_force_loss, energy_statistics
    from gdl.nn.canonical import CanonicalMLP, RandomRotation3d

    sizes, seeds, cap, mlp_cap, n_val = [25, 50, 100, 200, 400], 3, 5000, 20000, 100

    def schnet_at(cutoff):
        return lambda: SchNet(num_types=10, hidden_channels=32, num_filters=32, num_interactions=3,
                              num_gaussians=25, cutoff=cutoff)

    def dimenet_at(cutoff):
        return lambda: DimeNetPlusPlus(num_types=10, cutoff=cutoff, hidden_channels=32, num_blocks=2,
                                       int_emb_size=16, out_emb_channels=32)

    def one_batch(items):
        return items[0]

    def arm(build, n, augment, forces=True, val=n_val):
        def inner():
            train_batch = collate(_ethanol_graphs(n, seed=1))
            stats = energy_statistics(train_batch)
            loss = energy_force_loss(force_weight=1.0)
            if not forces:
                def loss(output, batch):
                    return ((output["energy"] - batch.energy) ** 2).mean()
            return ((lambda: EnergyForces(build(), forces=forces, **stats)),
                    dict(x=[train_batch], y=None, val=([collate(_ethanol_graphs(val, seed=2))], None), batch_size=1,
                         loss_fn=loss, augment=augment, collate_fn=one_batch))
        return inner

    arms = {  # name: (build, augment, patience, small-scale mean best epoch at n = 32, epoch cap)
        "SchNet": (schnet_at(2.0), None, 50, 102, cap),
        "DimeNet++": (dimenet_at(2.0), None, 50, 252, cap),
        "MLP, canonical frame": (lambda: CanonicalMLP(num_atoms=9, hidden=64), None, 300, 603, mlp_cap),
        "MLP + rotations": (lambda: CoordinateMLP(num_atoms=9, hidden=64), RandomRotation3d(), 300, 596, mlp_cap),
    }
    src = "small-scale best epoch (n = 32) + patience"
    groups = []
    for name, (build, augment, patience, best, arm_cap) in arms.items():
        for n in sizes:
            runs = seeds + (1 if n == sizes[-1] else 0)        # two learning rates at the largest size (seed 0)
            epochs, why = ((MLP_400_EPOCHS[name], "the longest seed of the CPU run at full scale")
                           if n == 400 and "MLP" in name else (typical(best, patience, arm_cap), src))
            groups.append(Group("08", "learning curves, 2 A", f"{name}, n={n}", runs, arm_cap, epochs, why,
                                arm(build, n, augment), first_phase=2 if n == sizes[-1] else 0,
                                ahead=(2 * seeds, 0) if n == sizes[-1] else None))
    for name, build, best in (("SchNet, 4.5 A", schnet_at(4.5), 104), ("DimeNet++, 4.5 A", dimenet_at(4.5), 191)):
        groups.append(Group("08", "cutoff 4.5 A, n=25", name, 4, cap, typical(best, 50, cap),
                            "small-scale best epoch + patience 50", arm(build, 25, None)))

    def bent():
        g = torch.Generator().manual_seed(0)
        items = [{"pos": torch.randn(3, 3, generator=g), "z": torch.tensor([1, 8, 1]), "energy": torch.randn(())}
                 for _ in range(1050)]
        return items[:1000], items[1000:]

    def bent_make(build):
        def inner():
            train, val = bent()

            def energy_mse(output, batch):
                return ((output["energy"] - batch.energy) ** 2).mean()
            return ((lambda: EnergyForces(build(), forces=False)),
                    dict(x=gdl.data.GraphDataset(train), y=None, val=(gdl.data.GraphDataset(val), None),
                         batch_size=1000, loss_fn=energy_mse))
        return inner

    for name, build, best in (
            ("SchNet", lambda: SchNet(num_types=10, hidden_channels=32, num_filters=32, num_interactions=3,
                                      cutoff=1.5), 24),
            ("DimeNet++", lambda: DimeNetPlusPlus(num_types=10, hidden_channels=32, num_blocks=2, int_emb_size=16,
                                                  out_emb_channels=32, cutoff=1.5), 69)):
        groups.append(Group("08", "bent molecules, 1000", name, 1, 3000, typical(best, 50, 3000),
                            "small-scale best epoch + patience 50", bent_make(build)))

    def md_schnet():
        return SchNet(num_types=10, hidden_channels=32, num_filters=32, num_interactions=2, num_gaussians=20,
                      cutoff=3.0)

    def md_make():
        train, val = _ethanol_graphs(100, seed=3), _ethanol_graphs(20, seed=4)
        stats = energy_statistics(collate(train))
        return ((lambda: EnergyForces(md_schnet(), **stats)),
                dict(x=gdl.data.GraphDataset(train), y=None, val=(gdl.data.GraphDataset(val), None), batch_size=100,
                     loss_fn=energy_force_loss(force_weight=1.0)))

    md_steps, md_runs, xtb_runs = 4000, 10, 5
    call_ops, call_s = _md_call(EnergyForces(md_schnet(), **energy_statistics(collate(_ethanol_graphs(8)))))
    note = (f"NVE dynamics: {md_runs} x {md_steps} model calls of {call_ops} ops and {xtb_runs} x {md_steps} "
            f"GFN2-xTB calls of {1000 * xtb_s:.1f} ms (CPU)")
    groups.append(Group("08", "MD potentials, 100 frames", "SchNet (two variants x 5 seeds)", md_runs, 3000,
                        typical(140, 50, 3000), "small-scale best epoch + patience 50", md_make,
                        md_runs * md_steps * call_ops, xtb_runs * md_steps * xtb_s, note,
                        md_runs * md_steps * call_s + xtb_runs * md_steps * xtb_s))
    return groups


def chapter_09() -> list[Group]:
    from gdl.data import GraphDataset
    from gdl.data.nbody import nbody_splits
    from gdl.nn import EGNN, CoordinateGNN, DimeNetPlusPlus, EnergyForces, LinearDynamics, NequIP
    from gdl.nn.atomistic import energy_force_loss, energy_statistics

    def nbody_mse(prediction, batch):
        return ((prediction - batch.target) ** 2).mean()

    def nbody():
        train, val, _ = nbody_splits(3000, 2000, 1, seed=0)
        return dict(x=GraphDataset(train.graphs()), y=None, val=(GraphDataset(val.graphs()), None), batch_size=100,
                    loss_fn=nbody_mse)

    # best epochs: the mean of the three seeds' runs at full scale on the CPU (2026-12-04, 21:05 UTC, lr 2e-3)
    cap, patience, hidden = 800, 30, 64
    models = {"Linear": (LinearDynamics, 25),
              "GNN": (lambda: CoordinateGNN(1, hidden, 4, edge_features=1, node_features=("q",)), 102),
              "EGNN": (lambda: EGNN(1, hidden, 4, edge_features=1, velocity=True, node_features=("q",)), 169)}
    groups = [Group("09", "N-body", name, runs_compare(2, 3), cap, typical(best, patience, cap),
                    "full-scale best epoch (CPU run) + patience 30", lambda build=build: (build, nbody()))
              for name, (build, best) in models.items()]

    def ethanol(build):
        def inner():
            train = GraphDataset(_ethanol_graphs(100, seed=1))
            stats = energy_statistics(train.store)
            return ((lambda: EnergyForces(build(), **stats)),
                    dict(x=train, y=None, val=(GraphDataset(_ethanol_graphs(100, seed=2)), None), batch_size=100,
                         loss_fn=energy_force_loss(force_weight=1.0)))
        return inner

    # cap 3000 with until_flat; epochs: the full-scale CPU run (2026-12-04, 21:33 UTC): NequIP-style 1334 to 1993
    for name, epochs, why, build in (
            ("NequIP-style", 1660, "CPU run at full scale (1334-1993 epochs)",
             lambda: NequIP(num_types=10, hidden_irreps="16x0e + 8x1o", lmax=1, num_layers=2, cutoff=2.0)),
            ("DimeNet++", typical(124, 50, 3000), "small-scale best epoch + patience 50",
             lambda: DimeNetPlusPlus(num_types=10, hidden_channels=32, num_blocks=2, int_emb_size=16,
                                     out_emb_channels=32, cutoff=2.0))):
        groups.append(Group("09", "ethanol, 2.0 A, n=100", name, 4, 3000, epochs, why, ethanol(build)))
    return groups


def chapter_10() -> list[Group]:
    from gdl.data import RandomRotation, rotate_images
    from gdl.nn import InvariantPointModel, OrientedGCNN, VectorFeatureModel, VectorPointModel

    species = [8, 1, 1]

    def waters(n_train, targets, batch_size):
        def inner(build):
            return build, dict(x=torch.randn(n_train, 3, 3), y=torch.randn(n_train, targets),
                               val=(torch.randn(256, 3, 3), torch.randn(256, targets)), batch_size=batch_size,
                               loss_fn=F.mse_loss)
        return inner

    runs = runs_compare(2, 3)
    groups = [
        Group("10", "dipole, 4096", "invariant read-out", runs, 1000, 78, "H200, full scale (mean of 3 seeds)",
              lambda: waters(4096, 3, 128)(lambda: InvariantPointModel(species, out_dim=3))),
        Group("10", "dipole, 4096", "equivariant read-out", runs, 1000, 148, "H200, full scale (mean of 3 seeds)",
              lambda: waters(4096, 3, 128)(lambda: VectorPointModel(species))),
    ]
    for readout, best in (("components", 77), ("norm", 50)):
        groups.append(Group("10", "energy, 4096 aligned", f"read-out from {readout}", runs, 400,
                            typical(best, 30, 400), "small-scale best epoch + patience 30",
                            lambda readout=readout: waters(4096, 1, 64)(
                                lambda: VectorFeatureModel(species, readout=readout))))

    def small_angles(x, generator):
        return rotate_images(x, 40 * torch.rand(len(x), generator=generator, dtype=torch.float64) - 20)

    cnn, p4_cnn = _ch5_models()
    best_ch5 = {(m, n): float(np.mean(e)) - 40 for (m, n), e in CH5_H200_EPOCHS.items()}   # best epochs
    models = {"CNN + quarter-turn aug.": (cnn, RandomRotation("c4"), "CNN + rotation augmentation"),
              "CNN + small-angle aug.": (cnn, small_angles, "CNN + rotation augmentation"),
              "p4-CNN (invariant)": (p4_cnn, None, "p4-CNN"),
              "p4-CNN, oriented read-out": (lambda: OrientedGCNN(1, (6, 6, 6), kernel_size=3, group="p4",
                                                                 pool_after=(0, 1)), None, "p4-CNN")}
    for name, (build, aug, like) in models.items():
        for n in ([1000] if "oriented" in name else [50, 100, 200, 500, 1000]):
            groups.append(Group("10", "digits", f"{name}, n={n}", runs_compare(2, 4), 1000,
                                typical(best_ch5[like, n], 20, 1000), "ch. 5's H200 best epoch + patience 20",
                                lambda build=build, aug=aug, n=n: (build, _digit_kw(n, 200, aug))))
    return groups


def chapter_10b() -> list[Group]:
    from gdl.data import RandomRotation
    from gdl.groups import CyclicGroup, ImageAction
    from gdl.nn import CNN, GCNN
    from gdl.symmetrisation import C4Canonicalised, GroupAveraged

    C4 = CyclicGroup(4)

    def small_cnn():
        return CNN(1, 8, 3, kernel_size=3, padding_mode="zeros", num_classes=10, pool_after=(0, 1))

    class TemplateScore(nn.Module):                      # the chapter's canonicaliser score: overlap with a template
        def __init__(self, template):
            super().__init__()
            self.register_buffer("template", template - template.mean())

        def forward(self, x):
            return (x * self.template.to(x.dtype)).flatten(1).sum(1)

    template = _digits(800, 200).x_train.mean(0)
    models = {   # name: (build, augment, mean epochs on the H200 at full scale, run 1)
        "CNN": (small_cnn, None, 66),
        "p4-CNN": (lambda: GCNN(1, (4, 4, 4), kernel_size=3, group="p4", pool_after=(0, 1), num_classes=10), None,
                   37),
        "averaged CNN": (lambda: GroupAveraged(small_cnn(), C4, ImageAction(C4)), None, 91),
        "canonicalised CNN": (lambda: C4Canonicalised(small_cnn(), TemplateScore(template)), None, 54),
        "CNN + augmentation": (small_cnn, RandomRotation("c4"), 89),
    }
    return [Group("10b", "five ways, 800 digits", name, runs_compare(2, 5), 400, epochs,
                  "H200, full scale (mean of 5 seeds)",
                  lambda build=build, aug=aug: (build, _digit_kw(800, 200, aug, batch_size=50)))
            for name, (build, aug, epochs) in models.items()]


# ---------------------------------------------------------------------------------------------------------------
# calibration on the sections that finished on the H200 at full scale
# ---------------------------------------------------------------------------------------------------------------
#: (chapter, section, measured seconds, how the seconds were read from the log)
H200_SECTIONS = [
    ("05", "learning curves", 189 - 10, "run 2: the table at 189 s, the sweep started after the line at 10 s"),
    ("10", "dipole, 4096", 118 - 7, "run 2: the dipole table at 118 s, the chapter's first line at 7 s"),
    ("10b", "five ways, 800 digits", 150 - 8, "run 1: the table at 150 s, the line before it at 8 s"),
]


def fit_c(groups: list[Group]) -> dict[str, float]:
    """Seconds per operation that make each measured section's operations (runs x epochs x operations per epoch)
    take its measured H200 time."""
    out = {}
    for chapter, section, seconds, _ in H200_SECTIONS:
        sel = [g for g in groups if g.chapter == chapter and g.section == section and g.measured]
        ops = sum(g.runs * (g.typical * g.measured["device_ops"] + g.measured["setup_ops"]) for g in sel)
        host = sum(g.runs * g.typical * g.measured["host_s"] for g in sel)
        if ops:
            out[f"{chapter} {section}"] = (seconds - host) / ops
    return out


# ---------------------------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------------------------
H200_CHAPTERS = {   # measured on the H200 at full scale, 2026-12-04 (benchmarks/README.md, last section)
    "01": "pass, 9 s", "02": "pass, 16 s", "02b": "pass, 14 s", "03": "> 269 s (run 1 failed at 269 s), > 235 s",
    "04": "> 400 s", "05": "191 s (run 2: training done, then the convergence assert failed)", "06": "pass, 14 s",
    "06b": "pass, 5 s", "07": "> 400 s", "07b": "pass, 8 s", "08": "> 400 s", "09": "> 400 s", "09b": "pass, 61 s",
    "09c": "pass, 13 s", "10": "> 235 s (dipole section done at 118 s)",
    "10b": "218 s (run 2, new lr grid: training done, then the convergence assert failed)",
}


#: sections still training when the H200 runs stopped them: (section, seconds it had run by then)
H200_UNFINISHED = {"03": ("augmentation vs invariance", 235 - 14), "04": ("octagon learning curves", 400 - 9),
                   "07": ("sum of digits", 400 - 14), "08": ("learning curves, 2 A", 400 - 8),
                   "09": ("N-body", 400 - 42), "10": ("energy, 4096 aligned", 235 - 118)}

#: seconds each chapter spent on the H200 (run 1) before its first training section: its checks and set-up, added
#: to the estimate (later non-training cells, the test metrics and the plots are not counted)
H200_BEFORE_TRAINING = {"03": 13, "04": 9, "05": 10, "07": 14, "08": 8, "09": 42, "10": 7, "10b": 8}


def fmt_s(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters", default="03,04,05,07,08,09,10,10b")
    parser.add_argument("--no-time", action="store_true", help="skip timing one epoch on this CPU")
    parser.add_argument("--groups", action="store_true", help="print one line per group of runs")
    parser.add_argument("--workers", type=int, default=16,
                        help="worker processes of gdl.parallel at full scale (default 16: the H200 machine's cores)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    wanted = args.chapters.split(",")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); counting on the CPU", flush=True)

    xtb_s = _xtb_call_seconds() if "08" in wanted else 0.0
    makers = {"03": chapter_03, "04": chapter_04, "05": chapter_05, "07": chapter_07,
              "08": lambda: chapter_08(xtb_s), "09": chapter_09, "10": chapter_10, "10b": chapter_10b}
    groups: list[Group] = []
    for ch in wanted:
        start = time.perf_counter()
        new = makers[ch]()
        for g in new:
            g.measured = measure(g, time_epoch=not args.no_time)
        groups += new
        print(f"chapter {ch}: {len(new)} groups of runs measured in {time.perf_counter() - start:.0f} s", flush=True)

    fitted = fit_c(groups)
    for key, value in fitted.items():
        section = next(s for s in H200_SECTIONS if f"{s[0]} {s[1]}" == key)
        print(f"c from {key} ({section[3]}): {1e6 * value:.1f} us per operation")
    nbody = {g.name: g.measured["device_ops"] for g in groups if g.chapter == "09" and g.section == "N-body"}
    c_alone = C_ALONE
    if {"GNN", "EGNN"} <= set(nbody):       # issue 20's H200 epochs on the old path: GNN 435 ms, EGNN 625 ms
        c_alone = 0.190 / (nbody["EGNN"] - nbody["GNN"])
        print(f"c from chapter 9's old-path H200 epochs, one process alone (EGNN - GNN, 190 ms): "
              f"{1e6 * c_alone:.1f} us per operation")
    c = float(np.mean(list(fitted.values()))) if fitted else C_FITTED
    c_lo, c_hi = (min(fitted.values()), max(fitted.values())) if fitted else (c, c)
    if not fitted:
        print(f"no calibration section among these chapters: c = {1e6 * C_FITTED:.1f} us, the full run's fit")
    print(f"c used: {1e6 * c:.1f} us per operation (chapter runs: {1e6 * c_lo:.1f}-{1e6 * c_hi:.1f}; range shown: "
          f"{1e6 * c_alone:.1f}, one process alone, to {1e6 * c_hi:.1f})")

    def seconds(g: Group, c: float, epochs: float) -> float:
        m = g.measured
        return g.runs * (epochs * epoch_seconds(m, c) + m["setup_ops"] * c) + g.extra_ops * c + g.extra_cpu_s

    if args.groups:
        print("\n| ch. | section | model | runs | ops per step | ops per validation pass | ops per epoch (device) | "
              "host augmentation (ms/epoch) | GFLOP per step | this CPU (ms/epoch) | epochs typical / cap | "
              "GPU typical | GPU cap |")
        print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for g in groups:
            m = g.measured
            print(f"| {g.chapter} | {g.section} | {g.name} | {g.runs} | {m['step_ops']} | {m['val_ops']} | "
                  f"{m['device_ops']} | {1000 * m['host_s']:.1f} | {m['step_flops'] / 1e9:.3f} | "
                  f"{1000 * m.get('cpu_epoch_s', math.nan):.0f} | {g.typical:.0f} / {g.cap} | "
                  f"{fmt_s(seconds(g, c, g.typical))} | {fmt_s(seconds(g, c_hi, g.cap))} |")

    def on_cpu(g: Group) -> float:
        """The same runs on one core of this CPU: typical epochs x the measured seconds of one epoch."""
        return g.runs * g.typical * g.measured.get("cpu_epoch_s", math.nan) + g.extra_on_cpu_s

    print("\n| chapter | training runs | ops per step / per validation pass | epochs per run, typical / cap | "
          "GPU estimate, typical (range of c) | upper bound (caps) | largest share (typical) | "
          f"arithmetic / launch time, worst step | one core of this CPU, typical | H200 measured | "
          f"GPU typical, {args.workers} workers |")
    print("|---|---:|---|---|---:|---:|---|---:|---:|---|---:|")
    over, over_k = [], []
    for ch in dict.fromkeys(g.chapter for g in groups):
        gs = [g for g in groups if g.chapter == ch]
        before = H200_BEFORE_TRAINING.get(ch, 0)
        typ, lo, hi = (before + sum(seconds(g, cc, g.typical) for g in gs) for cc in (c, c_alone, c_hi))
        cap = before + sum(seconds(g, c_hi, g.cap) for g in gs)
        typ_k = before + parallel_seconds(gs, lambda g: seconds(g, c, g.typical), args.workers)
        top = max(gs, key=lambda g: seconds(g, c, g.typical))
        share = f"{top.section}: {top.name} ({100 * seconds(top, c, top.typical) / typ:.0f} %)"
        arith = max(g.measured["step_flops"] / H200_FLOPS / (g.measured["step_ops"] * c) for g in gs)
        steps, vals = [g.measured["step_ops"] for g in gs], [g.measured["val_ops"] for g in gs]
        typs, caps = [g.typical for g in gs], [g.cap for g in gs]
        print(f"| {ch} | {sum(g.runs for g in gs)} | {min(steps)}-{max(steps)} / {min(vals)}-{max(vals)} | "
              f"{min(typs):.0f}-{max(typs):.0f} / {min(caps)}-{max(caps)} | **{fmt_s(typ)}** ({fmt_s(lo)}-"
              f"{fmt_s(hi)}) | {fmt_s(cap)} | {share} | {arith:.1g} | {fmt_s(before + sum(map(on_cpu, gs)))} | "
              f"{H200_CHAPTERS.get(ch, '-')} | **{fmt_s(typ_k)}** |")
        if typ > 600:
            over.append(ch)
        if typ_k > 600:
            over_k.append(ch)
    for g in groups:
        if g.extra_note:
            print(f"chapter {g.chapter}: {g.extra_note} = {fmt_s(g.extra_ops * c + g.extra_cpu_s)} (included)")
    if "08" in wanted:
        print(f"not included: the GFN2-xTB trajectory of the full scale, 12,000 steps x {1000 * xtb_s:.1f} ms = "
              f"{fmt_s(12000 * xtb_s)} on one CPU core, once (cached per seed)")
    print(f"over 10 minutes (typical estimate): {', '.join(over) or 'none'}; with {args.workers} workers: "
          f"{', '.join(over_k) or 'none'}")
    for ch, (section, bound) in H200_UNFINISHED.items():
        gs = [g for g in groups if g.chapter == ch and g.section == section]
        if gs:
            est, alone = (sum(seconds(g, cc, g.typical) for g in gs) for cc in (c, c_alone))
            print(f"chapter {ch}, {section}: unfinished after {bound} s on the H200; estimated {est:.0f} s "
                  f"({'consistent' if est > bound else 'TOO LOW'}), at the one-process c {alone:.0f} s "
                  f"({'consistent' if alone > bound else 'too low'})")


if __name__ == "__main__":
    sys.exit(main())
