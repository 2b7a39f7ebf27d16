"""Neighbour lists, the shared atomistic input checks and the energy -> forces wrapper."""

import pytest
import torch

from gdl.data import GraphBatch, collate
from gdl.nn.atomistic import (
    EnergyForces,
    PairEnergy,
    atomistic_symmetry,
    atoms_batch,
    check_atoms,
    energy_force_loss,
    energy_statistics,
)
from gdl.nn.neighbours import edge_vectors, neighbour_counts, radius_graph, triplet_angles, triplet_cosines, triplets
from gdl.testing import assert_equivariant


def _brute_force(pos, cutoff, batch):
    d = torch.cdist(pos, pos)
    mask = (d < cutoff) & (batch[:, None] == batch[None]) & ~torch.eye(len(pos), dtype=torch.bool)
    i, j = mask.nonzero().T        # row i = target, column j = source
    return {(int(a), int(b)) for a, b in zip(j, i)}


@pytest.mark.parametrize("method", ["dense", "cells"])
@pytest.mark.parametrize("sizes", [[30], [7, 1, 20, 12]])
def test_radius_graph_matches_brute_force(method, sizes):
    g = torch.Generator().manual_seed(1)
    n = sum(sizes)
    pos = torch.randn(n, 3, generator=g, dtype=torch.float64) * 2
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    ei = radius_graph(pos, 2.5, batch, method=method, chunk=64)
    got = {(int(a), int(b)) for a, b in ei.T}
    assert got == _brute_force(pos, 2.5, batch)
    assert len(got) == ei.shape[1], "no duplicate edges"
    assert bool((batch[ei[0]] == batch[ei[1]]).all()), "edges never cross systems"
    key = ei[1] * n + ei[0]
    assert bool((key[1:] > key[:-1]).all()), "sorted by target then source"


def test_radius_graph_methods_agree_on_a_large_system():
    pos = torch.rand(1500, 3, generator=torch.Generator().manual_seed(0)) * 25
    assert torch.equal(radius_graph(pos, 3.0, method="dense"), radius_graph(pos, 3.0, method="cells"))


def test_max_neighbours_raises_or_warns_never_drops():
    pos = torch.randn(20, 3, generator=torch.Generator().manual_seed(0)) * 0.3
    full = radius_graph(pos, 5.0)
    assert neighbour_counts(full, 20).max() == 19
    with pytest.raises(ValueError, match="19 neighbours.*max_neighbours=8.*no edge was dropped"):
        radius_graph(pos, 5.0, max_neighbours=8)
    with pytest.warns(UserWarning, match="max_neighbours=8"):
        kept = radius_graph(pos, 5.0, max_neighbours=8, on_overflow="warn")
    assert torch.equal(kept, full)


def test_radius_graph_bad_input():
    with pytest.raises(ValueError, match=r"pos must be a float tensor of shape \(N, 3\)"):
        radius_graph(torch.randn(4, 2), 1.0)
    with pytest.raises(ValueError, match="pos has NaN or infinite coordinates at atoms \\[2\\]"):
        radius_graph(torch.tensor([[0.0, 0, 0], [1, 0, 0], [float("nan"), 0, 0]]), 1.0)
    with pytest.raises(ValueError, match="batch must be an integer tensor of shape \\(N,\\) = \\(3,\\)"):
        radius_graph(torch.zeros(3, 3), 1.0, torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="batch must be sorted"):
        radius_graph(torch.zeros(3, 3), 1.0, torch.tensor([1, 0, 0]))
    with pytest.raises(ValueError, match="cutoff must be positive"):
        radius_graph(torch.zeros(3, 3), 0.0)
    with pytest.raises(ValueError, match="method must be one of"):
        radius_graph(torch.zeros(3, 3), 1.0, method="kd-tree")


def test_triplets_and_angles():
    # water-like: O at the origin, two H at 104.5 degrees
    a = torch.deg2rad(torch.tensor(104.5, dtype=torch.float64))
    pos = torch.stack([torch.zeros(3, dtype=torch.float64), torch.tensor([1.0, 0, 0], dtype=torch.float64),
                       torch.stack([torch.cos(a), torch.sin(a), torch.zeros((), dtype=torch.float64)])])
    ei = radius_graph(pos, 1.2)                       # the two O-H bonds only (H-H is 1.58)
    t = triplets(ei, 3)
    assert len(t.i) == 2 and bool((t.j == 0).all()) and bool((t.i != t.k).all())
    torch.testing.assert_close(triplet_angles(pos, t), a.expand(2))
    torch.testing.assert_close(triplet_cosines(pos, t), torch.cos(a).expand(2))
    assert torch.equal(ei[1][t.idx_ji], t.i) and torch.equal(ei[0][t.idx_ji], t.j)
    assert torch.equal(ei[1][t.idx_kj], t.j) and torch.equal(ei[0][t.idx_kj], t.k)


def test_triplet_count_formula():
    pos = torch.randn(25, 3, generator=torch.Generator().manual_seed(3)) * 1.5
    ei = radius_graph(pos, 2.0)
    deg = neighbour_counts(ei, 25)
    assert len(triplets(ei, 25).i) == int((deg * (deg - 1)).sum())


def test_edge_vectors_point_from_target_to_source():
    pos = torch.tensor([[0.0, 0, 0], [1.0, 2, 2]])
    vec, dist = edge_vectors(pos, torch.tensor([[1], [0]]))
    assert vec.tolist() == [[1.0, 2.0, 2.0]] and dist.tolist() == [3.0]


def _water_batch(dtype=torch.float64, gen=None):
    gen = gen or torch.Generator().manual_seed(0)
    items = [{"pos": torch.randn(n, 3, generator=gen, dtype=dtype), "z": torch.tensor(z)}
             for n, z in ((3, [8, 1, 1]), (5, [6, 1, 1, 1, 1]), (2, [1, 1]))]
    return collate(items)


def test_energy_forces_are_equivariant_and_forces_are_the_gradient():
    torch.manual_seed(0)
    model = EnergyForces(PairEnergy(), scale=2.0, shift=-0.5).double()
    batch = _water_batch()
    report = assert_equivariant(model, batch, **atomistic_symmetry(batch, ("energy", "forces", "dipole")))
    assert set(report.field_errors) == {"energy", "forces", "dipole"}
    assert report.worst < 1e-12
    # finite differences: F = -dE/dx
    out = model.eval()(batch)
    eps, i, c = 1e-6, 4, 1
    pos = batch.pos.clone()
    pos[i, c] += eps
    e_plus = model(batch.replace(pos=pos))["energy"][1]
    pos[i, c] -= 2 * eps
    e_minus = model(batch.replace(pos=pos))["energy"][1]
    assert abs(float((-(e_plus - e_minus) / (2 * eps) - out["forces"][i, c]).detach())) < 1e-8


def test_training_mode_keeps_the_force_graph():
    model = EnergyForces(PairEnergy()).double().train()
    batch = _water_batch()
    target = batch.replace(energy=torch.zeros(3, dtype=torch.float64), forces=torch.zeros(10, 3, dtype=torch.float64))
    loss = energy_force_loss(force_weight=1.0, energy_weight=0.0)(model(batch), target)
    loss.backward()
    assert model.model.pair.grad is not None and float(model.model.pair.grad.abs().sum()) > 0
    assert not model.eval()(batch)["forces"].requires_grad


def test_energy_statistics():
    batch = _water_batch().replace(energy=torch.tensor([3.0, 5.0, 2.0], dtype=torch.float64),
                                   forces=torch.full((10, 3), 2.0, dtype=torch.float64))
    stats = energy_statistics(batch)
    assert abs(stats["shift"] - (9 + 25 + 4) / (9 + 25 + 4)) < 1e-12 and abs(stats["scale"] - 2.0) < 1e-12


def test_check_atoms_names_the_tensor():
    pos, z = torch.randn(3, 3), torch.tensor([1, 6, 8])
    with pytest.raises(ValueError, match="z has 2 atoms but pos has 3"):
        atoms_batch(pos, z[:2])
    with pytest.raises(ValueError, match="batch has 2 entries but pos has 3 atoms"):
        atoms_batch(pos, z, torch.tensor([0, 0]))
    with pytest.raises(ValueError, match=r"z \(atomic numbers\) must be an integer tensor"):
        atoms_batch(pos, z.double())
    with pytest.raises(ValueError, match="pos has NaN or infinite coordinates at atoms \\[1\\]"):
        atoms_batch(torch.tensor([[0.0, 0, 0], [float("inf"), 0, 0], [1, 1, 1]]), z)
    with pytest.raises(ValueError, match=r"z \(atom types\) has values \[12\] outside the embedding's range 0..9"):
        EnergyForces(PairEnergy(num_types=10))(atoms_batch(pos, torch.tensor([1, 12, 8])))
    with pytest.raises(TypeError, match="expects a gdl.data.GraphBatch"):
        check_atoms(pos)
    with pytest.raises(TypeError, match="needs the node field 'z'"):
        check_atoms(GraphBatch({"pos": pos}))
    with pytest.raises(ValueError, match="must return one energy per system"):
        EnergyForces(lambda b: b.pos.sum(-1))(atoms_batch(pos, z))


def test_coordinate_mlp_is_translation_but_not_rotation_invariant():
    from gdl.nn.atomistic import CoordinateMLP, energy_mae, force_mae
    from gdl.testing import equivariance_error

    torch.manual_seed(0)
    model = EnergyForces(CoordinateMLP(3)).double()
    batch = collate([{"pos": torch.randn(3, 3, dtype=torch.float64), "z": torch.tensor([8, 1, 1])}
                     for _ in range(4)])
    out = model(batch)
    shifted = model(batch.replace(pos=batch.pos + torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)))
    torch.testing.assert_close(out["energy"], shifted["energy"])
    report = equivariance_error(model, batch, **atomistic_symmetry(batch))
    assert report.worst > 1e-3, "an MLP on coordinates is not rotation invariant"
    target = batch.replace(energy=out["energy"].detach() + 1.0, forces=out["forces"].detach())
    assert float(energy_mae(out, target).detach()) == pytest.approx(1.0)
    assert float(force_mae(out, target).detach()) == 0.0
    with pytest.raises(ValueError, match="built for molecules of 3 atoms, got sizes \\[5\\]"):
        model(collate([{"pos": torch.randn(5, 3, dtype=torch.float64), "z": torch.ones(5, dtype=torch.long)}]))
