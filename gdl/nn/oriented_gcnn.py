"""A G-CNN whose read-out keeps orientation: equivariant features, a classifier that is *not* invariant.

:class:`gdl.nn.GCNN` pools every regular feature field over the group (max over the :math:`|G|` orientation
channels) before its linear head, so its class scores are invariant: a 6 and the same 6 turned by 180 degrees get
the same scores, whatever the weights. :class:`OrientedGCNN` keeps the same lifting and group convolutions but reads
out all :math:`C \\cdot |G|` channels after a spatial mean,

.. math::  y = W \\bar F + b, \\qquad \\bar F_{c, g} = \\tfrac{1}{HW} \\sum_x F_c(g, x),

so the head sees *which* orientation channel responded. The features :math:`\\bar F` are still equivariant (a turn
of the input cycles the orientation channels of each field: the representation :math:`C \\cdot \\rho_\\text{reg}`),
which :class:`OrientationFeatures` (``model.encoder``) declares as its ``out_action`` for the checker; the scores
are not, by design. This is the "orientation-aware read-out" of the chapter "Common confusions": exact weight
sharing over rotations in the body, a head free to learn that upright matters.

Shapes:
    input ``(B, C_in, H, W)``; output ``(B, num_classes)``.
"""

from __future__ import annotations

import torch
from torch import nn

from gdl.groups import ImageAction, RegularRep, RepAction, ShapeError
from gdl.nn.gcnn import GCNN

__all__ = ["OrientationFeatures", "OrientedGCNN"]


class OrientationFeatures(nn.Module):
    """The body of :class:`gdl.nn.GCNN` without group pooling, then a spatial mean: ``(B, C*G)`` features that
    cycle their orientation channels when the input turns (``out_action = RepAction(C * RegularRep(group))``).

    Args: as for :class:`gdl.nn.GCNN` (no ``num_classes``).
    """

    def __init__(self, in_channels: int = 1, channels: tuple[int, ...] = (8, 8, 8), kernel_size: int = 3,
                 group="p4", pool_after: tuple[int, ...] = (), padding_mode: str = "zeros"):
        super().__init__()
        body = GCNN(in_channels, channels, kernel_size, group, pool_after, num_classes=None,
                    padding_mode=padding_mode)
        self.features, self.group, self.in_channels = body.features, body.group, in_channels
        self.out_dim = channels[-1] * len(self.group.elements())
        self.in_action = ImageAction(self.group)
        self.out_action = RepAction(channels[-1] * RegularRep(self.group))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.in_channels
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != c:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ShapeError(f"{type(self).__name__} expects images of shape (B, {c}, H, W), got {got}")
        return self.features(x).mean(dim=(-2, -1))       # (B, C*G)


class OrientedGCNN(nn.Module):
    """:class:`OrientationFeatures` (equivariant) followed by a linear head on all ``C*G`` channels (not invariant).

    Args:
        in_channels, channels, kernel_size, group, pool_after, padding_mode: as for :class:`gdl.nn.GCNN`.
        num_classes: number of class scores (default: 10).

    Attributes:
        encoder: the equivariant part; ``assert_equivariant(model.encoder, x)`` checks it with no further arguments.
        group, in_action: the image group and its action on inputs (there is no ``out_action``: the scores are
            neither invariant nor equivariant).

    Examples:
        >>> net = OrientedGCNN(1, (4, 4), kernel_size=3, group="p4")
        >>> net(torch.zeros(2, 1, 12, 12)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_channels: int = 1, channels: tuple[int, ...] = (8, 8, 8), kernel_size: int = 3,
                 group="p4", pool_after: tuple[int, ...] = (), num_classes: int = 10,
                 padding_mode: str = "zeros"):
        super().__init__()
        self.encoder = OrientationFeatures(in_channels, channels, kernel_size, group, pool_after, padding_mode)
        self.group, self.in_action = self.encoder.group, self.encoder.in_action
        self.head = nn.Linear(self.encoder.out_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))                # (B, num_classes)

    reset_parameters = GCNN.reset_parameters       # re-initialise every sub-module
    extra_repr = GCNN.extra_repr
