"""MD17-style molecular data, generated offline: Langevin molecular dynamics with GFN2-xTB energies and forces.

MD17 (Chmiela et al. 2017) samples configurations of one small molecule from an *ab initio* molecular dynamics run
and labels each with its energy and forces. Here the quantum chemistry is the semi-empirical tight-binding method
GFN2-xTB (Bannwarth, Ehlert & Grimme 2019) from the ``tblite`` package (a few milliseconds per energy+force call
for ethanol, no download), and the dynamics is ASE's Langevin thermostat:

.. math::  m_i \\ddot x_i = F_i(x) - \\gamma m_i \\dot x_i + \\sqrt{2 \\gamma m_i k_B T}\\, \\eta_i(t),
           \\qquad F_i = -\\partial E_{\\mathrm{GFN2}} / \\partial x_i .

:func:`md_trajectory` first relaxes the molecule with xTB, draws Maxwell-Boltzmann velocities, equilibrates, and
then keeps every ``interval``-th step. Runs are seeded and cached on disk (``$GDL_CACHE_DIR``, default
``~/.cache/gdl``) under a key made of every setting (molecule, temperature, steps, seed, ...). Each cache file has
a SHA-256 checksum in a side file; a file that does not match (or cannot be read) is reported with a warning and
regenerated, never used. Units are ASE's: Angstrom, eV, eV/Angstrom.

Examples:
    >>> frames = md_trajectory("ethanol", temperature=500, steps=20, seed=0, progress=False)  # doctest: +SKIP
    >>> frames[0].get_potential_energy(), frames[0].get_forces().shape                       # doctest: +SKIP
    (-309.9..., (9, 3))
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MOLECULES", "molecule", "md_trajectory", "cache_dir", "cache_path", "random_rotations",
           "rotate_atoms", "xtb_calculator"]

# Malonaldehyde (enol form, intramolecular hydrogen bond) is not in ASE's G2 set: rough planar coordinates,
# relaxed with GFN2-xTB before the dynamics starts.
_MALONALDEHYDE = ("OCCCOHHHH", [[-1.30, 1.93, 0.0], [-1.25, 0.70, 0.0], [0.0, 0.0, 0.0], [1.25, 0.70, 0.0],
                                [1.25, 2.05, 0.0], [0.30, 2.25, 0.0], [-2.18, 0.12, 0.0], [0.0, -1.08, 0.0],
                                [2.20, 0.16, 0.0]])

#: Molecules by name: where the starting geometry comes from.
MOLECULES = {
    "ethanol": "ase.build.molecule('CH3CH2OH')",
    "malonaldehyde": "hand-made enol geometry, relaxed with GFN2-xTB",
    "benzene": "ase.build.molecule('C6H6')",
    "uracil": "first monomer of ASE's S22 uracil dimer",
    "water": "ase.build.molecule('H2O')",
}


def molecule(name: str):
    """The starting geometry of a molecule of :data:`MOLECULES`, or of any name ``ase.build.molecule`` knows,
    as ASE ``Atoms`` (not relaxed)."""
    from ase import Atoms
    from ase.build import molecule as ase_molecule

    if name == "malonaldehyde":
        return Atoms(_MALONALDEHYDE[0], positions=_MALONALDEHYDE[1])
    if name == "uracil":
        from ase.data.s22 import data

        d = data["Uracil_dimer_h-bonded"]
        n = d["dimer atoms"][0]
        return Atoms(d["symbols"][:n], positions=d["positions"][:n])
    aliases = {"ethanol": "CH3CH2OH", "benzene": "C6H6", "water": "H2O"}
    try:
        return ase_molecule(aliases.get(name, name))
    except KeyError:
        raise ValueError(f"unknown molecule {name!r}: use one of {sorted(MOLECULES)} or a name that "
                         f"ase.build.molecule knows (the G2 set, e.g. 'CH3COCH3')") from None


def xtb_calculator():
    """A GFN2-xTB calculator (``tblite.ase.TBLite``), silent, with a tight self-consistency threshold
    (``accuracy=0.01``) so forces do not depend on the previous step's wavefunction beyond ~1e-6 eV/Angstrom."""
    try:
        from tblite.ase import TBLite
    except ImportError as err:  # pragma: no cover - tblite is in gdl[data]
        raise ImportError("molecular data needs tblite (pip install 'gdl[data]' or pip install tblite)") from err
    return TBLite(method="GFN2-xTB", verbosity=0, accuracy=0.01)


def cache_dir() -> Path:
    """Where generated data sets are cached: ``$GDL_CACHE_DIR``, else ``$XDG_CACHE_HOME/gdl``, else
    ``~/.cache/gdl``."""
    if os.environ.get("GDL_CACHE_DIR"):
        return Path(os.environ["GDL_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gdl"


def _settings(name, temperature, steps, seed, interval, timestep_fs, friction, equilibration) -> dict[str, Any]:
    return {"molecule": name, "temperature_K": float(temperature), "steps": int(steps), "seed": int(seed),
            "interval": int(interval), "timestep_fs": float(timestep_fs), "friction_per_fs": float(friction),
            "equilibration": int(equilibration), "method": "GFN2-xTB", "accuracy": 0.01, "version": 1}


def cache_path(**settings) -> Path:
    """The cache file of one trajectory (its name spells out the settings, plus a hash of all of them)."""
    s = _settings(**settings)
    digest = hashlib.sha256(json.dumps(s, sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir() / "md" / (f"{s['molecule']}_T{s['temperature_K']:g}_steps{s['steps']}_seed{s['seed']}"
                                 f"_{digest}.npz")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load(path: Path, settings: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """The cached arrays, or ``None`` (with a warning saying why) if the file is missing, corrupt or stale."""
    meta_path = path.with_suffix(".json")
    if not path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("sha256") != _sha256(path):
            raise ValueError("its SHA-256 checksum does not match the one recorded when it was written")
        if meta.get("settings") != settings:
            raise ValueError("it was written with other settings")
        with np.load(path) as f:
            data = {k: f[k] for k in ("numbers", "positions", "energies", "forces")}
        if len(data["positions"]) != settings["steps"] // settings["interval"]:
            raise ValueError("it holds the wrong number of frames")
        return data
    except Exception as err:  # noqa: BLE001 - any unreadable cache is regenerated
        warnings.warn(f"cache file {path} is unusable ({err}); regenerating it", stacklevel=3)
        return None


def _save(path: Path, data: dict[str, np.ndarray], settings: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
    np.savez(tmp, **data)
    digest = _sha256(tmp)
    os.replace(tmp, path)
    path.with_suffix(".json").write_text(json.dumps({"sha256": digest, "settings": settings}, indent=1))


def _simulate(s: dict[str, Any], progress: bool) -> dict[str, np.ndarray]:
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation
    from ase.optimize import BFGS
    from tqdm.auto import tqdm

    atoms = molecule(s["molecule"])
    atoms.calc = xtb_calculator()
    BFGS(atoms, logfile=None).run(fmax=0.01, steps=500)
    rng = np.random.default_rng(s["seed"])
    with warnings.catch_warnings():
        # ASE 3.28+ renames MaxwellBoltzmannDistribution and deprecates Langevin's fixcm; both still do this job
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        MaxwellBoltzmannDistribution(atoms, temperature_K=s["temperature_K"], rng=rng)
        Stationary(atoms)
        ZeroRotation(atoms)
        dyn = Langevin(atoms, s["timestep_fs"] * units.fs, temperature_K=s["temperature_K"],
                       friction=s["friction_per_fs"] / units.fs, rng=rng)
    dyn.run(s["equilibration"])
    frames = s["steps"] // s["interval"]
    pos = np.empty((frames, len(atoms), 3))
    forces = np.empty((frames, len(atoms), 3))
    energies = np.empty(frames)
    bar = tqdm(total=frames, desc=f"GFN2-xTB MD {s['molecule']} {s['temperature_K']:g} K", disable=not progress,
               leave=False)
    for f in range(frames):
        dyn.run(s["interval"])
        pos[f] = atoms.get_positions()
        energies[f] = atoms.get_potential_energy()
        forces[f] = atoms.get_forces()
        bar.update()
    bar.close()
    return {"numbers": atoms.get_atomic_numbers(), "positions": pos, "energies": energies, "forces": forces}


def md_trajectory(name: str = "ethanol", temperature: float = 500.0, steps: int = 2000, seed: int = 0, *,
                  interval: int = 4, timestep_fs: float = 0.5, friction: float = 0.02, equilibration: int = 200,
                  cache: bool = True, progress: bool = True) -> list:
    """Configurations of one molecule with GFN2-xTB energies and forces from a seeded Langevin MD run.

    Args:
        name: a molecule of :data:`MOLECULES` (``"ethanol"``, ``"malonaldehyde"``, ``"benzene"``, ``"uracil"``,
            ``"water"``) or any name ``ase.build.molecule`` knows.
        temperature: thermostat temperature in kelvin (MD17 used 500 K).
        steps: MD steps after equilibration; ``steps // interval`` configurations are returned.
        seed: seeds the velocities and the thermostat noise.
        interval: keep every ``interval``-th step (fewer, less correlated frames).
        timestep_fs: time step in femtoseconds (0.5 fs as in MD17).
        friction: Langevin friction in 1/fs.
        equilibration: steps run and discarded before recording.
        cache: read and write the on-disk cache (see :func:`cache_dir`).
        progress: show a tqdm bar while generating.

    Returns:
        a list of ASE ``Atoms``, each with a ``SinglePointCalculator`` holding ``energy`` (eV) and ``forces``
        (eV/Angstrom); ``GraphBatch.from_atoms`` turns them into a batch.

    Raises:
        ValueError: unknown molecule, or non-positive ``temperature``, ``steps``, ``interval``, ``timestep_fs``.
    """
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    if not temperature > 0 or not timestep_fs > 0 or friction < 0:
        raise ValueError(f"temperature and timestep_fs must be positive and friction >= 0, got {temperature}, "
                         f"{timestep_fs}, {friction}")
    if steps < 1 or interval < 1 or steps < interval or equilibration < 0:
        raise ValueError(f"need steps >= interval >= 1 and equilibration >= 0, got steps={steps}, "
                         f"interval={interval}, equilibration={equilibration}")
    molecule(name)                                            # unknown names fail before any work
    settings = _settings(name, temperature, steps, seed, interval, timestep_fs, friction, equilibration)
    path = cache_path(name=name, temperature=temperature, steps=steps, seed=seed, interval=interval,
                      timestep_fs=timestep_fs, friction=friction, equilibration=equilibration)
    data = _load(path, settings) if cache else None
    if data is None:
        data = _simulate(settings, progress)
        if cache:
            _save(path, data, settings)
    out = []
    for pos, e, f in zip(data["positions"], data["energies"], data["forces"]):
        atoms = Atoms(numbers=data["numbers"], positions=pos)
        atoms.calc = SinglePointCalculator(atoms, energy=float(e), forces=f.copy())
        out.append(atoms)
    return out


def random_rotations(n: int, seed: int = 0) -> np.ndarray:
    """``(n, 3, 3)`` rotation matrices drawn uniformly from SO(3) (QR of Gaussian matrices, sign-fixed)."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((n, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    q[np.linalg.det(q) < 0, :, 0] *= -1
    return q


def rotate_atoms(frames: Sequence, seed: int = 0, rotations: np.ndarray | None = None) -> list:
    """Each configuration rotated by its own random rotation (about its centre of mass), forces rotated too:
    :math:`x \\mapsto Q(x - c) + c`, :math:`F \\mapsto Q F`, energy unchanged. Returns new ``Atoms``."""
    from ase.calculators.singlepoint import SinglePointCalculator

    rots = random_rotations(len(frames), seed) if rotations is None else np.asarray(rotations)
    if rots.shape != (len(frames), 3, 3):
        raise ValueError(f"rotations must have shape ({len(frames)}, 3, 3), got {rots.shape}")
    out = []
    for atoms, q in zip(frames, rots):
        new = atoms.copy()
        c = atoms.get_center_of_mass()
        new.set_positions((atoms.get_positions() - c) @ q.T + c)
        results = getattr(atoms.calc, "results", {}) if atoms.calc is not None else {}
        if results:
            kw = {"energy": results.get("energy")}
            if "forces" in results:
                kw["forces"] = results["forces"] @ q.T
            new.calc = SinglePointCalculator(new, **kw)
        out.append(new)
    return out
