"""U(1) lattice gauge group, its action, and the gauge-invariant layer (gdl.gauge)."""

import math

import pytest
import torch

from gdl.gauge import (
    GaugeAction,
    GaugeInvariantCNN,
    NaiveLatticeCNN,
    U1GaugeGroup,
    gauge_invariants,
    plaquettes,
    random_configuration,
)
from gdl.groups import ShapeError, TrivialAction
from gdl.testing import equivariance_error

F64 = torch.float64


def test_group_axioms_and_action_is_a_homomorphism():
    G = U1GaugeGroup(5)
    assert max(G.axioms_error().values()) < 1e-12
    act = GaugeAction(G)
    x = random_configuration(2, 5, seed=1)
    g, h = G.sample(2, seed=2)
    lhs, rhs = act(g * h, x), act(g, act(h, x))
    assert torch.allclose(torch.cos(lhs["theta"]), torch.cos(rhs["theta"]), atol=1e-12)
    assert torch.allclose(lhs["phi"], rhs["phi"], atol=1e-12)
    with pytest.raises(ValueError, match="angle field"):
        G.element(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="integer >= 2"):
        U1GaugeGroup(1)
    with pytest.raises(ShapeError, match="'phi'"):
        act(g, {"theta": x["theta"], "phi": torch.zeros(2, 2, 4, 5)})


def test_plaquette_of_a_pure_gauge_is_zero():
    G = U1GaugeGroup(6)
    alpha = G.sample(1, seed=3)[0]
    flat = {"theta": torch.zeros(1, 2, 6, 6, dtype=F64), "phi": torch.ones(1, 2, 6, 6, dtype=F64)}
    pure = GaugeAction(G)(alpha, flat)
    assert torch.allclose(torch.cos(plaquettes(pure["theta"])), torch.ones(1, 6, 6, dtype=F64), atol=1e-12)
    # one link angle enters the two plaquettes on either side of the link, with opposite signs
    theta = torch.zeros(1, 2, 6, 6, dtype=F64)
    theta[0, 0, 2, 3] = 0.7
    p = plaquettes(theta)
    assert math.isclose(float(p.sum()), 0.0, abs_tol=1e-12) and math.isclose(float(p.abs().max()), 0.7)


@pytest.mark.parametrize("seed", [0, 1])
def test_invariant_layer_passes_and_naive_layer_fails(seed):
    G = U1GaugeGroup(6)
    kw = dict(group=G, in_action=GaugeAction(G), out_action=TrivialAction(G), seed=seed)
    x = random_configuration(3, 6, seed=seed)
    torch.manual_seed(seed)
    assert equivariance_error(GaugeInvariantCNN().double(), x, **kw).worst < 1e-12
    torch.manual_seed(seed)
    assert equivariance_error(NaiveLatticeCNN().double(), x, **kw).worst > 1e-2
    inv = gauge_invariants(x["theta"], x["phi"])
    moved = GaugeAction(G)(G.sample(1, seed=5)[0], x)
    assert torch.allclose(gauge_invariants(moved["theta"], moved["phi"]), inv, atol=1e-12)


def test_lattice_models_name_what_is_wrong_with_their_input():
    from gdl.gauge import GaugeInvariantCNN, NaiveLatticeCNN, random_configuration

    fields = random_configuration(2, 4, seed=0)
    for model in (GaugeInvariantCNN(hidden=4), NaiveLatticeCNN(hidden=4)):
        with pytest.raises(ValueError, match="'theta' and 'phi', got \\['theta'\\]"):
            model({"theta": fields["theta"]})
        with pytest.raises(ValueError, match=r"'phi' must be a tensor \(B, 2, L, L\), got \(2, 4, 4\)"):
            model({"theta": fields["theta"], "phi": fields["phi"][:, 0]})
        out = model(fields)                                   # float64 fields into a float32 model: cast
        assert out.dtype == torch.float32 and out.shape == (2, 1, 4, 4)
