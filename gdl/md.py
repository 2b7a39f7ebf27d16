"""Molecular dynamics with a learned model: an ASE calculator for any ``gdl`` energy model, and NVE helpers.

:class:`GDLCalculator` puts a trained model behind ASE's ``Calculator`` interface, the one that the integrators
(``VelocityVerlet``, ``Langevin``), optimisers (``BFGS``, ``FIRE``) and analysis tools of ASE use, and the one
that users of NequIP, MACE and SchNetPack work with. Energies come from the model, forces from autograd,

.. math::  F_i = -\\partial E / \\partial x_i ,

and the dipole :math:`\\sum_i (q_i - \\bar q) x_i` when the model predicts charges (see
:class:`gdl.nn.atomistic.EnergyForces`). Stress is not offered: the models' neighbour lists are not periodic, so
periodic ``Atoms`` are refused.

:func:`run_nve` integrates Newton's equations with velocity Verlet at constant energy and records the energies;
:func:`energy_drift` fits the slope of the total energy, per atom, in eV/atom/ps. A model whose energy is smooth
conserves its own total energy up to the integrator's :math:`O(\\Delta t^2)` oscillation; a jump in the energy
(an edge switched on or off at a hard cutoff) is invisible to the forces and changes the total energy at once:
:func:`energy_deviation` measures how far the total energy wanders from its start, which a drift's slope may
average away over a long run.

Examples:
    >>> from ase.build import molecule
    >>> from gdl.nn import SchNet
    >>> atoms = molecule("H2O")
    >>> atoms.calc = GDLCalculator(SchNet(num_types=10, hidden_channels=8, num_filters=8, num_interactions=1))
    >>> atoms.get_forces().shape
    (3, 3)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

try:
    from ase.calculators.calculator import Calculator, all_changes
except ImportError as err:  # pragma: no cover - ase is in gdl[data]
    raise ImportError("gdl.md needs ASE (pip install 'gdl[data]' or pip install ase)") from err

__all__ = ["GDLCalculator", "thermal_start", "run_nve", "energy_drift", "energy_deviation"]


class GDLCalculator(Calculator):
    """An ASE calculator from a ``gdl`` energy model.

    Args:
        model: an :class:`gdl.nn.atomistic.EnergyForces`, or a bare energy model (``GraphBatch -> (B,)`` or a
            dict with ``"energy"``), which is wrapped in one. It is put in eval mode; its parameters are not
            changed.
        device: where the model runs (default: where its parameters are; ``gdl.device()`` if it has none).
        dtype: the dtype positions are given in (default: the model's parameter dtype).

    Results: ``energy`` and ``free_energy`` (eV), ``forces`` (N, 3) (eV/Angstrom), and ``dipole`` (3,) (e
    Angstrom) when the model predicts charges.
    """

    implemented_properties = ["energy", "free_energy", "forces", "dipole"]

    def __init__(self, model: nn.Module, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        from gdl.nn.atomistic import EnergyForces

        if not isinstance(model, nn.Module):
            raise TypeError(f"GDLCalculator needs a torch.nn.Module energy model, got {type(model).__name__}")
        if not isinstance(model, EnergyForces):
            model = EnergyForces(model)
        from gdl._runtime import device as default_device

        params = [p for p in model.parameters() if p.is_floating_point()]
        if device is None:
            device = params[0].device if params else default_device(verbose=False)
        self.device = torch.device(device)
        self.dtype = dtype or (params[0].dtype if params else torch.get_default_dtype())
        self.model = model.to(self.device).eval()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        from gdl.nn.atomistic import atoms_batch

        if self.atoms.pbc.any():
            raise ValueError(f"GDLCalculator: periodic systems are not supported (the models' neighbour lists "
                             f"are not periodic), got pbc={self.atoms.pbc.tolist()}")
        pos = torch.as_tensor(self.atoms.get_positions(), dtype=self.dtype, device=self.device)
        z = torch.as_tensor(self.atoms.get_atomic_numbers(), dtype=torch.long, device=self.device)
        out = self.model(atoms_batch(pos, z))
        energy = float(out["energy"].detach()[0])
        self.results = {"energy": energy, "free_energy": energy,
                        "forces": out["forces"].detach().cpu().double().numpy()}
        if "dipole" in out:
            self.results["dipole"] = out["dipole"].detach()[0].cpu().double().numpy()


def thermal_start(atoms, temperature_K: float, seed: int = 0):
    """A copy of ``atoms`` with seeded Maxwell-Boltzmann velocities at ``temperature_K``, without centre-of-mass
    motion or overall rotation (so the total energy is all internal)."""
    from ase.md import velocitydistribution as vd

    atoms = atoms.copy()
    rng = np.random.default_rng(seed)
    if hasattr(vd, "thermalize_momenta"):            # ASE >= 3.28 (MaxwellBoltzmannDistribution deprecated)
        vd.thermalize_momenta(atoms, temperature_K=temperature_K, rng=rng)
    else:  # pragma: no cover - older ASE
        vd.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
    vd.Stationary(atoms)
    vd.ZeroRotation(atoms)
    return atoms


def run_nve(atoms, calculator, steps: int, timestep_fs: float = 0.5, interval: int = 1,
            progress: bool = False, desc: str = "NVE") -> dict[str, np.ndarray]:
    """Velocity-Verlet (constant N, V, E) molecular dynamics of a copy of ``atoms`` (positions and velocities
    as given) with ``calculator``.

    .. math::  v(t + \\tfrac{\\Delta t}{2}) = v(t) + \\tfrac{\\Delta t}{2m} F(t), \\quad
               x(t + \\Delta t) = x(t) + \\Delta t\\, v(t + \\tfrac{\\Delta t}{2}), \\quad
               v(t + \\Delta t) = v(t + \\tfrac{\\Delta t}{2}) + \\tfrac{\\Delta t}{2m} F(t + \\Delta t)

    Args:
        atoms: ASE ``Atoms`` with velocities (e.g. from ``MaxwellBoltzmannDistribution``); not modified.
        calculator: any ASE calculator (a :class:`GDLCalculator`, or xTB's).
        steps: number of time steps. timestep_fs: :math:`\\Delta t` in femtoseconds.
        interval: record every ``interval``-th step (and the start).
        progress: show a tqdm bar.

    Returns:
        ``time_ps`` (T,), ``potential``, ``kinetic``, ``total`` (T,) in eV, ``positions`` and ``velocities``
        (T, N, 3), ``numbers`` (N,).
    """
    from ase import units
    from ase.md.verlet import VelocityVerlet
    from tqdm.auto import tqdm

    if steps < 1 or interval < 1:
        raise ValueError(f"steps and interval must be positive, got steps={steps}, interval={interval}")
    atoms = atoms.copy()
    atoms.calc = calculator
    dyn = VelocityVerlet(atoms, timestep=timestep_fs * units.fs)
    rec: dict[str, list] = {k: [] for k in ("time_ps", "potential", "kinetic", "positions", "velocities")}

    def record(step):
        rec["time_ps"].append(step * timestep_fs / 1000)
        rec["potential"].append(atoms.get_potential_energy())
        rec["kinetic"].append(atoms.get_kinetic_energy())
        rec["positions"].append(atoms.get_positions())
        rec["velocities"].append(atoms.get_velocities())

    record(0)
    bar = tqdm(total=steps, desc=desc, disable=not progress, leave=False)
    for step in range(1, steps + 1):
        dyn.run(1)
        if step % interval == 0:
            record(step)
        bar.update()
    bar.close()
    out = {k: np.asarray(v) for k, v in rec.items()}
    out["total"] = out["potential"] + out["kinetic"]
    out["numbers"] = atoms.get_atomic_numbers()
    return out


def energy_drift(trajectory: dict[str, np.ndarray]) -> float:
    """Total-energy drift in eV per atom per picosecond: the least-squares slope of :math:`E_{\\mathrm{tot}}(t)`
    divided by the number of atoms (absolute value)."""
    t, e = trajectory["time_ps"], trajectory["total"]
    if len(t) < 2:
        raise ValueError(f"a drift needs at least two recorded frames, got {len(t)}")
    slope = np.polyfit(t, e, 1)[0]
    return float(abs(slope) / len(trajectory["numbers"]))


def energy_deviation(trajectory: dict[str, np.ndarray]) -> float:
    r"""How far the total energy strays from its start, averaged over the run, in eV per atom:
    :math:`\frac{1}{T}\sum_{k=1}^{T} |E_{\mathrm{tot}}(t_k) - E_{\mathrm{tot}}(t_0)| / N`.

    With a smooth potential, velocity Verlet keeps :math:`E_{\mathrm{tot}}` within an oscillation of order
    :math:`\Delta t^2` around its start; an energy that jumps where a pair of atoms crosses the cutoff makes it
    wander by the sum of the jumps, whatever their signs. A drift (:func:`energy_drift`, a least-squares slope) can
    miss that over a long run, where jumps up and down cancel in the slope.
    """
    e = trajectory["total"]
    if len(e) < 2:
        raise ValueError(f"a deviation needs at least two recorded frames, got {len(e)}")
    return float(np.abs(e[1:] - e[0]).mean() / len(trajectory["numbers"]))
