"""Cost of a p4 group convolution against a plain Conv2d of the same expanded size and escnn's R2Conv.

    python benchmarks/bench_gcnn.py --device cpu
    python benchmarks/bench_gcnn.py --device cuda --batch 64 --fields 32 --size 64

Times one forward + backward pass (median of ``--repeats`` after ``--warmup`` passes) of

- ``gdl.nn.GroupConv2d``: ``C`` regular p4 fields in and out (``4C`` channels), the filter expanded by one
  gather and applied by one ``conv2d``;
- ``torch.nn.Conv2d(4C, 4C)``: the same expanded channel counts, no weight sharing;
- ``escnn.nn.R2Conv``: ``C`` regular fields of ``C4`` in and out (same tensor sizes), in training mode, i.e.
  expanding its steerable basis on every call.

The three are timed round-robin (one pass of each per repeat), so a change of machine load hits all three
alike; the ratios are the output. This is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch import nn

from gdl.nn import GroupConv2d


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(module: nn.Module, x: torch.Tensor, device: torch.device) -> float:
    start = time.perf_counter()
    out = module(x)
    out.square().mean().backward()
    _sync(device)
    return time.perf_counter() - start


def _escnn_conv(fields: int, kernel_size: int):
    try:
        from escnn import gspaces
        from escnn import nn as enn
    except ImportError:
        return None
    gs = gspaces.rot2dOnR2(4)
    t = enn.FieldType(gs, [gs.regular_repr] * fields)
    conv = enn.R2Conv(t, t, kernel_size, padding=kernel_size // 2)

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, x):
            return self.conv(enn.GeometricTensor(x, t)).tensor

    return Wrapped()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--fields", type=int, default=16, help="regular p4 fields in and out (channels / 4)")
    parser.add_argument("--size", type=int, default=32, help="image side")
    parser.add_argument("--kernel", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    C, k = args.fields, args.kernel
    models = {
        "gdl GroupConv2d (p4)": GroupConv2d(C, C, k, "p4"),
        "torch Conv2d (same expanded size)": nn.Conv2d(4 * C, 4 * C, k, padding=k // 2),
    }
    esc = _escnn_conv(C, k)
    if esc is not None:
        models["escnn R2Conv (C4 regular)"] = esc
    for m in models.values():
        m.to(device).train()
    x = torch.randn(args.batch, 4 * C, args.size, args.size, device=device)
    times: dict[str, list[float]] = {name: [] for name in models}
    for i in range(args.warmup + args.repeats):
        for name, m in models.items():
            m.zero_grad(set_to_none=True)
            t = _step(m, x, device)
            if i >= args.warmup:
                times[name].append(t)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    base = med["gdl GroupConv2d (p4)"]
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    print(f"device: {device.type} ({dev_name}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"input (B={args.batch}, C={4 * C}, H=W={args.size}), kernel {k}x{k}, "
          f"median of {args.repeats} forward+backward passes after {args.warmup} warm-up passes\n")
    print("| layer | median time (ms) | time / gdl GroupConv2d |")
    print("|---|---|---|")
    for name, t in med.items():
        print(f"| {name} | {1e3 * t:.2f} | {t / base:.2f} |")
    # the part that differs: building the filter (forward + backward), without the convolution
    expand = {"gdl GroupConv2d (p4)": lambda: models["gdl GroupConv2d (p4)"].expanded_weight()}
    if esc is not None:
        expand["escnn R2Conv (C4 regular)"] = lambda: esc.conv.expand_parameters()[0]
    exp_times: dict[str, list[float]] = {name: [] for name in expand}
    for i in range(args.warmup + args.repeats):
        for name, fn in expand.items():
            start = time.perf_counter()
            fn().sum().backward()
            _sync(device)
            if i >= args.warmup:
                exp_times[name].append(time.perf_counter() - start)
    print("\n| filter expansion only (forward + backward) | median time (ms) |")
    print("|---|---|")
    for name, ts in exp_times.items():
        print(f"| {name} | {1e3 * statistics.median(ts):.3f} |")
    plain = med["torch Conv2d (same expanded size)"]
    print(f"\ngdl p4 group convolution / plain Conv2d: {base / plain:.2f} (goal: <= 1.10)")
    if esc is not None:
        print(f"gdl p4 group convolution / escnn R2Conv: {base / med['escnn R2Conv (C4 regular)']:.2f} "
              "(goal: < 1)")


if __name__ == "__main__":
    main()
