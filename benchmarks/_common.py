"""What every benchmark script shares: the common command-line options, device set-up, timing of one
forward+backward step, and the atomistic test batch and training steps.

Each script imports it as ``from _common import ...`` (the scripts run as ``python benchmarks/bench_x.py``, so
their own folder is on the import path)."""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
from collections.abc import Callable

import torch

from gdl.data import collate


def add_common_arguments(parser: argparse.ArgumentParser, repeats: int, warmup: int) -> None:
    """``--device``, ``--repeats``, ``--warmup`` and ``--threads``."""
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--warmup", type=int, default=warmup)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                        help="wall: elapsed time; cpu: this process's CPU time (user + sys), robust to other jobs "
                             "on a shared machine when every variant runs on one thread (CPU device only)")


_CLOCK = time.perf_counter


def set_up(args: argparse.Namespace, *extra: str) -> torch.device:
    """Apply ``--threads``, print the device line (with ``extra`` versions) and return the device."""
    global _CLOCK
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if getattr(args, "clock", "wall") == "cpu":
        if device.type != "cpu":
            raise SystemExit("--clock cpu measures the host only: use --clock wall with --device cuda")
        _CLOCK = time.process_time
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    print(", ".join([f"device: {device.type} ({name})", f"torch {torch.__version__}", *extra,
                     f"threads {torch.get_num_threads()}", f"clock {getattr(args, 'clock', 'wall')}"]))
    return device


def sync(device: torch.device) -> None:
    """Wait for the GPU, so a timer measures the work and not the launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of ``step`` takes (synchronised before and after)."""
    sync(device)
    start = _CLOCK()
    step()
    sync(device)
    return _CLOCK() - start


def ethanol_batch(n: int, device: torch.device, seed: int = 0):
    """``n`` distorted ethanol molecules with random energy and force labels (for timing only)."""
    from ase.build import molecule

    g = torch.Generator().manual_seed(seed)
    base = torch.as_tensor(molecule("CH3CH2OH").get_positions(), dtype=torch.float32)
    z = torch.as_tensor(molecule("CH3CH2OH").get_atomic_numbers())
    items = [{"pos": base + 0.1 * torch.randn(base.shape, generator=g), "z": z} for _ in range(n)]
    batch = collate(items).to(device)
    return batch.replace(energy=torch.randn(n, generator=g).to(device),
                         forces=torch.randn(batch.num_nodes, 3, generator=g).to(device))


def energy_step(model, batch) -> None:
    """Forward and backward of the energy alone (``model`` an :class:`gdl.nn.EnergyForces`)."""
    model.forces = False
    model(batch)["energy"].sum().backward()


def force_step(model, batch) -> None:
    """A training step's work on energies and forces: forces by autograd, then the loss's backward."""
    model.forces = True
    out = model(batch)
    ((out["energy"] - batch.energy) ** 2).mean().add(((out["forces"] - batch.forces) ** 2).mean()).backward()


def round_robin(models: dict, step: Callable, batch, repeats: int, warmup: int, device: torch.device
                ) -> dict[str, float]:
    """Median seconds of ``step(model, batch)`` per model, the models taking turns in every round, in a shuffled
    order (so a slow phase of the machine, or the cache state one model leaves, hits all of them alike); the first
    ``warmup`` rounds are not counted."""
    times: dict[str, list[float]] = {name: [] for name in models}
    names, shuffle = list(models), random.Random(0)
    for i in range(warmup + repeats):
        shuffle.shuffle(names)                    # a new order every round: none always runs first
        for name in names:
            m = models[name]
            m.zero_grad(set_to_none=True)
            t = timed(lambda m=m: step(m, batch), device)
            if i >= warmup:
                times[name].append(t)
    return {name: statistics.median(ts) for name, ts in times.items()}
