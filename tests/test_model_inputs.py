"""Edge cases of the inputs every model meets: no edges, coincident atoms, NaN in padding or features, dtypes,
empty graphs in the middle of a batch, self-loops. Each is a clear error or a correct, documented result."""

import pytest
import torch

from gdl import architectures as arch
from gdl._tree import leaves, tree_map
from gdl.data import GraphBatch, collate
from gdl.nn import (
    EGNN,
    GNN,
    DeepSets,
    DeepSetsLayer,
    DimeNetPlusPlus,
    NequIP,
    SchNet,
    SE3Transformer,
    TransformerEncoder,
)
from gdl.nn.atomistic import EnergyForces, PairEnergy, atoms_batch
from gdl.nn.point_models import InvariantPointModel

ATOMISTIC = {
    "SchNet": lambda: SchNet(num_types=10, hidden_channels=16, num_filters=16, num_interactions=2, cutoff=3.0),
    "DimeNet++": lambda: DimeNetPlusPlus(num_types=10, hidden_channels=16, num_blocks=1, int_emb_size=8,
                                         basis_emb_size=4, out_emb_channels=16, cutoff=3.0),
    "NequIP-style": lambda: NequIP(num_types=10, hidden_irreps="8x0e + 4x1o + 4x1e", num_layers=2, cutoff=3.0),
    "SE(3)-Transformer": lambda: SE3Transformer(num_types=10, channels=4, num_layers=2, cutoff=3.0),
}


def _energy(model, batch):
    out = model(batch)
    return (out["energy"] if isinstance(out, dict) else out).detach()


def _seeded(name):
    torch.manual_seed(0)
    model = ATOMISTIC[name]().double()
    if name == "DimeNet++":              # the read-out starts at zero in the paper; make energies non-trivial
        for block in model.output_blocks:
            torch.nn.init.normal_(block.lin.weight, std=0.3)
    return model


# --- no edges -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ATOMISTIC)
def test_no_edges_gives_the_sum_of_isolated_atoms(name):
    """One atom, or atoms farther apart than the cutoff: no edges. The energy is the sum of the per-atom energies
    of isolated atoms, and the forces are zero."""
    model = EnergyForces(_seeded(name))
    z = torch.tensor([6, 8])
    far = atoms_batch(torch.tensor([[0.0, 0, 0], [10.0, 0, 0]], dtype=torch.float64), z)
    out = model(far)
    single = [float(model(atoms_batch(torch.zeros(1, 3, dtype=torch.float64), z[k:k + 1]))["energy"].detach())
              for k in range(2)]
    assert out["energy"].shape == (1,) and torch.isfinite(out["energy"]).all()
    assert abs(float(out["energy"].detach()) - sum(single)) < 1e-12
    assert float(out["forces"].detach().abs().max()) == 0.0


# --- coincident atoms ---------------------------------------------------------------------------------------------

def test_dimenet_refuses_coincident_atoms_naming_them():
    model = _seeded("DimeNet++")
    pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0], [0, 1.2, 0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="atoms 1 and 2 coincide"):
        EnergyForces(model)(atoms_batch(pos, torch.tensor([6, 1, 1, 8])))


@pytest.mark.parametrize("name", ["SchNet", "NequIP-style", "SE(3)-Transformer"])
def test_other_models_stay_finite_on_coincident_atoms(name):
    """Documented: these models handle distance 0 (no 1/r, safe norms): finite energy and forces."""
    pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0]], dtype=torch.float64)
    out = EnergyForces(_seeded(name))(atoms_batch(pos, torch.tensor([6, 1, 1])))
    assert torch.isfinite(out["energy"]).all() and torch.isfinite(out["forces"]).all()


# --- self-loops in a supplied edge_index ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ATOMISTIC)
def test_self_loops_in_a_supplied_edge_index_are_refused(name):
    pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0, 1.1, 0]], dtype=torch.float64)
    batch = atoms_batch(pos, torch.tensor([6, 1, 8]))
    batch = batch.replace(edge_index=torch.tensor([[0, 1, 1, 2], [1, 0, 1, 0]]))
    with pytest.raises(ValueError, match=r"self-loops .* at atoms \[1\]"):
        _seeded(name)(batch)


# --- empty graphs in the middle of a batch ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ATOMISTIC)
def test_an_empty_molecule_in_the_middle_of_a_batch(name):
    """Allowed and correct: it gets energy 0 (no atoms, no shift), the others what they get alone."""
    model = EnergyForces(_seeded(name), shift=-1.5)
    g = torch.Generator().manual_seed(0)
    a = atoms_batch(torch.randn(3, 3, generator=g, dtype=torch.float64), torch.tensor([8, 1, 1]))
    b = atoms_batch(torch.randn(4, 3, generator=g, dtype=torch.float64), torch.tensor([6, 1, 1, 1]))
    both = atoms_batch(torch.cat([a.pos, b.pos]), torch.cat([a.z, b.z]), torch.tensor([0, 0, 0, 2, 2, 2, 2]))
    both = GraphBatch({"pos": both.pos, "z": both.z}, batch=both.batch, num_graphs=3)
    out = model(both)
    alone = torch.cat([model(a)["energy"], torch.zeros(1, dtype=torch.float64), model(b)["energy"]])
    torch.testing.assert_close(out["energy"].detach(), alone.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(out["forces"], torch.cat([model(a)["forces"], model(b)["forces"]]),
                               rtol=0, atol=1e-12)


def test_an_empty_graph_in_the_middle_for_graph_and_set_models():
    torch.manual_seed(0)
    x = torch.randn(5, 4, dtype=torch.float64)
    batch = torch.tensor([0, 0, 2, 2, 2])
    sets = GraphBatch({"x": x}, batch=batch, num_graphs=3)
    model = DeepSets(4, 8, 2).double()
    out = model(sets)
    torch.testing.assert_close(out[1], model.rho(torch.zeros(8, dtype=torch.float64)))    # the empty set
    torch.testing.assert_close(out[2], model(GraphBatch({"x": x[2:]}))[0])
    gnn = GNN(4, 8, 2, num_layers=2, readout="sum").double()
    graphs = GraphBatch({"x": x}, edge_index=torch.tensor([[0, 1, 2, 3], [1, 0, 3, 4]]), batch=batch, num_graphs=3)
    y = gnn(graphs)
    alone = gnn(GraphBatch({"x": x[2:]}, edge_index=torch.tensor([[0, 1], [1, 2]])))
    torch.testing.assert_close(y[2], alone[0])


# --- padding with NaN, all-padding rows ---------------------------------------------------------------------------

def _padded(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    return x, mask


def _set_models():
    torch.manual_seed(0)
    return {f"DeepSets({pool})": DeepSets(4, 8, 2, pool=pool).double() for pool in ("sum", "mean", "max")} | {
        "DeepSetsLayer": DeepSetsLayer(4, 3).double(),
        "Transformer(node)": TransformerEncoder(4, 8, 2).double(),
        "Transformer(sum)": TransformerEncoder(4, 8, 2, readout="sum").double(),
        "Transformer(max)": TransformerEncoder(4, 8, 2, readout="max").double(),
    }


@pytest.mark.parametrize("name", list(_set_models()))
def test_nan_in_padding_changes_nothing(name):
    model = _set_models()[name]
    x, mask = _padded()
    clean = model(x.masked_fill(~mask[..., None], 0.0), mask)
    dirty = model(x.masked_fill(~mask[..., None], float("nan")), mask)
    assert torch.isfinite(dirty).all()
    torch.testing.assert_close(dirty, clean, rtol=0, atol=0)


@pytest.mark.parametrize("name", [n for n in _set_models() if n not in ("DeepSetsLayer", "Transformer(node)")])
def test_an_all_padding_row_is_the_empty_set_in_both_models(name):
    """DeepSets and the Transformer agree: a row with no valid element pools to the zero vector, and the output
    is the head applied to it (rho(0), head(0)); padding holding NaN changes nothing."""
    model = _set_models()[name]
    x, mask = _padded()
    mask[0] = False
    out = model(x.masked_fill(~mask[..., None], float("nan")), mask)
    head = model.rho if isinstance(model, DeepSets) else model.head
    width = head[0].in_features if isinstance(head, torch.nn.Sequential) else head.in_features
    expected = head(torch.zeros(width, dtype=torch.float64))
    torch.testing.assert_close(out[0], expected.squeeze(-1) if out.ndim == 1 else expected)
    assert torch.isfinite(out).all()


def test_transformer_all_padding_node_readout_is_zero():
    model = _set_models()["Transformer(node)"]
    x, mask = _padded()
    mask[2] = False
    out = model(x, mask)
    assert torch.isfinite(out).all() and float(out[2].detach().abs().max()) == 0.0


# --- NaN features -------------------------------------------------------------------------------------------------

def test_nan_features_are_refused_naming_the_tensor():
    torch.manual_seed(0)
    x = torch.randn(5, 4)
    x[3, 1] = float("nan")
    graphs = GraphBatch({"x": x}, edge_index=torch.tensor([[0, 1, 2, 3], [1, 0, 3, 4]]))
    with pytest.raises(ValueError, match=r"GNN: 'x' has NaN or infinite entries at rows \[3\]"):
        GNN(4, 8, 2, num_layers=2)(graphs)
    with pytest.raises(ValueError, match=r"DeepSets: 'x' has NaN .* rows \[3\]"):
        DeepSets(4, 8, 2)(GraphBatch({"x": x}))
    xp, mask = _padded()
    xp[1, 2, 0] = float("inf")
    with pytest.raises(ValueError, match=r"TransformerEncoder: 'x' has NaN .* positions \[\(1, 2\)\]"):
        TransformerEncoder(4, 8, 2).double()(xp, mask)
    nbody = arch.build("EGNN")[1]
    q = nbody.q.clone()
    q[2] = float("nan")
    with pytest.raises(ValueError, match=r"EGNN: 'q' has NaN .* rows \[2\]"):
        arch.build("EGNN")[0](nbody.replace(q=q))
    pos = torch.randn(2, 3, 3)
    pos[1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"InvariantPointModel: positions x has NaN .* positions \[\(1, 0\)\]"):
        InvariantPointModel([8, 1, 1])(pos)


# --- one dtype rule: inputs are cast to the model's dtype ---------------------------------------------------------

DTYPE_ROWS = [r for r in arch.implemented() if r.module not in ("gdl.nn.cnn", "gdl.nn.gcnn", "gdl.nn.steerable")]


@pytest.mark.parametrize("row", DTYPE_ROWS, ids=[r.name for r in DTYPE_ROWS])
def test_float32_input_into_a_float64_model_is_cast(row):
    model, x, _ = arch.build(row)
    model = model.double()
    x32 = tree_map(lambda t: t.float() if t.is_floating_point() else t, x)
    x64 = tree_map(lambda t: t.double() if t.is_floating_point() else t, x)
    out32, out64 = model(x32), model(x64)
    for a, b in zip(leaves(out32), leaves(out64)):
        assert a.dtype in (torch.float64, torch.float32)
        torch.testing.assert_close(a.double(), b.double(), rtol=1e-6, atol=1e-6)


def test_dtype_rule_for_models_outside_the_registry():
    torch.manual_seed(0)
    pos = torch.randn(4, 3)
    z = torch.tensor([6, 1, 1, 8])
    for model in (PairEnergy(num_types=10).double(), InvariantPointModel([8, 1, 1]).double(),
                  DeepSetsLayer(4, 3).double()):
        if isinstance(model, PairEnergy):
            out = EnergyForces(model)(atoms_batch(pos, z))["energy"]
        elif isinstance(model, InvariantPointModel):
            out = model(torch.randn(2, 3, 3))
        else:
            out = model(collate([{"x": torch.randn(3, 4)}]))
        assert out.dtype == torch.float64
    egnn = EGNN(1, 8, 2, node_features=("q",)).double()
    assert egnn(collate([{"pos": torch.randn(4, 3), "q": torch.ones(4, 1)}])).dtype == torch.float64
