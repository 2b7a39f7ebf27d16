"""The equivariance checker: it passes equivariant functions, and it FAILS deliberately broken ones."""

import pytest
import torch
from torch import nn

from gdl.groups import (
    E3,
    O3,
    P4,
    SO3,
    CyclicGroup,
    DefiningRep,
    DihedralGroup,
    GraphAction,
    GroupMismatchError,
    ImageAction,
    O3Irrep,
    PointCloudAction,
    RepAction,
    SetAction,
    ShapeError,
    SO3Irrep,
    SymmetricGroup,
    TrivialAction,
)
from gdl.testing import (
    MAX_EXHAUSTIVE,
    EquivarianceReport,
    assert_equivariant,
    assert_invariant,
    default_tolerance,
    equivariance_error,
)

VEC = RepAction(DefiningRep(SO3()))


def scale_by_norm(x):
    """x -> |x| x: SO(3)-equivariant."""
    return x * x.norm(dim=-1, keepdim=True)


def add_constant(x):
    """x -> x + e_z: not equivariant (a fixed direction)."""
    return x + torch.tensor([0.0, 0.0, 1.0], dtype=x.dtype)


class VectorLayer(nn.Module):
    """A module carrying its representations, so the checker needs no further arguments."""

    def __init__(self, broken: bool = False):
        super().__init__()
        self.rep_in = self.rep_out = SO3Irrep(1) + SO3Irrep(2)
        self.scale = nn.Parameter(torch.tensor([0.5, 2.0]))
        self.broken = broken

    def forward(self, x):  # (B, 8): a scalar multiple of each irrep block is equivariant (Schur)
        y = torch.cat([self.scale[0] * x[..., :3], self.scale[1] * x[..., 3:]], -1)
        return y + 0.1 * x.roll(1, -1) if self.broken else y


def test_passes_an_equivariant_function(dtype, float_tolerance):
    report = assert_equivariant(scale_by_norm, group=SO3(), in_action=VEC, out_action=VEC, dtype=dtype)
    assert report.passed and report.worst <= float_tolerance and report.tolerance == float_tolerance
    assert len(report.elements) == 16 and report.errors.shape == (16,)


def test_fails_a_broken_function(dtype):
    with pytest.raises(AssertionError, match=r"FAIL: equivariance of add_constant: worst relative error"):
        assert_equivariant(add_constant, group=SO3(), in_action=VEC, out_action=VEC, dtype=dtype)


def test_module_attributes_are_enough(dtype):
    assert_equivariant(VectorLayer(), dtype=dtype)
    with pytest.raises(AssertionError, match="FAIL"):
        assert_equivariant(VectorLayer(broken=True), dtype=dtype)


def test_a_wrongly_declared_representation_fails():
    """The function is fine for D^1 + D^2 but the module claims the blocks in the other order."""
    layer = VectorLayer()
    layer.rep_out = SO3Irrep(2) + SO3Irrep(1)
    assert not equivariance_error(layer).passed


def test_invariance_is_trivial_output_action(dtype):
    report = assert_invariant(lambda x: x.norm(dim=-1), group=SO3(), in_action=VEC, dtype=dtype)
    assert report.kind == "invariance"
    with pytest.raises(AssertionError, match="FAIL: invariance"):
        assert_invariant(lambda x: x[..., 0], group=SO3(), in_action=VEC, dtype=dtype)


def test_small_finite_groups_are_checked_exhaustively():
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():  # a kernel symmetric under D4 (the 3x3 "plus" pattern with a centre)
        conv.weight.copy_(torch.tensor([[0.0, 1.0, 0.0], [1.0, 2.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3))
    act = ImageAction(DihedralGroup(4))
    report = assert_equivariant(conv, group=DihedralGroup(4), in_action=act, out_action=act,
                                inputs=torch.randn(2, 1, 9, 9))
    assert len(report.elements) == 8 and set(report.elements) == set(DihedralGroup(4).elements())
    with torch.no_grad():
        conv.weight.normal_()
    bad = equivariance_error(conv, torch.randn(2, 1, 9, 9), group=DihedralGroup(4), in_action=act, out_action=act)
    assert not bad.passed and bad.errors[0] == 0.0  # the identity is always fine
    big = P4(5)
    assert big.order > MAX_EXHAUSTIVE
    report = equivariance_error(lambda x: x, group=big, in_action=ImageAction(big), out_action=ImageAction(big),
                                n_elements=7)
    assert len(report.elements) == 7 and report.passed


def test_tolerance_follows_the_dtype():
    """A 1e-7 relative violation is float32 round-off but a real error in float64."""
    def nearly(x):
        return x + 1e-7 * x[..., :1]

    assert equivariance_error(nearly, group=SO3(), in_action=VEC, out_action=VEC, dtype=torch.float32).passed
    assert not equivariance_error(nearly, group=SO3(), in_action=VEC, out_action=VEC, dtype=torch.float64).passed
    assert default_tolerance(torch.float64) < default_tolerance(torch.float32)


def test_report_is_readable():
    def shift_up(x):
        return x + torch.tensor([0.0, 1.0], dtype=x.dtype)

    c4 = RepAction(DefiningRep(CyclicGroup(4)))
    report = equivariance_error(shift_up, group=CyclicGroup(4), in_action=c4, out_action=c4)
    text = str(report)
    assert text.startswith("FAIL: equivariance of shift_up: worst relative error")
    assert "C4[" in text and "tolerance" in text and "above tolerance" in text
    assert isinstance(report, EquivarianceReport) and repr(report).startswith("EquivarianceReport(worst=")
    assert report.worst_element in CyclicGroup(4).elements()


def test_adversarial_search_finds_a_violation_random_inputs_miss():
    """f is equivariant except near the point c = (4, 0, 0): a bump pushing along a fixed axis. Random unit-scale
    inputs hardly feel the bump, so the random check passes; gradient ascent on the inputs walks to the bump."""
    c = torch.tensor([4.0, 0.0, 0.0], dtype=torch.float64)

    def almost(x):
        bump = torch.exp(-((x - c.to(x.dtype)) ** 2).sum(-1, keepdim=True) / 0.5)
        return x + bump * torch.tensor([0.0, 0.0, 1.0], dtype=x.dtype)

    kw = dict(group=SO3(), in_action=VEC, out_action=VEC, n_elements=4, atol=1e-3)
    random_only = equivariance_error(almost, **kw)
    assert random_only.passed, random_only
    adversarial = equivariance_error(almost, adversarial_steps=150, adversarial_lr=0.1, **kw)
    assert not adversarial.passed and adversarial.worst > 100 * random_only.worst, adversarial
    assert "adversarial search 150 steps" in str(adversarial)
    honest = equivariance_error(scale_by_norm, adversarial_steps=50, **kw)
    assert honest.worst < 1e-12  # an equivariant function stays at round-off however hard we search


def test_graph_point_cloud_and_tuple_inputs():
    s5 = SymmetricGroup(5)

    def gnn(graph):  # one message-passing step: sum of neighbours
        x, adj = graph
        return torch.tanh(adj @ x + x)

    assert_equivariant(gnn, group=s5, in_action=GraphAction(s5), out_action=SetAction(s5))

    def gnn_with_position(graph):  # adds the node index: breaks permutation symmetry
        x, adj = graph
        return adj @ x + torch.arange(5, dtype=x.dtype)[:, None]

    assert not equivariance_error(gnn_with_position, group=s5, in_action=GraphAction(s5),
                                  out_action=SetAction(s5)).passed

    e3 = E3()

    def centre(pos):  # positions relative to the centroid: rotate, ignore translations
        return pos - pos.mean(-2, keepdim=True)

    assert_equivariant(centre, group=e3, in_action=PointCloudAction(e3),
                       out_action=RepAction(O3Irrep(1, -1, group=e3)))
    assert not equivariance_error(lambda p: p, group=e3, in_action=PointCloudAction(e3),
                                  out_action=RepAction(O3Irrep(1, -1, group=e3))).passed


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="pass in_action, out_action"):
        equivariance_error(scale_by_norm, group=SO3())
    with pytest.raises(GroupMismatchError, match=r"out_action RepAction\(O3Irrep\(1o\)\) acts with O3"):
        equivariance_error(scale_by_norm, group=SO3(), in_action=VEC, out_action=RepAction(O3Irrep(1, -1)))
    with pytest.raises(ShapeError, match=r"RepAction\(Defining\(SO3\)\) expects .*\(\.\.\., 3\), got \(4, 1\)"):
        equivariance_error(lambda x: x.norm(dim=-1, keepdim=True), group=SO3(), in_action=VEC, out_action=VEC)
    with pytest.raises(GroupMismatchError, match="expected an element of SO3"):
        equivariance_error(scale_by_norm, group=SO3(), in_action=VEC, out_action=VEC, elements=O3().sample(2))
    with pytest.raises(TypeError, match="in_action must be a gdl.groups.Action"):
        equivariance_error(scale_by_norm, group=SO3(), in_action=DefiningRep(SO3()), out_action=VEC)
    with pytest.raises(ValueError, match="pass group= and in_action="):
        assert_invariant(scale_by_norm)
    assert TrivialAction(SO3()).group == SO3()
