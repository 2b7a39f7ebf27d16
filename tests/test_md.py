"""The ASE calculator for gdl models, NVE dynamics with it, and energy conservation of a trained model."""

import numpy as np
import pytest
import torch

pytest.importorskip("ase")

from ase import Atoms  # noqa: E402
from ase.build import molecule  # noqa: E402

from gdl.md import GDLCalculator, energy_deviation, energy_drift, run_nve, thermal_start  # noqa: E402
from gdl.nn import EnergyForces, NequIP, SchNet  # noqa: E402
from gdl.nn.atomistic import PairEnergy  # noqa: E402


def _schnet():
    torch.manual_seed(0)
    return SchNet(num_types=10, hidden_channels=16, num_filters=16, num_interactions=2, cutoff=3.0).double()


def test_energy_and_forces_match_the_model_and_finite_differences():
    model = _schnet()
    atoms = molecule("CH3CH2OH")
    atoms.calc = GDLCalculator(model)
    e, f = atoms.get_potential_energy(), atoms.get_forces()
    out = EnergyForces(model)(GraphBatch_from(atoms))
    assert abs(e - float(out["energy"].detach())) < 1e-12
    np.testing.assert_allclose(f, out["forces"].detach().numpy(), atol=1e-12)
    eps = 1e-5
    for atom, axis in ((0, 0), (2, 1), (5, 2), (8, 0)):              # F = -dE/dx, central differences
        moved = atoms.copy()
        moved.calc = atoms.calc
        pos = moved.get_positions()
        pos[atom, axis] += eps
        moved.set_positions(pos)
        up = moved.get_potential_energy()
        pos[atom, axis] -= 2 * eps
        moved.set_positions(pos)
        down = moved.get_potential_energy()
        assert abs(-(up - down) / (2 * eps) - f[atom, axis]) < 1e-7
    assert np.abs(f).max() > 1e-4                                     # not trivially zero


def GraphBatch_from(atoms):
    from gdl.nn.atomistic import atoms_batch

    return atoms_batch(torch.as_tensor(atoms.get_positions()), torch.as_tensor(atoms.get_atomic_numbers()))


def test_dipole_when_the_model_has_charges_and_model_dtype_is_used():
    torch.manual_seed(0)
    model = NequIP(num_types=10, hidden_irreps="8x0e + 4x1o", num_layers=2, cutoff=3.0, charges=True)
    atoms = molecule("H2O")
    atoms.calc = GDLCalculator(model)                                   # float32 model: float32 positions
    assert atoms.calc.dtype == torch.float32
    dipole = atoms.get_dipole_moment()
    assert dipole.shape == (3,) and np.isfinite(dipole).all()
    plain = molecule("H2O")
    plain.calc = GDLCalculator(PairEnergy(num_types=10))
    assert plain.get_forces().shape == (3, 3)


def test_bad_input_is_refused():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        GDLCalculator(lambda batch: batch)
    atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.8]], cell=[5, 5, 5], pbc=True)
    atoms.calc = GDLCalculator(_schnet())
    with pytest.raises(ValueError, match="periodic"):
        atoms.get_potential_energy()
    with pytest.raises(ValueError, match="steps"):
        run_nve(molecule("H2O"), GDLCalculator(_schnet()), steps=0)


def test_velocity_verlet_conserves_the_energy_of_a_smooth_model():
    atoms = thermal_start(molecule("CH3CH2OH"), 300, seed=0)
    traj = run_nve(atoms, GDLCalculator(_schnet()), steps=60, timestep_fs=0.5)
    assert traj["positions"].shape == (61, 9, 3) and traj["time_ps"][-1] == pytest.approx(0.03)
    assert np.abs(traj["positions"][-1] - traj["positions"][0]).max() > 1e-3       # the atoms moved
    assert np.ptp(traj["total"]) < 0.05 * np.ptp(traj["potential"]) + 1e-6
    assert energy_drift(traj) < 1e-2


def test_energy_deviation_sees_jumps_that_a_drift_averages_away():
    t = np.linspace(0.0, 2.0, 4001)                                  # ps, 0.5 fs steps
    smooth = 1e-4 * np.sin(2 * np.pi * 40 * t)                        # Verlet's bounded oscillation, eV
    steps = smooth + 0.02 * ((t > 0.5) & (t < 1.5))                   # up by 20 meV, then down again
    traj = {"time_ps": t, "numbers": np.ones(9)}
    smooth_traj, jumping = dict(traj, total=smooth), dict(traj, total=steps)
    assert energy_deviation(jumping) == pytest.approx(0.01 / 9, rel=0.05)   # 20 meV for half the run, per atom
    assert energy_deviation(smooth_traj) < 0.1 * energy_deviation(jumping)
    assert energy_drift(jumping) < 2 * energy_drift(smooth_traj) + 1e-6   # the slope misses the jumps that cancel
    with pytest.raises(ValueError, match="two recorded frames"):
        energy_deviation(dict(traj, time_ps=t[:1], total=smooth[:1]))


def test_bfgs_relaxes_with_the_calculator():
    from ase.optimize import BFGS

    model = EnergyForces(PairEnergy(num_types=10))
    with torch.no_grad():
        model.model.pair.fill_(1.0)                   # repulsive Gaussians: the atoms push each other apart
    atoms = Atoms("HHH", positions=[[0, 0, 0], [0.3, 0.2, 0.1], [0.1, -0.4, 0.3]])
    atoms.calc = GDLCalculator(model.double())
    e0 = atoms.get_potential_energy()
    assert BFGS(atoms, logfile=None).run(fmax=1e-4, steps=200)
    assert atoms.get_potential_energy() < 0.1 * e0 and np.abs(atoms.get_forces()).max() < 1e-4


def test_trained_model_conserves_energy_as_well_as_xtb_itself(tmp_path, monkeypatch):
    """Done means: NVE drift per atom of a small trained SchNet on GFN2-xTB ethanol is at most of the order of
    GFN2-xTB's own velocity-Verlet drift at the same time step (here: within a factor 10)."""
    pytest.importorskip("tblite")
    from gdl.data import GraphBatch, md_trajectory, unbatch
    from gdl.data.molecules import xtb_calculator
    from gdl.nn.atomistic import energy_force_loss, energy_statistics
    from gdl.training import fit

    monkeypatch.setenv("GDL_CACHE_DIR", str(tmp_path))
    frames = md_trajectory("ethanol", temperature=500, steps=400, interval=5, seed=0, progress=False)
    data = unbatch(GraphBatch.from_atoms(frames))
    stats = energy_statistics(GraphBatch.from_atoms(frames[:60]))
    model = fit(lambda: EnergyForces(SchNet(num_types=10, hidden_channels=16, num_filters=16, num_interactions=2,
                                            num_gaussians=16, cutoff=3.0), **stats),
                data[:60], None, loss_fn=energy_force_loss(force_weight=1.0), epochs=80, batch_size=30, lr=5e-3,
                val=(data[60:], None), patience=20, progress=False, seed=0)
    start = thermal_start(frames[-1], 500, seed=0)
    drift = {name: energy_drift(run_nve(start, calc, steps=300, timestep_fs=0.5))
             for name, calc in (("model", GDLCalculator(model.double())), ("xtb", xtb_calculator()))}
    assert drift["model"] <= 10 * drift["xtb"], drift
