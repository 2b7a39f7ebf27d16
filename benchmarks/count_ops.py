"""Operations per training step of the small models of chapters 8 and 9, and an equality check of their outputs.

    python benchmarks/count_ops.py                       # ops per step (forward, backward, Adam) for every model
    python benchmarks/count_ops.py --top 15 --only EGNN  # and the 15 most frequent ops of each phase
    python benchmarks/count_ops.py --save /tmp/ref.pt    # float64 outputs and gradients of every model ...
    python benchmarks/count_ops.py --compare /tmp/ref.pt # ... and, after a change, their largest differences

Small models are bound by the number of operations, not by arithmetic: on a GPU each ATen operation is at least one
kernel launch (about 16 us on an H200), on a CPU a few microseconds of dispatch. :class:`OpCounter` counts the ATen
operations that reach the kernels (below autograd, so the backward pass is counted too), skipping the ones that only
make a view or an alias of a tensor (``view``, ``reshape`` of a contiguous tensor, ``transpose``, ``detach``, ...),
which launch nothing. One training step is ``loss = loss_fn(model(batch), batch)``, ``backward``, and the step of
``gdl.training.adam`` (PyTorch's default Adam: on a CPU one loop over the parameter tensors, several ops each; on
a GPU its multi-tensor "foreach" version), counted on the CPU.

The workloads are the chapters' full-size settings: chapter 9's GNN and EGNN on 100 charged five-body systems
(hidden 64), chapter 8's SchNet and DimeNet++ (its small and full sizes) and chapter 9's NequIP-style model with
forces on 100 rattled ethanol molecules (2 Angstrom cutoff). ``--save``/``--compare`` run every model in float64
with the same seeded weights and inputs and report the largest difference of the outputs (energies, forces or
positions) and of every parameter's gradient, relative to the largest entry: a change that only cuts operations
must leave them equal to round-off (about 1e-15), and the state dict must load (parameter names unchanged).
"""

from __future__ import annotations

import argparse
import collections
import sys
import traceback
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ethanol_batch  # noqa: E402

from gdl.data import collate, nbody_splits  # noqa: E402
from gdl.nn import EGNN, CoordinateGNN, DimeNetPlusPlus, NequIP, SchNet  # noqa: E402
from gdl.nn.atomistic import EnergyForces, energy_force_loss  # noqa: E402
from gdl.training import adam  # noqa: E402


class OpCounter(TorchDispatchMode):
    """Counts the ATen operations dispatched while active, by name, skipping pure views and aliases."""

    def __init__(self, where: bool = False):
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()
        self.where = collections.Counter() if where else None      # by the innermost line of gdl that ran it

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if not func.is_view and name not in ("detach", "alias", "lift_fresh"):
            self.counts[name] += 1
            if self.where is not None:
                frames = [f for f in traceback.extract_stack() if "/gdl/" in f.filename]
                line = f"{frames[-1].filename.split('/gdl/')[-1]}:{frames[-1].lineno}" if frames else "(outside gdl)"
                self.where[line] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _mse(prediction, batch):
    return ((prediction - batch.target) ** 2).mean()


def workloads() -> dict:
    """``name -> (build, batch, loss_fn)`` at the chapters' full sizes (one training batch)."""
    nbody = collate(nbody_splits(100, 2, 2, seed=0)[0].graphs())
    ethanol = ethanol_batch(100, torch.device("cpu"))
    force_loss = energy_force_loss(1.0)
    dimenet_small = dict(hidden_channels=16, num_blocks=1, int_emb_size=8, basis_emb_size=4, out_emb_channels=16,
                         num_spherical=4, num_radial=4)
    dimenet_full = dict(hidden_channels=32, num_blocks=2, int_emb_size=16, out_emb_channels=32)
    return {
        "ch. 9 GNN (100 systems, hidden 64)":
            (lambda: CoordinateGNN(1, 64, 4, edge_features=1, node_features=("q",)), nbody, _mse),
        "ch. 9 EGNN (100 systems, hidden 64)":
            (lambda: EGNN(1, 64, 4, edge_features=1, velocity=True, node_features=("q",)), nbody, _mse),
        "ch. 8 SchNet + forces (100 ethanol)":
            (lambda: EnergyForces(SchNet(num_types=10, hidden_channels=32, num_filters=32, num_interactions=3,
                                         num_gaussians=25, cutoff=2.0)), ethanol, force_loss),
        "ch. 8 DimeNet++ small + forces (100 ethanol)":
            (lambda: EnergyForces(DimeNetPlusPlus(num_types=10, cutoff=2.0, **dimenet_small)), ethanol, force_loss),
        "ch. 8 DimeNet++ full + forces (100 ethanol)":
            (lambda: EnergyForces(DimeNetPlusPlus(num_types=10, cutoff=2.0, **dimenet_full)), ethanol, force_loss),
        "ch. 9 NequIP-style + forces (100 ethanol)":
            (lambda: EnergyForces(NequIP(num_types=10, hidden_irreps="16x0e + 8x1o", lmax=1, num_layers=2,
                                         cutoff=2.0)), ethanol, force_loss),
    }


def count_step(build, batch, loss_fn, where: bool = False) -> dict[str, OpCounter]:
    """Ops of one training step, by phase: ``forward`` (model and loss), ``backward``, ``adam``."""
    torch.manual_seed(0)
    model = build()
    model.train()
    opt = adam(model.parameters(), lr=1e-3)
    for _ in range(2):                                   # warm-up: lazy state (Adam's moments, caches) exists
        opt.zero_grad(set_to_none=True)
        loss_fn(model(batch), batch).backward()
        opt.step()
    phases = {k: OpCounter(where) for k in ("forward", "backward", "adam")}
    opt.zero_grad(set_to_none=True)
    with phases["forward"]:
        loss = loss_fn(model(batch), batch)
    with phases["backward"]:
        loss.backward()
    with phases["adam"]:
        opt.step()
    return phases


def outputs(build, batch, loss_fn, state=None, dtype=torch.float64):
    """Outputs, loss and parameter gradients of the model (seeded weights, or ``state``) on ``batch`` in ``dtype``,
    and the state dict."""
    torch.manual_seed(0)
    model = build().to(dtype)
    if state is not None:
        model.load_state_dict(state)                      # strict: parameter names must be unchanged
    model.train()
    batch = batch.replace(**{k: batch[k].to(dtype) for k in batch.keys() if batch[k].is_floating_point()})
    out = model(batch)
    loss = loss_fn(out, batch)
    loss.backward()
    res = {f"out.{k}": v.detach() for k, v in (out.items() if isinstance(out, dict) else [("", out)])}
    res["loss"] = loss.detach()
    res.update({f"grad.{n}": p.grad for n, p in model.named_parameters() if p.grad is not None})
    return res, {k: v.clone() for k, v in model.state_dict().items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="the workloads whose name contains this text")
    parser.add_argument("--top", type=int, default=0, help="also list the most frequent ops of each phase")
    parser.add_argument("--save", default=None, help="save float64 outputs and gradients to this file")
    parser.add_argument("--compare", default=None, help="compare float64 outputs and gradients with this file")
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                        help="the dtype of --save/--compare (float32: differences of float32 round-off expected)")
    parser.add_argument("--where", action="store_true", help="with --top: the lines of gdl that run the most ops")
    args = parser.parse_args()
    torch.set_num_threads(1)
    chosen = {k: v for k, v in workloads().items() if args.only in k}
    if args.save or args.compare:
        saved = torch.load(args.compare, weights_only=True) if args.compare else {}
        ref, dtype = {}, getattr(torch, args.dtype)
        for name, (build, batch, loss_fn) in chosen.items():
            if args.save:
                ref[name] = dict(zip(("values", "state"), outputs(build, batch, loss_fn, dtype=dtype)))
                continue
            values, _ = outputs(build, batch, loss_fn, saved[name]["state"], dtype)
            old = saved[name]["values"]
            if set(values) != set(old):
                raise SystemExit(f"{name}: different outputs/gradients: {sorted(set(values) ^ set(old))}")
            worst = max(((v - old[k]).abs().max() / old[k].abs().max().clamp(min=torch.finfo(v.dtype).tiny)).item()
                        for k, v in values.items())
            print(f"{name}: {len(values)} tensors, largest relative difference {worst:.1e}")
        if args.save:
            torch.save(ref, args.save)
            print(f"saved {len(ref)} workloads to {args.save}")
        return
    print("| model | forward | backward | Adam | total ops per step |")
    print("|---|---:|---:|---:|---:|")
    for name, (build, batch, loss_fn) in chosen.items():
        phases = count_step(build, batch, loss_fn, args.where)
        total = sum(p.total for p in phases.values())
        print(f"| {name} | {phases['forward'].total} | {phases['backward'].total} | {phases['adam'].total} | "
              f"{total} |")
        if args.top:
            for k, p in phases.items():
                print(f"    {k}: " + ", ".join(f"{op} {c}" for op, c in p.counts.most_common(args.top)))
                if p.where is not None:
                    print("      " + ", ".join(f"{w} {c}" for w, c in p.where.most_common(args.top)))


if __name__ == "__main__":
    main()
