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
import statistics

import torch
from _common import add_common_arguments, round_robin, set_up, timed
from torch import nn

from gdl.nn import GroupConv2d


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
    add_common_arguments(parser, repeats=30, warmup=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--fields", type=int, default=16, help="regular p4 fields in and out (channels / 4)")
    parser.add_argument("--size", type=int, default=32, help="image side")
    parser.add_argument("--kernel", type=int, default=3)
    parser.add_argument("--steerable-channels", type=int, default=64, help="C8 steerable row: channels (8 per field)")
    parser.add_argument("--skip-steerable", action="store_true", help="leave out the steerable (C8) row")
    args = parser.parse_args()
    device = set_up(args)
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
    med = round_robin(models, lambda m, x: m(x).square().mean().backward(), x, args.repeats, args.warmup, device)
    base = med["gdl GroupConv2d (p4)"]
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
            t = timed(lambda fn=fn: fn().sum().backward(), device)
            if i >= args.warmup:
                exp_times[name].append(t)
    print("\n| filter expansion only (forward + backward) | median time (ms) |")
    print("|---|---|")
    for name, ts in exp_times.items():
        print(f"| {name} | {1e3 * statistics.median(ts):.3f} |")
    plain = med["torch Conv2d (same expanded size)"]
    # inference: forward only under no_grad, where GroupConv2d reuses its cached filter
    pair = {k: models[k].eval() for k in ("gdl GroupConv2d (p4)", "torch Conv2d (same expanded size)")}

    def infer(m, x):
        with torch.no_grad():
            m(x)

    inf = round_robin(pair, infer, x, args.repeats, args.warmup, device)
    inf_ratio = inf["gdl GroupConv2d (p4)"] / inf["torch Conv2d (same expanded size)"]
    print("\n| inference (eval, no_grad, forward) | median time (ms) |")
    print("|---|---|")
    for name, t in inf.items():
        print(f"| {name} | {1e3 * t:.3f} |")
    ratio = base / plain
    print(f"\ngdl p4 group convolution / plain Conv2d, training (forward + backward): {ratio:.2f} (goal: <= 1.10, "
          f"{'met' if ratio <= 1.10 else 'NOT met'})")
    print(f"gdl p4 group convolution / plain Conv2d, inference (cached filter): {inf_ratio:.2f} (goal: <= 1.10, "
          f"{'met' if inf_ratio <= 1.10 else 'NOT met'})")
    if esc is not None:
        print(f"gdl p4 group convolution / escnn R2Conv: {base / med['escnn R2Conv (C4 regular)']:.2f} "
              "(goal: < 1)")
    if not args.skip_steerable:
        _steerable_rows(args, device)


def _steerable_rows(args, device) -> None:
    """The steerable row: ``gdl.nn.SteerableConv2d`` between regular C8 fields (5x5 filters, the basis expanded on
    every training call) against ``nn.Conv2d`` of the same channels and escnn's ``R2Conv`` where it imports."""
    from gdl.nn.steerable import FieldType, SteerableConv2d

    C, k = args.steerable_channels, 5
    if C % 8:
        raise ValueError(f"--steerable-channels must be a multiple of 8 (regular C8 fields), got {C}")
    t = FieldType("C8", ["regular"] * (C // 8))
    models = {"gdl SteerableConv2d (C8 regular)": SteerableConv2d(t, t, k),
              "torch Conv2d (same channels)": nn.Conv2d(C, C, k, padding=k // 2)}
    try:
        from escnn import gspaces
        from escnn import nn as enn

        gs = gspaces.rot2dOnR2(8)
        et = enn.FieldType(gs, [gs.regular_repr] * (C // 8))
        conv = enn.R2Conv(et, et, k, padding=k // 2)

        class Wrapped(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = conv

            def forward(self, x):
                return self.conv(enn.GeometricTensor(x, et)).tensor

        models["escnn R2Conv (C8 regular)"] = Wrapped()
    except ImportError:
        pass
    for m in models.values():
        m.to(device).train()
    x = torch.randn(args.batch, C, args.size, args.size, device=device)
    med = round_robin(models, lambda m, x: m(x).square().mean().backward(), x, args.repeats, args.warmup, device)
    base = med["torch Conv2d (same channels)"]
    print(f"\nsteerable: input (B={args.batch}, C={C}, H=W={args.size}), kernel {k}x{k}, forward+backward\n")
    print("| layer | median time (ms) | time / torch Conv2d |")
    print("|---|---|---|")
    for name, t_ in med.items():
        print(f"| {name} | {1e3 * t_:.2f} | {t_ / base:.2f} |")
    ratio = med["gdl SteerableConv2d (C8 regular)"] / base
    print(f"\ngdl steerable convolution / plain Conv2d, training (forward + backward): {ratio:.2f} "
          f"(goal: <= 1.10, {'met' if ratio <= 1.10 else 'NOT met'})")
    if "escnn R2Conv (C8 regular)" in med:
        print(f"gdl steerable convolution / escnn R2Conv: "
              f"{med['gdl SteerableConv2d (C8 regular)'] / med['escnn R2Conv (C8 regular)']:.2f} (goal: <= 1)")


if __name__ == "__main__":
    main()
