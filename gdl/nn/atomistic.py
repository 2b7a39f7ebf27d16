"""The one input and the one output convention of every atomistic model in ``gdl`` (SchNet, DimeNet++, EGNN,
SE(3)-Transformer, NequIP-style).

**Input**: a :class:`gdl.data.GraphBatch` of atomic systems with node fields ``pos`` ``(N, 3)`` (Angstrom) and
``z`` ``(N,)`` (atomic numbers, long), and the batch vector ``batch`` ``(N,)``. ``GraphBatch.from_atoms`` makes
one from ASE ``Atoms``; :func:`atoms_batch` from tensors. Every model calls :func:`check_atoms` first, which
names the tensor that is wrong (lengths that disagree, NaN or infinite coordinates, atom types outside the
embedding).

**Output**: an *energy model* maps the batch to an invariant energy per system, ``(B,)`` (or a dict with
``"energy"`` and optionally per-atom ``"charges"`` ``(N,)``). :class:`EnergyForces` wraps it into

.. math::  E = s\\,\\hat E + \\mu\\, n_b, \\qquad F_i = -\\frac{\\partial E}{\\partial x_i}, \\qquad
           \\mu_{\\mathrm{dip}} = \\sum_i (q_i - \\bar q_b)\\, x_i ,

returning ``{"energy": (B,), "forces": (N, 3)}`` (plus ``"dipole": (B, 3)`` when the model gives charges).
If :math:`E(Qx + t) = E(x)` then :math:`F(Qx + t) = Q F(x)`: forces by autograd are equivariant by construction;
the dipole of neutralised charges is translation invariant and rotates with the molecule.

Examples:
    >>> batch = atoms_batch(torch.randn(5, 3), torch.tensor([8, 1, 1, 6, 1]), torch.tensor([0, 0, 0, 1, 1]))
    >>> model = EnergyForces(PairEnergy())           # any invariant energy model
    >>> out = model(batch)
    >>> out["energy"].shape, out["forces"].shape
    (torch.Size([2]), torch.Size([5, 3]))
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from gdl.data.graphs import GraphBatch
from gdl.nn._checks import model_dtype, name_bad_atoms, sum_is_finite
from gdl.nn.message_passing import scatter_mean, scatter_sum
from gdl.nn.neighbours import edge_vectors, radius_graph

__all__ = ["atoms_batch", "check_atoms", "check_coincident", "neighbour_edges", "EnergyForces", "PairEnergy",
           "CoordinateMLP", "energy_statistics", "energy_force_loss", "energy_mae", "force_mae",
           "atomistic_symmetry", "MAX_Z"]

#: Default size of atom-type embeddings: atomic numbers 0..99.
MAX_Z = 100


def _shape(t: Any) -> str:
    return str(tuple(t.shape)) if torch.is_tensor(t) else type(t).__name__


def atoms_batch(pos: torch.Tensor, z: torch.Tensor, batch: torch.Tensor | None = None, **fields) -> GraphBatch:
    """A :class:`GraphBatch` of atomic systems from tensors, checked by :func:`check_atoms`.

    Args:
        pos: ``(N, 3)`` positions. z: ``(N,)`` atomic numbers. batch: ``(N,)`` sorted system index (default: one).
        fields: more node fields (first axis ``N``) or graph fields (first axis ``B``, e.g. ``energy``).
    """
    _check_tensors(pos, z, batch)
    if batch is None:
        batch = torch.zeros(len(pos), dtype=torch.long, device=pos.device)
    b = int(batch.max()) + 1 if len(batch) else 0
    node = {"pos": pos, "z": z}
    graph = {}
    for k, v in fields.items():
        (graph if torch.is_tensor(v) and v.ndim and v.shape[0] == b and k in ("energy", "dipole", "y") else node)[k] = v
    out = GraphBatch(node, graph=graph, batch=batch, num_graphs=b)
    check_atoms(out)
    return out


def _check_tensors(pos: Any, z: Any, batch: Any, num_types: int | None = None) -> None:
    if not torch.is_tensor(pos) or pos.ndim != 2 or pos.shape[1] != 3 or not pos.is_floating_point():
        raise ValueError(f"pos must be a float tensor of shape (N, 3), got {_shape(pos)}")
    if not torch.is_tensor(z) or z.ndim != 1 or z.is_floating_point() or z.dtype == torch.bool:
        raise ValueError(f"z (atomic numbers) must be an integer tensor of shape (N,), got {_shape(z)}"
                         f"{' of dtype ' + str(z.dtype) if torch.is_tensor(z) else ''}")
    if len(z) != len(pos):
        raise ValueError(f"z has {len(z)} atoms but pos has {len(pos)}: they must agree")
    if batch is not None:
        if not torch.is_tensor(batch) or batch.ndim != 1 or batch.is_floating_point():
            raise ValueError(f"batch must be an integer tensor of shape (N,), got {_shape(batch)}")
        if len(batch) != len(pos):
            raise ValueError(f"batch has {len(batch)} entries but pos has {len(pos)} atoms: they must agree")
    if pos.device.type == "meta":
        return
    top = MAX_Z if num_types is None else num_types
    if _checked_before(pos, z, batch, top):
        return                                          # these very tensors, unmodified, passed just before
    # one reduction per tensor and one wait for the device: a finite sum means finite coordinates
    ok = sum_is_finite(pos)
    if len(z):
        lo, hi = torch.aminmax(z)
        ok = ok & (lo >= 0) & (hi < top)
    if not bool(ok):                                    # find and name the culprit (or an overflowing sum)
        name_bad_atoms(pos)
        if len(z) and (int(z.min()) < 0 or int(z.max()) >= top):
            bad = z[(z < 0) | (z >= top)].unique().tolist()
            raise ValueError(f"z (atom types) has values {bad[:10]} outside the embedding's range 0..{top - 1}")
    _remember(pos, z, batch, top)


#: The tensors ``(pos, z, batch, num_types)`` whose values last passed :func:`_check_tensors`, as (weak reference,
#: ``_version``) pairs: :class:`EnergyForces` checks a batch and its energy model would check it again.
_LAST_CHECKED: tuple | None = None


def _remember(pos: torch.Tensor, z: torch.Tensor, batch: torch.Tensor | None, top: int) -> None:
    """Mark these tensors' values as checked (until one of them is modified in place)."""
    global _LAST_CHECKED
    _LAST_CHECKED = (tuple(None if t is None else (weakref.ref(t), t._version) for t in (pos, z, batch)), top)


def _checked_before(pos: torch.Tensor, z: torch.Tensor, batch: torch.Tensor | None, top: int) -> bool:
    last = _LAST_CHECKED
    return last is not None and last[1] == top and all(
        (t is None) if r is None else (r[0]() is t and r[1] == t._version) for r, t in zip(last[0], (pos, z, batch)))


def check_atoms(batch: Any, num_types: int | None = None, who: str = "atomistic model",
                dtype: torch.dtype | None = None) -> GraphBatch:
    """Check that ``batch`` is an atomic :class:`GraphBatch` and return it; raise naming the faulty tensor.

    Args:
        batch: the input.
        num_types: size of the model's atom-type embedding (``z`` must lie in ``0 .. num_types - 1``).
        who: the model's name, used in the messages.
        dtype: the model's dtype: ``pos`` is cast to it (one rule for every model, :mod:`gdl.nn._checks`;
            gradients flow back through the cast).

    Raises:
        TypeError: ``batch`` is not a GraphBatch, or lacks ``pos`` or ``z``.
        ValueError: ``pos``, ``z`` or ``batch`` has the wrong shape, lengths disagree, ``pos`` is not finite, or
            ``z`` is outside the embedding.
    """
    if not isinstance(batch, GraphBatch):
        raise TypeError(f"{who} expects a gdl.data.GraphBatch with fields pos (N, 3) and z (N,) "
                        f"(e.g. GraphBatch.from_atoms(list_of_atoms)), got {type(batch).__name__}")
    for key in ("pos", "z"):
        if key not in batch:
            raise TypeError(f"{who} needs the node field {key!r} in its GraphBatch; fields: {batch.keys()}")
    _check_tensors(batch.pos, batch.z, batch.batch, num_types)
    if dtype is not None and batch.pos.dtype != dtype:
        batch = _with_pos(batch, batch.pos.to(dtype))
    return batch


def _with_pos(batch: GraphBatch, pos: torch.Tensor) -> GraphBatch:
    """``batch.replace(pos=pos)`` for a ``pos`` of the same shape as the checked one (a cast, or a copy that
    requires gradients): nothing else changes, so the batch is not validated again (which reads device values)."""
    return GraphBatch._trusted({**batch.fields("node"), "pos": pos}, batch.fields("edge"), batch.fields("graph"),
                               batch.edge_index, batch.batch, batch.num_graphs)


def neighbour_edges(batch: GraphBatch, cutoff: float, max_neighbours: int | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(edge_index, vec, dist)`` for a model with a cutoff: the batch's own ``edge_index`` when it has one,
    else :func:`gdl.nn.neighbours.radius_graph` of ``batch.pos``. ``vec = pos[j] - pos[i]`` ``(E, 3)`` and
    ``dist`` ``(E,)`` are differentiable in ``batch.pos``.

    Raises:
        ValueError: a supplied ``edge_index`` has a self-loop (an atom is not its own neighbour: distance 0).
    """
    if batch.edge_index is not None:
        edge_index = batch.edge_index
        if edge_index.numel() and edge_index.device.type != "meta":
            loops = (edge_index[0] == edge_index[1]).nonzero().flatten()
            if len(loops):
                atoms = edge_index[0, loops].tolist()
                raise ValueError(f"edge_index has self-loops (an atom as its own neighbour) at atoms {atoms[:10]}: "
                                 f"models that use distances need edges between distinct atoms")
    else:
        edge_index = radius_graph(batch.pos, cutoff, batch.batch, max_neighbours=max_neighbours)
    vec, dist = edge_vectors(batch.pos, edge_index)
    return edge_index, vec, dist


def check_coincident(edge_index: torch.Tensor, dist: torch.Tensor, who: str, tol: float = 1e-6) -> None:
    """Raise ``ValueError`` naming the first two atoms closer than ``tol`` (Angstrom), for models that divide by
    a distance (DimeNet++'s envelope :math:`1/d`, its bond angles)."""
    if dist.numel() == 0 or dist.device.type == "meta":
        return
    close = (dist.detach() < tol).nonzero().flatten()
    if len(close):
        j, i = (int(v) for v in edge_index[:, close[0]])
        raise ValueError(f"{who}: atoms {min(i, j)} and {max(i, j)} coincide (distance "
                         f"{float(dist[close[0]].detach()):.1e} < {tol:g}); {who} needs distinct positions")


class EnergyForces(nn.Module):
    """Energy, forces by autograd, and (optionally) a dipole, from an invariant energy model.

    .. math::  E_b = s\\,\\hat E_b + \\mu\\, n_b, \\qquad F_i = -\\partial E / \\partial x_i, \\qquad
               \\mu^{\\mathrm{dip}}_b = \\textstyle\\sum_{i \\in b} (q_i - \\bar q_b)\\, x_i

    In training mode the force graph is kept (``create_graph=True``) so a loss on forces trains the weights;
    in eval mode it is not, and forces come out detached (energies keep their graph).

    Args:
        model: ``model(batch)`` returns ``(B,)`` energies, or a dict with ``"energy"`` ``(B,)``, optionally
            ``"charges"`` ``(N,)``, and any other outputs (e.g. the SE(3)-Transformer's ``"vector"``), which are
            passed through unchanged.
        forces: compute forces (default ``True``).
        scale, shift: :math:`s` and the per-atom :math:`\\mu` (see :func:`energy_statistics`), so the inner model
            learns numbers of order one.

    Shapes:
        input: a GraphBatch with ``pos`` (N, 3), ``z`` (N,); output: ``energy`` (B,), ``forces`` (N, 3),
        ``dipole`` (B, 3) if the model returns ``charges``, and the model's other outputs.
    """

    differentiates_inputs = True     # forces need gradients even when evaluating (gdl.training reads this)

    def __init__(self, model: nn.Module, forces: bool = True, scale: float = 1.0, shift: float = 0.0):
        super().__init__()
        self.model = model
        self.forces = forces
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.register_buffer("shift", torch.tensor(float(shift)))

    def forward(self, batch: GraphBatch) -> dict[str, torch.Tensor]:
        check_atoms(batch, getattr(self.model, "num_types", None), type(self.model).__name__)
        with torch.enable_grad():
            pos = batch.pos
            if self.forces and not pos.requires_grad:
                pos = pos.detach().requires_grad_(True)
                batch = _with_pos(batch, pos)
                _remember(pos, batch.z, batch.batch, getattr(self.model, "num_types", None) or MAX_Z)  # same values
            raw = self.model(batch)
            charges, extras = None, {}
            if isinstance(raw, dict):
                extras = {k: v for k, v in raw.items() if k not in ("energy", "charges")}
                charges = raw.get("charges")
                raw = raw["energy"]
            if raw.shape != (batch.num_graphs,):
                raise ValueError(f"{type(self.model).__name__} must return one energy per system, shape "
                                 f"({batch.num_graphs},), got {tuple(raw.shape)}")
            n = torch.bincount(batch.batch, minlength=batch.num_graphs).to(raw.dtype)
            energy = self.scale.to(raw.dtype) * raw + self.shift.to(raw.dtype) * n
            out = {"energy": energy}
            if self.forces:
                (grad,) = torch.autograd.grad(energy.sum(), pos, create_graph=self.training)
                out["forces"] = -grad
        if charges is not None:
            q = charges - scatter_mean(charges, batch.batch, batch.num_graphs)[batch.batch]
            out["dipole"] = scatter_sum(q[:, None] * batch.pos, batch.batch, batch.num_graphs)
        return {**out, **extras}

    @property
    def num_types(self) -> int | None:
        return getattr(self.model, "num_types", None)

    def extra_repr(self) -> str:
        return f"forces={self.forces}, scale={float(self.scale):.4g}, shift={float(self.shift):.4g}"


class PairEnergy(nn.Module):
    """The simplest invariant energy model, for tests and examples: a learned pair potential
    :math:`\\hat E_b = \\tfrac12 \\sum_{i \\ne j} a_{z_i z_j} e^{-r_{ij}^2}` over all pairs within a system
    (cutoff 5) with per-atom charges :math:`q_i = c_{z_i}`.
    """

    def __init__(self, num_types: int = 10, cutoff: float = 5.0):
        super().__init__()
        self.num_types, self.cutoff = num_types, cutoff
        self.pair = nn.Parameter(torch.randn(num_types, num_types) * 0.1)
        self.charge = nn.Parameter(torch.randn(num_types))

    def forward(self, batch: GraphBatch) -> dict[str, torch.Tensor]:
        batch = check_atoms(batch, self.num_types, "PairEnergy", dtype=self.pair.dtype)
        (j, i), _, dist = neighbour_edges(batch, self.cutoff)
        a = 0.5 * (self.pair + self.pair.T)
        e = a[batch.z[i], batch.z[j]].to(dist.dtype) * torch.exp(-dist**2)
        energy = 0.5 * scatter_sum(e, batch.batch[i], batch.num_graphs)
        return {"energy": energy, "charges": self.charge[batch.z].to(dist.dtype)}


class CoordinateMLP(nn.Module):
    """The baseline with no symmetry built in: an MLP on the raw Cartesian coordinates of a molecule with a fixed
    number of atoms in a fixed order, :math:`\\hat E = \\mathrm{MLP}(x_1 - \\bar x, \\dots, x_n - \\bar x)`.

    Centring makes it translation invariant (so what it gets wrong under rotations is rotations alone); it is
    neither rotation nor permutation invariant. Forces come from :class:`EnergyForces` like any other energy model.

    Args:
        num_atoms: ``n``, atoms per molecule (every system of the batch must have it).
        hidden: width of the hidden layers (SiLU, smooth, so forces are continuous).
        num_layers: number of hidden layers.
    """

    def __init__(self, num_atoms: int, hidden: int = 64, num_layers: int = 2):
        super().__init__()
        self.num_atoms = num_atoms
        sizes = [3 * num_atoms] + [hidden] * num_layers
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.SiLU()]
        self.net = nn.Sequential(*layers, nn.Linear(sizes[-1], 1))

    def forward(self, batch: GraphBatch) -> torch.Tensor:
        who = type(self).__name__
        batch = check_atoms(batch, who=who, dtype=model_dtype(self))
        if any(n != self.num_atoms for n in batch.sizes):
            raise ValueError(f"{who} was built for molecules of {self.num_atoms} atoms, got sizes "
                             f"{sorted(set(batch.sizes))}")
        pos = batch.pos.reshape(batch.num_graphs, self.num_atoms, 3)           # (B, n, 3)
        z = batch.z.reshape(batch.num_graphs, self.num_atoms)                  # (B, n)
        return self.net(self.coordinates(pos, z).flatten(1)).squeeze(-1)       # (B,)

    def coordinates(self, pos: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """What the MLP reads: the centred coordinates :math:`x_i - \\bar x`, ``(B, n, 3)``."""
        return pos - pos.mean(1, keepdim=True)


def energy_mae(output: dict[str, torch.Tensor], batch: GraphBatch) -> torch.Tensor:
    """Mean absolute energy error per system, :math:`\\tfrac1B \\sum_b |\\hat E_b - E_b|` (a metric for
    :func:`gdl.training.evaluate`)."""
    return (output["energy"] - batch.energy).abs().mean()


def force_mae(output: dict[str, torch.Tensor], batch: GraphBatch) -> torch.Tensor:
    """Mean absolute error of the force components, :math:`\\tfrac{1}{3N} \\sum_{i,a} |\\hat F_{ia} - F_{ia}|`."""
    return (output["forces"] - batch.forces).abs().mean()


def energy_statistics(batch: GraphBatch) -> dict[str, float]:
    """Per-atom mean energy ``shift`` and the force RMS ``scale`` of a training set (NequIP's choice):
    pass them to :class:`EnergyForces` so the model's raw outputs are of order one.

    ``shift`` solves :math:`E_b \\approx \\mu\\, n_b` in least squares; ``scale`` is
    :math:`\\sqrt{\\langle F^2 \\rangle}` (or the energy spread per atom when the batch has no forces).
    """
    n = torch.bincount(batch.batch, minlength=batch.num_graphs).double()
    e = batch.energy.double()
    shift = float((e * n).sum() / (n * n).sum())
    if "forces" in batch:
        scale = float(batch.forces.double().pow(2).mean().sqrt())
    else:
        scale = float((e - shift * n).std() / n.mean()) if len(e) > 1 else 1.0
    return {"shift": shift, "scale": scale if scale > 0 else 1.0}


def energy_force_loss(force_weight: float = 10.0, energy_weight: float = 1.0
                      ) -> Callable[[dict[str, torch.Tensor], GraphBatch], torch.Tensor]:
    """A ``loss_fn(output, batch)`` for :func:`gdl.training.train`: mean squared energy error per atom plus
    ``force_weight`` times the mean squared force component error.

    .. math::  \\mathcal{L} = w_E \\tfrac1B \\sum_b \\big(\\tfrac{E_b - \\hat E_b}{n_b}\\big)^2
               + w_F \\tfrac{1}{3N} \\sum_i \\lVert F_i - \\hat F_i \\rVert^2
    """
    def weighted(w: float, t: torch.Tensor) -> torch.Tensor:
        return t if w == 1 else w * t                # a weight of 1 costs no operation

    def loss(output: dict[str, torch.Tensor], batch: GraphBatch) -> torch.Tensor:
        n = torch.bincount(batch.batch, minlength=batch.num_graphs).to(output["energy"].dtype)
        value = weighted(energy_weight, (((output["energy"] - batch.energy) / n) ** 2).mean())
        if force_weight and "forces" in output:
            value = value + weighted(force_weight, ((output["forces"] - batch.forces) ** 2).mean())
        return value

    return loss


def atomistic_symmetry(batch: GraphBatch, outputs: tuple[str, ...] = ("energy", "forces")) -> dict[str, Any]:
    """The checker's arguments for an atomistic model on ``batch``: the group E(3) x (S_n1 x ... x S_nB), the
    input action (``pos`` a point, everything else a scalar) and the output action (``energy`` a graph scalar,
    ``forces`` a node vector, ``dipole`` a graph vector). Use as ``assert_equivariant(model, batch,
    **atomistic_symmetry(batch))``."""
    from gdl.groups import E3, BatchSymmetricGroup, FieldsAction, ProductGroup

    roles = {"energy": "graph scalar", "forces": "node vector", "dipole": "graph vector"}
    unknown = [o for o in outputs if o not in roles]
    if unknown:
        raise ValueError(f"unknown atomistic outputs {unknown}; known: {list(roles)}")
    group = ProductGroup(E3(), BatchSymmetricGroup(batch.sizes))
    return {"group": group, "in_action": FieldsAction(group, pos="point"),
            "out_action": FieldsAction(group, **{o: roles[o] for o in outputs})}
