"""Sets of handwritten digits and the sum of their values, generated offline from scikit-learn's digits.

The task of `Zaheer et al., Deep Sets <https://arxiv.org/abs/1703.06114>`_: given a set of digit images, predict
the sum of the digits, :math:`y = \\sum_i \\mathrm{label}(x_i)`, a permutation-invariant target. Each set is a
graph without edges in the :func:`gdl.data.collate` format: node field ``x`` (n, 64) the 8x8 images flattened
to ``[0, 1]``, node field ``digit`` (n,) their labels, graph field ``y`` the sum.

The 1,797 images are split once (fixed seed, stratified by label) into a training and a test pool, so test
sets never contain an image seen in training, whatever the seed that draws the sets.
"""

from __future__ import annotations

from functools import lru_cache

import torch

__all__ = ["digit_sets", "digit_pool", "PARTS"]

#: The two disjoint pools of images.
PARTS = ("train", "test")


@lru_cache(maxsize=1)
def _all_digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits  # bundled with scikit-learn, no download

    d = load_digits()
    return torch.tensor(d.data, dtype=torch.float32) / 16.0, torch.tensor(d.target, dtype=torch.long)


def digit_pool(part: str = "train", test_fraction: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """The images ``(M, 64)`` and labels ``(M,)`` of one pool (``"train"`` or ``"test"``), split per class with
    a fixed seed so the pools are disjoint and each holds every digit in the same proportion."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    x, y = _all_digits()
    g = torch.Generator().manual_seed(1234)
    keep = []
    for c in range(10):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_test = round(test_fraction * len(idx))
        keep.append(idx[:n_test] if part == "test" else idx[n_test:])
    keep = torch.cat(keep).sort().values
    return x[keep], y[keep]


def digit_sets(n_sets: int, min_size: int = 2, max_size: int = 10, *, part: str = "train",
               seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """``n_sets`` random sets of digit images with sizes uniform in ``min_size..max_size`` and their sums.

    Args:
        n_sets: how many sets.
        min_size, max_size: the range of set sizes (inclusive).
        part: the image pool, ``"train"`` or ``"test"`` (disjoint, see :func:`digit_pool`).
        seed: draws the sizes and the images (with replacement).

    Returns:
        a list of dicts ``{"x": (n, 64) float32, "digit": (n,) long, "y": () float32 sum}`` for
        :func:`gdl.data.collate` (``y`` is a graph field).

    Examples:
        >>> sets = digit_sets(3, 2, 4, seed=0)
        >>> [tuple(s["x"].shape)[1] for s in sets], all(s["y"] == s["digit"].sum() for s in sets)
        ([64, 64, 64], True)
    """
    if not isinstance(n_sets, int) or n_sets < 1:
        raise ValueError(f"n_sets must be a positive integer, got {n_sets!r}")
    if not (isinstance(min_size, int) and isinstance(max_size, int)) or not 1 <= min_size <= max_size:
        raise ValueError(f"set sizes need 1 <= min_size <= max_size, got min_size={min_size!r}, "
                         f"max_size={max_size!r}")
    images, labels = digit_pool(part)
    g = torch.Generator().manual_seed(seed)
    sizes = torch.randint(min_size, max_size + 1, (n_sets,), generator=g).tolist()
    out = []
    for n in sizes:
        idx = torch.randint(0, len(images), (n,), generator=g)
        out.append({"x": images[idx], "digit": labels[idx], "y": labels[idx].sum().to(torch.float32)})
    return out
