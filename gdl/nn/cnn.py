"""Plain convolutional networks: the translation-equivariant baseline of the course.

A convolution commutes with shifts of its input,

.. math::  (T_t f) \\star \\psi = T_t (f \\star \\psi), \\qquad (T_t f)(x) = f(x - t),

exactly when the image is treated as periodic (``padding_mode="circular"``) and every stride is 1.
Zero padding breaks it near the border, and a stride ``s`` keeps it only for shifts by multiples of ``s``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CNN"]


class CNN(nn.Module):
    """A stack of ``Conv2d -> ReLU`` layers producing feature maps (and, optionally, class scores).

    Args:
        in_channels: channels of the input image.
        hidden_channels: channels of every hidden feature map (default: 16).
        num_layers: number of convolutions (default: 3).
        kernel_size: odd filter size (default: 3).
        padding_mode: ``"circular"`` (exact shift equivariance) or ``"zeros"`` (default: ``"circular"``).
        stride: stride of every convolution (default: 1).
        num_classes: if given, global average pooling and a linear layer produce class scores, which are
            shift *invariant* (exactly so with circular padding and stride 1).
        pool_after: indices of the layers followed by ``2x2`` max pooling (default: none). Pooling keeps
            shift equivariance only for even shifts; it is here so a digit classifier can match the layout
            of :class:`gdl.nn.GCNN` layer for layer.

    Shapes:
        input ``(B, C_in, H, W)``; output ``(B, C_hidden, H', W')`` feature maps, or ``(B, num_classes)``.

    Examples:
        >>> net = CNN(1, hidden_channels=4, num_layers=2)
        >>> net(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 4, 8, 8])
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int = 16,
        num_layers: int = 3,
        kernel_size: int = 3,
        padding_mode: str = "circular",
        stride: int = 1,
        num_classes: int | None = None,
        pool_after: tuple[int, ...] = (),
    ):
        super().__init__()
        if padding_mode not in ("circular", "zeros"):
            raise ValueError(f"padding_mode must be 'circular' or 'zeros', got {padding_mode!r}")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd so the filter has a centre, got {kernel_size}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        bad = [i for i in pool_after if not 0 <= i < num_layers]
        if bad:
            raise ValueError(f"pool_after indices {bad} are outside 0..{num_layers - 1}")
        self.pool_after = tuple(pool_after)
        self.in_channels, self.hidden_channels = in_channels, hidden_channels
        self.padding_mode, self.stride, self.num_classes = padding_mode, stride, num_classes
        layers: list[nn.Module] = []
        channels = in_channels
        for i in range(num_layers):
            layers += [
                nn.Conv2d(
                    channels, hidden_channels, kernel_size, stride=stride,
                    padding=kernel_size // 2, padding_mode=padding_mode,
                ),
                nn.ReLU(),
            ]
            if i in self.pool_after:
                layers.append(nn.MaxPool2d(2))
            channels = hidden_channels
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(hidden_channels, num_classes) if num_classes is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"CNN expects images of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        h = self.features(x)                      # (B, C, H', W')
        if self.head is None:
            return h
        return self.head(h.mean(dim=(-2, -1)))    # (B, num_classes)

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.reset_parameters()
