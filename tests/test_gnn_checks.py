"""The GNN layers' input check: one reduction decides, the row search runs only when something is off."""

import pytest
import torch

from gdl.data import GraphBatch
from gdl.nn import GNN, GCNConv, GINConv


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_node_features_are_named_by_row(bad):
    x = torch.randn(6, 4)
    x[4, 2] = bad
    ei = torch.tensor([[0, 1, 2], [1, 2, 3]])
    for layer in (GCNConv(4, 3), GINConv(4, 3)):
        with pytest.raises(ValueError, match=r"'x' has NaN or infinite entries at rows \[4\]"):
            layer(x, ei)


def test_finite_features_whose_sum_overflows_pass():
    x = torch.full((6, 4), 3e38)                          # every entry finite, their float32 sum is inf
    assert not torch.isfinite(x.sum())
    ei = torch.tensor([[0, 1, 2], [1, 2, 3]])
    GINConv(4, 3)(x, ei)
    GCNConv(4, 3)(x, ei)


def test_non_finite_edge_features_are_named():
    x = torch.randn(4, 2)
    e = torch.randn(3, 5)
    e[1, 0] = float("nan")
    graphs = GraphBatch({"x": x}, {"edge_attr": e}, edge_index=torch.tensor([[0, 1, 2], [1, 2, 3]]))
    with pytest.raises(ValueError, match=r"GNN: 'edge_attr' has NaN or infinite entries at rows \[1\]"):
        GNN(2, 8, 3, conv="mpnn", edge_dim=5)(graphs)
