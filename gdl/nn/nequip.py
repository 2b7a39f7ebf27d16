"""A NequIP-style E(3)-equivariant interatomic potential, built from e3nn.

Batzner et al., "E(3)-equivariant graph neural networks for data-efficient and accurate interatomic
potentials", Nature Communications 13, 2453 (2022), https://arxiv.org/abs/2101.03164.

Every atom carries a feature vector that is a direct sum of O(3) irreducible representations (e3nn ``Irreps``,
e.g. ``"16x0e + 8x1o + 8x1e"``: 16 scalars, 8 vectors, 8 pseudovectors). One interaction block sends, along each
edge :math:`j \\to i` with :math:`\\vec r_{ij} = \\vec x_j - \\vec x_i`, the tensor product of the neighbour's features
with the spherical harmonics of the edge direction, weighted by a learned function of the distance:

.. math::  m_i = \\frac{1}{\\sqrt{\\bar n}} \\sum_{j \\in \\mathcal N(i)}
           \\big(W\\!\\left(R(r_{ij})\\right) \\otimes\\big) \\big(h_j, Y(\\hat r_{ij})\\big),
           \\qquad R(r) = \\mathrm{MLP}\\big(e(r)\\big)\\, u(r),

where :math:`e(r)` is a Bessel radial basis and :math:`u(r)` a smooth polynomial cutoff; then a linear map, a
gated nonlinearity (scalars through SiLU/tanh, every other irrep multiplied by a sigmoid of its own gate scalar) and
a residual self-connection. The energy is a sum of per-atom scalars read from the last layer,

.. math::  E = \\sum_i \\big(\\sigma\\, \\epsilon(h_i) + \\mu_{z_i}\\big),

invariant under rotations, reflections, translations and atom permutations because every layer is equivariant and
only ``0e`` channels reach the read-out. Forces :math:`F = -\\partial E/\\partial \\vec x` are then equivariant
(see :class:`gdl.nn.atomistic`'s energy-to-forces wrapper).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gdl.nn._checks import model_dtype
from gdl.nn._radial import BesselBasis, PolynomialCutoff, RadialMLP
from gdl.nn.atomistic import MAX_Z, check_atoms, neighbour_edges
from gdl.nn.message_passing import MessagePassing, scatter_sum

__all__ = ["BesselBasis", "PolynomialCutoff", "RadialMLP", "EdgeGeometry", "InteractionBlock", "NequIP",
           "ExactClebschGordan", "exact_clebsch_gordan_", "reachable_irreps"]


def _e3nn():
    try:
        from e3nn import nn as e3nn_nn
        from e3nn import o3
    except ImportError as err:  # pragma: no cover - e3nn is a core dependency of the course
        raise ImportError("gdl.nn.nequip needs e3nn (pip install e3nn)") from err
    return o3, e3nn_nn


class EdgeGeometry(nn.Module):
    """Per-edge invariants and directions: distance :math:`r_{ij}`, spherical harmonics :math:`Y(\\hat r_{ij})`
    (e3nn, ``component`` normalisation), the radial basis :math:`e(r)` and the envelope :math:`u(r)` that every
    :class:`~gdl.nn._radial.RadialMLP` multiplies its output by.

    Coincident atoms give :math:`r = 0`, :math:`Y_{l>0} = 0` and finite gradients (no NaN).

    Shapes: ``vec`` (E, 3) -> ``r`` (E,), ``sh`` (E, irreps_sh.dim), ``basis`` (E, K), ``envelope`` (E,).
    """

    def __init__(self, lmax: int = 2, num_basis: int = 8, cutoff: float = 5.0, parity: bool = True):
        super().__init__()
        o3, _ = _e3nn()
        self.irreps_sh = o3.Irreps.spherical_harmonics(lmax, p=-1 if parity else 1)
        self.basis = BesselBasis(num_basis, cutoff)
        self.envelope = PolynomialCutoff(cutoff)

    def forward(self, vec: torch.Tensor):
        """``vec`` (E, 3): :math:`\\vec x_j - \\vec x_i` for every edge ``j -> i``."""
        o3, _ = _e3nn()
        r = torch.sqrt((vec * vec).sum(-1) + torch.finfo(vec.dtype).tiny)    # safe norm: finite grad at 0
        unit = vec * r.reciprocal()[:, None]                # a product: cheaper derivatives than vec / r
        sh = o3.spherical_harmonics(self.irreps_sh, unit, normalize=False, normalization="component")
        return r, sh, self.basis(r), self.envelope(r)


def exact_clebsch_gordan_(module: nn.Module) -> nn.Module:
    """Overwrite every e3nn Clebsch-Gordan buffer (``_w3j_l1_l2_l3``) of ``module`` with e3nn's float64 table
    cast to the buffer's dtype; returns ``module``.

    e3nn stores the coefficients in the dtype the module was *built* in. A module built in float32 and cast to
    float64 keeps float32-rounded coefficients, which are equivariant only to about 1e-8 (relative) instead of
    float64 round-off.
    """
    o3, _ = _e3nn()
    with torch.no_grad():
        for name, buf in module.named_buffers():
            leaf = name.rsplit(".", 1)[-1]
            if leaf.startswith("_w3j_") and buf.is_floating_point():
                l1, l2, l3 = (int(v) for v in leaf[len("_w3j_"):].split("_"))
                buf.copy_(o3.wigner_3j(l1, l2, l3, dtype=torch.float64).to(buf.dtype))
    return module


class ExactClebschGordan:
    """Mixin for modules holding e3nn tensor products: :func:`exact_clebsch_gordan_` after every ``.to(...)``,
    ``.double()``, ``.float()``, so a float32 model cast to float64 is equivariant to float64 round-off."""

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        exact_clebsch_gordan_(self)
        return out


def reachable_irreps(irreps_in, irreps_sh, irreps_out):
    """The part of ``irreps_out`` that a tensor product of ``irreps_in`` with ``irreps_sh`` can produce (NequIP's
    ``tp_path_exists``). Other channels would be identically zero: from scalars alone, :math:`0e \\otimes Y_l`
    gives only :math:`l` with parity :math:`(-1)^l`, so a first block cannot make ``1e`` pseudovectors."""
    o3, _ = _e3nn()
    produced = {ir for _, ir_in in o3.Irreps(irreps_in) for _, ir_sh in o3.Irreps(irreps_sh)
                for ir in ir_in * ir_sh}
    return o3.Irreps([(mul, ir) for mul, ir in o3.Irreps(irreps_out) if ir in produced])


def _gate(irreps_out):
    """An e3nn Gate producing ``irreps_out``: scalars through SiLU (even) / tanh (odd), every other irrep times
    the sigmoid of one extra gate scalar. Returns the gate and the irreps it expects as input."""
    o3, e3nn_nn = _e3nn()
    irreps_out = o3.Irreps(irreps_out)
    scalars = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir.l == 0])
    gated = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir.l > 0])
    gates = o3.Irreps(f"{gated.num_irreps}x0e") if gated.num_irreps else o3.Irreps("")
    acts = [torch.nn.functional.silu if ir.p == 1 else torch.tanh for _, ir in scalars]
    gate = e3nn_nn.Gate(scalars, acts, gates, [torch.sigmoid] * len(gates), gated)
    return gate, gate.irreps_in


class InteractionBlock(ExactClebschGordan, MessagePassing):
    """One NequIP interaction: linear, edge tensor product with radial weights, sum over neighbours, linear,
    gate, plus a linear self-connection (residual).

    Args:
        irreps_in: features entering the block.
        irreps_out: features leaving it (after the gate).
        irreps_sh: spherical harmonics of the edge directions.
        num_basis: size of the radial basis the weights are computed from.
        radial_hidden: width of the radial MLP.
        avg_num_neighbors: :math:`\\bar n`, the neighbour sum is divided by :math:`\\sqrt{\\bar n}`.

    Shapes: ``h`` (N, irreps_in.dim), ``sh`` (E, irreps_sh.dim), ``basis`` (E, K), ``envelope`` (E,)
    -> (N, irreps_out.dim).
    """

    def __init__(self, irreps_in, irreps_out, irreps_sh, num_basis: int = 8, radial_hidden: int = 16,
                 avg_num_neighbors: float = 8.0):
        super().__init__(aggr="sum")
        o3, _ = _e3nn()
        self.irreps_in, self.irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_out)
        irreps_sh = o3.Irreps(irreps_sh)
        self.gate, irreps_gate_in = _gate(self.irreps_out)
        wanted = {ir for _, ir in irreps_gate_in}
        # "uvu" paths: every input channel u times every harmonic gives channel u of each allowed output irrep
        mid, instructions = [], []
        for i, (mul, ir_in) in enumerate(self.irreps_in):
            for j, (_, ir_sh) in enumerate(irreps_sh):
                for ir_out in ir_in * ir_sh:
                    if ir_out in wanted:
                        instructions.append((i, j, len(mid), "uvu", True))
                        mid.append((mul, ir_out))
        mid = o3.Irreps(mid)
        mid_sorted, perm, _ = mid.sort()
        instructions = [(i, j, perm[k], mode, train) for i, j, k, mode, train in instructions]
        self.linear_in = o3.Linear(self.irreps_in, self.irreps_in)
        self.tp = o3.TensorProduct(self.irreps_in, irreps_sh, mid_sorted, instructions,
                                   shared_weights=False, internal_weights=False)
        self.radial = RadialMLP([num_basis, radial_hidden, radial_hidden, self.tp.weight_numel])
        self.linear_out = o3.Linear(mid_sorted.simplify(), irreps_gate_in)
        self.self_connection = o3.Linear(self.irreps_in, self.irreps_out)
        self.norm = 1.0 / math.sqrt(avg_num_neighbors)

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, sh: torch.Tensor, basis: torch.Tensor,
                envelope: torch.Tensor) -> torch.Tensor:
        weight = self.radial(basis, envelope)                                      # (E, weights): R(r) = MLP(e) u
        agg = self.propagate(edge_index, x=self.linear_in(h), sh=sh, weight=weight)    # (N, mid.dim)
        return self.gate(self.linear_out(agg * self.norm)) + self.self_connection(h)

    def message(self, x_j: torch.Tensor, sh: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """:math:`W(R(r_{ij})) (h_j \\otimes Y(\\hat r_{ij}))`, (E, mid.dim)."""
        return self.tp(x_j, sh, weight)

    def extra_repr(self) -> str:
        return f"{self.irreps_in} -> {self.irreps_out}, {self.tp.weight_numel} radial weights per edge"


class NequIP(nn.Module):
    """NequIP-style energy model: atom types -> scalars, ``num_layers`` :class:`InteractionBlock`, per-atom
    scalar energies summed per graph (see the module docstring for the equations).

    Args:
        num_types: atom types are integers ``0..num_types-1`` (atomic numbers ``z``; default 100).
        hidden_irreps: features between blocks (e3nn syntax). Each block keeps only the channels its tensor
            products can reach (:func:`reachable_irreps`: a first block has no ``1e`` to make from scalars), and
            the last block only the scalars the read-outs use.
        lmax: highest degree of the edge spherical harmonics.
        num_layers, num_basis, radial_hidden, cutoff, avg_num_neighbors: as in :class:`InteractionBlock`.
        readout_hidden: width of the per-atom energy MLP.
        charges: also predict invariant per-atom charges :math:`q_i`, from which
            :class:`gdl.nn.atomistic.EnergyForces` forms the dipole :math:`\\sum_i (q_i - \\bar q) \\vec x_i`.

    Shapes:
        input: a :class:`gdl.data.GraphBatch` with ``pos`` (N, 3), ``z`` (N,) and the batch vector (edges within
        ``cutoff`` are built here when it has no ``edge_index``).
        output: energies (B,), or ``{"energy": (B,), "charges": (N,)}`` with ``charges=True``.

    Examples:
        >>> from gdl.data import collate
        >>> from gdl.nn.atomistic import EnergyForces
        >>> model = NequIP(num_types=10, hidden_irreps="8x0e + 4x1o + 4x1e", num_layers=2)
        >>> batch = collate([{"pos": torch.randn(4, 3), "z": torch.tensor([6, 1, 1, 8])}])
        >>> model(batch).shape
        torch.Size([1])
        >>> out = EnergyForces(model)(batch)       # forces by autograd: gdl.nn.atomistic
        >>> out["forces"].shape
        torch.Size([4, 3])
    """

    def __init__(self, num_types: int = MAX_Z, hidden_irreps: str = "16x0e + 8x1o + 8x1e", lmax: int = 2,
                 num_layers: int = 3, num_basis: int = 8, radial_hidden: int = 16, cutoff: float = 5.0,
                 avg_num_neighbors: float = 8.0, readout_hidden: int = 16, charges: bool = False):
        super().__init__()
        o3, _ = _e3nn()
        self.num_types, self.cutoff = int(num_types), float(cutoff)
        self.hidden_irreps = o3.Irreps(hidden_irreps).simplify()
        n_scalars = sum(mul for mul, ir in self.hidden_irreps if ir == o3.Irrep("0e"))
        if n_scalars == 0:
            raise ValueError(f"hidden_irreps must contain 0e scalars for the energy read-out, got {hidden_irreps}")
        self.geometry = EdgeGeometry(lmax, num_basis, cutoff)
        self.embedding = nn.Embedding(num_types, n_scalars)
        irreps = o3.Irreps(f"{n_scalars}x0e")
        blocks = []
        for layer in range(num_layers):
            # channels no path can reach are dropped (they would be zero); the last block feeds only the
            # scalar read-outs, so it keeps only scalars
            out = reachable_irreps(irreps, self.geometry.irreps_sh, self.hidden_irreps)
            if layer == num_layers - 1:
                out = o3.Irreps([(mul, ir) for mul, ir in out if ir == o3.Irrep("0e")])
            blocks.append(InteractionBlock(irreps, out, self.geometry.irreps_sh, num_basis, radial_hidden,
                                           avg_num_neighbors))
            irreps = out
        self.blocks = nn.ModuleList(blocks)
        self.readout = nn.Sequential(o3.Linear(irreps, f"{readout_hidden}x0e"), nn.SiLU(),
                                     nn.Linear(readout_hidden, 1))
        self.atom_energy = nn.Embedding(num_types, 1)                   # mu_z: learned per-type shift
        self.register_buffer("energy_scale", torch.tensor(1.0))         # sigma
        nn.init.zeros_(self.atom_energy.weight)
        self.charge_head = o3.Linear(irreps, "1x0e") if charges else None      # q_i for a dipole

    def forward(self, batch) -> torch.Tensor | dict[str, torch.Tensor]:
        batch = check_atoms(batch, self.num_types, "NequIP", dtype=model_dtype(self))
        z, b = batch.z, batch.batch
        edge_index, vec, _ = neighbour_edges(batch, self.cutoff)
        _, sh, basis, envelope = self.geometry(vec)
        pos = batch.pos
        h = self.embedding(z).to(pos.dtype)                                      # (N, C) scalars
        for block in self.blocks:
            h = block(h, edge_index, sh, basis, envelope)                        # (N, block.irreps_out.dim)
        e_atom = self.readout(h).squeeze(-1) * self.energy_scale + self.atom_energy(z).squeeze(-1)  # (N,)
        energy = scatter_sum(e_atom, b, batch.num_graphs)                       # (B,)
        if self.charge_head is None:
            return energy
        return {"energy": energy, "charges": self.charge_head(h).squeeze(-1)}   # EnergyForces adds the dipole

    def extra_repr(self) -> str:
        return f"num_types={self.num_types}, hidden_irreps={self.hidden_irreps}, cutoff={self.cutoff}"
