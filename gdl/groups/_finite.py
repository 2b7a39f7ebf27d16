"""Finite groups: cyclic :math:`C_n`, dihedral :math:`D_n`, symmetric :math:`S_n` and the translations of a
periodic 2D grid :math:`\\mathbb{Z}_H \\times \\mathbb{Z}_W`."""

from __future__ import annotations

import itertools
import math

import torch

from gdl.groups._group import FiniteGroup, GroupElement

__all__ = ["CyclicGroup", "DihedralGroup", "SymmetricGroup", "TranslationGroup2D"]


def _is_int_tuple(value, length: int) -> bool:
    """True for a tuple of ``length`` Python integers (bools excluded): the values of the grid groups."""
    return (isinstance(value, tuple) and len(value) == length
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value))


def _check_int(name: str, value, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


class CyclicGroup(FiniteGroup):
    """:math:`C_n`, rotations of the plane by multiples of :math:`2\\pi/n`. Element ``k`` is the rotation by
    :math:`2\\pi k/n`; composition adds angles: :math:`r^a r^b = r^{(a+b) \\bmod n}`.

    Examples:
        >>> C4 = CyclicGroup(4)
        >>> C4.element(3) * C4.element(2)
        C4[1]
    """

    def __init__(self, n: int):
        self.n = _check_int("n (the order of the cyclic group)", n, 1)

    def _key(self):
        return (self.n,)

    def __repr__(self) -> str:
        return f"C{self.n}"

    def _identity(self):
        return 0

    def _compose(self, a, b):
        return (a + b) % self.n

    def _inverse(self, a):
        return (-a) % self.n

    def _canonical(self, value):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"an element of {self} is an integer k (rotation by 2*pi*k/{self.n}), "
                             f"got {value!r}")
        return value % self.n

    def _values(self):
        return list(range(self.n))

    def generators(self) -> list[GroupElement]:
        return [self.element(1)] if self.n > 1 else []

    def angle(self, g: GroupElement) -> float:
        """The rotation angle :math:`2\\pi k/n` of ``g``."""
        return 2 * math.pi * self.check(g).value / self.n

    def standard_matrix(self, value) -> torch.Tensor:
        """The 2x2 rotation matrix by :math:`2\\pi k/n`."""
        return _rotation_matrix(2 * math.pi * value / self.n)

    def permutation(self, g: GroupElement) -> tuple[int, ...]:
        """Rotation of the n vertices of a regular polygon: :math:`i \\mapsto i + k`."""
        k = self.check(g).value
        return tuple((i + k) % self.n for i in range(self.n))


class DihedralGroup(FiniteGroup):
    """:math:`D_n`, the 2n symmetries of a regular n-gon: rotations :math:`r^k` and reflections.

    Element value ``(f, k)`` is :math:`r^k s^f`: first the reflection :math:`s` (if ``f=1``), mirroring
    :math:`x \\mapsto -x` (a horizontal flip of an image), then the rotation by :math:`2\\pi k/n`.
    Composition uses :math:`s r s = r^{-1}`: :math:`(r^{a} s^{f}) (r^{b} s^{h}) = r^{a + (-1)^f b} s^{f+h}`.
    """

    def __init__(self, n: int):
        self.n = _check_int("n (the number of rotations of the dihedral group)", n, 1)

    def _key(self):
        return (self.n,)

    def __repr__(self) -> str:
        return f"D{self.n}"

    def _identity(self):
        return (0, 0)

    def _compose(self, a, b):
        fa, ka = a
        fb, kb = b
        return ((fa + fb) % 2, (ka + (-kb if fa else kb)) % self.n)

    def _inverse(self, a):
        f, k = a
        return (f, k) if f else (0, (-k) % self.n)

    def _canonical(self, value):
        if not _is_int_tuple(value, 2) or value[0] not in (0, 1):
            raise ValueError(f"an element of {self} is a pair (f, k) with f in {{0, 1}} (reflect first?) "
                             f"and an integer k (then rotate by 2*pi*k/{self.n}), got {value!r}")
        return (value[0], value[1] % self.n)

    def _values(self):
        return [(f, k) for f in (0, 1) for k in range(self.n)]

    def generators(self) -> list[GroupElement]:
        gens = [self.element((0, 1))] if self.n > 1 else []
        return gens + [self.element((1, 0))]

    def format_value(self, value) -> str:
        f, k = value
        return f"r^{k}" + (" s" if f else "")

    def standard_matrix(self, value) -> torch.Tensor:
        """:math:`R(2\\pi k/n)\\,\\mathrm{diag}(-1, 1)^f`, acting on (x, y) column vectors."""
        f, k = value
        m = _rotation_matrix(2 * math.pi * k / self.n)
        if f:
            m = m @ torch.diag(torch.tensor([-1.0, 1.0], dtype=torch.float64))
        return m

    def permutation(self, g: GroupElement) -> tuple[int, ...]:
        """Action on the n vertices of a regular polygon, vertex i at angle :math:`\\pi/2 + 2\\pi i/n`:
        the reflection :math:`x \\mapsto -x` sends vertex i to -i, the rotation adds k."""
        f, k = self.check(g).value
        return tuple(((-i if f else i) + k) % self.n for i in range(self.n))


class SymmetricGroup(FiniteGroup):
    """:math:`S_n`, all permutations of ``n`` points. Element value: a tuple ``p`` with ``i -> p[i]``;
    composition :math:`(pq)(i) = p(q(i))`."""

    def __init__(self, n: int):
        self.n = _check_int("n (the number of points permuted)", n, 1)
        if self.n > 8:
            # the group stays usable (sampling, composing); only listing all n! elements is refused
            pass

    def _key(self):
        return (self.n,)

    def __repr__(self) -> str:
        return f"S{self.n}"

    def _identity(self):
        return tuple(range(self.n))

    def _compose(self, a, b):
        return tuple(a[b[i]] for i in range(self.n))

    def _inverse(self, a):
        inv = [0] * self.n
        for i, ai in enumerate(a):
            inv[ai] = i
        return tuple(inv)

    def _canonical(self, value):
        try:
            p = tuple(int(v) for v in value)
        except TypeError:
            p = None
        if p is None or sorted(p) != list(range(self.n)):
            raise ValueError(f"an element of {self} is a permutation of 0..{self.n - 1}, got {value!r}")
        return p

    def _values(self):
        if self.n > 8:
            raise ValueError(f"{self} has {math.factorial(self.n)} elements, too many to list; "
                             f"use sample(n)")
        return list(itertools.permutations(range(self.n)))

    def sample(self, n: int, seed: int | torch.Generator = 0) -> list[GroupElement]:
        gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
        return [GroupElement(self, tuple(torch.randperm(self.n, generator=gen).tolist()))
                for _ in range(n)]

    @property
    def order(self) -> int:
        return math.factorial(self.n)

    def generators(self) -> list[GroupElement]:
        """A transposition (0 1) and the n-cycle (0 1 ... n-1)."""
        if self.n == 1:
            return []
        swap = list(range(self.n))
        swap[0], swap[1] = 1, 0
        cycle = tuple((i + 1) % self.n for i in range(self.n))
        return [self.element(tuple(swap)), self.element(cycle)] if self.n > 2 else [self.element(tuple(swap))]

    def permutation(self, g: GroupElement) -> tuple[int, ...]:
        return self.check(g).value

    def standard_matrix(self, value) -> torch.Tensor:
        """The n x n permutation matrix :math:`P e_i = e_{p(i)}`."""
        m = torch.zeros(self.n, self.n, dtype=torch.float64)
        m[list(value), list(range(self.n))] = 1.0
        return m


class TranslationGroup2D(FiniteGroup):
    """Translations of a periodic ``H x W`` grid, :math:`\\mathbb{Z}_H \\times \\mathbb{Z}_W`.

    Element value ``(dy, dx)`` moves the pixel at (i, j) to (i + dy, j + dx) modulo the grid size.
    """

    def __init__(self, shape: tuple[int, int]):
        if (not isinstance(shape, tuple) or len(shape) != 2):
            raise ValueError(f"shape must be a pair (H, W), got {shape!r}")
        self.shape = (_check_int("H", shape[0], 1), _check_int("W", shape[1], 1))

    def _key(self):
        return self.shape

    def __repr__(self) -> str:
        return f"T{self.shape[0]}x{self.shape[1]}"

    def _identity(self):
        return (0, 0)

    def _compose(self, a, b):
        return ((a[0] + b[0]) % self.shape[0], (a[1] + b[1]) % self.shape[1])

    def _inverse(self, a):
        return ((-a[0]) % self.shape[0], (-a[1]) % self.shape[1])

    def _canonical(self, value):
        if not _is_int_tuple(value, 2):
            raise ValueError(f"an element of {self} is a shift (dy, dx) of integers, got {value!r}")
        return (value[0] % self.shape[0], value[1] % self.shape[1])

    def _values(self):
        return [(dy, dx) for dy in range(self.shape[0]) for dx in range(self.shape[1])]

    def generators(self) -> list[GroupElement]:
        return [self.element((1, 0)), self.element((0, 1))]

    def permutation(self, g: GroupElement) -> tuple[int, ...]:
        """Action on the H*W pixels (row-major): pixel (i, j) goes to (i + dy, j + dx)."""
        dy, dx = self.check(g).value
        H, W = self.shape
        return tuple(((i + dy) % H) * W + (j + dx) % W for i in range(H) for j in range(W))


def _rotation_matrix(theta: float) -> torch.Tensor:
    c, s = math.cos(theta), math.sin(theta)
    return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
