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


def test_nequip_product_group_from_batch_sizes():
    batch = molecules(sizes=(2, 3))
    sym = atomistic_symmetry(batch)
    assert sym["group"] == ProductGroup(E3(), BatchSymmetricGroup([2, 3]))
    assert isinstance(sym["in_action"], FieldsAction)
