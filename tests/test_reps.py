"""Representations: homomorphism property, Lie algebras, characters, and broken representations that must fail."""

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
    DirectSumRep,
    GroupMismatchError,
    MatrixRep,
    O2Irrep,
    O3Irrep,
    PermutationRep,
    RegularRep,
    Rep,
    RepAction,
    RepresentationError,
    SO2Irrep,
    SO3Irrep,
    StandardIrrep,
    StandardRep,
    SymmetricGroup,
    TensorProductRep,
    TranslationGroup2D,
    TrivialRep,
)

C4, D4, S4 = CyclicGroup(4), DihedralGroup(4), SymmetricGroup(4)
FINITE_REPS = [
    TrivialRep(C4), DefiningRep(C4), RegularRep(C4), PermutationRep(C4),
    DefiningRep(D4), RegularRep(D4), PermutationRep(D4), TrivialRep(D4, dim=3),
    DefiningRep(S4), PermutationRep(S4), RegularRep(CyclicGroup(3)), RegularRep(TranslationGroup2D((2, 3))),
    DefiningRep(C4) + RegularRep(C4), 2 * DefiningRep(D4), DefiningRep(D4).tensor(DefiningRep(D4)),
]
LIE_REPS = [
    TrivialRep(SO2()), DefiningRep(SO2()), SO2Irrep(0), SO2Irrep(1), SO2Irrep(3),
    DefiningRep(O2()), O2Irrep(0), O2Irrep(0, j=1), O2Irrep(2),
    DefiningRep(SO3()), SO3Irrep(0), SO3Irrep(1), SO3Irrep(2), SO3Irrep(4),
    DefiningRep(O3()), O3Irrep(0, -1), O3Irrep(1, -1), O3Irrep(1, 1), O3Irrep(2, 1), O3Irrep(3, -1),
    DefiningRep(SE3()), SO3Irrep(2, group=SE3()), TrivialRep(SE3()),
    DefiningRep(E3()), O3Irrep(1, -1, group=E3()), O3Irrep(2, -1, group=E3()),
    SO2Irrep(1) + SO2Irrep(2), SO2Irrep(1).tensor(SO2Irrep(2)),
    SO3Irrep(1) + SO3Irrep(2) + DefiningRep(SO3()), SO3Irrep(1).tensor(SO3Irrep(2)),
    O3Irrep(1, -1).tensor(O3Irrep(1, -1)) + O3Irrep(0, 1), DefiningRep(SE3()).tensor(SO3Irrep(1, group=SE3())),
]
ALL_REPS = FINITE_REPS + LIE_REPS


@pytest.mark.parametrize("rep", ALL_REPS, ids=repr)
def test_homomorphism(rep):
    """rho(gh) = rho(g) rho(h) to round-off, on all elements of small groups or 8 Haar samples."""
    assert rep.homomorphism_error(n=8) < 1e-13


@pytest.mark.parametrize("rep", ALL_REPS, ids=repr)
def test_rep_acts_on_features_in_both_dtypes(rep, dtype):
    """The action x -> rho(g) x satisfies the action axioms in float32 and float64 (round-off level)."""
    x = rep.randn(3, dtype=dtype, generator=torch.Generator().manual_seed(0))
    err = RepAction(rep).axioms_error(x, n=4)
    assert max(err.values()) < 50 * torch.finfo(dtype).eps * max(1.0, rep.dim ** 0.5), err


@pytest.mark.parametrize("rep", ALL_REPS, ids=repr)
def test_character_is_trace(rep):
    for g in rep.group.sample(5, seed=2):
        assert rep.character(g) == pytest.approx(float(torch.trace(rep.matrix(g))), abs=1e-12)


@pytest.mark.parametrize("rep", LIE_REPS, ids=repr)
def test_lie_algebra_integrates_to_the_group(rep):
    """rho(exp(t X_i)) = matrix_exp(t drho(X_i)) for each Lie algebra generator X_i."""
    group = rep.group
    drho = rep.lie_algebra()
    assert len(drho) == len(group.lie_algebra())
    for X, dX in zip(group.lie_algebra(), drho):
        assert dX.shape == (rep.dim, rep.dim) and dX.dtype == torch.float64
        for t in (0.3, -1.1, 2.9):
            err = (rep.matrix(group.exp(t * X)) - torch.linalg.matrix_exp(t * dX)).abs().max()
            assert err < 1e-8, (X, err)


@pytest.mark.parametrize("rep", [SO2Irrep(3), O2Irrep(2), SO3Irrep(2), O3Irrep(3, -1), DefiningRep(SO3()),
                                 SO3Irrep(1, group=SE3()), DefiningRep(E3())], ids=repr)
def test_exact_lie_algebra_matches_numerical_derivative(rep):
    """The exact overrides agree with the base class's finite-difference derivative."""
    numeric = Rep.lie_algebra(rep)  # the base class's central difference
    assert len(numeric) == len(rep.lie_algebra())
    for a, b in zip(rep.lie_algebra(), numeric):
        assert (a - b).abs().max() < 1e-7


def test_wigner_d_matches_e3nn():
    e3nn = pytest.importorskip("e3nn")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        for l, p in ((1, -1), (2, 1), (3, -1)):
            for g in O3().sample(5, seed=1):
                ref = e3nn.o3.Irrep(l, p).D_from_matrix(g.value)
                assert (O3Irrep(l, p).matrix(g) - ref).abs().max() < 1e-12
    finally:
        torch.set_default_dtype(old)


def test_so3_irrep_of_degree_one_is_the_rotation():
    for g in SO3().sample(5):
        assert torch.allclose(SO3Irrep(1).matrix(g), g.value, atol=1e-13)


def test_irreducible_characters_are_orthonormal():
    """Schur orthogonality: the Haar average of chi_a chi_b is 1 if a = b else 0 (Monte-Carlo, 3000 samples)."""
    els = SO3().sample(3000, seed=0)
    chi = torch.tensor([[SO3Irrep(l).character(g) for g in els] for l in range(3)])
    gram = chi @ chi.T / len(els)
    assert (gram - torch.eye(3, dtype=gram.dtype)).abs().max() < 0.12
    els = D4.elements()  # exact for a finite group
    reps = [TrivialRep(D4), DefiningRep(D4)]
    chi = torch.tensor([[r.character(g) for g in els] for r in reps])
    assert torch.allclose(chi @ chi.T / len(els), torch.eye(2, dtype=chi.dtype))


def test_so2_characters():
    g = SO2().element(0.7)
    assert SO2Irrep(3).character(g) == pytest.approx(2 * math.cos(2.1))
    assert SO2Irrep(0).character(g) == 1.0


def test_regular_rep_is_a_permutation_matrix():
    for g in D4.elements():
        m = RegularRep(D4).matrix(g)
        assert torch.equal(m.sum(0), torch.ones(8, dtype=m.dtype)) and torch.equal(m @ m.T, torch.eye(8).double())


def test_reps_are_hashable_and_compare_by_value():
    assert SO3Irrep(2) == SO3Irrep(2) and hash(O3Irrep(1, -1)) == hash(O3Irrep(1, -1))
    assert SO3Irrep(2) != SO3Irrep(2, group=SE3())
    assert len({DefiningRep(C4), DefiningRep(C4), RegularRep(C4)}) == 2
    assert repr(3 * O3Irrep(1, -1) + O3Irrep(0, 1)) == "3x O3Irrep(1o) + O3Irrep(0e)"


def test_reps_compare_by_their_matrices_not_their_names():
    """Issue 10: two representations with one name and different matrices are different (and hash apart)."""
    rot = MatrixRep(C4, lambda g: DefiningRep(C4).matrix(g), name="v")
    same = MatrixRep(C4, lambda g: DefiningRep(C4).matrix(g).clone(), name="another name")
    flat = MatrixRep(C4, lambda g: torch.eye(2, dtype=torch.float64), name="v")
    assert rot == same and hash(rot) == hash(same)
    assert rot != flat and len({rot, same, flat}) == 2
    so2_1 = MatrixRep(SO2(), lambda g: SO2Irrep(1).matrix(g), name="w")
    so2_2 = MatrixRep(SO2(), lambda g: SO2Irrep(2).matrix(g), name="w")
    assert so2_1 != so2_2 and so2_1 == MatrixRep(SO2(), lambda g: SO2Irrep(1).matrix(g), name="u")
    shift = PermutationRep(C4, name="points")
    fixed = PermutationRep(C4, permutation=lambda g: (0, 1, 2, 3), name="points")
    assert shift != fixed and shift == PermutationRep(C4)


def test_standard_irrep_of_the_symmetric_group():
    for n in (2, 3, 4, 5):
        group = SymmetricGroup(n)
        std, perm = StandardIrrep(group), PermutationRep(group)
        assert std.dim == n - 1 and std.homomorphism_error() < 1e-13
        chars = torch.tensor([std.character(g) for g in group.elements()], dtype=torch.float64)
        fixed = torch.tensor([sum(p == i for i, p in enumerate(g.value)) for g in group.elements()],
                             dtype=torch.float64)
        assert torch.allclose(chars, fixed - 1, atol=1e-12)                         # chi = fixed points - 1
        assert abs(float((chars ** 2).mean()) - 1) < 1e-12                         # <chi, chi> = 1: irreducible
        perm_chars = torch.tensor([perm.character(g) for g in group.elements()], dtype=torch.float64)
        assert torch.allclose(perm_chars, 1 + chars, atol=1e-12)                   # permutation = 1 + standard
        for g in group.generators():
            m = std.matrix(g)
            assert torch.allclose(m @ m.T, torch.eye(n - 1, dtype=torch.float64), atol=1e-12)


def test_standard_rep_is_deprecated_and_refused_for_symmetric_groups():
    with pytest.warns(DeprecationWarning, match="DefiningRep"):
        assert StandardRep(C4) == DefiningRep(C4)
    with pytest.raises(RepresentationError, match=r"StandardIrrep\(S4\).*3-dimensional"):
        StandardRep(S4)
    with pytest.raises(RepresentationError, match="n >= 2"):
        StandardIrrep(SymmetricGroup(1))
    with pytest.raises(RepresentationError, match="symmetric group"):
        StandardIrrep(C4)


# --- broken representations must fail -----------------------------------------------------------
def test_matrix_rep_rejects_a_non_homomorphism():
    with pytest.raises(RepresentationError, match="not a representation of C4"):
        skew = torch.diag(torch.tensor([1.0, 1.01], dtype=torch.float64))
        MatrixRep(C4, lambda g: DefiningRep(C4).matrix(g).T @ skew, name="skewed")


def test_homomorphism_error_sees_a_broken_rep():
    class Broken(SO3Irrep):  # D(R^T) instead of D(R): an anti-homomorphism
        def _matrix(self, value):
            return super()._matrix(value.T.clone())

    assert Broken(2).homomorphism_error() > 0.1


def test_broken_lie_algebra_fails_the_integration_check():
    rep = SO3Irrep(2)
    X, dX = SO3().lie_algebra()[0], rep.lie_algebra()[1]  # the wrong generator
    assert (rep.matrix(SO3().exp(0.5 * X)) - torch.linalg.matrix_exp(0.5 * dX)).abs().max() > 0.1


@pytest.mark.parametrize("make, error, message", [
    (lambda: DefiningRep(C4) + DefiningRep(D4), GroupMismatchError, r"C4.*D4"),
    (lambda: TensorProductRep(SO3Irrep(1), O3Irrep(1, 1)), GroupMismatchError, r"SO3.*O3"),
    (lambda: DirectSumRep([]), RepresentationError, "at least one"),
    (lambda: 0 * DefiningRep(C4), RepresentationError, "positive integer"),
    (lambda: SO3Irrep(-1), RepresentationError, "degree l"),
    (lambda: O3Irrep(1, 0), RepresentationError, "parity"),
    (lambda: SO3Irrep(1, group=O3()), GroupMismatchError, "SO3Irrep is a representation of SO3 or SE3"),
    (lambda: O2Irrep(1, j=1), RepresentationError, "only for k = 0"),
    (lambda: RegularRep(SO3()), RepresentationError, "finite group"),
    (lambda: PermutationRep(TranslationGroup2D((2, 2)), permutation=lambda g: None), RepresentationError,
     "no natural permutation"),
])
def test_bad_representations_are_named(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_matrix_of_an_element_of_another_group():
    with pytest.raises(GroupMismatchError, match=r"expected an element of SO3.*O3"):
        SO3Irrep(1).matrix(O3().sample(1)[0])
