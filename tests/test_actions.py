"""Actions: the axioms e.x = x and g.(h.x) = (gh).x for every action, conventions, and bad input."""

import pytest
import torch

from gdl.groups import (
    E3,
    O2,
    O3,
    P4,
    P4M,
    SE3,
    SO2,
    SO3,
    CyclicGroup,
    DefiningRep,
    DihedralGroup,
    GraphAction,
    GroupMismatchError,
    ImageAction,
    O3Irrep,
    PointCloudAction,
    RegularRep,
    RepAction,
    RotateImageAction,
    SetAction,
    ShapeError,
    SymmetricGroup,
    TranslationGroup2D,
    TrivialAction,
    TupleAction,
    smooth_disk_images,
)

C4, D4 = CyclicGroup(4), DihedralGroup(4)
EXACT_ACTIONS = [
    ImageAction(TranslationGroup2D((5, 6))), ImageAction(C4), ImageAction(D4), ImageAction(CyclicGroup(2)),
    ImageAction(C4, fiber=RegularRep(C4)), ImageAction(D4, fiber=RegularRep(D4)),
    ImageAction(P4(5)), ImageAction(P4M(4)), ImageAction(P4(5), fiber=RegularRep(C4)),
    ImageAction(P4M(4), fiber=RegularRep(DihedralGroup(4))),
    RotateImageAction(C4), RotateImageAction(D4),   # quarter turns land on pixel centres: exact
    PointCloudAction(SO3()), PointCloudAction(O3()), PointCloudAction(SE3()), PointCloudAction(E3()),
    PointCloudAction(SO2()), PointCloudAction(O2()), PointCloudAction(DihedralGroup(6)),
    SetAction(SymmetricGroup(5)), GraphAction(SymmetricGroup(5)), GraphAction(SymmetricGroup(6), "edge_index"),
    RepAction(DefiningRep(SO3())), RepAction(O3Irrep(2, -1, group=E3())),
    TupleAction(PointCloudAction(E3()), RepAction(O3Irrep(1, -1, group=E3()))),
]


def _input(action, dtype):
    return action.random_input(3, dtype=dtype, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("action", EXACT_ACTIONS, ids=repr)
def test_action_axioms(action, dtype):
    """e.x = x exactly and g.(h.x) = (gh).x to round-off, in float32 and float64."""
    x = _input(action, dtype)
    err = action.axioms_error(x, n=5)
    scale = max(float(t.abs().max()) for t in (x if isinstance(x, tuple) else (x,)) if t.is_floating_point())
    assert err["identity"] <= 4 * torch.finfo(dtype).eps * scale, err
    assert err["compatibility"] <= 100 * torch.finfo(dtype).eps * scale, err


def test_wallpaper_actions_restrict_to_translations_and_rotations():
    """(t, r) acts as ImageAction(C4/D4) for r followed by ImageAction(T) for t."""
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    for group in (P4(6), P4M(6)):
        act, rot, shift = ImageAction(group), ImageAction(group.point_group), ImageAction(group.translations)
        for g in group.sample(10, seed=0):
            r, t = group.rotation_part(g), group.translation_part(g)
            assert torch.equal(act(g, x), shift(t, rot(r, x)))
            assert group.from_parts(r, t) == g
        assert group.order == len(group.point_group.elements()) * 36


def test_wallpaper_generators_generate():
    group = P4M(3)
    reached, frontier = {group.identity()}, [group.identity()]
    while frontier:
        new = {g * s for g in frontier for s in group.generators()} - reached
        reached |= new
        frontier = list(new)
    assert len(reached) == group.order == 72


def test_wallpaper_is_not_a_direct_product():
    """Rotating then shifting differs from shifting then rotating: r t r^-1 is the rotated shift."""
    group = P4(5)
    r, t = group.element((1, 0, 0)), group.element((0, 1, 0))
    assert r * t != t * r
    assert r * t * r.inverse() == group.element((0, 0, 1))  # (dy, dx) = (1, 0) turned to (0, 1)


def test_rotate_image_matches_rot90_and_flip():
    x = smooth_disk_images(2, 17)
    so2, o2 = RotateImageAction(SO2()), RotateImageAction(O2())
    assert torch.allclose(so2(SO2().element(torch.pi / 2), x), torch.rot90(x, 1, dims=(-2, -1)), atol=1e-12)
    assert torch.allclose(o2(O2().element((1, 0.0)), x), torch.flip(x, dims=(-1,)), atol=1e-12)
    for g in D4.elements():
        assert torch.allclose(RotateImageAction(D4)(g, x), ImageAction(D4)(g, x), atol=1e-12)


@pytest.mark.parametrize("group", [SO2(), O2(), CyclicGroup(8)], ids=repr)
def test_rotate_image_is_approximate_with_the_documented_error(group):
    """Resampling is only approximately an action; the measured error matches the docstring."""
    x = smooth_disk_images(8, 33, generator=torch.Generator().manual_seed(0))
    rel = RotateImageAction(group).axioms_error(x, n=8)["compatibility"] / float(x.abs().max())
    assert 5e-3 < rel < 8e-2, rel
    rel_cubic = RotateImageAction(group, "bicubic").axioms_error(x, n=8)["compatibility"] / float(x.abs().max())
    assert rel_cubic < 5e-2


def test_point_cloud_action_is_rigid():
    x = torch.randn(7, 3, dtype=torch.float64)
    for g in E3().sample(4):
        y = PointCloudAction(E3())(g, x)
        assert torch.allclose(torch.cdist(y, y), torch.cdist(x, x), atol=1e-12)
        Q, t = g.value
        assert torch.allclose(y, x @ Q.T + t)


def test_graph_action_keeps_dense_and_edge_list_consistent():
    group = SymmetricGroup(6)
    x, ei = GraphAction(group, "edge_index").random_input(1, generator=torch.Generator().manual_seed(1))
    A = torch.zeros(6, 6, dtype=torch.float64)
    A[ei[0], ei[1]] = 1.0
    for g in group.sample(5):
        x2, ei2 = GraphAction(group, "edge_index")(g, (x, ei))
        x3, A3 = GraphAction(group)(g, (x, A))
        B = torch.zeros(6, 6, dtype=torch.float64)
        B[ei2[0], ei2[1]] = 1.0
        assert torch.equal(B, A3) and torch.equal(x2, x3)
        P = DefiningRep(group).matrix(g)
        assert torch.equal(A3, P @ A @ P.T)


def test_trivial_action_leaves_data_alone():
    x = torch.randn(3, 4)
    assert TrivialAction(SO3())(SO3().sample(1)[0], x) is x


# --- bad input: each error names the expected and the received thing ------------------------------
@pytest.mark.parametrize("action, x, message", [
    (ImageAction(C4), torch.zeros(4, 5), r"\(\.\.\., C, H, W\), got \(4, 5\)"),
    (ImageAction(C4), torch.zeros(1, 4, 5), r"square images, got \(1, 4, 5\)"),
    (ImageAction(TranslationGroup2D((5, 5))), torch.zeros(1, 4, 4), r"5x5 grids, got .*\(1, 4, 4\)"),
    (ImageAction(P4(6)), torch.zeros(1, 5, 5), r"6x6 grids, got .*\(1, 5, 5\)"),
    (ImageAction(C4, fiber=RegularRep(C4)), torch.zeros(3, 4, 4), r"multiple of fiber.dim=4.*\(3, 4, 4\)"),
    (RotateImageAction(SO2()), torch.zeros(1, 4, 5), r"\(\.\.\., C, H, H\), got \(1, 4, 5\)"),
    (PointCloudAction(SO3()), torch.zeros(5, 2), r"\(\.\.\., N, 3\), got \(5, 2\)"),
    (PointCloudAction(SO2()), torch.zeros(5, 3), r"\(\.\.\., N, 2\), got \(5, 3\)"),
    (SetAction(SymmetricGroup(4)), torch.zeros(5, 3), r"4 set elements along axis -2, got \(5, 3\)"),
    (RepAction(DefiningRep(SO3())), torch.zeros(2, 4), r"\(\.\.\., 3\), got \(2, 4\)"),
    (GraphAction(SymmetricGroup(4)), torch.zeros(4, 2), r"expects a pair"),
    (GraphAction(SymmetricGroup(4)), (torch.zeros(5, 2), torch.zeros(4, 4)), r"\(\.\.\., 4, C\), got \(5, 2\)"),
    (GraphAction(SymmetricGroup(4)), (torch.zeros(4, 2), torch.zeros(4, 3)), r"\(\.\.\., 4, 4\), got \(4, 3\)"),
    (GraphAction(SymmetricGroup(4), "edge_index"), (torch.zeros(4, 2), torch.zeros(2, 3)),
     r"integer edge_index of shape \(2, E\), got \(2, 3\) torch.float32"),
    (GraphAction(SymmetricGroup(4), "edge_index"), (torch.zeros(4, 2), torch.tensor([[0], [4]])),
     r"nodes 0..4, but the graph has nodes 0..3"),
    (TupleAction(SetAction(SymmetricGroup(3)), TrivialAction(SymmetricGroup(3))), torch.zeros(3, 1),
     r"tuple of 2 parts, got Tensor"),
])
def test_wrong_shapes_are_named(action, x, message):
    g = action.group.sample(1)[0]
    with pytest.raises(ShapeError, match=message):
        action(g, x)


def test_element_of_another_group_is_named():
    with pytest.raises(GroupMismatchError, match=r"expected an element of C4, got D4\[r\^1\]"):
        ImageAction(C4)(D4.element((0, 1)), torch.zeros(1, 4, 4))
    with pytest.raises(GroupMismatchError, match=r"expected an element of SE3.*element of SO3"):
        PointCloudAction(SE3())(SO3().sample(1)[0], torch.zeros(3, 3))


@pytest.mark.parametrize("make, message", [
    (lambda: ImageAction(CyclicGroup(8)), "acts exactly only with .* got C8"),
    (lambda: ImageAction(C4, fiber=RegularRep(D4)), r"fiber Regular\(D4\) is a representation of D4, not of C4"),
    (lambda: RotateImageAction(SO3()), "needs SO2, O2.*got SO3"),
    (lambda: PointCloudAction(SymmetricGroup(3)), "got S3"),
    (lambda: GraphAction(C4), "needs a SymmetricGroup, got C4"),
    (lambda: TupleAction(SetAction(SymmetricGroup(3)), TrivialAction(C4)), "share one group"),
])
def test_actions_of_the_wrong_group_are_named(make, message):
    with pytest.raises(GroupMismatchError, match=message):
        make()
