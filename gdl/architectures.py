"""The registry of the course's architectures: one list behind the book's table and the parametrised tests.

Every row says which group an architecture respects, how (invariant or equivariant), on which domain, and,
once implemented, how to build a small instance, a sample input, and the input/output actions the checker
uses. :func:`architecture_table` measures each implemented row (equivariance error with the one checker,
parameter count) and returns plain dictionaries that the book renders with :func:`table_markdown`.

Adding an architecture is one :func:`register` call (or editing its placeholder row)::

    register(Architecture(
        name="DeepSets", symmetry="Permutation", group=SymmetricGroup(5), kind="invariant",
        domain="Point clouds, sets", behaviour="Invariant to set element ordering",
        builder=lambda: DeepSets(3, 16, 1), sample_input=lambda g: torch.randn(4, 5, 3, generator=g),
        in_action=SetAction(SymmetricGroup(5)), module="gdl.nn.deepsets"))

Actions left as ``None`` are read from the built module's ``in_action``/``out_action`` attributes.

Rows on structured data (batches of graphs, sets or molecules) state the group and the actions as functions of
the sample input, since a batch's node relabellings depend on its graph sizes::

    group=lambda sample: ProductGroup(E3(), BatchSymmetricGroup(sample.sizes)),
    in_action=_positions_action,
    out_action=lambda G: FieldsAction(G, energy="graph scalar", forces="node vector"),

Every row, old and new, goes through :func:`build` and :func:`gdl.testing.equivariance_error`: the table and
the tests share one code path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from gdl.groups import (
    E3,
    SE3,
    Action,
    BatchSymmetricGroup,
    CyclicGroup,
    DihedralGroup,
    FieldsAction,
    Group,
    ImageAction,
    TranslationGroup2D,
    TrivialAction,
)
from gdl.testing import equivariance_error

__all__ = ["Architecture", "ARCHITECTURES", "register", "get", "implemented", "build", "architecture_table",
           "table_markdown", "NOT_IMPLEMENTED"]

#: What the table says for rows whose builder is still missing.
NOT_IMPLEMENTED = "not implemented yet"

KINDS = ("invariant", "equivariant")


@dataclass(frozen=True)
class Architecture:
    """One row of the architectures table.

    Attributes:
        name: e.g. ``"G-CNN (p4)"``.
        symmetry: the group in words, as in the source table.
        group: the ``gdl.groups`` group the checker uses (for continuous groups of the row, the exact finite
            subgroup that can be checked on a grid, or the continuous group itself), or a function
            ``sample_input -> Group`` (e.g. a product with the relabellings of the sample's graphs).
        kind: ``"invariant"`` or ``"equivariant"``.
        domain: the data it works on.
        behaviour: how outputs respond to transformed inputs, in words.
        builder: ``() -> nn.Module`` building a small instance; ``None`` while not implemented.
        sample_input: ``generator -> input`` of that instance.
        in_action, out_action: how the group acts on input and output (``None``: the module's attributes;
            ``out_action`` defaults to trivial for invariant rows), or functions ``group -> Action``.
        module: where the implementation lives.
        reference: the paper.
        tolerance: float64 tolerance when the default (1e-10) is too strict for a documented reason, e.g.
            an approximate action.
    """

    name: str
    symmetry: str
    group: Group | Callable[[Any], Group] | None
    kind: str
    domain: str
    behaviour: str
    builder: Callable[[], nn.Module] | None = None
    sample_input: Callable[[torch.Generator], Any] | None = None
    in_action: Action | Callable[[Group], Action] | None = None
    out_action: Action | Callable[[Group], Action] | None = None
    module: str = ""
    reference: str = ""
    tolerance: float | None = None

    def __post_init__(self):
        if self.group is None:
            raise ValueError(f"{self.name}: every row names its group")
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.builder is not None and self.sample_input is None:
            raise ValueError(f"{self.name}: an implemented architecture needs sample_input")

    @property
    def implemented(self) -> bool:
        return self.builder is not None

    @property
    def status(self) -> str:
        return self.module if self.implemented else NOT_IMPLEMENTED


def _seeded(builder: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return builder()


def _images(n: int, size: int, channels: int = 1):
    return lambda g: torch.randn(n, channels, size, size, generator=g)


def _cnn():
    from gdl.nn import CNN

    return CNN(1, hidden_channels=4, num_layers=2, padding_mode="circular")


def _gcnn(group):
    def build():
        from gdl.nn import GCNN

        return GCNN(1, (4, 4), kernel_size=3, group=group, pool_after=(0,))

    return build


def _steerable():
    from gdl.nn.steerable import SteerableCNN

    return SteerableCNN("C8", 1, (3, 3), kernel_size=5, pool_after=(0,), num_classes=None)


def _graphs(edge_dim=None):
    """A batch of 3 random graphs of 3, 5 and 7 nodes (structured rows of the permutation group)."""
    def sample(g):
        from gdl.data.graph_tasks import random_graph_batch

        return random_graph_batch(g, sizes=(3, 5, 7), in_dim=4, edge_dim=edge_dim)

    return sample


def _permutations(sample):
    return BatchSymmetricGroup(sample.sizes)


def _gnn():
    from gdl.nn import GNN

    return GNN(4, 16, 3, num_layers=2, conv="mpnn", edge_dim=2)


def _transformer():
    from gdl.nn import TransformerEncoder

    return TransformerEncoder(4, 16, 3, heads=2, num_layers=2)


def _deepsets():
    from gdl.nn import DeepSets

    return DeepSets(4, 16, 3)


def _atomistic_sample(g):
    """A batch of 3 small random molecules (3, 5 and 4 atoms) for the atomistic rows."""
    from gdl.data import collate

    return collate([{"pos": torch.randn(len(z), 3, generator=g) * 1.2, "z": torch.tensor(z)}
                    for z in ([8, 1, 1], [6, 1, 1, 1, 1], [7, 1, 1, 1])])


def _atomistic_group(sample):
    """E(3) x (S_3 x S_5 x S_4): one rigid motion for the batch, a relabelling per molecule."""
    from gdl.groups import ProductGroup

    return ProductGroup(E3(), BatchSymmetricGroup(sample.sizes))


def _positions_action(G):
    """Atom positions are points, x -> Qx + t; atom types and other input fields are scalars."""
    return FieldsAction(G, pos="point")


def _energy_forces_action(G):
    return FieldsAction(G, energy="graph scalar", forces="node vector")


def _schnet():
    from gdl.nn.atomistic import EnergyForces
    from gdl.nn.schnet import SchNet

    return EnergyForces(SchNet(num_types=10, hidden_channels=16, num_filters=16, num_interactions=2,
                               num_gaussians=16))


def _dimenet():
    from gdl.nn.atomistic import EnergyForces
    from gdl.nn.dimenet import DimeNetPlusPlus

    model = DimeNetPlusPlus(num_types=10, hidden_channels=16, num_blocks=2, int_emb_size=8, basis_emb_size=4,
                            out_emb_channels=16)
    for block in model.output_blocks:        # the paper starts the read-out at zero; the check needs E != 0
        nn.init.normal_(block.lin.weight, std=0.3)
    return EnergyForces(model)


def _se3_group(sample):
    """SE(3) x (S_3 x S_5 x S_4): the SE(3)-Transformer (like the paper) is not reflection-equivariant."""
    from gdl.groups import ProductGroup

    return ProductGroup(SE3(), BatchSymmetricGroup(sample.sizes))


def _se3_transformer():
    from gdl.nn.atomistic import EnergyForces
    from gdl.nn.se3_transformer import SE3Transformer

    return EnergyForces(SE3Transformer(num_types=10, channels=4, num_layers=2, cutoff=3.0))


def _nequip():
    from gdl.nn.atomistic import EnergyForces
    from gdl.nn.nequip import NequIP

    return EnergyForces(NequIP(num_types=10, hidden_irreps="8x0e + 4x1o + 4x1e", num_layers=2, cutoff=3.0,
                               charges=True))


def _nbody_sample(g):
    """Charged particle systems of 5, 3 and 4 particles (positions, velocities, charges, q_i q_j on edges)."""
    from gdl.data import collate
    from gdl.data.nbody import charged_nbody

    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
    graphs = [charged_nbody(1, n, seed=seed + n, burn_in=10, horizon=1).graphs()[0] for n in (5, 3, 4)]
    return collate([{k: v for k, v in d.items() if k != "target"} for d in graphs])


def _egnn():
    from gdl.nn.egnn import EGNN

    return EGNN(in_features=1, hidden=16, num_layers=3, edge_features=1, velocity=True, node_features=("q",))


def _subgraph_gnn():
    from gdl.nn.spectral import NodeDeletedGNN

    return NodeDeletedGNN(4, 16, 3, num_layers=2)


def _canonical_sample(g):
    """Three random ethanol-sized molecules (C2 O H6, atoms in a fixed order), for the fixed-size MLP row."""
    from gdl.data import collate

    z = torch.tensor([6, 6, 8, 1, 1, 1, 1, 1, 1])
    return collate([{"pos": torch.randn(len(z), 3, generator=g) * 1.2, "z": z} for _ in range(3)])


def _canonical_mlp():
    from gdl.nn.atomistic import EnergyForces
    from gdl.nn.canonical import CanonicalMLP

    return EnergyForces(CanonicalMLP(9, hidden=16))


def _gauge_cnn():
    from gdl.gauge import GaugeInvariantCNN

    return GaugeInvariantCNN(hidden=4)


def _lattice_sample(g):
    from gdl.gauge import random_configuration

    return random_configuration(2, 6, seed=int(torch.randint(0, 2**31 - 1, (1,), generator=g)),
                                dtype=torch.get_default_dtype())


def _lattice_gauge(sample):
    """U(1) at every site of the sample's lattice (imported when the row is built, like every model)."""
    from gdl.gauge import U1GaugeGroup

    return U1GaugeGroup(sample["theta"].shape[-1])


def _gauge_action(G):
    from gdl.gauge import GaugeAction

    return GaugeAction(G)


ARCHITECTURES: list[Architecture] = [
    Architecture(
        "CNN", "Translation", TranslationGroup2D((8, 8)), "equivariant", "Images",
        "Feature maps shift with input", builder=_cnn, sample_input=_images(2, 8),
        in_action=ImageAction(TranslationGroup2D((8, 8))), out_action=ImageAction(TranslationGroup2D((8, 8))),
        module="gdl.nn.cnn", reference="LeCun et al. 1998"),
    Architecture(
        "G-CNN (p4)", "Rotation by 90 degrees (C4) + translation", CyclicGroup(4), "equivariant", "Images",
        "Feature maps rotate with input", builder=_gcnn("p4"), sample_input=_images(2, 12),
        module="gdl.nn.gcnn", reference="Cohen & Welling 2016"),
    Architecture(
        "G-CNN (p4m)", "Rotation by 90 degrees and mirrors (D4) + translation", DihedralGroup(4), "equivariant",
        "Images", "Feature maps rotate and mirror with input", builder=_gcnn("p4m"),
        sample_input=_images(2, 12), module="gdl.nn.gcnn", reference="Cohen & Welling 2016"),
    Architecture(
        "Steerable CNN (C8)", "Rotation (C8; checked on its exact subgroup C4)", CyclicGroup(4), "equivariant",
        "Oriented images", "Feature maps rotate with input", builder=_steerable, sample_input=_images(2, 12),
        module="gdl.nn.steerable", reference="Weiler & Cesa 2019", tolerance=1e-12),
    Architecture(
        "GNN", "Permutation", _permutations, "equivariant", "Graphs",
        "Output permutes with node reordering", builder=_gnn, sample_input=_graphs(edge_dim=2),
        in_action=FieldsAction, out_action=lambda G: FieldsAction(G, out="node scalar"),
        module="gdl.nn.gnn", reference="Gilmer et al. 2017"),
    Architecture(
        "Transformer", "Permutation (on tokens)", _permutations, "equivariant", "Sequences",
        "Equivariant (with positional encoding: breaks symmetry)", builder=_transformer,
        sample_input=_graphs(), in_action=FieldsAction, out_action=lambda G: FieldsAction(G, out="node scalar"),
        module="gdl.nn.transformer", reference="Vaswani et al. 2017"),
    Architecture(
        "SE(3)-Transformer", "Rotation + translation", _se3_group, "equivariant", "Molecules, proteins",
        "Equivariant on 3D coordinates: invariant energy, forces and a vector output rotate with the input",
        builder=_se3_transformer, sample_input=_atomistic_sample, in_action=_positions_action,
        out_action=lambda G: FieldsAction(G, energy="graph scalar", forces="node vector", vector="graph vector"),
        module="gdl.nn.se3_transformer", reference="Fuchs et al. 2020"),
    Architecture(
        "SchNet", "E(3) (Euclidean group)", _atomistic_group, "invariant", "Molecular dynamics",
        "Invariant energy from invariant features (interatomic distances); forces -dE/dx equivariant",
        builder=_schnet, sample_input=_atomistic_sample, in_action=_positions_action,
        out_action=_energy_forces_action, module="gdl.nn.schnet", reference="Schuett et al. 2017"),
    Architecture(
        "DimeNet++", "E(3) (Euclidean group)", _atomistic_group, "invariant", "Molecular dynamics",
        "Invariant energy from distances and angles (directional messages); forces -dE/dx equivariant",
        builder=_dimenet, sample_input=_atomistic_sample, in_action=_positions_action,
        out_action=_energy_forces_action, module="gdl.nn.dimenet", reference="Gasteiger et al. 2020"),
    Architecture(
        "NequIP-style", "E(3) (Euclidean group)", _atomistic_group, "equivariant", "Molecular dynamics",
        "Equivariant features (e3nn irreps, tensor products); invariant energy; forces and dipole equivariant",
        builder=_nequip, sample_input=_atomistic_sample, in_action=_positions_action,
        out_action=lambda G: FieldsAction(G, energy="graph scalar", forces="node vector", dipole="graph vector"),
        module="gdl.nn.nequip", reference="Batzner et al. 2022"),
    Architecture(
        "EGNN", "E(n) (Euclidean group) + permutation", _atomistic_group, "equivariant", "Point clouds, N-body",
        "Coordinates (and velocities) rotate, reflect and translate with the input; features invariant",
        builder=_egnn, sample_input=_nbody_sample, in_action=lambda G: FieldsAction(G, pos="point", vel="vector"),
        out_action=lambda G: FieldsAction(G, out="node point"), module="gdl.nn.egnn",
        reference="Satorras et al. 2021"),
    Architecture(
        "DeepSets", "Permutation", _permutations, "invariant", "Point clouds, sets",
        "Invariant to set element ordering", builder=_deepsets, sample_input=_graphs(), in_action=FieldsAction,
        out_action=lambda G: FieldsAction(G, out="graph scalar"), module="gdl.nn.deepsets",
        reference="Zaheer et al. 2017"),
    Architecture(
        "Subgraph GNN (node-deleted)", "Permutation", _permutations, "invariant", "Graphs",
        "Invariant to node relabelling; a GIN on every node-deleted subgraph separates graphs 1-WL confuses",
        builder=_subgraph_gnn, sample_input=_graphs(), in_action=FieldsAction, module="gdl.nn.spectral",
        reference="Bevilacqua et al. 2022"),
    Architecture(
        "Canonical-frame MLP", "Rotation + translation (SE(3)), by canonicalisation", SE3(), "invariant",
        "Molecules of fixed size and atom order",
        "Energy invariant through the principal-axes frame, forces rotate; not mirror or relabelling invariant",
        builder=_canonical_mlp, sample_input=_canonical_sample, in_action=_positions_action,
        out_action=_energy_forces_action, module="gdl.nn.canonical", reference="Kaba et al. 2023"),
    Architecture(
        "Gauge-invariant CNN", "Local U(1) phase at every lattice site (gauge)", _lattice_gauge, "invariant",
        "Lattice gauge fields", "Output unchanged by any local phase change of links and matter field",
        builder=_gauge_cnn, sample_input=_lattice_sample, in_action=_gauge_action, module="gdl.gauge",
        reference="Cohen et al. 2019; Favoni et al. 2022"),
]


def register(arch: Architecture, *, replace_existing: bool = True) -> Architecture:
    """Add a row, or replace the row with the same name (e.g. a placeholder being implemented)."""
    for i, row in enumerate(ARCHITECTURES):
        if row.name == arch.name:
            if not replace_existing:
                raise ValueError(f"an architecture named {arch.name!r} is already registered")
            ARCHITECTURES[i] = arch
            return arch
    ARCHITECTURES.append(arch)
    return arch


def get(name: str) -> Architecture:
    """The row called ``name``."""
    for row in ARCHITECTURES:
        if row.name == name:
            return row
    raise KeyError(f"no architecture named {name!r}; known: {[r.name for r in ARCHITECTURES]}")


def implemented() -> list[Architecture]:
    """The rows that have a builder."""
    return [row for row in ARCHITECTURES if row.implemented]


def build(arch: Architecture | str, seed: int = 0) -> tuple[nn.Module, Any, dict[str, Any]]:
    """A seeded small instance, its sample input and the checker arguments (``group``, actions).

    Raises:
        NotImplementedError: for rows without a builder.
    """
    arch = get(arch) if isinstance(arch, str) else arch
    if not arch.implemented:
        raise NotImplementedError(f"{arch.name}: {NOT_IMPLEMENTED}")
    model = _seeded(arch.builder, seed)
    x = arch.sample_input(torch.Generator().manual_seed(seed))
    group = arch.group if isinstance(arch.group, Group) else arch.group(x)

    def action(spec, fallback):
        if spec is None:
            return fallback
        return spec if isinstance(spec, Action) else spec(group)

    in_action = action(arch.in_action, getattr(model, "in_action", None))
    out_action = action(arch.out_action, TrivialAction(group) if arch.kind == "invariant"
                        else getattr(model, "out_action", None))
    return model, x, {"group": group, "in_action": in_action, "out_action": out_action, "atol": arch.tolerance}


def architecture_table(dtype: torch.dtype = torch.float64, seed: int = 0,
                       rows: list[Architecture] | None = None) -> list[dict[str, Any]]:
    """Measure every row: worst relative equivariance error over the checked group elements and the number
    of parameters of the small instance (``None`` for rows not implemented yet).

    Returns:
        one dict per row with keys ``architecture``, ``symmetry``, ``kind``, ``domain``, ``behaviour``,
        ``checked_group``, ``elements``, ``error``, ``tolerance``, ``parameters``, ``status``.
    """
    table = []
    for arch in ARCHITECTURES if rows is None else rows:
        row = {"architecture": arch.name, "symmetry": arch.symmetry, "kind": arch.kind, "domain": arch.domain,
               "behaviour": arch.behaviour, "checked_group": str(arch.group) if isinstance(arch.group, Group) else "",
               "elements": None, "error": None, "tolerance": None, "parameters": None, "status": arch.status}
        if arch.implemented:
            model, x, kwargs = build(arch, seed)
            report = equivariance_error(model, x, dtype=dtype, seed=seed, **kwargs)
            row.update(elements=len(report.elements), error=report.worst, tolerance=report.tolerance,
                       parameters=sum(p.numel() for p in model.parameters()), checked_group=str(kwargs["group"]))
        table.append(row)
    return table


def table_markdown(table: list[dict[str, Any]],
                   columns: tuple[str, ...] = ("architecture", "symmetry", "kind", "domain", "checked_group",
                                               "error", "parameters", "status")) -> str:
    """Render :func:`architecture_table` rows as a Markdown table (errors in scientific notation)."""
    def cell(key, value):
        if value is None:
            return "-"
        if key in ("error", "tolerance"):
            return f"{value:.1e}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(c.replace("_", " ") for c in columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(c, row[c]) for c in columns) + " |" for row in table]
    return "\n".join(lines)


def with_builder(name: str, **changes) -> Architecture:
    """Fill in a placeholder row (e.g. ``with_builder("DeepSets", builder=..., sample_input=...)``)."""
    return register(replace(get(name), **changes))


__all__.append("with_builder")
