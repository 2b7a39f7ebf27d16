"""gdl.weight_sharing: the intertwiner solver, its layers and the parameter counts of the book's chapter 4."""

from __future__ import annotations

import math

import pytest
import torch

from gdl.groups import (
    O2,
    O3,
    SO2,
    SO3,
    CyclicGroup,
    DefiningRep,
    DihedralGroup,
    GroupMismatchError,
    ImageAction,
    MatrixRep,
    O3Irrep,
    PermutationRep,
    RegularRep,
    Rep,
    RepresentationError,
    ShapeError,
    SO2Irrep,
    SO3Irrep,
    StandardIrrep,
    SymmetricGroup,
    TrivialRep,
)
from gdl.testing import assert_equivariant, equivariance_error
from gdl.weight_sharing import (
    EquivariantLinear,
    EquivariantMLP,
    EquivariantNonlinearity,
    PolarFilterRep,
    character_dimension,
    constraint_residual,
    dense_count,
    equivariant_basis,
    invariant_basis,
    local_filter_count,
    pixel_filter_basis,
    pixel_filter_count_formula,
    pixel_filter_rep,
    polar_filter_count_formula,
    restrict_support,
    translation_count,
)
from gdl.weight_sharing._solver import _solve


def _reps(group):
    """Regular, permutation (natural action), standard, trivial and a tensor product for one group."""
    reg, perm, std, triv = RegularRep(group), PermutationRep(group), DefiningRep(group), TrivialRep(group)
    out = {"reg": reg, "perm": perm, "std": std, "triv": triv, "std2": std.tensor(std), "perm2": perm.tensor(perm),
           "std+triv": std + triv}
    if isinstance(group, SymmetricGroup):
        irr = StandardIrrep(group)
        out.update({"irr": irr, "irr2": irr.tensor(irr), "irr+triv": irr + triv})
    return out


def test_symmetric_group_standard_irrep_counts():
    """S_n: perm = 1 + std, so Hom(perm, perm) has 2 maps and Hom(std, std) 1; for n >= 4, std (x) std -> std
    has 1 map while perm (x) perm -> perm has 5 (issue 16: the two rows used to be identical)."""
    for n in (4, 5):
        group = SymmetricGroup(n)
        irr, perm = StandardIrrep(group), PermutationRep(group)
        assert equivariant_basis(irr, irr).shape[0] == 1 and equivariant_basis(perm, perm).shape[0] == 2
        assert equivariant_basis(irr.tensor(irr), irr).shape[0] == 1
        assert equivariant_basis(perm.tensor(perm), perm).shape[0] == 5


def test_cache_is_keyed_on_matrices_not_names():
    """Issue 10: representations with one name but different matrices must not share a cached basis."""
    c4 = CyclicGroup(4)
    turning = MatrixRep(c4, lambda g: DefiningRep(c4).matrix(g), name="features")
    still = MatrixRep(c4, lambda g: torch.eye(2, dtype=torch.float64), name="features")
    assert invariant_basis(turning).shape[0] == 0
    assert invariant_basis(still).shape[0] == 2
    shifts = PermutationRep(c4, name="points")
    frozen = PermutationRep(c4, permutation=lambda g: (0, 1, 2, 3), name="points")
    assert equivariant_basis(shifts, shifts).shape[0] == 4 and equivariant_basis(frozen, frozen).shape[0] == 16
    so2 = SO2()
    one = MatrixRep(so2, lambda g: SO2Irrep(1).matrix(g), name="w")
    two = MatrixRep(so2, lambda g: SO2Irrep(2).matrix(g), name="w")
    assert equivariant_basis(one, one).shape[0] == 2 and equivariant_basis(one, two).shape[0] == 0


_PAIRS = [
    (g, a, b)
    for g in (CyclicGroup(3), CyclicGroup(5), CyclicGroup(6), DihedralGroup(3), DihedralGroup(4), DihedralGroup(5),
              SymmetricGroup(3), SymmetricGroup(4))
    for a, b in (("reg", "reg"), ("std", "std"), ("std2", "std"), ("perm2", "perm"), ("std+triv", "reg"),
                 ("triv", "perm2"))
] + [(SymmetricGroup(n), a, b) for n in (3, 4, 5) for a, b in (("irr", "irr"), ("irr2", "irr"), ("perm", "irr"),
                                                                  ("irr+triv", "perm"))]


def _id(pair):
    g, a, b = pair
    return f"{g}-{a}->{b}"


@pytest.mark.parametrize("pair", _PAIRS, ids=[_id(p) for p in _PAIRS])
def test_dimension_equals_character_formula(pair):
    group, a, b = pair
    reps = _reps(group)
    basis = equivariant_basis(reps[a], reps[b])
    assert basis.dtype == torch.float64 and basis.shape[1:] == (reps[b].dim, reps[a].dim)
    assert basis.shape[0] == character_dimension(reps[a], reps[b])
    assert constraint_residual(basis, reps[a], reps[b]) < 1e-12
    gram = torch.einsum("koi,loi->kl", basis, basis)
    assert torch.allclose(gram, torch.eye(basis.shape[0], dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("pair", [(DihedralGroup(4), "perm2", "perm"), (SymmetricGroup(4), "std2", "std"),
                                  (CyclicGroup(6), "std+triv", "reg"), (DihedralGroup(3), "reg", "reg")],
                         ids=_id)
def test_methods_span_the_same_space(pair):
    group, a, b = pair
    reps = _reps(group)
    projectors = []
    for method in ("block", "dense") + (("orbits",) if a != "std+triv" and "std" not in a else ()):
        basis = equivariant_basis(reps[a], reps[b], method).flatten(1)
        projectors.append(basis.T @ basis)                              # projector onto the span
    for p in projectors[1:]:
        assert torch.allclose(p, projectors[0], atol=1e-10)


def test_basis_for_all_elements_not_only_generators():
    """Solved with generators only, the maps commute with every element."""
    group = DihedralGroup(5)
    rep_in, rep_out = DefiningRep(group).tensor(DefiningRep(group)), RegularRep(group)
    basis = equivariant_basis(rep_in, rep_out)
    for g in group.elements():
        assert (rep_out.matrix(g) @ basis - basis @ rep_in.matrix(g)).abs().max() < 1e-12


def _cont(name):
    so3, o3, so2, o2 = SO3(), O3(), SO2(), O2()
    v3, w3, v2, u2 = DefiningRep(so3), DefiningRep(o3), DefiningRep(so2), DefiningRep(o2)
    return {
        "SO3 vec->vec": (v3, v3, 1),
        "SO3 vec(x)vec->vec (cross product)": (v3.tensor(v3), v3, 1),
        "SO3 vec(x)vec->scalar (dot product)": (v3.tensor(v3), TrivialRep(so3), 1),
        "SO3 vec(x)vec->vec(x)vec": (v3.tensor(v3), v3.tensor(v3), 3),
        "O3 vec->vec": (w3, w3, 1),
        "O3 vec(x)vec->vec (cross is a pseudo-vector)": (w3.tensor(w3), w3, 0),
        "O3 1o(x)1o->1e": (O3Irrep(1, -1).tensor(O3Irrep(1, -1)), O3Irrep(1, 1), 1),
        "SO3 l2(x)l2->l1+l3+l4": (SO3Irrep(2).tensor(SO3Irrep(2)), SO3Irrep(1) + SO3Irrep(3) + SO3Irrep(4), 3),
        "SO3 l1(x)l2->l2": (SO3Irrep(1).tensor(SO3Irrep(2)), SO3Irrep(2), 1),
        "SO3 l1->l2": (SO3Irrep(1), SO3Irrep(2), 0),
        "SO2 vec->vec (a + bJ)": (v2, v2, 2),
        "O2 vec->vec": (u2, u2, 1),
        "SO2 vec(x)vec->scalar": (v2.tensor(v2), TrivialRep(so2), 2),
    }[name]


_CONT = ["SO3 vec->vec", "SO3 vec(x)vec->vec (cross product)", "SO3 vec(x)vec->scalar (dot product)",
         "SO3 vec(x)vec->vec(x)vec", "O3 vec->vec", "O3 vec(x)vec->vec (cross is a pseudo-vector)",
         "O3 1o(x)1o->1e", "SO3 l2(x)l2->l1+l3+l4", "SO3 l1(x)l2->l2", "SO3 l1->l2", "SO2 vec->vec (a + bJ)",
         "O2 vec->vec", "SO2 vec(x)vec->scalar"]


@pytest.mark.parametrize("name", _CONT)
def test_continuous_groups_known_dimensions(name):
    rep_in, rep_out, expected = _cont(name)
    basis = equivariant_basis(rep_in, rep_out)
    assert basis.shape[0] == expected
    for g in rep_in.group.sample(4, seed=1):                            # the whole group, not only generators
        assert (rep_out.matrix(g) @ basis - basis @ rep_in.matrix(g)).abs().sum() < 1e-8


def test_cross_product_is_the_so3_solution():
    v = DefiningRep(SO3())
    basis = equivariant_basis(v.tensor(v), v)[0]                        # (3, 9)
    eps = torch.zeros(3, 3, 3, dtype=torch.float64)
    for i, j, k in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
        eps[i, j, k], eps[i, k, j] = 1.0, -1.0
    levi = eps.reshape(3, 9) / math.sqrt(6)
    assert min(float((basis - levi).abs().max()), float((basis + levi).abs().max())) < 1e-12


def test_character_dimension_refuses_continuous_groups():
    with pytest.raises(TypeError, match="finite group"):
        character_dimension(DefiningRep(SO3()), DefiningRep(SO3()))


# --- bad input ---------------------------------------------------------------------------------------------
def test_group_mismatch_is_refused():
    with pytest.raises(GroupMismatchError, match="C4.*D4"):
        equivariant_basis(RegularRep(CyclicGroup(4)), RegularRep(DihedralGroup(4)))
    with pytest.raises(GroupMismatchError):
        EquivariantLinear(DefiningRep(SO3()), DefiningRep(O3()))


class _NotAHomomorphism(Rep):
    """Rotation by k radians for the element k of C3: rho(g)^3 != I."""

    def __init__(self):
        self.group, self.dim = CyclicGroup(3), 2

    def _key(self):
        return ()

    def _matrix(self, value):
        c, s = math.cos(value), math.sin(value)
        return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)


def test_matrices_that_are_not_a_representation_are_refused():
    with pytest.raises(RepresentationError, match="homomorphism error"):
        equivariant_basis(_NotAHomomorphism(), DefiningRep(CyclicGroup(3)))
    with pytest.raises(RepresentationError, match="not a representation"):   # MatrixRep refuses too
        MatrixRep(CyclicGroup(3), lambda g: torch.eye(2) * (g.value + 1), name="scaled")


def test_method_that_does_not_apply_is_refused():
    with pytest.raises(RepresentationError, match="permutation"):
        equivariant_basis(DefiningRep(CyclicGroup(4)), DefiningRep(CyclicGroup(4)), method="orbits")
    with pytest.raises(ValueError, match="method"):
        equivariant_basis(DefiningRep(CyclicGroup(4)), DefiningRep(CyclicGroup(4)), method="magic")


def _skewed_rep():
    """A non-orthogonal representation of C2: s = [[1, 1], [0, -1]] squares to the identity."""
    s = torch.tensor([[1.0, 1.0], [0.0, -1.0]], dtype=torch.float64)
    return MatrixRep(CyclicGroup(2), lambda g: s if g.value else torch.eye(2, dtype=torch.float64), name="skewed")


def test_non_orthogonal_representation_uses_dense_solver_and_nonlinearity_refuses_it():
    rep = _skewed_rep()
    basis = equivariant_basis(rep, rep)
    assert basis.shape[0] == character_dimension(rep, rep) == 2
    assert constraint_residual(basis, rep, rep) < 1e-12
    with pytest.raises(RepresentationError, match="neither"):
        EquivariantNonlinearity(rep)


def test_layer_checks_input_shape():
    layer = EquivariantLinear(RegularRep(CyclicGroup(4)), DefiningRep(CyclicGroup(4)))
    with pytest.raises(ShapeError, match=r"\(\.\.\., 4\).*\(3, 5\)"):
        layer(torch.randn(3, 5))


def test_cache_returns_copies():
    rep = RegularRep(CyclicGroup(7))
    a = equivariant_basis(rep, rep)
    hits = _solve.cache_info().hits
    a.zero_()
    b = equivariant_basis(rep, rep)
    assert _solve.cache_info().hits == hits + 1 and b.abs().sum() > 0


# --- layers ------------------------------------------------------------------------------------------------
_LAYER_CASES = {
    "D6 perm->regular": lambda: (PermutationRep(DihedralGroup(6)), 2 * RegularRep(DihedralGroup(6))),
    "S4 perm(x)perm->perm": lambda: (PermutationRep(SymmetricGroup(4)).tensor(PermutationRep(SymmetricGroup(4))),
                                     PermutationRep(SymmetricGroup(4))),
    "C8 std+triv->regular": lambda: (DefiningRep(CyclicGroup(8)) + TrivialRep(CyclicGroup(8)),
                                     RegularRep(CyclicGroup(8))),
    "SO3 vec(x)vec->vec+scalar": lambda: (DefiningRep(SO3()).tensor(DefiningRep(SO3())),
                                          DefiningRep(SO3()) + TrivialRep(SO3())),
    "O3 1o+0e->1o+2e": lambda: (O3Irrep(1, -1) + O3Irrep(0, 1), O3Irrep(1, -1) + O3Irrep(2, 1)),
}


@pytest.mark.parametrize("case", list(_LAYER_CASES))
def test_equivariant_linear_is_equivariant(case, dtype, float_tolerance):
    rep_in, rep_out = _LAYER_CASES[case]()
    layer = EquivariantLinear(rep_in, rep_out)
    with torch.no_grad():
        layer.bias.normal_()
    report = assert_equivariant(layer, dtype=dtype)
    assert report.worst <= float_tolerance


_MLP_CASES = {
    "D6 perm -> 2 regular -> trivial": lambda: (PermutationRep(DihedralGroup(6)), 2 * RegularRep(DihedralGroup(6)),
                                                TrivialRep(DihedralGroup(6))),
    "C5 std -> regular+std -> std": lambda: (DefiningRep(CyclicGroup(5)),
                                             RegularRep(CyclicGroup(5)) + DefiningRep(CyclicGroup(5)),
                                             DefiningRep(CyclicGroup(5))),
    "SO3 vec -> vec(x)vec+vec+scalar -> vec": lambda: (
        DefiningRep(SO3()), DefiningRep(SO3()).tensor(DefiningRep(SO3())) + DefiningRep(SO3()) + TrivialRep(SO3()),
        DefiningRep(SO3())),
}


@pytest.mark.parametrize("case", list(_MLP_CASES))
def test_equivariant_mlp_is_equivariant(case, dtype, float_tolerance):
    rep_in, rep_hidden, rep_out = _MLP_CASES[case]()
    torch.manual_seed(0)
    model = EquivariantMLP(rep_in, rep_hidden, rep_out)
    report = assert_equivariant(model, dtype=dtype)
    assert report.worst <= float_tolerance


def test_broken_layer_fails_the_checker():
    """A deliberately broken layer (a dense perturbation of the weights) must fail the check."""
    rep = RegularRep(CyclicGroup(6))
    layer = EquivariantLinear(rep, rep)

    class Broken(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner, self.rep_in, self.rep_out, self.group = layer, rep, rep, rep.group
            self.extra = torch.nn.Parameter(1e-3 * torch.randn(6, 6, generator=torch.Generator().manual_seed(0)))

        def forward(self, x):
            return self.inner(x) + x @ self.extra.T

    assert equivariance_error(layer).passed
    with pytest.raises(AssertionError, match="FAIL"):
        assert_equivariant(Broken())


def test_layer_parameter_counts_repr_and_reset():
    group = SymmetricGroup(5)
    layer = EquivariantLinear(PermutationRep(group), PermutationRep(group))
    assert (layer.num_weights, layer.num_bias) == (2, 1)                # Deep Sets: a x_i + b sum_j x_j (+ c)
    assert sum(p.numel() for p in layer.parameters()) == 3
    assert "2 weights + 1 bias" in repr(layer) and "a dense layer has 25" in repr(layer)
    with torch.no_grad():
        layer.weight.fill_(7.0)
        layer.bias.fill_(7.0)
    layer.reset_parameters()
    assert float(layer.bias.detach().abs().max()) == 0.0 and float(layer.weight.detach().abs().max()) < 7.0
    w = layer.weight_matrix()                                           # a I + b 11^T
    assert torch.allclose(w - torch.diag(torch.diagonal(w)), (w[0, 1]) * (1 - torch.eye(5)))
    mlp = EquivariantMLP(PermutationRep(group), 2 * PermutationRep(group), TrivialRep(group))
    assert repr(mlp).startswith("EquivariantMLP(Perm(S5, dim=5) -> Trivial(S5), 2 hidden layers")


def test_invariant_basis_is_the_bias_space():
    group = DihedralGroup(4)
    assert invariant_basis(RegularRep(group)).shape == (1, 8)
    assert invariant_basis(DefiningRep(group)).shape == (0, 2)


def test_nonlinearity_is_equivariant_and_reports_kinds(dtype, float_tolerance):
    rep = RegularRep(DihedralGroup(4)) + DefiningRep(DihedralGroup(4)) + TrivialRep(DihedralGroup(4))
    nl = EquivariantNonlinearity(rep)
    assert "9 pointwise, 1 norm-gated" in repr(nl)
    assert assert_equivariant(nl, dtype=dtype).worst <= float_tolerance


# --- parameter counts ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [5, 8, 12])
def test_translation_counts(n):
    assert dense_count(n, n) == n * n
    assert translation_count(n) == n
    assert local_filter_count(n, 3) == 3 and local_filter_count(n, 5) == 5


def test_restrict_support_keeps_only_local_equivariant_maps():
    rep = PermutationRep(CyclicGroup(9))
    mask = torch.zeros(9, 9, dtype=torch.bool)
    mask.fill_diagonal_(True)
    local = restrict_support(equivariant_basis(rep, rep), mask)
    assert local.shape[0] == 1 and torch.allclose(local[0].abs(), torch.eye(9, dtype=torch.float64) / 3)


@pytest.mark.parametrize("k", [3, 4, 5, 6, 7])
@pytest.mark.parametrize("group", [CyclicGroup(1), CyclicGroup(4), DihedralGroup(4)], ids=str)
def test_pixel_filter_counts_match_formulas(group, k):
    basis = pixel_filter_basis(group, k)
    assert basis.shape[0] == pixel_filter_count_formula(group, k)
    action = ImageAction(group)
    for g in group.elements():                                          # every basis filter is invariant, exactly
        assert torch.equal(action(g, basis.unsqueeze(1)), basis.unsqueeze(1))


def test_pixel_filters_refuse_rotations_off_the_grid():
    with pytest.raises(GroupMismatchError, match="C8"):
        pixel_filter_rep(CyclicGroup(8), 5)


@pytest.mark.parametrize("k", [3, 5, 9, 11])
@pytest.mark.parametrize("group", [CyclicGroup(4), CyclicGroup(8), DihedralGroup(4), DihedralGroup(8), SO2(), O2()],
                         ids=str)
def test_polar_filter_counts_match_formulas(group, k):
    rep = PolarFilterRep(group, k)
    assert rep.basis().shape[0] == polar_filter_count_formula(group, k)


def test_so2_leaves_only_the_radial_profile():
    rep = PolarFilterRep(SO2(), 9)
    basis = rep.basis()                                                 # (5, 9, 9): one filter per radius
    assert basis.shape[0] == rep.radius + 1
    pts = rep.grid()
    radius = pts.norm(dim=-1).reshape(9, 9)
    for f in basis:                                                     # f depends on the radius only
        for r in radius.unique():
            vals = f[(radius - r).abs() < 1e-9]
            assert float(vals.max() - vals.min()) < 1e-12


def test_polar_rep_is_exact_for_any_angle_and_matches_the_grid_for_quarter_turns():
    rep = PolarFilterRep(SO2(), 7)
    c = torch.randn(rep.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    g = SO2().element(0.7)
    rot = SO2().standard_matrix(g.value)
    pts = rep.grid()
    assert torch.allclose(rep.sample(pts) @ (rep.matrix(g) @ c), rep.sample(pts @ rot) @ c, atol=1e-12)
    d4 = DihedralGroup(4)
    rep4, action = PolarFilterRep(d4, 7), ImageAction(d4)
    for h in d4.elements():
        assert torch.allclose(action(h, rep4.images(c)[None]), rep4.images(rep4.matrix(h) @ c)[None], atol=1e-12)


# --- the book's chapter 4: group convolutions and steerable kernels are solutions of the constraint ---------------
def test_so2_kernels_between_field_types_keep_frequencies_n_minus_m_and_n_plus_m():
    plane = PolarFilterRep(SO2(), 7)
    for m, n in [(0, 0), (0, 1), (1, 1), (1, 2), (2, 3)]:
        basis = equivariant_basis(SO2Irrep(m), plane.tensor(SO2Irrep(n)))
        basis = basis.reshape(len(basis), plane.dim, SO2Irrep(n).dim, SO2Irrep(m).dim)
        used = {plane.terms[i][1] for i in range(plane.dim) if basis[:, i].abs().max() > 1e-9}
        per = 1 if m == n == 0 else 2
        expected = sum(per for j in range(plane.radius + 1) for s in {abs(n - m), n + m}
                       if s <= plane.max_frequency(j))
        assert used == {abs(n - m), n + m} and len(basis) == expected


def test_p4_group_convolution_is_the_local_solution_for_regular_fields():
    from gdl.groups import P4
    from gdl.nn.gcnn import GroupConv2d

    side, c4 = 3, CyclicGroup(4)
    p4 = P4(side)
    act = ImageAction(p4, fiber=RegularRep(c4))

    def permutation(g):
        landed = act(g, torch.arange(4 * side * side, dtype=torch.float64).reshape(1, 4, side, side)).flatten().long()
        p = [0] * len(landed)
        for j, i in enumerate(landed.tolist()):
            p[i] = j
        return tuple(p)

    rep = PermutationRep(p4, permutation=permutation, name="p4 fields")
    basis = equivariant_basis(rep, rep)              # on a 3x3 periodic grid every map is local (3x3 filter)
    layer = GroupConv2d(1, 1, 3, group="p4", bias=False, padding_mode="circular").double()
    with torch.no_grad():
        matrix = layer(torch.eye(rep.dim, dtype=torch.float64).reshape(-1, 4, side, side)).flatten(1).T
    coeffs = torch.einsum("dij,ij->d", basis, matrix)
    assert basis.shape[0] == layer.weight.numel() == 4 * side * side
    assert (matrix - torch.einsum("d,dij->ij", coeffs, basis)).abs().max() < 1e-12
