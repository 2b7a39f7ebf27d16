"""GFN2-xTB molecular dynamics data: seeded, cached, checksummed; rotations; ASE in and out."""

import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("tblite")
pytest.importorskip("ase")

from gdl.data import (
    GraphBatch,  # noqa: E402
    molecules,  # noqa: E402
)
from gdl.data.molecules import (
    cache_path,
    md_trajectory,
    molecule,
    random_rotations,
    rotate_atoms,
    xtb_calculator,  # noqa: E402
)

SMALL = {"temperature": 500.0, "steps": 24, "interval": 4, "equilibration": 10, "progress": False}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GDL_CACHE_DIR", str(tmp_path))


def _arrays(frames):
    return (np.stack([a.get_positions() for a in frames]), np.array([a.get_potential_energy() for a in frames]),
            np.stack([a.get_forces() for a in frames]))


def test_trajectory_shapes_units_and_labels_are_xtb():
    frames = md_trajectory("ethanol", seed=0, **SMALL)
    assert len(frames) == 6 and frames[0].get_chemical_formula() == "C2H6O"
    pos, e, f = _arrays(frames)
    assert np.all(np.abs(e - (-309.5)) < 2.0), "GFN2-xTB energy of ethanol is about -309.5 eV"
    assert np.std(pos[-1] - pos[0]) > 1e-3, "the molecule moves"
    # the stored labels are what the calculator gives for the stored geometry
    check = frames[3].copy()
    check.calc = xtb_calculator()
    assert abs(check.get_potential_energy() - e[3]) < 1e-8
    np.testing.assert_allclose(check.get_forces(), f[3], atol=1e-5)


def test_seeded_and_cached(monkeypatch):
    a = md_trajectory("water", seed=1, **SMALL)
    b = md_trajectory("water", seed=2, **SMALL)
    assert not np.allclose(_arrays(a)[0], _arrays(b)[0]), "other seed, other trajectory"

    def fail(*args, **kwargs):
        raise AssertionError("regenerated although cached")

    monkeypatch.setattr(molecules, "_simulate", fail)
    again = md_trajectory("water", seed=1, **SMALL)
    for x, y in zip(_arrays(a), _arrays(again)):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(AssertionError, match="regenerated"):
        md_trajectory("water", seed=3, **SMALL)            # a new key is not in the cache


def test_regenerated_without_cache_is_identical():
    a = md_trajectory("water", seed=4, **SMALL)
    b = md_trajectory("water", seed=4, cache=False, **SMALL)
    for x, y in zip(_arrays(a), _arrays(b)):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-10)


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "drop_checksum"])
def test_corrupt_cache_is_detected_and_regenerated(damage):
    first = md_trajectory("water", seed=5, **SMALL)
    path = cache_path(name="water", temperature=500.0, steps=24, seed=5, interval=4, timestep_fs=0.5,
                      friction=0.02, equilibration=10)
    assert path.exists() and path.with_suffix(".json").exists()
    raw = bytearray(path.read_bytes())
    if damage == "flip_byte":
        raw[len(raw) // 2] ^= 0xFF
        path.write_bytes(bytes(raw))
    elif damage == "truncate":
        path.write_bytes(bytes(raw[: len(raw) // 3]))
    else:
        path.with_suffix(".json").unlink()
    with pytest.warns(UserWarning, match="is unusable .*regenerating"):
        second = md_trajectory("water", seed=5, **SMALL)
    for x, y in zip(_arrays(first), _arrays(second)):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                      # repaired: read back without a warning
        md_trajectory("water", seed=5, **SMALL)


def test_rotations_rotate_forces_like_the_physics():
    frames = md_trajectory("ethanol", seed=0, **SMALL)[:2]
    rotated = rotate_atoms(frames, seed=3)
    q = random_rotations(2, seed=3)
    assert np.allclose(np.linalg.det(q), 1.0) and np.allclose(q @ q.transpose(0, 2, 1), np.eye(3))
    for a, r in zip(frames, rotated):
        assert r.get_potential_energy() == a.get_potential_energy()
        fresh = r.copy()
        fresh.calc = xtb_calculator()
        assert abs(fresh.get_potential_energy() - a.get_potential_energy()) < 1e-6, "xTB energy is invariant"
        np.testing.assert_allclose(fresh.get_forces(), r.get_forces(), atol=1e-5)   # and forces rotate


def test_graph_batch_round_trip():
    frames = md_trajectory("malonaldehyde", seed=0, **SMALL)
    batch = GraphBatch.from_atoms(frames, dtype=torch.float64)
    assert batch.num_graphs == 6 and batch.pos.shape == (54, 3) and batch.energy.shape == (6,)
    assert batch.forces.shape == (54, 3) and batch.z[:5].tolist() == [8, 6, 6, 6, 8]
    back = batch.to_atoms()
    np.testing.assert_allclose(back[2].get_forces(), frames[2].get_forces())
    assert back[2].get_potential_energy() == pytest.approx(frames[2].get_potential_energy())


def test_bad_input():
    with pytest.raises(ValueError, match="unknown molecule 'unobtainium'"):
        md_trajectory("unobtainium", **SMALL)
    with pytest.raises(ValueError, match="temperature and timestep_fs must be positive"):
        md_trajectory("water", temperature=-1.0, steps=8, progress=False)
    with pytest.raises(ValueError, match="need steps >= interval >= 1"):
        md_trajectory("water", steps=2, interval=4, progress=False)
    with pytest.raises(ValueError, match=r"rotations must have shape \(2, 3, 3\)"):
        rotate_atoms([molecule("water")] * 2, rotations=np.eye(3)[None])
    assert len(molecule("uracil")) == 12
