"""Tests of the E(3)-equivariant models: NequIP-style, EGNN, SE(3)-Transformer.

Every model is checked with the one checker under E(3) x (S_n1 x S_n2 x ...) on batches of graphs of different
sizes (energies, forces, vector outputs, coordinates), in float32 and float64; broken variants must fail.
"""

import pytest
import torch

from gdl.data import collate
from gdl.groups import E3, BatchSymmetricGroup, FieldsAction, ProductGroup
from gdl.nn.atomistic import EnergyForces, atomistic_symmetry
from gdl.nn.nequip import BesselBasis, NequIP, PolynomialCutoff
from gdl.testing import assert_equivariant, equivariance_error


def molecules(sizes=(3, 5, 7), seed=0, dtype=torch.float64):
    """Random 'molecules' (H, C, O) of the given sizes, atoms about 1 Angstrom apart."""
    g = torch.Generator().manual_seed(seed)
    types = torch.tensor([1, 6, 8])
    return collate([{"pos": torch.randn(n, 3, generator=g, dtype=dtype) * 1.2,
                     "z": types[torch.randint(0, 3, (n,), generator=g)]} for n in sizes])


def small_nequip(**kw):
    torch.manual_seed(0)
    return NequIP(hidden_irreps="8x0e + 4x1o + 4x1e", num_layers=2, cutoff=3.0, **kw)


# --- NequIP-style -----------------------------------------------------------------------------------
def test_nequip_energy_forces_equivariant(dtype, float_tolerance):
    batch = molecules(dtype=dtype)
    model = EnergyForces(small_nequip())
    report = assert_equivariant(model, batch, dtype=dtype, **atomistic_symmetry(batch))
    assert set(report.field_errors) == {"energy", "forces"}
    assert report.worst < float_tolerance
    assert "batch independence" in report.checks


def test_nequip_dipole_equivariant(dtype, float_tolerance):
    batch = molecules(dtype=dtype)
    model = EnergyForces(small_nequip(charges=True))
    report = assert_equivariant(model, batch, dtype=dtype,
                                **atomistic_symmetry(batch, outputs=("energy", "forces", "dipole")))
    assert set(report.field_errors) == {"energy", "forces", "dipole"}
    assert report.worst < float_tolerance


def test_nequip_float64_round_off():
    batch = molecules(sizes=(4, 6))
    report = equivariance_error(EnergyForces(small_nequip()), batch, **atomistic_symmetry(batch))
    assert report.worst < 1e-12, report


def test_nequip_energy_depends_on_geometry_and_types():
    batch = molecules(sizes=(5,))
    model = small_nequip().double()
    e = model(batch)
    assert not torch.allclose(e, model(batch.replace(pos=batch.pos * 1.1)))
    assert not torch.allclose(e, model(batch.replace(z=torch.full_like(batch.z, 6))))


def test_nequip_broken_by_absolute_positions_fails():
    """A model that also reads the raw coordinates is not translation-invariant: the checker must say so."""

    class Leaky(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = small_nequip()

        def forward(self, batch):
            return self.inner(batch) + 0.1 * batch.pos[:, 0].sum()

    batch = molecules(sizes=(3, 4))
    report = equivariance_error(EnergyForces(Leaky()), batch, **atomistic_symmetry(batch))
    assert not report.passed


def test_nequip_coincident_atoms_no_nan():
    batch = collate([{"pos": torch.zeros(3, 3, dtype=torch.float64), "z": torch.tensor([1, 6, 8])}])
    out = EnergyForces(small_nequip().double())(batch)
    assert torch.isfinite(out["energy"]).all() and torch.isfinite(out["forces"]).all()


def test_nequip_smooth_at_cutoff():
    cutoff = PolynomialCutoff(3.0)
    r = torch.tensor([2.999999, 3.0, 3.5], dtype=torch.float64)
    assert cutoff(r).abs().max() < 1e-10
    basis = BesselBasis(8, 3.0)
    assert torch.isfinite(basis(torch.zeros(1, dtype=torch.float64))).all()


@pytest.mark.parametrize("bad, match", [
    (dict(z=torch.tensor([1, 6, 200])), "z"),
    (dict(pos=torch.tensor([[0.0, 0, 0], [1, 0, 0], [float("nan"), 0, 0]], dtype=torch.float64)), "pos"),
    (dict(pos=torch.zeros(3, 2, dtype=torch.float64)), "pos"),
])
def test_nequip_bad_input_names_the_tensor(bad, match):
    batch = molecules(sizes=(3,))
    with pytest.raises(ValueError, match=match):
        small_nequip().double()(batch.replace(**bad))


def test_nequip_small_and_trains():
    model = small_nequip()
    assert sum(p.numel() for p in model.parameters()) < 50_000
    assert "NequIP" in repr(model) and "InteractionBlock" in repr(model)
    batch = molecules(sizes=(4, 5, 6), dtype=torch.float32)
    target = torch.tensor([1.0, -1.0, 0.5])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = ((model(batch) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]


def test_nequip_keeps_only_reachable_irreps_and_no_channel_is_dead():
    """Block 0 sees scalars only: 0e x Y_l gives l with parity (-1)^l, never 1e, so it has no 1e channels; the
    last block feeds only scalar read-outs, so it keeps only 0e. Every channel that remains is used (non-zero),
    and the pruned model is smaller than one that keeps every hidden irrep in every block."""
    from e3nn import o3

    from gdl.nn.nequip import InteractionBlock, reachable_irreps

    torch.manual_seed(0)
    model = NequIP(num_types=10, hidden_irreps="16x0e + 8x1o + 8x1e", num_layers=3, cutoff=3.0).double()
    outs = [block.irreps_out for block in model.blocks]
    assert outs == [o3.Irreps("16x0e + 8x1o"), o3.Irreps("16x0e + 8x1o + 8x1e"), o3.Irreps("16x0e")]
    assert reachable_irreps("4x0e", "0e + 1o + 2e", "2x0e + 2x1o + 2x1e + 2x2e") == o3.Irreps("2x0e + 2x1o + 2x2e")
    feats = []
    hooks = [b.register_forward_hook(lambda m, a, out: feats.append((m.irreps_out, out))) for b in model.blocks]
    model(molecules(sizes=(5, 6)))
    for h in hooks:
        h.remove()
    for irreps, h in feats:
        for (mul, ir), sl in zip(irreps, irreps.slices()):
            assert float(h[:, sl].detach().abs().max()) > 1e-6, f"{mul}x{ir} channels are identically zero"
    full = sum(p.numel() for p in InteractionBlock("16x0e", "16x0e + 8x1o + 8x1e", "0e + 1o + 2e").parameters())
    first = sum(p.numel() for p in model.blocks[0].parameters())
    pruned, total = first, sum(p.numel() for p in model.parameters())
    print(f"NequIP-style 16x0e + 8x1o + 8x1e, 3 blocks: {total} parameters; block 0 {pruned} (unpruned {full})")
    assert pruned < full


def test_nequip_product_group_from_batch_sizes():
    batch = molecules(sizes=(2, 3))
    sym = atomistic_symmetry(batch)
    assert sym["group"] == ProductGroup(E3(), BatchSymmetricGroup([2, 3]))
    assert isinstance(sym["in_action"], FieldsAction)


# --- EGNN and its N-body baselines ------------------------------------------------------------------
def nbody_batch(sizes=(5, 3, 4), dtype=torch.float64, drop_target=True):
    from gdl.data.nbody import charged_nbody

    graphs = []
    for i, n in enumerate(sizes):
        graphs += charged_nbody(1, n_particles=n, seed=i, burn_in=10, horizon=10, dtype=dtype).graphs()
    if drop_target:
        for g in graphs:
            g.pop("target")
    return collate(graphs)


def point_symmetry(batch, **inputs):
    G = ProductGroup(E3(), BatchSymmetricGroup(batch.sizes))
    return {"group": G, "in_action": FieldsAction(G, pos="point", **inputs),
            "out_action": FieldsAction(G, out="node point")}


def egnn(**kw):
    from gdl.nn.egnn import EGNN

    torch.manual_seed(0)
    return EGNN(**{"in_features": 1, "hidden": 16, "num_layers": 3, "edge_features": 1, "velocity": True,
                   "node_features": ("q",), **kw})


def test_egnn_coordinates_equivariant(dtype, float_tolerance):
    batch = nbody_batch(dtype=dtype)
    report = assert_equivariant(egnn(), batch, dtype=dtype, **point_symmetry(batch, vel="vector"))
    assert report.worst < float_tolerance and "batch independence" in report.checks


def test_egnn_without_velocity_or_edges_float64_round_off():
    batch = nbody_batch(sizes=(4, 6))
    batch = collate([{"pos": g["pos"], "q": g["q"]} for g in
                     [{"pos": batch.pos[batch.batch == b], "q": batch.q[batch.batch == b]} for b in range(2)]])
    assert batch.edge_index is None                     # fully connected graphs are built inside
    model = egnn(velocity=False, edge_features=0)
    report = equivariance_error(model, batch, **point_symmetry(batch))
    assert report.worst < 1e-12, report


def test_egnn_moves_points():
    batch = nbody_batch()
    model = egnn().double()
    for p in model.parameters():                        # larger coordinate steps than the small init
        torch.nn.init.normal_(p, std=0.3)
    assert (model(batch) - batch.pos).abs().max() > 1e-3


def test_coordinate_gnn_is_only_permutation_equivariant():
    from gdl.nn.egnn import CoordinateGNN

    batch = nbody_batch()
    torch.manual_seed(0)
    model = CoordinateGNN(1, 16, 2, edge_features=1, node_features=("q",))
    assert not equivariance_error(model, batch, **point_symmetry(batch, vel="vector")).passed
    S = BatchSymmetricGroup(batch.sizes)
    report = equivariance_error(model, batch, group=S, in_action=FieldsAction(S),
                                out_action=FieldsAction(S, out="node scalar"))
    assert report.passed, report


def test_linear_dynamics_equivariant():
    from gdl.nn.egnn import LinearDynamics

    batch = nbody_batch()
    model = LinearDynamics()
    with torch.no_grad():
        model.tau.fill_(0.7)
    assert_equivariant(model, batch, **point_symmetry(batch, vel="vector"))


def test_egnn_coincident_points_no_nan():
    pos = torch.zeros(4, 3, dtype=torch.float64, requires_grad=True)
    vel = torch.zeros(4, 3, dtype=torch.float64, requires_grad=True)
    batch = collate([{"pos": pos, "vel": vel, "q": torch.ones(4, 1, dtype=torch.float64)}])
    model = egnn(edge_features=0).double()
    out = model(batch)
    out.square().sum().backward()
    grads = [pos.grad, vel.grad] + [p.grad for p in model.parameters()]
    assert torch.isfinite(out).all() and all(torch.isfinite(g).all() for g in grads if g is not None)


@pytest.mark.parametrize("change, match", [
    ("nan", "pos"), ("no_vel", "vel"), ("edge_attr", "edge_attr"), ("features", "in_features")])
def test_egnn_bad_input_names_the_tensor(change, match):
    batch = nbody_batch(sizes=(3,), drop_target=True)
    if change == "nan":
        batch = batch.replace(pos=batch.pos.clone().fill_(float("nan")))
    elif change == "no_vel":
        batch = collate([{"pos": batch.pos, "q": batch.q}])
    elif change == "edge_attr":
        batch = batch.replace(edge_attr=torch.zeros(batch.num_edges, 2, dtype=torch.float64))
    else:
        batch = batch.replace(q=torch.zeros(3, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=match):
        egnn().double()(batch)


def test_egnn_small():
    model = egnn()
    assert sum(p.numel() for p in model.parameters()) < 50_000
    assert "EGNNLayer" in repr(model) and "velocity=True" in repr(model)


# --- SE(3)-Transformer -------------------------------------------------------------------------------
def se3t(**kw):
    from gdl.nn.se3_transformer import SE3Transformer

    torch.manual_seed(0)
    return EnergyForces(SE3Transformer(**{"channels": 4, "num_layers": 2, "cutoff": 3.0, **kw}))


def rigid_symmetry(batch, geometric):
    G = ProductGroup(geometric, BatchSymmetricGroup(batch.sizes))
    return {"group": G, "in_action": FieldsAction(G, pos="point"),
            "out_action": FieldsAction(G, energy="graph scalar", forces="node vector", vector="graph vector")}


def test_se3_transformer_equivariant_under_se3(dtype, float_tolerance):
    from gdl.groups import SE3

    batch = molecules(dtype=dtype)
    report = assert_equivariant(se3t(), batch, dtype=dtype, **rigid_symmetry(batch, SE3()))
    assert set(report.field_errors) == {"energy", "forces", "vector"}


def test_se3_transformer_is_chiral_without_parity():
    """The paper's model (cross-product path, no parity) is not reflection-equivariant: mirror images differ."""
    batch = molecules()
    report = equivariance_error(se3t(), batch, **rigid_symmetry(batch, E3()))
    assert not report.passed and report.worst > 1e-4


def test_se3_transformer_with_parity_is_e3_equivariant_to_round_off():
    batch = molecules(sizes=(4, 6, 3))
    report = equivariance_error(se3t(parity=True), batch, **rigid_symmetry(batch, E3()))
    assert report.worst < 1e-12, report


def test_float32_model_cast_to_float64_has_exact_clebsch_gordan():
    from e3nn import o3

    model = se3t().double()
    found = 0
    for name, buf in model.named_buffers():
        leaf = name.rsplit(".", 1)[-1]
        if leaf.startswith("_w3j_"):
            l1, l2, l3 = (int(v) for v in leaf[5:].split("_"))
            assert torch.equal(buf, o3.wigner_3j(l1, l2, l3, dtype=torch.float64))
            found += 1
    assert found > 0


def test_se3_transformer_attention_sums_to_one(monkeypatch):
    """The attention weights of every node's incoming edges form a probability distribution (per head), and an
    edge's weight carries the envelope: it is 0 for an edge at the cutoff."""
    from gdl.nn import se3_transformer as mod
    from gdl.nn.message_passing import scatter_sum

    weights = []
    softmax = mod.enveloped_softmax
    monkeypatch.setattr(mod, "enveloped_softmax", lambda *a: weights.append(softmax(*a)) or weights[-1])
    layer = mod.SE3AttentionLayer("4x0e", "4x0e + 4x1e", "4x0e + 4x1e", "0e + 1e + 2e", heads=2).double()
    edge_index = torch.tensor([[1, 2, 0, 2], [0, 0, 1, 1]])
    g = torch.Generator().manual_seed(0)
    envelope = torch.tensor([1.0, 0.5, 0.2, 0.0], dtype=torch.float64)
    layer(torch.randn(3, 4, generator=g, dtype=torch.float64), edge_index,
          torch.randn(4, 9, generator=g, dtype=torch.float64), torch.randn(4, 8, generator=g, dtype=torch.float64),
          envelope)
    alpha, = weights                                                   # (E, H)
    assert alpha.shape == (4, 2) and bool((alpha[:3] > 0).all()) and bool((alpha[3] == 0).all())
    torch.testing.assert_close(scatter_sum(alpha, edge_index[1], 3)[:2], torch.ones(2, 2, dtype=torch.float64))


def test_se3_transformer_bad_input_and_heads():
    from gdl.nn.se3_transformer import SE3AttentionLayer

    with pytest.raises(ValueError, match="divisible by heads"):
        SE3AttentionLayer("4x0e", "3x0e + 3x1e", "4x0e", "0e + 1e", heads=2)
    batch = molecules(sizes=(3,))
    with pytest.raises(ValueError, match="z"):
        se3t().double()(batch.replace(z=torch.tensor([1, 6, 500])))


def test_se3_transformer_small():
    model = se3t()
    assert sum(p.numel() for p in model.parameters()) < 50_000
    assert "SE3AttentionLayer" in repr(model) and "heads=2" in repr(model)


def test_exact_clebsch_gordan_makes_a_cast_e3nn_layer_exact():
    """A plain e3nn tensor product built in float32 and cast to float64 is equivariant only to ~1e-8; reloading
    its coefficients in float64 brings it to round-off (checked under O(3) with irreps fields)."""
    from e3nn import o3

    from gdl.groups import O3
    from gdl.nn.nequip import exact_clebsch_gordan_

    torch.manual_seed(0)
    tp = o3.FullyConnectedTensorProduct("4x0e + 4x1o", "0e + 1o + 2e", "4x0e + 4x1o + 2x1e").float().double()
    G = O3()
    g = torch.Generator().manual_seed(0)
    x = {"features": torch.randn(10, 16, generator=g, dtype=torch.float64),
         "sh": torch.randn(10, 9, generator=g, dtype=torch.float64)}
    kwargs = dict(group=G, in_action=FieldsAction(G, features="irreps:4x0e+4x1o", sh="irreps:0e+1o+2e"),
                  out_action=FieldsAction(G, out="irreps:4x0e+4x1o+2x1e"))
    before = equivariance_error(lambda d: tp(d["features"], d["sh"]), x, **kwargs).worst
    exact_clebsch_gordan_(tp)
    after = equivariance_error(lambda d: tp(d["features"], d["sh"]), x, **kwargs).worst
    assert after < 1e-13 and before > 10 * after, (before, after)
