"""Wallpaper groups of a periodic square grid: p4 (translations and quarter turns) and p4m (plus mirrors).

They are semidirect products :math:`\\mathbb{Z}_N^2 \\rtimes C_4` and :math:`\\mathbb{Z}_N^2 \\rtimes D_4`: an element
:math:`(t, r)` acts on an image by first rotating/flipping it about its centre with :math:`r` (exactly as
:class:`~gdl.groups.ImageAction` does for C4/D4) and then rolling it by :math:`t = (dy, dx)` (as for
:class:`~gdl.groups.TranslationGroup2D`). Rotating after a shift is a shift by the rotated displacement,
:math:`r\\,t = (M_r t)\\,r`, so composition is

.. math::  (t_1, r_1)(t_2, r_2) = (t_1 + M_{r_1} t_2 \\bmod N,\\; r_1 r_2),

where :math:`M_r` is the 2x2 integer matrix of :math:`r` acting on (row, column) displacements: a quarter turn
``torch.rot90`` maps (dy, dx) to (-dx, dy) and the left-right flip maps (dy, dx) to (dy, -dx).
"""

from __future__ import annotations

from gdl.groups._finite import CyclicGroup, DihedralGroup, TranslationGroup2D, _check_int, _is_int_tuple
from gdl.groups._group import FiniteGroup, GroupElement

__all__ = ["P4", "P4M"]


def _turn(t: tuple[int, int], k: int) -> tuple[int, int]:
    """``k`` quarter turns (``torch.rot90`` direction) of a displacement (dy, dx)."""
    dy, dx = t
    for _ in range(k % 4):
        dy, dx = -dx, dy
    return dy, dx


class _Wallpaper(FiniteGroup):
    point_group: CyclicGroup | DihedralGroup

    def __init__(self, n: int):
        self.n = _check_int("n (the side of the periodic n x n grid)", n, 1)
        self.translations = TranslationGroup2D((self.n, self.n))

    def _key(self):
        return (self.n,)

    # value <-> (point-group value, translation)
    def _split(self, value) -> tuple:
        raise NotImplementedError

    def _join(self, r, t) -> tuple:
        raise NotImplementedError

    def _linear(self, r, t: tuple[int, int]) -> tuple[int, int]:
        """:math:`M_r t` for the point-group value ``r``."""
        f, k = r if isinstance(self.point_group, DihedralGroup) else (0, r)
        dy, dx = t
        return _turn((dy, -dx) if f else (dy, dx), k)

    def _identity(self):
        return self._join(self.point_group._identity(), (0, 0))

    def _compose(self, a, b):
        ra, ta = self._split(a)
        rb, tb = self._split(b)
        mt = self._linear(ra, tb)
        return self._join(self.point_group._compose(ra, rb), ((ta[0] + mt[0]) % self.n, (ta[1] + mt[1]) % self.n))

    def _inverse(self, a):
        r, t = self._split(a)
        ri = self.point_group._inverse(r)
        mt = self._linear(ri, t)
        return self._join(ri, ((-mt[0]) % self.n, (-mt[1]) % self.n))

    def _values(self):
        return [self._join(r, t) for r in self.point_group._values() for t in self.translations._values()]

    def generators(self) -> list[GroupElement]:
        return ([self.element(self._join(g.value, (0, 0))) for g in self.point_group.generators()]
                + [self.element(self._join(self.point_group._identity(), (1, 0)))])

    def rotation_part(self, g: GroupElement) -> GroupElement:
        """The point-group element (C4 or D4) of ``g``: the quotient map onto :math:`G/\\mathbb{Z}_N^2`."""
        return GroupElement(self.point_group, self._split(self.check(g).value)[0])

    def translation_part(self, g: GroupElement) -> GroupElement:
        """The shift :math:`t` in :math:`g = (t, r)` (applied after the rotation)."""
        return GroupElement(self.translations, self._split(self.check(g).value)[1])

    def from_parts(self, rotation: GroupElement, translation: GroupElement) -> GroupElement:
        """The element :math:`(t, r)`: first ``rotation`` (C4/D4), then ``translation``."""
        self.point_group.check(rotation)
        self.translations.check(translation)
        return GroupElement(self, self._join(rotation.value, translation.value))

    def format_value(self, value) -> str:
        r, t = self._split(value)
        return f"{self.point_group.format_value(r)}, t={t}"


class P4(_Wallpaper):
    """p4 on a periodic ``n x n`` grid: value ``(k, dy, dx)``, rotate by ``k`` quarter turns then shift.
    Order :math:`4n^2`."""

    def __init__(self, n: int):
        super().__init__(n)
        self.point_group = CyclicGroup(4)

    def __repr__(self) -> str:
        return f"P4({self.n})"

    def _split(self, value):
        return value[0], (value[1], value[2])

    def _join(self, r, t):
        return (r, t[0], t[1])

    def _canonical(self, value):
        if not _is_int_tuple(value, 3):
            raise ValueError(f"an element of {self} is a triple (k, dy, dx) of integers: k quarter turns, "
                             f"then a shift by (dy, dx); got {value!r}")
        return (value[0] % 4, value[1] % self.n, value[2] % self.n)


class P4M(_Wallpaper):
    """p4m on a periodic ``n x n`` grid: value ``(f, k, dy, dx)``, flip left-right if ``f``, rotate by ``k``
    quarter turns, then shift. Order :math:`8n^2`."""

    def __init__(self, n: int):
        super().__init__(n)
        self.point_group = DihedralGroup(4)

    def __repr__(self) -> str:
        return f"P4M({self.n})"

    def _split(self, value):
        return (value[0], value[1]), (value[2], value[3])

    def _join(self, r, t):
        return (r[0], r[1], t[0], t[1])

    def _canonical(self, value):
        if not _is_int_tuple(value, 4) or value[0] not in (0, 1):
            raise ValueError(f"an element of {self} is a tuple (f, k, dy, dx) of integers, f in {{0, 1}}: flip, "
                             f"k quarter turns, then a shift by (dy, dx); got {value!r}")
        return (value[0], value[1] % 4, value[2] % self.n, value[3] % self.n)
