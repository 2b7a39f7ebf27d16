"""G-CNN layers (p4, p4m): exact equivariance, export to Conv2d, shapes, errors, repr."""

import pytest
import torch
from torch import nn

from gdl.groups import CyclicGroup, DihedralGroup, ImageAction, RegularRep, ShapeError
from gdl.nn import GCNN, GroupBatchNorm2d, GroupConv2d, GroupPool, LiftingConv2d
from gdl.testing import assert_equivariant, assert_invariant, equivariance_error

DTYPES = [torch.float32, torch.float64]
GROUPS = ["p4", "p4m"]


def _input(layer, batch=2, size=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = layer.expanded_in_channels if hasattr(layer, "expanded_in_channels") else 3 * layer.order
    return torch.randn(batch, c, size, size, generator=g)


def _layers(group):
    return [
        LiftingConv2d(2, 3, 3, group),
        LiftingConv2d(1, 2, 5, group, bias=False),
        GroupConv2d(3, 2, 3, group),
        GroupConv2d(2, 3, 5, group, padding_mode="circular"),
        GroupPool(group, "max"),
        GroupPool(group, "mean"),
    ]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("group", GROUPS)
def test_layers_are_exactly_equivariant(group, dtype):
    for layer in _layers(group):
        report = assert_equivariant(layer, _input(layer), dtype=dtype)   # reads group / in / out actions
        assert report.worst < (1e-13 if dtype == torch.float64 else 1e-5), str(report)
        assert len(report.elements) == (4 if group == "p4" else 8)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("group", GROUPS)
def test_models_are_exactly_invariant_or_equivariant(group, dtype):
    torch.manual_seed(0)
    clf = GCNN(1, (3, 3, 3), group=group, pool_after=(0, 1), num_classes=5, batch_norm=True)
    x = torch.randn(3, 1, 12, 12)
    clf.train()
    clf(x)                                   # populate batch-norm running statistics
    assert_invariant(clf, x, dtype=dtype)
    features = GCNN(1, (3, 2), group=group, pool_after=(0,))
    out = features(x)
    assert out.shape == (3, 2, 6, 6)
    assert_equivariant(features, x, dtype=dtype)


def test_odd_pooled_size_breaks_exactness_and_the_checker_sees_it():
    """Deliberately broken: max pooling a 9x9 map drops a row and a column, so rotating no longer commutes."""
    torch.manual_seed(0)
    model = GCNN(1, (3, 3), group="p4", pool_after=(0,), num_classes=4)
    report = equivariance_error(model, torch.randn(2, 1, 9, 9))
    assert report.worst > 1e-3, str(report)


def test_plain_conv_with_unshared_filters_is_not_equivariant():
    """Deliberately broken: a plain Conv2d declared as a lifting layer must fail the checker."""
    conv = nn.Conv2d(1, 4, 3, padding=1)
    report = equivariance_error(conv, torch.randn(2, 1, 8, 8), group=CyclicGroup(4),
                                in_action=ImageAction(CyclicGroup(4)),
                                out_action=ImageAction(CyclicGroup(4), fiber=RegularRep(CyclicGroup(4))))
    assert report.worst > 1e-2


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("cls", [LiftingConv2d, GroupConv2d])
def test_export_matches(cls, group):
    torch.manual_seed(0)
    layer = cls(3, 4, 3, group)
    with torch.no_grad():
        layer.bias.normal_()
    conv = layer.export()
    assert type(conv) is nn.Conv2d
    x = _input(layer)
    assert conv.weight.shape == (4 * layer.order, layer.expanded_in_channels, 3, 3)
    torch.testing.assert_close(conv(x), layer(x), rtol=0, atol=1e-6)


def test_expanded_weight_is_rotated_copies():
    """For p4 the lifting filter of orientation k is the base filter turned k quarter turns."""
    layer = LiftingConv2d(1, 1, 3, "p4", bias=False)
    w = layer.expanded_weight()                              # (4, 1, 3, 3)
    for k in range(4):
        torch.testing.assert_close(w[k], torch.rot90(layer.weight[0], k, dims=(-2, -1)))


@pytest.mark.parametrize("group", GROUPS)
def test_one_gather_equals_the_gather_then_permute_expansion(group):
    """The flat-index gather gives exactly the filter of the two-step expansion it replaced (rows of the
    transposed weight gathered by the (G, G, k*k) index, then permuted into the Conv2d layout)."""
    gconv, lift = GroupConv2d(3, 2, 5, group), LiftingConv2d(2, 3, 3, group)
    co, ci, G, k, _ = gconv.weight.shape
    w = gconv.weight.reshape(co * ci, G * k * k).t()[gconv._index.reshape(-1)]
    w = w.reshape(G, G, k * k, co, ci).permute(3, 0, 4, 1, 2).reshape(co * G, ci * G, k, k)
    assert torch.equal(gconv.expanded_weight(), w)
    co, ci, k, _ = lift.weight.shape
    w = lift.weight.reshape(co * ci, k * k).t()[lift._index.reshape(-1)]
    w = w.reshape(G, k * k, co, ci).permute(2, 0, 3, 1).reshape(co * G, ci, k, k)
    assert torch.equal(lift.expanded_weight(), w)


def test_the_filter_is_cached_without_gradients_until_the_weights_change():
    layer = GroupConv2d(2, 3, 3, "p4").eval()
    x = _input(layer)
    with torch.no_grad():
        first = layer(x)
        cached = layer._cache[1]
        assert torch.equal(layer(x), first) and layer._cache[1] is cached       # reused
        layer.weight.add_(0.1)                                                   # an in-place update (as Adam's)
        second = layer(x)
        assert layer._cache[1] is not cached and not torch.equal(second, first)
        assert torch.equal(layer._cache[1], layer.expanded_weight())
        layer.bias.mul_(2.0)
        torch.testing.assert_close(layer(x), nn.functional.conv2d(x, layer.expanded_weight(),
                                                                  layer.expanded_bias(), padding=1))
    layer.load_state_dict({"weight": torch.zeros_like(layer.weight), "bias": torch.zeros(3)})
    with torch.no_grad():
        assert layer(x).abs().max() == 0                                         # load_state_dict copies in place
    layer.train()
    layer.weight.data.normal_()
    out = layer(x)                                                               # with autograd: never cached
    assert layer._cache is None and out.requires_grad
    out.square().sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("group,order", [("p4", 4), ("p4m", 8)])
def test_shapes_parameters_and_repr(group, order):
    lift, gconv = LiftingConv2d(2, 5, 3, group), GroupConv2d(5, 6, 3, group)
    x = torch.randn(2, 2, 10, 10)
    assert lift(x).shape == (2, 5 * order, 10, 10)
    assert gconv(lift(x)).shape == (2, 6 * order, 10, 10)
    assert sum(p.numel() for p in lift.parameters()) == 5 * 2 * 9 + 5
    assert sum(p.numel() for p in gconv.parameters()) == 6 * 5 * order * 9 + 6
    text = repr(gconv)
    assert f"|G|={order}" in text and "in_channels=5" in text and f"x{order} = {6 * order} maps" in text
    assert lift.group == (CyclicGroup(4) if group == "p4" else DihedralGroup(4))


def test_reset_parameters_redraws_weights():
    layer = GroupConv2d(2, 2, 3)
    before = layer.weight.detach().clone()
    layer.reset_parameters()
    assert not torch.equal(before, layer.weight)
    assert torch.all(layer.bias == 0)
    model = GCNN(1, (2, 2), num_classes=3)
    model.reset_parameters()


def test_bad_input_names_expected_and_received():
    with pytest.raises(ShapeError, match=r"\(B, 12, H, W\).*got \(2, 3, 8, 8\)"):
        GroupConv2d(3, 2, 3, "p4")(torch.randn(2, 3, 8, 8))
    with pytest.raises(ShapeError, match=r"got \(3, 8, 8\)"):
        LiftingConv2d(3, 2, 3)(torch.randn(3, 8, 8))
    with pytest.raises(ValueError, match="ShapeError|expects"):
        GCNN(1, (2,))(torch.randn(2, 3, 8, 8))
    with pytest.raises(ShapeError, match=r"C\*8.*got \(2, 12, 4, 4\)"):
        GroupPool("p4m")(torch.randn(2, 12, 4, 4))
    with pytest.raises(ShapeError, match="4 fields"):
        GroupBatchNorm2d(4, "p4")(torch.randn(2, 8, 4, 4))
    assert issubclass(ShapeError, ValueError)


def test_group_batch_norm_shares_statistics_per_field():
    torch.manual_seed(0)
    x = torch.randn(6, 3 * 8, 5, 5) * torch.arange(1, 25).view(1, 24, 1, 1)     # 3 fields of 8 channels
    bn = GroupBatchNorm2d(3, 8)                      # an integer: regular fields of any finite group of order 8
    assert bn.group is None and bn.in_action is None
    y = bn(x).reshape(6, 3, 8, 5, 5)
    # one mean and variance per field, over batch, space and its 8 channels together (not per channel)
    torch.testing.assert_close(y.mean(dim=(0, 2, 3, 4)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(dim=(0, 2, 3, 4), unbiased=False), torch.ones(3), atol=1e-3, rtol=0)
    spread = y[:, 0].std(dim=(0, 2, 3))                      # channels of one field keep their relative scales
    assert spread.max() > 4 * spread.min()                    # (1 to 8 in x): not normalised one by one
    # permuting the channels inside each field (what the group does) commutes with it
    perm = torch.randperm(8)
    permuted = x.reshape(6, 3, 8, 5, 5)[:, :, perm].reshape(6, 24, 5, 5)
    torch.testing.assert_close(bn(permuted).reshape(6, 3, 8, 5, 5), y[:, :, perm])
    with pytest.raises(ShapeError, match=r"\(B, 24, H, W\) \(3 fields x \|G\|=8\), got \(6, 16, 5, 5\)"):
        bn(torch.zeros(6, 16, 5, 5))
    with pytest.raises(ValueError, match="field size"):
        GroupBatchNorm2d(3, 0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown group 'p6'"):
        LiftingConv2d(1, 2, 3, "p6")
    with pytest.raises(ValueError, match="multiples of 90"):
        LiftingConv2d(1, 2, 3, CyclicGroup(8))
    with pytest.raises(ValueError, match="odd"):
        GroupConv2d(1, 2, 4)
    with pytest.raises(ValueError, match="padding_mode"):
        GroupConv2d(1, 2, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="out_channels"):
        LiftingConv2d(1, 0, 3)
    with pytest.raises(ValueError, match="pool_after"):
        GCNN(1, (2, 2), pool_after=(2,))
    with pytest.raises(ValueError, match="mode"):
        GroupPool("p4", "median")


def test_gradients_flow_and_float64_is_tighter():
    layer = GroupConv2d(2, 2, 3, "p4m")
    x = _input(layer)
    layer(x).square().sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    e32 = equivariance_error(layer, x, dtype=torch.float32).worst
    e64 = equivariance_error(layer, x, dtype=torch.float64).worst
    assert e64 < 1e-6 * max(e32, 1e-12) or e64 < 1e-14
