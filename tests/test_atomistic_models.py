"""SchNet and DimeNet++: equivariance of energies and forces, bases against references, PyG agreement, what
distances cannot see."""

import math

import numpy as np
import pytest
import torch

from gdl.data import collate
from gdl.nn.atomistic import EnergyForces, atomistic_symmetry, atoms_batch
from gdl.nn.dimenet import DimeNetPlusPlus, Envelope, SphericalBasis, bessel_roots, legendre, spherical_bessel
from gdl.nn.neighbours import radius_graph
from gdl.nn.schnet import CosineCutoff, SchNet
from gdl.testing import assert_equivariant


def _schnet():
    return SchNet(num_types=10, hidden_channels=16, num_filters=16, num_interactions=2, num_gaussians=16)


def _dimenet():
    model = DimeNetPlusPlus(num_types=10, hidden_channels=16, num_blocks=2, int_emb_size=8, basis_emb_size=4,
                            out_emb_channels=16)
    for block in model.output_blocks:
        torch.nn.init.normal_(block.lin.weight, std=0.3)
    return model


MODELS = {"SchNet": _schnet, "DimeNet++": _dimenet}


def _molecules(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return collate([{"pos": torch.randn(len(z), 3, generator=g, dtype=dtype) * 1.2, "z": torch.tensor(z)}
                    for z in ([8, 1, 1], [6, 1, 1, 1, 1], [7, 1, 1, 1])])


@pytest.mark.parametrize("name", MODELS)
def test_energy_invariant_forces_equivariant(name, dtype, float_tolerance):
    torch.manual_seed(0)
    model = EnergyForces(MODELS[name]()).to(dtype)
    batch = _molecules(dtype)
    report = assert_equivariant(model, batch, dtype=dtype, **atomistic_symmetry(batch))
    assert set(report.field_errors) == {"energy", "forces"}
    assert report.worst < float_tolerance
    assert report.checks["batch independence"]["forces"] < float_tolerance


@pytest.mark.parametrize("name", MODELS)
def test_forces_are_minus_the_gradient(name):
    torch.manual_seed(1)
    model = EnergyForces(MODELS[name]()).double().eval()
    batch = _molecules(torch.float64, seed=2)
    forces = model(batch)["forces"]
    eps = 1e-6
    for atom, axis in ((0, 0), (4, 2), (10, 1)):
        pos = batch.pos.clone()
        pos[atom, axis] += eps
        up = model(batch.replace(pos=pos))["energy"].sum()
        pos[atom, axis] -= 2 * eps
        down = model(batch.replace(pos=pos))["energy"].sum()
        assert abs(float(-(up - down).detach() / (2 * eps) - forces[atom, axis])) < 1e-7


@pytest.mark.parametrize("name", MODELS)
def test_energy_is_smooth_across_the_cutoff(name):
    """Two atoms moving apart through the cutoff: the energy changes by O(eps^2), not by a jump."""
    torch.manual_seed(2)
    model = MODELS[name]().double()
    z = torch.tensor([6, 8])
    e = {}
    for r in (5.0 - 1e-4, 5.0 + 1e-4, 4.0, 4.0 + 2e-4):
        pos = torch.tensor([[0.0, 0, 0], [0.6 * r, 0.8 * r, 0]], dtype=torch.float64)
        e[r] = float(model(atoms_batch(pos, z)).detach())
    assert abs(e[4.0] - e[4.0 + 2e-4]) > 1e-7, "the pair interacts inside the cutoff"
    assert abs(e[5.0 - 1e-4] - e[5.0 + 1e-4]) < 1e-8


@pytest.mark.parametrize("name", MODELS)
def test_bad_atom_types_and_coordinates(name):
    model = MODELS[name]()
    with pytest.raises(ValueError, match=r"z \(atom types\) has values \[11\] outside the embedding's range 0..9"):
        model(atoms_batch(torch.randn(3, 3), torch.tensor([1, 11, 6])))
    good = atoms_batch(torch.randn(3, 3), torch.tensor([1, 1, 6]))
    with pytest.raises(ValueError, match="pos has NaN or infinite coordinates at atoms \\[1\\]"):
        model(good.replace(pos=torch.tensor([[0.0, 0, 0], [float("nan"), 0, 0], [1, 1, 1]])))
    with pytest.raises(ValueError, match="more than max_neighbours=1"):
        type(model)(num_types=10, max_neighbours=1)(good.replace(pos=torch.zeros(3, 3) + torch.eye(3)))


def test_schnet_matches_pytorch_geometric_with_copied_weights():
    pyg = pytest.importorskip("torch_geometric.nn.models")
    torch.manual_seed(0)
    ours = SchNet(hidden_channels=32, num_filters=32, num_interactions=3, num_gaussians=20, cutoff=4.0).double()

    def interaction_graph(pos, batch):
        ei = radius_graph(pos, 4.0, batch)
        return ei, (pos[ei[0]] - pos[ei[1]]).norm(dim=-1)

    theirs = pyg.SchNet(hidden_channels=32, num_filters=32, num_interactions=3, num_gaussians=20, cutoff=4.0,
                        interaction_graph=interaction_graph).double()
    assert set(theirs.state_dict()) == set(ours.state_dict()), "same block and parameter names"
    theirs.load_state_dict(ours.state_dict())
    batch = _molecules(torch.float64, seed=3)
    torch.testing.assert_close(ours(batch), theirs(batch.z, batch.pos, batch.batch).squeeze(-1))


def test_schnet_repr_and_reset_parameters():
    model = _schnet()
    assert "cutoff=5" in repr(model) and "GaussianRBF(num_gaussians=16" in repr(model)
    before = model.lin1.weight.clone()
    model.reset_parameters()
    assert not torch.equal(before, model.lin1.weight)


def test_cosine_cutoff_and_envelope():
    c = CosineCutoff(5.0)
    r = torch.tensor([0.0, 2.5, 5.0, 6.0])
    assert torch.allclose(c(r), torch.tensor([1.0, 0.5, 0.0, 0.0]), atol=1e-7)
    env = Envelope(5)
    x = torch.tensor([1.0 - 1e-3], dtype=torch.float64, requires_grad=True)
    y = x * env(x)                              # x u(x) -> 0 with zero slope at x = 1
    (g,) = torch.autograd.grad(y.sum(), x)
    assert abs(float(y.detach())) < 1e-6 and abs(float(g)) < 1e-3


def test_spherical_bessel_and_roots_match_scipy():
    special = pytest.importorskip("scipy.special")
    x = torch.linspace(0.3, 15, 300, dtype=torch.float64)
    ours = spherical_bessel(6, x).numpy()
    ref = np.stack([special.spherical_jn(l, x.numpy()) for l in range(7)], -1)
    assert np.abs(ours - ref).max() < 1e-8
    roots = bessel_roots(7, 6)
    assert all(abs(special.spherical_jn(l, z)) < 1e-12 for l in range(7) for z in roots[l])
    assert all(np.all(np.diff(roots[l]) > 0) for l in range(7)) and roots[0][0] == pytest.approx(math.pi)


def test_angular_basis_is_e3nn_zonal_harmonic():
    o3 = pytest.importorskip("e3nn.o3")
    angle = torch.linspace(0, math.pi, 9, dtype=torch.float64)
    # e3nn's polar axis is y: Y_l^0 of a unit vector at angle alpha from y is sqrt((2l+1)/4pi) P_l(cos alpha)
    vec = torch.stack([torch.sin(angle), torch.cos(angle), torch.zeros_like(angle)], -1)
    for l in range(7):
        y = o3.spherical_harmonics(l, vec, normalize=True, normalization="integral")[:, l]
        torch.testing.assert_close(legendre(6, torch.cos(angle))[:, l] * math.sqrt((2 * l + 1) / (4 * math.pi)), y)


def test_spherical_basis_shape():
    sbf = SphericalBasis(7, 6, 5.0)
    out = sbf(torch.tensor([1.0, 2.0]), torch.tensor([0.3, -0.2, 0.9]), torch.tensor([0, 1, 1]))
    assert out.shape == (3, 42) and torch.isfinite(out).all()


def _bent(theta_deg, dtype=torch.float64):
    """A-B-C with 1.0 bonds and angle theta at B: for theta > 97 degrees A-C is beyond the 1.5 cutoff."""
    t = math.radians(theta_deg)
    pos = torch.tensor([[1.0, 0, 0], [0, 0, 0], [math.cos(t), math.sin(t), 0]], dtype=dtype)
    return atoms_batch(pos, torch.tensor([1, 6, 1]))


def test_distances_within_the_cutoff_cannot_see_angles_but_dimenet_can():
    torch.manual_seed(0)
    schnet = SchNet(num_types=10, hidden_channels=16, num_filters=16, num_interactions=3, cutoff=1.5).double()
    dimenet = DimeNetPlusPlus(num_types=10, hidden_channels=16, num_blocks=2, int_emb_size=8,
                              out_emb_channels=16, cutoff=1.5).double()
    for block in dimenet.output_blocks:
        torch.nn.init.normal_(block.lin.weight, std=0.3)
    a, b = _bent(110.0), _bent(170.0)
    assert float((schnet(a) - schnet(b)).abs().detach()) < 1e-12, "same radius graph, same distances: same energy"
    assert float((dimenet(a) - dimenet(b)).abs().detach()) > 1e-4, "the angle at B enters DimeNet++"
