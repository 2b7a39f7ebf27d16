"""check_edge_index reads the range once per edge_index object and version, and still refuses bad values."""

import pytest
import torch

from gdl.nn.message_passing import check_edge_index


def test_the_range_is_read_once_per_unchanged_edge_index(monkeypatch):
    reads = []
    real_aminmax = torch.aminmax

    def counting_aminmax(*args, **kwargs):                   # the range is read with one aminmax
        reads.append(1)
        return real_aminmax(*args, **kwargs)

    monkeypatch.setattr(torch, "aminmax", counting_aminmax)
    ei = torch.tensor([[0, 1, 2], [1, 2, 0]])
    for _ in range(4):                                       # four layers sharing one edge_index
        check_edge_index(ei, 3)
    assert len(reads) == 1
    check_edge_index(ei, 4)                                  # another N: checked again
    check_edge_index(ei.clone(), 3)                          # another object with the same values: checked again
    assert len(reads) == 3


def test_an_in_place_change_is_checked_again():
    ei = torch.tensor([[0, 1], [1, 0]])
    check_edge_index(ei, 2)
    ei[0, 0] = 7                                             # bumps ei._version
    with pytest.raises(ValueError, match=r"refers to nodes 0\.\.7, but there are only 2 nodes"):
        check_edge_index(ei, 2)
    view = ei[:, :1]
    ei[0, 0] = 0
    check_edge_index(ei, 2)
    view[0, 0] = 5                                           # a view shares the version counter
    with pytest.raises(ValueError, match="refers to nodes"):
        check_edge_index(ei, 2)
