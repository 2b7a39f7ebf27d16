"""gdl's NequIP-style model against e3nn's own gated point-convolution network of the same size.

    python benchmarks/bench_equivariant3d.py --device cpu
    python benchmarks/bench_equivariant3d.py --device cuda --molecules 256

Neither ``nequip`` nor ``mace-torch`` is installed in this project (and they are not added for a benchmark), so the
reference is the NequIP-like model that ships *inside* e3nn, written by e3nn's authors:
``e3nn.nn.models.gate_points_2101.Network`` (gated convolutions whose tensor-product weights come from an MLP on a
radial basis, the design NequIP grew out of). Both get the same hidden irreps, spherical harmonics up to l = 2,
the same number of gated layers, radial basis size, radial MLP width and cutoff. They are *not* identical networks:
e3nn's uses species-dependent self-interactions (tensor products with the one-hot atom type), Gaussian rather than
Bessel radial functions, one more convolution as its read-out, and its own all-pairs radius graph; the parameter
counts are printed. For context, gdl's EGNN and SE(3)-Transformer are timed on the same batch.

Two passes, as in ``bench_atomistic.py``: *energy* (forward, backward to the weights) and *energy + forces* (a
training step: forces by autograd with ``create_graph=True``, a loss on both, backward), all models wrapped in
:class:`gdl.nn.EnergyForces`. Round-robin, median of ``--repeats``. This is a measurement, not a test.
"""

from __future__ import annotations

import argparse

import torch
from _common import add_common_arguments, energy_step, ethanol_batch, force_step, round_robin, set_up

from gdl.nn import EnergyForces, NequIP
from gdl.nn.neighbours import radius_graph

TYPES = (1, 6, 8)           # H, C, O: the one-hot atom types e3nn's network takes as node attributes






class E3nnEnergy(torch.nn.Module):
    """e3nn's ``gate_points_2101.Network`` behind the GraphBatch interface (one-hot types as node attributes)."""

    def __init__(self, args):
        super().__init__()
        from e3nn import o3
        from e3nn.nn.models.gate_points_2101 import Network

        self.num_types = 100
        self.register_buffer("type_index", torch.full((100,), -1, dtype=torch.long))
        self.type_index[list(TYPES)] = torch.arange(len(TYPES))
        self.net = Network(irreps_in=None, irreps_hidden=args.irreps, irreps_out="0e",
                           irreps_node_attr=f"{len(TYPES)}x0e", irreps_edge_attr=o3.Irreps.spherical_harmonics(2),
                           layers=args.layers, max_radius=args.cutoff, number_of_basis=args.basis, radial_layers=1,
                           radial_neurons=args.radial, num_neighbors=8.0, num_nodes=9.0)

    def forward(self, batch):
        onehot = torch.nn.functional.one_hot(self.type_index[batch.z], len(TYPES)).to(batch.pos.dtype)
        return self.net({"pos": batch.pos, "z": onehot, "batch": batch.batch}).squeeze(-1) * 9.0**0.5






def _models(args) -> dict[str, torch.nn.Module]:
    from gdl.nn import EGNN
    from gdl.nn.se3_transformer import SE3Transformer

    class EGNNEnergy(torch.nn.Module):
        """EGNN features summed to an energy (timing only)."""

        def __init__(self):
            super().__init__()
            self.num_types = 100
            self.embed = torch.nn.Embedding(100, 1)
            self.egnn = EGNN(1, 32, args.layers, node_features=("h",))

        def forward(self, batch):
            out = self.egnn(batch.replace(h=self.embed(batch.z)))
            return torch.zeros(batch.num_graphs, device=out.device).index_add(0, batch.batch, out.pow(2).sum(-1))

    class SE3TEnergy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.num_types = 100
            self.model = SE3Transformer(channels=8, num_layers=args.layers, cutoff=args.cutoff)

        def forward(self, batch):
            return self.model(batch)["energy"]

    torch.manual_seed(0)
    models = {"gdl NequIP-style": NequIP(hidden_irreps=args.irreps, lmax=2, num_layers=args.layers,
                                         num_basis=args.basis, radial_hidden=args.radial, cutoff=args.cutoff),
              "e3nn gate_points_2101.Network": E3nnEnergy(args),
              "gdl EGNN (hidden 32, all pairs)": EGNNEnergy(),
              "gdl SE(3)-Transformer (8 channels)": SE3TEnergy()}
    return {name: EnergyForces(m) for name, m in models.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, repeats=11, warmup=2)
    parser.add_argument("--molecules", type=int, default=32)
    parser.add_argument("--irreps", default="16x0e + 8x1o + 8x1e", help="hidden irreps of both NequIP-like models")
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--basis", type=int, default=8)
    parser.add_argument("--radial", type=int, default=16)
    parser.add_argument("--cutoff", type=float, default=5.0)
    args = parser.parse_args()
    import e3nn

    device = set_up(args, f"e3nn {e3nn.__version__}")
    models = {name: m.to(device).train() for name, m in _models(args).items()}
    batch = ethanol_batch(args.molecules, device)
    edges = radius_graph(batch.pos, args.cutoff, batch.batch).shape[1]
    print(f"batch: {args.molecules} ethanol molecules ({batch.num_nodes} atoms, {edges} edges within "
          f"{args.cutoff} A), hidden irreps {args.irreps}, {args.layers} gated layers, l <= 2, {args.basis} radial "
          f"functions, radial MLP width {args.radial}; median of {args.repeats} passes after {args.warmup} warm-up "
          f"passes, round-robin\n")
    reference = "gdl NequIP-style"
    verdicts = []
    print("| pass | model | parameters | median time (ms) | time / gdl NequIP-style |")
    print("|---|---|---:|---:|---:|")
    for label, step in (("energy: forward + backward", energy_step),
                        ("energy + forces: training step (double backward)", force_step)):
        med = round_robin(models, step, batch, args.repeats, args.warmup, device)
        for name, t in med.items():
            n_params = sum(p.numel() for p in models[name].parameters())
            print(f"| {label} | {name} | {n_params} | {1e3 * t:.2f} | {t / med[reference]:.2f} |")
        verdicts.append((label, med))
    e3nn = "e3nn gate_points_2101.Network"
    print()
    for label, med in verdicts:
        if e3nn in med:
            ratio = med[reference] / med[e3nn]
            print(f"{label}: gdl NequIP-style / e3nn network of the same hidden irreps {ratio:.2f} "
                  f"(goal: <= 1.0, no slower; {'met' if ratio <= 1.0 else 'NOT met'})")


if __name__ == "__main__":
    main()
