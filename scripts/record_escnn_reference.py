"""Record reference filters and outputs of escnn's ``R2Conv`` for gdl's cross-check tests.

escnn (1.0.11) depends on lie_learn, which pins numpy < 2 and has no wheels for CPython 3.13, so it cannot live
in the course's environment. This script runs where escnn imports (e.g. ``/work/escnn-venv``, numpy 1.26) and
does not import gdl:

    /work/escnn-venv/bin/python scripts/record_escnn_reference.py   # -> tests/data/escnn_reference.npz

For every case it stores, with escnn's default rings, widths and band limits (``R2Conv(..., kernel_size)``):

- ``dims/<case>``: the number of basis filters between one input and one output field (per field-type pair);
- ``rep_in/<case>``, ``rep_out/<case>``, ``planar/<case>``: for finite groups, the field representations of every
  group element and the element's 2x2 matrix on the plane (so that the tests can match escnn's conventions);
- for the layer cases, ``filter/<case>`` (the expanded filter of seeded random weights), ``x/<case>`` and
  ``y/<case>`` (an input and R2Conv's output), all float64 computed from escnn's float32 basis.

``tests/test_steerable.py`` reads the file in the main environment (numpy 2, no escnn).
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
import torch

try:
    import escnn.group._numerical as numerical
    from escnn import gspaces
    from escnn import nn as enn
except ImportError as err:  # pragma: no cover - run only where escnn imports
    sys.exit(f"record_escnn_reference.py needs escnn (it lives in its own environment): {err}")

# escnn 1.0.11 hands an np.matrix to scikit-learn's randomized_svd, which recent versions reject; its own fallback,
# scipy's exact SVD, is deterministic.
numerical.randomized_svd = None

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "escnn_reference.npz"


def gspace(name: str, max_frequency: int = 6):
    if name == "SO2":
        return gspaces.rot2dOnR2(-1, maximum_frequency=max_frequency)
    if name == "O2":
        return gspaces.flipRot2dOnR2(-1, maximum_frequency=max_frequency)
    n = int(name[1:])
    return gspaces.rot2dOnR2(n) if name[0] == "C" else gspaces.flipRot2dOnR2(n)


def field(gs, spec):
    """``"regular"``, a frequency ``k`` or a pair ``(j, k)`` in gdl's FieldType spelling (``j`` the sign of the mirror
    on a 1-dimensional irrep, 0 for the 2-dimensional ones) as an escnn representation."""
    if spec == "regular":
        return gs.regular_repr
    j, k = (0, spec) if isinstance(spec, int) else spec
    if gs.flips_order <= 0:
        return gs.irrep(k)
    n = gs.rotations_order
    one_dimensional = k == 0 or (n > 0 and 2 * k == n)
    return gs.irrep(j if one_dimensional else 1, k)     # escnn labels the 2-dimensional irreps (1, k)


def irreps(name: str):
    if name in ("SO2", "O2"):
        ks = list(range(4))
    else:
        ks = list(range(int(name[1:]) // 2 + 1))
    if name[0] in ("D", "O"):
        out = []
        for k in ks:
            out.append((0, k))
            if k == 0 or (name[0] == "D" and 2 * k == int(name[1:])):
                out.append((1, k))
        return out
    return ks


def main() -> None:
    data: dict[str, np.ndarray] = {}
    meta: dict[str, dict] = {}
    # basis dimension per pair of fields
    for name in ["C4", "C8", "C6", "D4", "D6", "SO2", "O2"]:
        gs = gspace(name)
        specs = irreps(name) + (["regular"] if name[0] in "CD" else [])
        for k in (5, 7):
            for a in specs:
                for b in specs:
                    key = f"dims/{name}/{k}/{json.dumps(b)}->{json.dumps(a)}"
                    try:
                        conv = enn.R2Conv(enn.FieldType(gs, [field(gs, b)]), enn.FieldType(gs, [field(gs, a)]),
                                          k, bias=False, initialize=False)
                    except ValueError as err:                     # escnn refuses an empty basis
                        if "empty" not in str(err):
                            raise
                        data[key] = np.array(0)
                        continue
                    data[key] = np.array(conv.weights.numel())
    # layers: filter, input and output
    layers = {
        "C8_reg": ("C8", ["regular"] * 2, ["regular"] * 3, 5),
        "C4_reg_k7": ("C4", ["regular"], ["regular"] * 2, 7),
        "D4_reg": ("D4", ["regular"] * 2, ["regular"] * 2, 5),
        "C8_triv_reg": ("C8", [0], ["regular"] * 2, 5),
        "SO2_irreps": ("SO2", [0, 1, 2], [0, 1, 2, 1], 5),
        "O2_irreps": ("O2", [(0, 0), (0, 1), (1, 0)], [(0, 0), (0, 2), (1, 0), (0, 1)], 5),
        "C8_mixed": ("C8", [0, "regular", 2], ["regular", 1, 4], 5),
    }
    gen = torch.Generator().manual_seed(0)
    for case, (name, fin, fout, k) in layers.items():
        gs = gspace(name)
        tin = enn.FieldType(gs, [field(gs, f) for f in fin])
        tout = enn.FieldType(gs, [field(gs, f) for f in fout])
        conv = enn.R2Conv(tin, tout, k, padding=k // 2, bias=False, initialize=False)
        with torch.no_grad():
            conv.weights.copy_(torch.randn(conv.weights.shape, generator=gen))
            conv.eval()
            filt, _ = conv.expand_parameters()
            x = torch.randn(2, tin.size, 11, 11, generator=gen)
            y = conv(enn.GeometricTensor(x, tin)).tensor
        data[f"filter/{case}"] = filt.double().numpy()
        data[f"x/{case}"] = x.double().numpy()
        data[f"y/{case}"] = y.double().numpy()
        meta[case] = {"group": name, "in": fin, "out": fout, "kernel_size": k}
        if gs.fibergroup.order() > 0:
            elems = list(gs.fibergroup.elements)
            data[f"rep_in/{case}"] = np.stack([tin.representation(g) for g in elems])
            data[f"rep_out/{case}"] = np.stack([tout.representation(g) for g in elems])
            data[f"planar/{case}"] = np.stack([gs.basespace_action(g) for g in elems])
    data["meta"] = np.array(json.dumps(meta))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **data)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB, {len(data)} arrays)")


if __name__ == "__main__":
    main()
