"""Rotated handwritten digits, generated offline from scikit-learn's bundled 8x8 digits.

``sklearn.datasets.load_digits`` ships 1,797 greyscale digits of 8x8 pixels with the package, so nothing is
downloaded. Each digit is upsampled to ``content x content`` pixels (bilinear) and zero-padded to a
``size x size`` canvas. Rotations come in two kinds:

- exact: multiples of 90 degrees are ``torch.rot90``, a permutation of the pixels, on any square canvas
  (``size=8, content=8`` keeps the digits as scanned);
- arbitrary angles: bilinear resampling (:class:`gdl.groups.RotateImageAction`), which smooths the image a
  little, so a network that is exactly equivariant to the 90-degree rotations is only approximately
  equivariant to these. The canvas must then hold a digit turned by 45 degrees (``content * sqrt(2) <= size + 1``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gdl.groups import SO2, RotateImageAction

__all__ = ["ROTATIONS", "digit_images", "rotate_images", "random_angles", "RandomRotation",
           "DigitSplit", "rotated_digits"]

#: Kinds of rotation a data set or augmentation can apply.
ROTATIONS = ("none", "c4", "so2")


def digit_images(size: int = 20, content: int = 14, rotation: str = "so2") -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 scikit-learn digits as centred ``size x size`` images in ``[0, 1]``.

    Args:
        size: side of the square canvas (default: 20).
        content: side the 8x8 digit is upsampled to before zero padding (default: 14). ``size - content``
            must be even (the digit sits exactly in the middle).
        rotation: the rotations the images are meant for (see :data:`ROTATIONS`): for ``"so2"`` (default)
            the canvas must satisfy ``content * sqrt(2) <= size + 1`` so that any turn keeps the ink on it;
            quarter turns (``"c4"``) and ``"none"`` accept any canvas.

    Returns:
        ``x`` of shape ``(1797, 1, size, size)`` (float32) and labels ``y`` of shape ``(1797,)`` (int64).
    """
    for name, value in (("size", size), ("content", content)):
        if not isinstance(value, int) or value < 8:
            raise ValueError(f"{name} must be an integer >= 8 (the digits are 8x8), got {value!r}")
    if content > size or (size - content) % 2:
        raise ValueError(
            f"content={content} must be at most size={size} with an even difference (centred padding)"
        )
    if rotation not in ROTATIONS:
        raise ValueError(f"rotation must be one of {ROTATIONS}, got {rotation!r}")
    if rotation == "so2" and content * math.sqrt(2) > size + 1:
        raise ValueError(
            f"a {content}x{content} digit rotated by 45 degrees needs a canvas of about "
            f"{math.ceil(content * math.sqrt(2))} pixels, got size={size}; increase size or decrease content"
        )
    from sklearn.datasets import load_digits  # bundled with scikit-learn, no download

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0          # (N, 1, 8, 8)
    if content != 8:
        x = F.interpolate(x, size=(content, content), mode="bilinear", align_corners=False)
    p = (size - content) // 2
    x = F.pad(x, (p, p, p, p)).clamp(0.0, 1.0)                                      # (N, 1, size, size)
    return x, torch.tensor(digits.target, dtype=torch.long)


def rotate_images(x: torch.Tensor, angles_deg: torch.Tensor | float) -> torch.Tensor:
    """Rotate images counter-clockwise about their centre by ``angles_deg`` degrees.

    Multiples of 90 degrees use ``torch.rot90`` (exact: the same convention as ``ImageAction`` of the
    rotation groups, so ``rotate_images(x, 90) == torch.rot90(x, 1, dims=(-2, -1))``). Other angles
    resample bilinearly with zeros outside the canvas, with the one image rotation of the package,
    :class:`gdl.groups.RotateImageAction` of :math:`SO(2)`:

    .. math::  (R_\\theta f)(p) = f(R_\\theta^{-1} p)

    Args:
        x: images ``(B, C, H, W)`` with ``H == W``.
        angles_deg: one angle for all images or a tensor of ``B`` angles.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[-1] != x.shape[-2]:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"rotate_images expects square images of shape (B, C, H, H), got {got}")
    B = x.shape[0]
    angles = torch.as_tensor(angles_deg, dtype=torch.float64).reshape(-1)
    if angles.numel() == 1:
        angles = angles.expand(B)
    if angles.numel() != B:
        raise ValueError(f"expected one angle or {B} angles (one per image), got {angles.numel()}")
    quarter = torch.remainder(angles, 90.0) == 0
    out = torch.empty_like(x)
    if quarter.any():
        k = (torch.remainder(angles, 360.0) // 90).long()
        for j in range(4):
            sel = quarter & (k == j)
            if sel.any():
                out[sel] = torch.rot90(x[sel], j, dims=(-2, -1))
    if not quarter.all():
        so2 = SO2()
        turn = RotateImageAction(so2)
        turn.check_input(x)
        other = (~quarter).nonzero().flatten()
        matrices = {a: turn.sampling_matrix(so2.element(math.radians(a))) for a in angles[other].unique().tolist()}
        mats = torch.stack([matrices[a] for a in angles[other].tolist()])
        out[other] = turn.resample(x[other], mats)                 # one resampling for every other angle
    return out


def random_angles(n: int, rotation: str, generator: torch.Generator) -> torch.Tensor:
    """``n`` angles in degrees: zeros (``"none"``), multiples of 90 (``"c4"``) or uniform on [0, 360) (``"so2"``)."""
    if rotation not in ROTATIONS:
        raise ValueError(f"rotation must be one of {ROTATIONS}, got {rotation!r}")
    if rotation == "none":
        return torch.zeros(n, dtype=torch.float64)
    if rotation == "c4":
        return 90.0 * torch.randint(0, 4, (n,), generator=generator).double()
    return 360.0 * torch.rand(n, generator=generator, dtype=torch.float64)


class RandomRotation:
    """Data augmentation: rotate every image of a batch by its own random angle (see :func:`random_angles`).

    Call as ``aug(x, generator)``; :func:`gdl.training.train` passes its seeded generator.
    """

    def __init__(self, rotation: str = "so2"):
        if rotation not in ROTATIONS:
            raise ValueError(f"rotation must be one of {ROTATIONS}, got {rotation!r}")
        self.rotation = rotation

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        angles = random_angles(x.shape[0], self.rotation, generator)
        return rotate_images(x, angles.to(x.device) if x.device.type == "cpu" else angles)

    def __repr__(self) -> str:
        return f"RandomRotation({self.rotation!r})"


@dataclass
class DigitSplit:
    """A train/test split (and, when asked for, a validation set): images ``(N, 1, H, W)``, labels ``(N,)``."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None

    def __repr__(self) -> str:
        val = "" if self.x_val is None else f", val={tuple(self.x_val.shape)}"
        return f"DigitSplit(train={tuple(self.x_train.shape)}, test={tuple(self.x_test.shape)}{val})"


def _balanced_order(y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shuffle indices so that classes take turns (every prefix is close to class-balanced)."""
    classes = torch.unique(y)
    queues = [torch.nonzero(y == c).flatten() for c in classes]
    queues = [q[torch.randperm(len(q), generator=generator)] for q in queues]
    order, i = [], 0
    while any(i < len(q) for q in queues):
        for c in torch.randperm(len(classes), generator=generator).tolist():
            if i < len(queues[c]):
                order.append(queues[c][i])
        i += 1
    return torch.stack(order)


def rotated_digits(n_train: int, n_test: int = 500, *, n_val: int = 0, rotation: str = "so2",
                   test_rotation: str | None = None, size: int = 20, content: int = 14, seed: int = 0) -> DigitSplit:
    """A seeded train/test split of the digits, each image rotated by a random angle.

    The test set depends only on ``seed`` and ``n_test``; the validation set (``n_val`` digits, rotated like
    the training set, for early stopping) on those and ``n_val``; the training set is a class-balanced prefix
    of the remaining digits, so a larger ``n_train`` (same seed) contains every smaller one, which makes
    learning curves comparable across sizes.

    Args:
        n_train: number of training images (1 to ``1797 - n_test - n_val``).
        n_test: number of test images (default: 500).
        n_val: number of validation images (default: 0, no validation set).
        rotation: rotation of the training images, one of ``"none"``, ``"c4"``, ``"so2"`` (default: ``"so2"``).
        test_rotation: rotation of the test images (default: the same as ``rotation``).
        size, content: canvas and digit size, see :func:`digit_images`.
        seed: seeds the split and the angles.
    """
    test_rotation = rotation if test_rotation is None else test_rotation
    for name, value in (("rotation", rotation), ("test_rotation", test_rotation)):
        if value not in ROTATIONS:
            raise ValueError(f"{name} must be one of {ROTATIONS}, got {value!r}")
    x, y = digit_images(size, content, "so2" if "so2" in (rotation, test_rotation) else "c4")
    total = len(y)
    if not isinstance(n_test, int) or not 1 <= n_test < total:
        raise ValueError(f"n_test must be an integer in 1..{total - 1}, got {n_test!r}")
    if not isinstance(n_val, int) or not 0 <= n_val < total - n_test:
        raise ValueError(f"n_val must be an integer in 0..{total - n_test - 1}, got {n_val!r}")
    pool = total - n_test - n_val
    if not isinstance(n_train, int) or not 1 <= n_train <= pool:
        raise ValueError(
            f"n_train must be an integer in 1..{pool} (there are {total} digits, n_test={n_test} and "
            f"n_val={n_val}), got {n_train!r}"
        )
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(total, generator=g)
    test_idx, val_idx, rest = perm[:n_test], perm[n_test:n_test + n_val], perm[n_test + n_val:]
    train_idx = rest[_balanced_order(y[rest], g)][:n_train]
    g_train = torch.Generator().manual_seed(seed + 1)
    g_test = torch.Generator().manual_seed(seed + 2)
    # angles for the whole pool, so a prefix of a larger training set has the same angles
    train_angles = random_angles(pool, rotation, g_train)[:n_train]
    test_angles = random_angles(n_test, test_rotation, g_test)
    split = DigitSplit(
        x_train=rotate_images(x[train_idx], train_angles), y_train=y[train_idx],
        x_test=rotate_images(x[test_idx], test_angles), y_test=y[test_idx],
    )
    if n_val:
        val_angles = random_angles(n_val, rotation, torch.Generator().manual_seed(seed + 3))
        split.x_val, split.y_val = rotate_images(x[val_idx], val_angles), y[val_idx]
    return split
