"""Steerable CNNs built by gdl: basis dimensions against the character formula, float64 equivariance, a broken
basis caught by the checker, export, escnn cross-checks (recorded, and live where escnn imports), bad input."""

import json
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import gdl
from gdl.groups import CyclicGroup, DihedralGroup, GroupMismatchError, ShapeError, TensorProductRep
from gdl.nn._steerable_fields import (
    REGULAR,
    Irrep,
    RingHarmonics,
    _field_rep,
    band_limits,
    irreps_of,
    pair_basis,
    planar_group,
    regular_decomposition,
)
from gdl.nn.steerable import (
    FieldPool,
    FieldType,
    GatedReLU,
    NormReLU,
    SteerableCNN,
    SteerableConv2d,
    escnn_available,
)
from gdl.testing import assert_equivariant, assert_invariant, equivariance_error
from gdl.weight_sharing import character_dimension

REFERENCE = pathlib.Path(__file__).parent / "data" / "escnn_reference.npz"
# gdl samples its basis in float64: quarter turns and mirrors are exact up to round-off
TOL = {torch.float32: 1e-5, torch.float64: 1e-12}
MODELS = [("C8", {}), ("D4", {}), ("SO2", {"nonlinearity": "norm"}), ("SO2", {"nonlinearity": "gated"}),
          ("O2", {"nonlinearity": "gated"})]


@pytest.fixture(scope="module", params=MODELS, ids=[f"{g}-{kw.get('nonlinearity', 'regular')}" for g, kw in MODELS])
def model(request):
    group, kw = request.param
    torch.manual_seed(0)
    return SteerableCNN(group, 1, (3, 3), kernel_size=5, pool_after=(0,), num_classes=4, max_frequency=2, **kw)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_model_invariant_to_quarter_turns_and_mirrors(model, dtype):
    x = torch.randn(2, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    report = assert_invariant(model, x, dtype=dtype, atol=TOL[dtype])
    mirrors = model.group_name in ("D4", "O2")
    assert model.group == (DihedralGroup(4) if mirrors else CyclicGroup(4))
    assert len(report.elements) == model.group.order


def test_every_layer_is_equivariant(model):
    for layer in model.features:
        if isinstance(layer, SteerableConv2d):
            x = torch.randn(2, layer.in_type.size, 9, 9, generator=torch.Generator().manual_seed(2))
            assert_equivariant(layer, x, dtype=torch.float64, atol=TOL[torch.float64])


def _mixed_type(group: str) -> FieldType:
    G = planar_group(group)
    if G.is_finite:
        return FieldType(group, [REGULAR] + irreps_of(G) + [REGULAR])
    mirror = group == "O2"
    return FieldType(group, [0, 1, 2, 3] + ([(1, 0)] if mirror else []) + [1])


@pytest.mark.parametrize("group", ["C4", "C8", "C12", "C16", "D4", "D8", "D16", "SO2", "O2"])
def test_quarter_turns_exact_in_float64_for_mixed_field_types(group):
    """Every group that contains the quarter turn: a layer between mixed field types (regular and every irrep)
    is equivariant to C4 (D4 with mirrors) to 1e-12 in float64."""
    torch.manual_seed(0)
    t = _mixed_type(group)
    conv = SteerableConv2d(t, t, kernel_size=5).double()
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, t.size, 9, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    report = assert_equivariant(conv, x, dtype=torch.float64, atol=1e-12)
    assert report.worst <= 1e-12 and len(report.elements) == (8 if group[0] in "DO" else 4)


def test_a_wrong_basis_element_fails_the_checker():
    """Deliberately broken: one basis filter replaced by noise, so the layer's filter no longer solves the
    constraint; the checker must see it."""
    torch.manual_seed(0)
    t = FieldType("C8", [REGULAR, REGULAR])
    conv = SteerableConv2d(t, t, kernel_size=5).double()
    x = torch.randn(2, t.size, 9, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    assert equivariance_error(conv, x, dtype=torch.float64).worst < 1e-12
    with torch.no_grad():
        conv.basis[3] = torch.randn(conv.basis[3].shape, dtype=torch.float64)
    assert equivariance_error(conv, x, dtype=torch.float64).worst > 1e-3


# --- parameter counts: the character formula ---------------------------------------------------------------
def _fields(G):
    return irreps_of(G) + [REGULAR]


def _character_count(group, a, b, k):
    """Solutions of the constraint by the character formula of chapter 4: the multiplicity of the trivial irrep in
    :math:`\\rho_{in} \\otimes \\rho_{out} \\otimes P` (P: the ring harmonics). For SO(2)/O(2) the characters
    multiply to a trigonometric polynomial of degree below M, whose mean over the circle equals its mean over the M
    rotations of C_M (D_M), so the finite-group formula gives the exact continuous count."""
    G = planar_group(group)
    if not G.is_finite:
        M = 2 * (a.k + b.k + max(RingHarmonics(G, k).__dict__["_band"])) + 1
        G = DihedralGroup(M) if group == "O2" else CyclicGroup(M)
    rings = RingHarmonics(G, k)
    return character_dimension(_field_rep(G, b), TensorProductRep(_field_rep(G, a), rings))


@pytest.mark.parametrize("kind", ["C", "D"])
def test_basis_dimensions_equal_the_character_formula_finite(kind):
    """C_N and D_N, N = 1..16, every pair of fields (every irrep and the regular field), 5x5 filters."""
    for n in range(1, 17):
        group = f"{kind}{n}"
        G = planar_group(group)
        for a in _fields(G):
            for b in _fields(G):
                got = pair_basis(group, a, b, 5).shape[0]
                assert got == _character_count(group, a, b, 5), (group, str(a), str(b))


@pytest.mark.parametrize("group", ["SO2", "O2"])
@pytest.mark.parametrize("k", [5, 7])
def test_basis_dimensions_equal_the_character_formula_continuous(group, k):
    irreps = [Irrep(m) for m in range(5)] + ([Irrep(0, 1)] if group == "O2" else [])
    for a in irreps:
        for b in irreps:
            assert pair_basis(group, a, b, k).shape[0] == _character_count(group, a, b, k), (str(a), str(b))


def _frequencies_used(group, a, b, k):
    """The angular frequencies of the ring harmonics that the solved filters from irrep b to irrep a use."""
    from gdl.nn._steerable_fields import _irrep_rep, _kernel_rep, _rings, band_limits
    from gdl.weight_sharing import equivariant_basis

    rings = _rings(group, k, band_limits(k))
    rout = _irrep_rep(group, a)
    coeffs = equivariant_basis(_irrep_rep(group, b), _kernel_rep(group, a, k, band_limits(k)))
    coeffs = coeffs.reshape(-1, rout.dim, rings.dim, _irrep_rep(group, b).dim)
    used = coeffs.abs().amax(dim=(0, 1, 3)) > 1e-9
    return {rings.terms[f][1] for f in range(rings.dim) if used[f]}


def test_so2_keeps_the_frequencies_n_minus_m_and_n_plus_m_and_cn_adds_aliases():
    """Weiler & Cesa's solution: between SO(2) irreps of frequencies m -> n only the angular frequencies |n - m|
    and n + m appear (within the band limit, 3 for 7x7 filters); C_N also keeps those that differ by a multiple
    of N from them or their negatives."""
    top = max(band_limits(7))
    for m in range(4):
        for n in range(4):
            expected = {f for f in (abs(n - m), n + m) if f <= top}
            assert _frequencies_used("SO2", Irrep(n), Irrep(m), 7) == expected, (m, n)
    N = 3
    for m in range(2):
        for n in range(2):
            aliases = {f for f in range(top + 1) if any((f - s * base) % N == 0 for base in (n - m, n + m)
                                                        for s in (1, -1))}
            assert _frequencies_used(f"C{N}", Irrep(n), Irrep(m), 7) == aliases, (m, n)


def test_layer_weights_are_the_sum_of_the_pair_counts():
    tin = FieldType("C8", [REGULAR, 0, 1])
    tout = FieldType("C8", [2, REGULAR, REGULAR])
    conv = SteerableConv2d(tin, tout, kernel_size=5)
    expected = sum(pair_basis("C8", a, b, 5).shape[0] for a in tout.fields for b in tin.fields)
    assert conv.num_weights == conv.weight.numel() == expected
    assert f"basis weights={expected}" in repr(conv)


def test_regular_decomposition_is_an_orthogonal_change_of_basis():
    for group in ["C5", "C8", "D3", "D4", "D6"]:
        G = planar_group(group)
        Q, irreps = regular_decomposition(group)
        reg = FieldType(group, [REGULAR])
        block = FieldType(group, list(irreps))
        for g in G.elements():
            torch.testing.assert_close(reg.matrix(g.value) @ Q, Q @ block.matrix(g.value), atol=1e-12, rtol=0)


# --- export, init, cache, non-linearities, batch norm --------------------------------------------------------------
def test_export_is_plain_pytorch_and_matches(model):
    x = torch.randn(3, 1, 12, 12, generator=torch.Generator().manual_seed(3))
    exported = model.export()
    assert all(type(m).__module__.startswith(("torch.", "gdl.nn.steerable")) for m in exported.modules())
    assert not any(isinstance(m, SteerableConv2d) for m in exported.modules())
    assert any(type(m) is nn.Conv2d for m in exported.modules())
    model.eval()
    torch.testing.assert_close(exported(x), model(x), rtol=1e-5, atol=1e-6)
    model.train()
    m64 = model.double()
    torch.testing.assert_close(m64.export()(x.double()), m64(x.double()), rtol=0, atol=1e-12)
    model.float()


def test_init_has_he_scale_and_reset_draws_new_weights():
    net = SteerableCNN("C8", 1, (8, 8, 8), pool_after=(0, 1))
    conv = net.features[3]
    filt, bias = conv.expand()
    assert abs(float(filt.detach().std()) - math.sqrt(2 / (conv.in_type.size * 25))) < 1e-5
    assert float(bias.detach().abs().max()) == 0.0
    before = conv.weight.detach().clone()
    conv.reset_parameters()
    assert not torch.equal(before, conv.weight.detach())
    assert "basis weights" in repr(conv) and "group=C8" in repr(net)


def test_eval_caches_the_filter_until_the_weights_change():
    t = FieldType("D4", [REGULAR])
    conv = SteerableConv2d(t, t, kernel_size=3).eval()
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        y = conv(x)
        first = conv._cache[1][0]
        conv(x)
        assert conv._cache[1][0] is first                # reused
        conv.weight.mul_(2)                              # bumps the parameter's _version
        torch.testing.assert_close(conv(x), 2 * y)      # (the bias starts at zero)
        assert conv._cache[1][0] is not first
    conv.train()
    out = conv(x)
    out.sum().backward()                                 # training expands every call, with gradients
    assert conv.weight.grad is not None and conv._cache is None


def test_nonlinearities_are_equivariant_by_hand():
    # a rotation of a frequency-1 field is a 2x2 rotation matrix: norms (and hence the gates) do not change
    theta = 0.7
    R = torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    x = torch.randn(2, 3, 4, 4)                                 # fields: scalar, frequency-1 vector
    rot = lambda t: torch.cat([t[:, :1], torch.einsum("ij,bjhw->bihw", R, t[:, 1:3])], 1)  # noqa: E731
    norm = NormReLU([1, 2])
    torch.testing.assert_close(norm(rot(x)), rot(norm(x)))
    gated = GatedReLU(1, [2])                                  # input: gate, scalar, vector
    xg = torch.randn(2, 4, 4, 4)
    rotg = lambda t: torch.cat([t[:, :2], torch.einsum("ij,bjhw->bihw", R, t[:, 2:4])], 1)  # noqa: E731
    torch.testing.assert_close(gated(rotg(xg)), rot(gated(xg)))
    pool = FieldPool([1, 2], regular=False)
    torch.testing.assert_close(pool(rot(x)), pool(x))
    typed = FieldType("SO2", [0, 1])                          # the same, from a field type
    torch.testing.assert_close(NormReLU(typed)(x), norm(x))
    torch.testing.assert_close(FieldPool(typed)(x), pool(x))
    assert FieldPool(FieldType("C4", [REGULAR] * 2)).regular
    with pytest.raises(ValueError, match="one kind"):
        FieldPool(FieldType("C4", [REGULAR, 0]))


@pytest.mark.parametrize("group", ["C8", "D4"])
def test_batch_norm_is_the_regular_field_batch_norm_and_keeps_invariance(group):
    from gdl.nn import GroupBatchNorm2d

    torch.manual_seed(0)
    net = SteerableCNN(group, 1, (2, 2), kernel_size=3, pool_after=(0,), num_classes=3, batch_norm=True)
    norms = [m for m in net.modules() if isinstance(m, GroupBatchNorm2d)]
    assert len(norms) == 2 and all(m.order == 8 and m.num_fields == 2 for m in norms)
    x = torch.randn(4, 1, 12, 12, generator=torch.Generator().manual_seed(4))
    net.train()
    net(x)                                            # running statistics from one batch
    for mode in (net.train, net.eval):
        mode()
        assert_invariant(net, x, atol=TOL[torch.float64])


@pytest.mark.parametrize("nonlinearity", ["norm", "gated"])
def test_norm_batch_norm_of_irreducible_fields_keeps_invariance(nonlinearity):
    from gdl.nn.steerable import NormBatchNorm2d

    torch.manual_seed(0)
    net = SteerableCNN("O2", 1, (2, 2), kernel_size=5, pool_after=(0,), num_classes=3, batch_norm=True,
                       nonlinearity=nonlinearity)
    norms = [m for m in net.modules() if isinstance(m, NormBatchNorm2d)]
    assert len(norms) == 2
    x = torch.randn(4, 1, 12, 12, generator=torch.Generator().manual_seed(5))
    net.train()
    h = net.features[0](x)
    out = norms[0](h)                                  # normalised: unit mean square per channel of every field
    dims = torch.tensor(norms[0].field_type.field_dims())
    ms = torch.zeros(len(dims)).index_add(0, norms[0]._field, out.detach().square().mean(dim=(0, 2, 3))) / dims
    torch.testing.assert_close(ms, torch.ones_like(ms), atol=1e-3, rtol=0)
    net(x)
    for mode in (net.train, net.eval):
        mode()
        assert_invariant(net, x, atol=TOL[torch.float64])
    with pytest.raises(ValueError, match="expects irreducible fields"):
        NormBatchNorm2d(FieldType("C4", [REGULAR]))


def test_other_angles_are_only_approximate_and_improve_with_a_lower_band_limit():
    """45-degree turns move grid points off the grid: a C8 network is then only approximately invariant, and
    less so the higher the angular frequencies its filters may use."""
    from gdl.data import rotate_images

    x = torch.zeros(4, 1, 20, 20, dtype=torch.float64)
    x[:, :, 5:15, 5:15] = torch.rand(4, 1, 10, 10, generator=torch.Generator().manual_seed(0)).double()
    errs = {}
    for band in (1, 2):
        torch.manual_seed(0)
        net = SteerableCNN("C8", 1, (4, 4), kernel_size=7, pool_after=(0,), band=band).double().eval()
        with torch.no_grad():
            y = net(x)
            err = {a: float((net(rotate_images(x, a)) - y).abs().max() / y.abs().max()) for a in (45.0, 90.0)}
            assert err[90.0] < 1e-12
            errs[band] = err[45.0]
    assert 1e-4 < errs[1] < errs[2] < 0.2, errs


def test_runs_on_the_default_device():
    dev = gdl.device(verbose=False)
    net = SteerableCNN("C4", 1, (2,), num_classes=3).to(dev)
    assert net(torch.zeros(2, 1, 8, 8, device=dev)).device.type == dev.type
    source = (pathlib.Path(gdl.__file__).parent / "nn" / "steerable.py").read_text()
    assert ".cuda(" not in source


# --- bad input ------------------------------------------------------------------------------------------------
def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="unknown steerable group 'E8'; expected C<N>, D<N>"):
        SteerableCNN("E8")
    with pytest.raises(ValueError, match=r"N of .C0. must be >= 1, got N=0"):
        SteerableCNN("C0")
    with pytest.raises(ValueError, match=r"N of .D-2. must be >= 1, got N=-2"):
        FieldType("D-2", [REGULAR])
    with pytest.raises(ValueError, match="nonlinearity"):
        SteerableCNN("SO2", nonlinearity="swish")
    with pytest.raises(GroupMismatchError, match="out_type is a field type of C4, expected one of C8"):
        SteerableConv2d(FieldType("C8", [REGULAR]), FieldType("C4", [REGULAR]))
    with pytest.raises(ValueError, match=r"irrep\(3\) is not an irrep of C4; expected frequencies k = 0..2"):
        FieldType("C4", [3])
    with pytest.raises(ValueError, match="regular fields need a finite group"):
        FieldType("SO2", [REGULAR])
    with pytest.raises(ValueError, match="kernel_size must be a positive odd integer"):
        SteerableConv2d(FieldType("C4", [0]), FieldType("C4", [0]), kernel_size=4)
    net = SteerableCNN("C4", 2, (2,), num_classes=3)
    with pytest.raises(ShapeError, match=r"\(B, 2, H, W\), got \(1, 1, 8, 8\)"):
        net(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ShapeError, match=r"got \(2, 8, 8\)"):
        net(torch.zeros(2, 8, 8))
    conv = SteerableConv2d(FieldType("C4", [REGULAR]), FieldType("C4", [0]))
    with pytest.raises(ShapeError, match=r"expects \(B, 4, H, W\) for C4\[regular\], got \(1, 3, 8, 8\)"):
        conv(torch.zeros(1, 3, 8, 8))
    assert net(torch.zeros(2, 2, 8, 8)).shape == (2, 3)


def test_field_types_are_small_immutable_values():
    t = FieldType("C8", [REGULAR, REGULAR, 1, "trivial"])
    assert t.size == 8 + 8 + 2 + 1 and len(t) == 4
    assert str(t) == "C8[2x regular + irrep(1) + irrep(0)]"
    assert t == FieldType("C8", ["regular", "regular", Irrep(1), 0]) and hash(t) == hash(FieldType("C8", t.fields))
    with pytest.raises(AttributeError):
        t.fields = ()
    torch.testing.assert_close(t.matrix(1)[16:18, 16:18], torch.tensor(
        [[math.cos(math.pi / 4), -math.sin(math.pi / 4)], [math.sin(math.pi / 4), math.cos(math.pi / 4)]],
        dtype=torch.float64))


# --- escnn: recorded reference ------------------------------------------------------------------------------
def _reference():
    return np.load(REFERENCE)


def _spec(s):
    return tuple(s) if isinstance(s, list) else s


def _as_gdl(s):
    s = _spec(s)
    return s if s == REGULAR else (Irrep(s) if isinstance(s, int) else Irrep(s[1], s[0]))


def test_recorded_reference_is_small():
    assert REFERENCE.stat().st_size < 1_000_000


def test_basis_dimensions_equal_escnns_for_every_recorded_pair():
    """escnn's R2Conv with its default rings, widths and band limits, one field in and one out: C4, C6, C8, D4, D6
    (every irrep and the regular field) and SO(2)/O(2) (frequencies 0..3), 5x5 and 7x7 filters."""
    ref = _reference()
    keys = [k for k in ref.files if k.startswith("dims/")]
    assert len(keys) > 300
    for key in keys:
        _, group, k, pair = key.split("/")
        b, a = (json.loads(s) for s in pair.split("->"))
        assert pair_basis(group, _as_gdl(a), _as_gdl(b), int(k)).shape[0] == int(ref[key]), key


def _to_gdl_basis(t: FieldType) -> torch.Tensor:
    """escnn writes the mirror of a 2-dimensional O(2)/D_N irrep as diag(1, -1), gdl as diag(-1, 1) (so that
    frequency 1 is the plane's own representation); the quarter turn J maps one to the other."""
    J = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
    mirror = t.group_name.startswith(("D", "O"))
    blocks = [J if (mirror and f != REGULAR and d == 2) else torch.eye(d, dtype=torch.float64)
              for f, d in zip(t.fields, t.field_dims())]
    return torch.block_diag(*blocks)


def _linear_map(conv: SteerableConv2d) -> torch.Tensor:
    """The matrix from the weights to the flattened filter (the expansion is linear)."""
    with torch.no_grad():
        eye = torch.eye(conv.num_weights, dtype=torch.float64)
        cols = []
        for row in eye:
            conv.weight.copy_(row)
            cols.append(conv.expand()[0].flatten())
    return torch.stack(cols, dim=1)


CASES = ["C8_reg", "C4_reg_k7", "D4_reg", "C8_triv_reg", "SO2_irreps", "O2_irreps", "C8_mixed"]


@pytest.mark.parametrize("case", CASES)
def test_escnns_filter_lies_in_gdls_span_and_the_outputs_agree(case):
    """Fit gdl's weights to escnn's expanded filter by least squares: the residual is escnn's float32 round-off,
    so the two filter spaces coincide (they also have the same dimension, test above); with those weights gdl's
    layer reproduces R2Conv's recorded output."""
    ref = _reference()
    meta = json.loads(str(ref["meta"]))[case]
    tin = FieldType(meta["group"], [_spec(s) for s in meta["in"]])
    tout = FieldType(meta["group"], [_spec(s) for s in meta["out"]])
    conv = SteerableConv2d(tin, tout, meta["kernel_size"], bias=False).double()
    A = _linear_map(conv)
    Tin, Tout = _to_gdl_basis(tin), _to_gdl_basis(tout)
    target = torch.einsum("oa,abkl,ib->oikl", Tout, torch.from_numpy(ref[f"filter/{case}"]), Tin)
    w = torch.linalg.lstsq(A, target.flatten()[:, None]).solution[:, 0]
    residual = float((A @ w - target.flatten()).norm() / target.norm())
    assert residual < 1e-6, residual
    with torch.no_grad():
        conv.weight.copy_(w)
        y = conv(torch.einsum("ia,bahw->bihw", Tin, torch.from_numpy(ref[f"x/{case}"])))
    expected = torch.einsum("oa,bahw->bohw", Tout, torch.from_numpy(ref[f"y/{case}"]))
    assert float((y - expected).abs().max() / expected.abs().max()) < 1e-5
    if f"rep_in/{case}" in ref.files:                    # escnn's field representations are gdl's (after Tin)
        planar = torch.from_numpy(ref[f"planar/{case}"])
        G = tin.group
        for i, M in enumerate(planar):
            value = next(g.value for g in G.elements() if torch.allclose(G.standard_matrix(g.value), M, atol=1e-6))
            esc = torch.from_numpy(ref[f"rep_in/{case}"][i])
            torch.testing.assert_close(Tin @ esc @ Tin.T, tin.matrix(value), atol=1e-6, rtol=0)


# --- escnn: live, where it imports -------------------------------------------------------------------------------
LIVE = [("C8", ["regular"] * 2, ["regular", 1, 0]), ("D4", ["regular", (1, 0)], ["regular", 1]),
        ("SO2", [0, 1, 2], [0, 2, 3, 1])]


@pytest.mark.skipif(not escnn_available(), reason="escnn is not installed (it needs numpy < 2: lie_learn); the "
                                                  "recorded reference tests above cover the comparison")
@pytest.mark.parametrize("group,fin,fout", LIVE, ids=[c[0] for c in LIVE])
def test_live_escnn_same_dimension_same_filters_same_outputs(group, fin, fout):
    """Run where escnn imports (e.g. its own environment with ``PYTHONPATH`` at this repository): escnn's R2Conv
    with random weights, its filter fitted by gdl's weights, and the two layers' outputs on one input."""
    sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "scripts"))
    import record_escnn_reference as rec
    from escnn import nn as enn

    gs = rec.gspace(group)
    tin_e = enn.FieldType(gs, [rec.field(gs, f) for f in fin])
    tout_e = enn.FieldType(gs, [rec.field(gs, f) for f in fout])
    conv_e = enn.R2Conv(tin_e, tout_e, 5, padding=2, bias=False, initialize=False)
    tin, tout = FieldType(group, fin), FieldType(group, fout)
    ours = SteerableConv2d(tin, tout, 5, bias=False).double()
    assert conv_e.weights.numel() == ours.num_weights
    with torch.no_grad():
        conv_e.weights.copy_(torch.randn(conv_e.weights.shape, generator=torch.Generator().manual_seed(0)))
        conv_e.eval()
        x = torch.randn(2, tin.size, 11, 11, generator=torch.Generator().manual_seed(1))
        y_e = conv_e(enn.GeometricTensor(x, tin_e)).tensor.double()
        filt = conv_e.expand_parameters()[0].double()
    Tin, Tout = _to_gdl_basis(tin), _to_gdl_basis(tout)
    A = _linear_map(ours)
    target = torch.einsum("oa,abkl,ib->oikl", Tout, filt, Tin).flatten()
    w = torch.linalg.lstsq(A, target[:, None]).solution[:, 0]
    assert float((A @ w - target).norm() / target.norm()) < 1e-6
    with torch.no_grad():
        ours.weight.copy_(w)
        y = ours(torch.einsum("ia,bahw->bihw", Tin, x.double()))
    expected = torch.einsum("oa,bahw->bohw", Tout, y_e)
    assert float((y - expected).abs().max() / expected.abs().max()) < 1e-5


def test_runs_with_escnn_made_unimportable():
    """escnn made unimportable (``sys.modules['escnn'] = None`` in a fresh interpreter, as where numpy >= 2 rules it
    out): gdl.nn.steerable imports, builds and runs a model, and the architectures registry builds its row."""
    code = ("import sys; sys.modules['escnn'] = None\n"
            "import torch\n"
            "from gdl.nn.steerable import SteerableCNN, escnn_available\n"
            "assert not escnn_available()\n"
            "print(SteerableCNN('C8', 1, (2,), num_classes=3)(torch.zeros(1, 1, 9, 9)).shape)\n"
            "from gdl import architectures as a\n"
            "row = next(r for r in a.ARCHITECTURES if r.module == 'gdl.nn.steerable')\n"
            "print(type(a.build(row)[0]).__name__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "torch.Size([1, 3])" in out.stdout and "SteerableCNN" in out.stdout
