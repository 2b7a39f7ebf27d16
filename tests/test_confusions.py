"""The counter-example models of the chapter "Common confusions": point-cloud read-outs and the oriented G-CNN.

Each model's claim is checked with the one checker, and each deliberately wrong variant must fail it.
"""

import pytest
import torch
import torch.nn.functional as F

from gdl.groups import E3, CyclicGroup, DihedralGroup, ImageAction, PointCloudAction, ShapeError, TrivialAction
from gdl.nn.oriented_gcnn import OrientationFeatures, OrientedGCNN
from gdl.nn.point_models import DistanceFeatures, InvariantPointModel, VectorFeatureModel, VectorPointModel
from gdl.testing import assert_equivariant, assert_invariant, equivariance_error
from gdl.training import evaluate, train

WATER = [8, 1, 1]


def _clouds(batch=4, n=3, seed=0, dtype=torch.float64):
    return torch.randn(batch, n, 3, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("build", [lambda: InvariantPointModel(WATER, out_dim=3), lambda: VectorPointModel(WATER),
                                   lambda: VectorFeatureModel(WATER, readout="norm")],
                         ids=["invariant", "vector", "vector-features-norm"])
def test_point_models_keep_their_claim(build, dtype, float_tolerance):
    torch.manual_seed(0)
    model = build()
    report = assert_equivariant(model, _clouds(), dtype=dtype)      # reads group / in_action / out_action
    assert report.worst < float_tolerance
    adversarial = equivariance_error(model, _clouds(), dtype=torch.float64, adversarial_steps=10, n_elements=4)
    assert adversarial.passed, str(adversarial)


def test_component_readout_is_caught(dtype):
    torch.manual_seed(0)
    model = VectorFeatureModel(WATER, readout="components")
    report = equivariance_error(model, _clouds(), dtype=dtype)
    assert not report.passed and report.worst > 1e-3, str(report)
    # translations alone are harmless (centred positions): the violation is rotational
    e3 = E3()
    shift = e3.element((torch.eye(3, dtype=torch.float64), torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)))
    assert equivariance_error(model, _clouds(), elements=[shift]).passed
    with pytest.raises(AssertionError, match="FAIL"):
        assert_invariant(model, _clouds())


def test_vector_model_is_not_invariant_and_invariant_model_is_not_equivariant():
    torch.manual_seed(0)
    vec, inv = VectorPointModel(WATER), InvariantPointModel(WATER, out_dim=3)
    e3 = E3()
    assert not equivariance_error(vec, _clouds(), group=e3, in_action=PointCloudAction(e3),
                                  out_action=TrivialAction(e3)).passed
    assert not equivariance_error(inv, _clouds(), out_action=vec.out_action).passed


def test_vector_model_fits_a_dipole_the_invariant_model_cannot():
    g = torch.Generator().manual_seed(1)
    charges = torch.tensor([-0.8, 0.4, 0.4])
    x = torch.randn(256, 3, 3, generator=g)
    y = (charges[:, None] * x).sum(1)                                 # a point-charge dipole, (B, 3)
    losses = {}
    for name, model in {"vector": VectorPointModel(WATER), "invariant": InvariantPointModel(WATER, out_dim=3)}.items():
        train(model, x, y, epochs=30, batch_size=64, loss_fn=F.mse_loss, progress=False, device="cpu")
        losses[name] = evaluate(model, x, y, loss_fn=F.mse_loss, device="cpu")["loss"]
    assert losses["vector"] < 0.01 * float(y.pow(2).mean())
    assert losses["invariant"] > 0.5 * float(y.pow(2).mean())       # the floor: it can only predict ~0


def test_point_model_bad_input():
    model = VectorPointModel(WATER)
    with pytest.raises(ShapeError, match=r"\(B, 3, 3\)"):
        model(torch.zeros(2, 4, 3))
    with pytest.raises(ShapeError, match="float positions"):
        model(torch.zeros(2, 3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="readout"):
        VectorFeatureModel(WATER, readout="mean")
    with pytest.raises(ValueError, match="two points"):
        DistanceFeatures([8])
    assert "species=(8, 1, 1)" in repr(model)


@pytest.mark.parametrize("group", ["p4", DihedralGroup(4)], ids=["p4", "p4m"])
def test_oriented_gcnn_features_equivariant_scores_not_invariant(group, dtype, float_tolerance):
    torch.manual_seed(0)
    model = OrientedGCNN(1, (3, 3), kernel_size=3, group=group, pool_after=(0,))
    x = torch.randn(3, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    report = assert_equivariant(model.encoder, x, dtype=dtype)      # C * regular representation
    assert report.worst < float_tolerance
    scores = equivariance_error(model, x, group=model.group, in_action=model.in_action,
                                out_action=TrivialAction(model.group))
    assert not scores.passed and scores.worst > 1e-3
    assert model(x).shape == (3, 10)


def test_oriented_gcnn_bad_input():
    model = OrientationFeatures(2, (2,), kernel_size=3)
    with pytest.raises(ShapeError, match=r"\(B, 2, H, W\)"):
        model(torch.zeros(1, 1, 8, 8))
    assert isinstance(model.in_action, ImageAction) and model.group == CyclicGroup(4)
    assert "params=" in repr(OrientedGCNN(1, (2,), kernel_size=3))
