"""Groups: axioms, elements, sampling, Lie algebras, and the errors raised for bad input."""

import math

import pytest
import torch

from gdl.groups import (
    E3,
    O2,
    O3,
    SE3,
    SO2,
    SO3,
    CyclicGroup,
    DefiningRep,
    DihedralGroup,
    GroupMismatchError,
    SymmetricGroup,
    TranslationGroup2D,
    expm_skew,
)

FINITE = [CyclicGroup(1), CyclicGroup(4), CyclicGroup(5), DihedralGroup(1), DihedralGroup(4), DihedralGroup(6),
          SymmetricGroup(3), SymmetricGroup(4), TranslationGroup2D((3, 4))]
CONTINUOUS = [SO2(), O2(), SO3(), O3(), SE3(), E3()]
ALL = FINITE + CONTINUOUS


@pytest.mark.parametrize("group", ALL, ids=repr)
def test_group_axioms(group):
    err = group.axioms_error(n=6)
    assert max(err.values()) < 1e-12, err


@pytest.mark.parametrize("group", ALL, ids=repr)
def test_standard_or_generated_elements_are_closed(group):
    for g in group.sample(4, seed=1):
        assert group.check(g * g.inverse()) == group.identity()


@pytest.mark.parametrize("group", FINITE, ids=repr)
def test_finite_generators_generate(group):
    """The closure of the generators under composition is the whole group."""
    reached = {group.identity()}
    frontier = list(reached)
    while frontier:
        new = {g * s for g in frontier for s in group.generators()} - reached
        reached |= new
        frontier = list(new)
    assert len(reached) == group.order


@pytest.mark.parametrize("group", CONTINUOUS, ids=repr)
def test_sampling_is_seeded(group):
    a, b, c = group.sample(3, seed=7), group.sample(3, seed=7), group.sample(3, seed=8)
    assert all(x == y for x, y in zip(a, b))
    assert not all(x == y for x, y in zip(a, c))


def test_so3_haar_moments():
    """Haar measure on SO(3): E[R] = 0 and E[tr(R)^2] = 1 (the trace is the character of the 3-dim irrep,
    and irreducible characters have unit norm)."""
    R = torch.stack([g.value for g in SO3().sample(4000, seed=0)])
    assert R.mean(0).abs().max() < 0.05
    tr = torch.diagonal(R, dim1=-2, dim2=-1).sum(-1)
    assert abs(float((tr**2).mean()) - 1.0) < 0.1
    assert torch.allclose(torch.det(R), torch.ones(4000, dtype=torch.float64))


def test_o3_and_o2_sample_both_components():
    dets = torch.tensor([float(torch.det(g.value)) for g in O3().sample(200, seed=0)])
    assert 70 < int((dets < 0).sum()) < 130
    flips = [g.value[0] for g in O2().sample(200, seed=0)]
    assert 70 < sum(flips) < 130


@pytest.mark.parametrize("group", CONTINUOUS, ids=repr)
def test_exp_matches_matrix_exponential(group):
    """exp(tX) in the standard representation is the matrix exponential of tX, for each generator."""
    rep = DefiningRep(group)
    assert len(group.lie_algebra()) == group.dimension() == {2: 1, 3: 3, 4: 6}[rep.dim]
    for X in group.lie_algebra():
        for t in (1e-3, 0.4, -2.5):
            err = (rep.matrix(group.exp(t * X)) - torch.linalg.matrix_exp(t * X)).abs().max()
            assert err < 1e-9


def test_discrete_generators():
    assert SO2().generators() == [] and SO3().generators() == [] and SE3().generators() == []
    for group in (O2(), O3(), E3()):
        (s,) = group.generators()
        m = DefiningRep(group).matrix(s)
        assert float(torch.det(m)) == pytest.approx(-1.0)
        assert s * s == group.identity()


def test_expm_skew_is_more_accurate_than_needed():
    X = SO3().lie_algebra()[1]
    for t in (-0.049, 0.3, 3.0):
        c, s = math.cos(t), math.sin(t)
        ref = torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=torch.float64)
        assert (expm_skew(t * X) - ref).abs().max() < 1e-14


def test_so2_and_o2_compose_like_matrices():
    for group in (SO2(), O2()):
        rep = DefiningRep(group)
        g, h = group.sample(2, seed=3)
        assert torch.allclose(rep.matrix(g * h), rep.matrix(g) @ rep.matrix(h), atol=1e-14)
        assert group.element(rep.matrix(g)) == g       # a matrix is accepted as a value


def test_se3_composition_acts_on_points():
    group = SE3()
    g, h = group.sample(2, seed=0)
    x = torch.randn(3, dtype=torch.float64)

    def act(k, p):
        return k.value[0] @ p + k.value[1]

    assert torch.allclose(act(g * h, x), act(g, act(h, x)), atol=1e-13)
    assert torch.allclose(act(g.inverse(), act(g, x)), x, atol=1e-13)


def test_elements_compare_with_tolerance():
    g = SO3().sample(1, seed=0)[0]
    assert g == SO3().element(g.value + 1e-12)
    assert g != SO3().element(SO3().exp(1e-3 * SO3().lie_algebra()[0]).value @ g.value)


@pytest.mark.parametrize("group, bad, expected", [
    (SO2(), "a", "angle"),
    (SO3(), torch.eye(2), "3x3 matrix"),
    (SO3(), 2 * torch.eye(3), "orthogonal"),
    (SO3(), -torch.eye(3), "determinant"),
    (O2(), (2, 0.0), "pair"),
    (SE3(), (torch.eye(3), torch.zeros(2)), "3-vector"),
    (CyclicGroup(4), 1.5, "integer"),
])
def test_bad_values_are_named(group, bad, expected):
    with pytest.raises(ValueError, match=expected):
        group.element(bad)


def test_element_of_another_group_is_named():
    g = SO3().sample(1)[0]
    with pytest.raises(GroupMismatchError, match=r"expected an element of O3.*element of SO3"):
        O3().check(g)
    with pytest.raises(GroupMismatchError, match="C4"):
        CyclicGroup(4).element(1) * DihedralGroup(4).element((0, 1))


@pytest.mark.parametrize("group", [SO2(), SO3(), SE3()], ids=repr)
def test_exp_rejects_matrices_outside_the_algebra(group):
    n = DefiningRep(group).dim
    with pytest.raises(ValueError, match="exp expects"):
        group.exp(torch.eye(n, dtype=torch.float64))
    with pytest.raises(ValueError, match="shape"):
        group.exp(torch.zeros(n + 1, n + 1))


def test_continuous_groups_are_not_listable():
    with pytest.raises(TypeError, match="continuous"):
        SO3().elements()
    assert SO3().order == math.inf
