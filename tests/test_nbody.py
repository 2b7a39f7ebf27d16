"""Tests of the charged N-body data (gdl.data.nbody)."""

import pytest
import torch

from gdl.data import collate
from gdl.data.nbody import PAPER_MSE, charged_nbody, fully_connected_edges, nbody_splits, simulate_charged
from gdl.groups import E3


def test_shapes_and_graphs():
    data = charged_nbody(6, seed=0, burn_in=100, horizon=100)
    assert data.pos.shape == data.vel.shape == data.target.shape == (6, 5, 3)
    assert set(data.charges.unique().tolist()) <= {-1.0, 1.0}
    graphs = data.graphs()
    batch = collate(graphs)
    assert batch.num_graphs == 6 and batch.edge_index.shape == (2, 6 * 20)
    q = batch.q[:, 0]
    torch.testing.assert_close(batch.edge_attr[:, 0], q[batch.edge_index[0]] * q[batch.edge_index[1]])


def test_initial_speed_and_charges():
    data = charged_nbody(4, seed=1, burn_in=0, horizon=1, dtype=torch.float64)
    torch.testing.assert_close(data.vel.norm(dim=-1), torch.full((4, 5), 0.5, dtype=torch.float64))


def test_deterministic_and_seeded():
    a, b = charged_nbody(3, seed=5, burn_in=50, horizon=50), charged_nbody(3, seed=5, burn_in=50, horizon=50)
    c = charged_nbody(3, seed=6, burn_in=50, horizon=50)
    assert torch.equal(a.target, b.target) and not torch.equal(a.target, c.target)


def test_splits_are_disjoint():
    tr, va, te = nbody_splits(4, 2, 3, seed=0, burn_in=10, horizon=10)
    assert (len(tr), len(va), len(te)) == (4, 2, 3)
    assert not torch.equal(tr.pos[:2], va.pos)


def test_simulator_is_e3_and_permutation_equivariant():
    """The dynamics commute with rigid motions, reflections and relabelling (short horizon: the system is
    chaotic, so round-off grows with time)."""
    g = torch.Generator().manual_seed(0)
    pos = torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    vel = torch.randn(2, 5, 3, generator=g, dtype=torch.float64) * 0.5
    q = torch.tensor([[1.0, -1, 1, 1, -1], [-1.0, -1, 1, -1, 1]], dtype=torch.float64)
    (Q, t), = [e.value for e in E3().sample(1, seed=3)]
    perm = torch.tensor([3, 0, 4, 1, 2])
    x1, v1 = simulate_charged(pos, vel, q, 300)
    x2, v2 = simulate_charged((pos @ Q.T + t)[:, perm], (vel @ Q.T)[:, perm], q[:, perm], 300)
    torch.testing.assert_close(x2, (x1 @ Q.T + t)[:, perm], rtol=0, atol=1e-9)
    torch.testing.assert_close(v2, (v1 @ Q.T)[:, perm], rtol=0, atol=1e-9)


def test_like_charges_repel():
    pos = torch.tensor([[[0.0, 0, 0], [1.0, 0, 0]]], dtype=torch.float64)
    vel = torch.zeros_like(pos)
    x_like, _ = simulate_charged(pos, vel, torch.tensor([[1.0, 1.0]], dtype=torch.float64), 100)
    x_unlike, _ = simulate_charged(pos, vel, torch.tensor([[1.0, -1.0]], dtype=torch.float64), 100)
    gap = lambda x: float((x[0, 1] - x[0, 0]).norm())  # noqa: E731
    assert gap(x_like) > 1.0 > gap(x_unlike)


def test_constant_velocity_baseline_matches_paper_scale():
    """The best single-scalar linear model x + tau v has a test MSE near the paper's linear baseline (0.0819)."""
    data = charged_nbody(400, seed=0)
    x, y = data.vel.reshape(-1).double(), (data.target - data.pos).reshape(-1).double()
    tau = (x @ y) / (x @ x)
    mse = float(((y - tau * x) ** 2).mean())
    assert 0.5 * PAPER_MSE["Linear"] < mse < 1.5 * PAPER_MSE["Linear"]


def test_fully_connected_edges():
    ei = fully_connected_edges(4)
    assert ei.shape == (2, 12) and not bool((ei[0] == ei[1]).any())


@pytest.mark.parametrize("kwargs, match", [(dict(num_systems=0), "num_systems"), (dict(num_systems=2, n_particles=1),
                                                                                    "n_particles"),
                                           (dict(num_systems=2, horizon=0), "horizon")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        charged_nbody(**kwargs)


def test_simulate_bad_shapes():
    with pytest.raises(ValueError, match="charges"):
        simulate_charged(torch.zeros(1, 3, 3), torch.zeros(1, 3, 3), torch.zeros(1, 4), 1)
    with pytest.raises(ValueError, match="pos and vel"):
        simulate_charged(torch.zeros(1, 3, 2), torch.zeros(1, 3, 2), torch.zeros(1, 3), 1)
