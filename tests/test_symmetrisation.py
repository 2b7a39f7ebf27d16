"""Group averaging, PCA frame averaging and C4 canonicalisation (gdl.symmetrisation)."""

import pytest
import torch
from torch import nn

from gdl.groups import (
    E3,
    SE3,
    CyclicGroup,
    DihedralGroup,
    ImageAction,
    PointCloudAction,
    RegularRep,
    RepAction,
    TrivialAction,
    TrivialRep,
)
from gdl.nn import CNN
from gdl.symmetrisation import C4Canonicalised, FrameAveraged, GroupAveraged, average_linear, pca_frames
from gdl.testing import equivariance_error
from gdl.weight_sharing import constraint_residual, equivariant_basis, pixel_filter_rep

F64 = torch.float64


@pytest.mark.parametrize("group", [CyclicGroup(4), DihedralGroup(4)])
def test_average_linear_is_the_orthogonal_projection_onto_the_solvers_space(group):
    rep_in, rep_out = pixel_filter_rep(group, 3), RegularRep(group)
    W = torch.randn(3, rep_out.dim, rep_in.dim, dtype=F64, generator=torch.Generator().manual_seed(0))
    P = average_linear(W, rep_in, rep_out)
    basis = equivariant_basis(rep_in, rep_out)
    assert torch.allclose(average_linear(P, rep_in, rep_out), P, atol=1e-13)
    assert torch.allclose(torch.einsum("kij,bij,kcd->bcd", basis, W, basis), P, atol=1e-13)
    assert constraint_residual(P, rep_in, rep_out) < 1e-13
    assert (W - P).abs().max() > 0.1


def test_average_linear_refuses_bad_input():
    c4 = CyclicGroup(4)
    with pytest.raises(ValueError, match="shape"):
        average_linear(torch.zeros(3, 3), RegularRep(c4), RegularRep(c4))
    with pytest.raises(ValueError, match="representation of"):
        average_linear(torch.zeros(4, 1), TrivialRep(CyclicGroup(2)), RegularRep(c4))


def test_group_averaged_cnn_is_exactly_invariant_and_idempotent():
    c4 = CyclicGroup(4)
    torch.manual_seed(0)
    cnn = CNN(1, 4, 2, padding_mode="zeros", num_classes=3).double()
    x = torch.randn(3, 1, 6, 6, dtype=F64)
    kw = dict(group=c4, in_action=ImageAction(c4), out_action=TrivialAction(c4))
    assert not equivariance_error(cnn, x, **kw).passed                     # the check can fail ...
    avg = GroupAveraged(cnn, c4, ImageAction(c4))
    assert equivariance_error(avg, x, **kw).worst < 1e-14                   # ... and the average passes
    with torch.no_grad():
        assert torch.allclose(GroupAveraged(avg, c4, ImageAction(c4))(x), avg(x), atol=1e-14)


def test_group_averaged_equivariant_outputs():
    c4 = CyclicGroup(4)
    rep = RegularRep(c4)
    torch.manual_seed(0)
    linear = nn.Linear(4, 4, bias=False).double()
    avg = GroupAveraged(linear, c4, RepAction(rep), RepAction(rep))
    x = torch.randn(5, 4, dtype=F64)
    assert equivariance_error(avg, x, group=c4, in_action=RepAction(rep), out_action=RepAction(rep)).worst < 1e-14
    assert torch.allclose(avg(x), x @ average_linear(linear.weight, rep, rep).T, atol=1e-14)


def test_pca_frames_move_with_the_cloud():
    x = torch.randn(2, 7, 3, dtype=F64, generator=torch.Generator().manual_seed(1)) * torch.tensor([1.0, 2, 3])
    c, frames, values = pca_frames(x)
    assert frames.shape == (2, 8, 3, 3) and values.shape == (2, 3)
    assert torch.allclose(frames.transpose(-1, -2) @ frames, torch.eye(3, dtype=F64).expand(2, 8, 3, 3), atol=1e-12)
    _, proper, _ = pca_frames(x, proper=True)
    assert proper.shape == (2, 4, 3, 3) and (torch.linalg.det(proper) > 0).all()
    Q = torch.linalg.qr(torch.randn(3, 3, dtype=F64, generator=torch.Generator().manual_seed(2))).Q
    _, moved, moved_values = pca_frames(x @ Q.T + 1.0)
    assert torch.allclose(moved_values, values, atol=1e-10)
    # the moved frames are Q times the old ones, as a set
    for b in range(2):
        for F in Q @ frames[b]:
            assert min(float((F - G).abs().max()) for G in moved[b]) < 1e-9
    with pytest.raises(ValueError, match=r"\(\.\.\., N, 3\)"):
        pca_frames(torch.zeros(4, 2))


class _PointNet(nn.Module):
    def __init__(self, out=2):
        super().__init__()
        self.phi = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 16))
        self.rho = nn.Linear(16, out)

    def forward(self, y):
        return self.rho(torch.tanh(self.phi(y).sum(-2)))


@pytest.mark.parametrize(("output", "group"), [("scalar", E3()), ("vector", E3())])
def test_frame_averaging_is_invariant_or_equivariant_for_a_clear_gap(output, group):
    torch.manual_seed(0)
    backbone = _PointNet(out=1 if output == "scalar" else 3).double()
    x = torch.randn(3, 8, 3, dtype=F64, generator=torch.Generator().manual_seed(3)) * torch.tensor([1.0, 2, 3])
    out_action = TrivialAction(group)
    if output == "vector":
        from gdl.groups import O3Irrep
        out_action = RepAction(O3Irrep(1, -1, group=group))
    kw = dict(group=group, in_action=PointCloudAction(group), out_action=out_action)
    assert not equivariance_error(backbone if output == "scalar" else (lambda y: backbone(y).sum(-2)), x, **kw).passed
    assert equivariance_error(FrameAveraged(backbone, output=output), x, **kw).passed


def test_proper_frames_are_only_rotation_invariant():
    torch.manual_seed(0)
    fa = FrameAveraged(_PointNet(1).double(), proper=True)
    x = torch.randn(3, 8, 3, dtype=F64, generator=torch.Generator().manual_seed(4)) * torch.tensor([1.0, 2, 3])
    assert equivariance_error(fa, x, group=SE3(), in_action=PointCloudAction(SE3()),
                              out_action=TrivialAction(SE3())).passed
    assert not equivariance_error(fa, x, group=E3(), in_action=PointCloudAction(E3()),
                                  out_action=TrivialAction(E3())).passed


def test_frame_averaging_breaks_at_degenerate_covariance():
    torch.manual_seed(0)
    fa = FrameAveraged(_PointNet(1).double())
    x = torch.randn(2, 10, 3, dtype=F64, generator=torch.Generator().manual_seed(5))
    x = x - x.mean(1, keepdim=True)
    x = torch.stack([c @ torch.linalg.inv(torch.linalg.cholesky(c.T @ c / 10)).T for c in x])   # isotropic
    assert not equivariance_error(fa, x, group=E3(), in_action=PointCloudAction(E3()),
                                  out_action=TrivialAction(E3())).passed
    with pytest.raises(ValueError, match="output must be"):
        FrameAveraged(_PointNet(), output="tensor")


def test_c4_canonicaliser_is_invariant_and_returns_the_canonical_turn():
    c4 = CyclicGroup(4)
    torch.manual_seed(0)
    cnn = CNN(1, 4, 2, padding_mode="zeros", num_classes=3).double()
    template = torch.randn(1, 6, 6, dtype=F64, generator=torch.Generator().manual_seed(6))
    can = C4Canonicalised(cnn, lambda z: (z * template).flatten(1).sum(1))
    x = torch.randn(5, 1, 6, 6, dtype=F64, generator=torch.Generator().manual_seed(7))
    kw = dict(group=c4, in_action=ImageAction(c4), out_action=TrivialAction(c4))
    assert equivariance_error(can, x, **kw).worst == 0.0
    k = can.turns(x)
    assert torch.equal(can.turns(torch.rot90(x, 1, dims=(-2, -1))), (k + 1) % 4)
    # the canonical image maximises the score among the four turns
    scores = torch.stack([(torch.rot90(x, -j, dims=(-2, -1)) * template).flatten(1).sum(1) for j in range(4)], 1)
    best = (can.canonicalise(x) * template).flatten(1).sum(1)
    assert torch.allclose(best, scores.max(1).values)
    with pytest.raises(ValueError, match="square images"):
        can(torch.zeros(2, 1, 6, 5))
