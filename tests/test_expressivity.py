"""Counterexample pairs and geometric Weisfeiler-Leman tests (gdl.expressivity)."""

import math

import pytest
import torch

from gdl import architectures
from gdl.data import collate
from gdl.expressivity import (
    COUNTEREXAMPLES,
    WL_TESTS,
    angle_pair,
    angles_at_centre,
    complete_graph,
    congruent,
    homometric_pair,
    local_environment,
    mirror_pair,
    neighbour_profiles,
    wl_test,
)
from gdl.groups import O3


def _moved(env, seed=0, proper=True):
    """The same environment rotated (or rotated and reflected), shifted and with its neighbours relabelled."""
    g = torch.Generator().manual_seed(seed)
    Q = O3().sample(1, seed=seed)[0].value.to(torch.float64)
    if (torch.linalg.det(Q) < 0) == proper:
        Q = -Q
    n = len(env["pos"])
    perm = torch.cat([torch.zeros(1, dtype=torch.long), 1 + torch.randperm(n - 1, generator=g)])
    inverse = torch.argsort(perm)
    pos = env["pos"][perm] @ Q.T + torch.randn(3, generator=g, dtype=torch.float64)
    return {"pos": pos, "z": env["z"][perm], "edge_index": inverse[env["edge_index"]]}


@pytest.mark.parametrize("make", list(COUNTEREXAMPLES.values()))
def test_pairs_are_stars_with_equal_bond_lengths_and_not_rotations_of_each_other(make):
    a, b = make()
    for env in (a, b):
        n = len(env["pos"])
        assert env["edge_index"].shape == (2, 2 * (n - 1))
        assert set(env["edge_index"].flatten().tolist()) == set(range(n))
        assert ((env["edge_index"] == 0).sum(0) == 1).all()          # every bond touches the centre
    ra, rb = ((e["pos"][e["edge_index"][0]] - e["pos"][e["edge_index"][1]]).norm(dim=1).sort().values for e in (a, b))
    assert torch.allclose(ra, rb, atol=1e-12, rtol=0)
    assert not congruent(a, b, "SO3")


def test_homometric_pair_shares_all_distances_and_angles_but_not_shape():
    a, b = homometric_pair()
    assert angles_at_centre(a) == angles_at_centre(b)
    assert torch.allclose(torch.pdist(a["pos"]).sort().values, torch.pdist(b["pos"]).sort().values, atol=1e-12)
    assert not congruent(a, b, "O3")
    assert sorted(neighbour_profiles(a)) != sorted(neighbour_profiles(b))
    # neighbours stay out of each other's cutoff
    assert torch.pdist(a["pos"][1:]).min() > 1.2


def test_angle_pair_differs_in_angles_mirror_pair_only_in_handedness():
    a, b = angle_pair()
    assert angles_at_centre(a) != angles_at_centre(b)
    a, b = mirror_pair()
    assert angles_at_centre(a) == angles_at_centre(b)
    assert congruent(a, b, "O3") and not congruent(a, b, "SO3")


@pytest.mark.parametrize("proper", [True, False])
@pytest.mark.parametrize("make", list(COUNTEREXAMPLES.values()))
def test_congruent_finds_a_moved_copy_and_rejects_a_perturbed_one(make, proper):
    a, _ = make()
    moved = _moved(a, seed=3, proper=proper)
    assert congruent(a, moved, "O3")
    chiral = torch.linalg.matrix_rank(a["pos"][1:]) == 3 and make is mirror_pair
    assert congruent(a, moved, "SO3") == (proper or not chiral)
    bent = {**moved, "pos": moved["pos"].clone()}
    bent["pos"][1] += 1e-3
    assert not congruent(a, bent, "O3")


EXPECTED = {  # (angle pair, homometric pair, mirror pair)
    ("2-body", "O3"): (False, False, False), ("3-body", "O3"): (True, False, False),
    ("edge", "O3"): (True, True, False), ("geometric", "O3"): (True, True, False),
    ("geometric", "SO3"): (True, True, True)}


@pytest.mark.parametrize(("test", "group"), list(EXPECTED))
def test_wl_ladder(test, group):
    outcome = tuple(wl_test(*make(), test, group=group) for make in COUNTEREXAMPLES.values())
    assert outcome == EXPECTED[test, group]


@pytest.mark.parametrize("test", WL_TESTS)
@pytest.mark.parametrize("make", list(COUNTEREXAMPLES.values()))
def test_wl_never_separates_a_graph_from_a_moved_copy(make, test):
    a, _ = make()
    assert not wl_test(a, _moved(a, seed=1), test, group="SO3")
    assert not wl_test(a, _moved(a, seed=2, proper=False), test, group="O3")


def test_complete_graph_lets_the_two_body_test_separate_the_homometric_pair():
    a, b = (complete_graph(e) for e in homometric_pair())
    assert a["edge_index"].shape == (2, 20)
    assert wl_test(a, b, "2-body")


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="test must be one of"):
        wl_test(*angle_pair(), "4-body")
    with pytest.raises(ValueError, match="group must be"):
        wl_test(*angle_pair(), "geometric", group="E3")
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        local_environment(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="at most 9 points"):
        congruent(local_environment(torch.randn(9, 3)), local_environment(torch.randn(9, 3)))


def _gap(name, pair, seed=0):
    model, _, _ = architectures.build(name, seed=seed)
    items = [{**e, "q": torch.ones(len(e["pos"]), 1, dtype=torch.float64)} for e in pair]
    energy = model.double()(collate(items))["energy"].detach()
    return float((energy[0] - energy[1]).abs() / energy[0].abs())


@pytest.mark.parametrize("seed", [0, 1])
def test_schnet_confuses_what_the_two_body_test_confuses_dimenet_separates_by_angles(seed):
    assert _gap("SchNet", angle_pair(), seed) < 1e-13
    assert _gap("SchNet", homometric_pair(), seed) < 1e-13
    assert _gap("DimeNet++", angle_pair(), seed) > 1e-6
    assert _gap("DimeNet++", homometric_pair(), seed) > 1e-6
    assert _gap("DimeNet++", mirror_pair(), seed) < 1e-13


def test_homometric_points_have_the_documented_height():
    a, _ = homometric_pair()
    h = abs(float(a["pos"][1, 2]))
    assert math.isclose(h * h, math.sqrt(2) / (4 + math.sqrt(2)), rel_tol=1e-12)
