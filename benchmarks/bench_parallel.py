"""Independent training runs one after another against the same runs in worker processes (``gdl.parallel``).

    python benchmarks/bench_parallel.py --device cpu [--workers 2] [--runs 8] [--epochs 10]
    python benchmarks/bench_parallel.py --device cuda --workers 16 --runs 32

The workload is what the chapters repeat many times at full scale: a training run of a small model, here chapter 9's
EGNN on 200 charged five-body systems (batch 25, hidden 32), ``--epochs`` epochs from its own seed. ``--runs`` such
runs are trained by ``gdl.parallel.starmap`` with one worker (in this process, one after another, as at the small
scale; one thread, as each worker has) and with ``--workers`` processes (default: one per CPU core), round-robin
over ``--repeats`` rounds; the first parallel map, which starts the workers, is timed apart. The final training
losses of the two must agree to round-off (a run gives the same result in a worker).

Goal: the parallel map takes at most ``1.25 / min(workers, runs)`` of the serial one (80 % of a perfect share of
the cores). On a GPU the workers share the device: the ratio then says how far launch-bound runs overlap there.
A measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from _common import add_common_arguments, set_up, sync

from gdl.data import GraphDataset, nbody_splits
from gdl.nn import EGNN
from gdl.parallel import starmap
from gdl.training import fit


def _mse(prediction, batch):
    return ((prediction - batch.target) ** 2).mean()


def one_run(seed: int, epochs: int, device: str) -> float:
    """Chapter 9's small EGNN trained for ``epochs`` epochs from ``seed``; its last epoch's mean training loss."""
    train_set, _, _ = nbody_splits(200, 1, 1, seed=0)
    model = fit(lambda: EGNN(1, 32, 4, edge_features=1, velocity=True, node_features=("q",)),
                GraphDataset(train_set.graphs()), None, seed=seed, epochs=epochs, batch_size=25, lr=3e-3,
                loss_fn=_mse, device=device, progress=False)
    return model.history.loss[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, repeats=3, warmup=0)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.set_defaults(threads=1)      # as a worker: one thread each, so the serial map is not slowed by sharing cores
    args = parser.parse_args()
    device = set_up(args)
    calls = [(seed, args.epochs, device.type) for seed in range(args.runs)]

    def timed_map(workers: int) -> tuple[float, list[float]]:
        sync(device)
        start = time.perf_counter()
        losses = starmap(one_run, calls, workers=workers, progress=False)
        sync(device)
        return time.perf_counter() - start, losses

    first, _ = timed_map(args.workers)              # starts the worker processes
    serial, parallel, ratios = [], [], []
    for _ in range(args.repeats):
        s, serial_losses = timed_map(1)
        p, parallel_losses = timed_map(args.workers)
        serial.append(s)
        parallel.append(p)
        ratios.append(p / s)
    worst = max(abs(a - b) / abs(a) for a, b in zip(serial_losses, parallel_losses))
    k = min(args.workers, args.runs)
    goal = 1.25 / k
    ratio = statistics.median(ratios)
    print(f"{args.runs} runs of chapter 9's EGNN (200 systems, batch 25, {args.epochs} epochs each), "
          f"{args.repeats} rounds, wall clock; {os.cpu_count()} CPU cores")
    print("| map | seconds (median) |\n|---|---:|")
    print(f"| one after another (1 worker, this process) | {statistics.median(serial):.2f} |")
    print(f"| {args.workers} worker processes | {statistics.median(parallel):.2f} |")
    print(f"| {args.workers} worker processes, first map (starting them) | {first:.2f} |")
    print(f"parallel / serial: {ratio:.2f} (rounds: {', '.join(f'{r:.2f}' for r in ratios)}); goal at most "
          f"1.25 / {k} = {goal:.2f}: {'met' if ratio <= goal else 'NOT met'}")
    print(f"final training losses, worst relative difference between the two maps: {worst:.1e} "
          f"({'same to round-off' if worst < 1e-4 else 'DIFFERENT'})")


if __name__ == "__main__":
    main()
