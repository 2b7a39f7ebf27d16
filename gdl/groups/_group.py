"""Abstract groups and their elements.

A group :math:`G` is a set with a composition :math:`(g, h) \\mapsto gh`, an identity :math:`e` and inverses,
such that :math:`(gh)k = g(hk)`, :math:`eg = ge = g` and :math:`g g^{-1} = e`. Elements are
:class:`GroupElement` objects that remember their group, so using one with another group fails loudly.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from gdl.groups._errors import GroupMismatchError

__all__ = ["Group", "GroupElement", "FiniteGroup"]


@dataclass(frozen=True, eq=False)
class GroupElement:
    """An element of ``group`` with a group-specific ``value`` (an int, a tuple, a matrix...).

    ``g * h`` composes (apply ``h`` first, then ``g``); ``g.inverse()`` inverts.
    """

    group: Group
    value: Any

    def __mul__(self, other: GroupElement) -> GroupElement:
        return self.group.compose(self, other)

    def inverse(self) -> GroupElement:
        return self.group.inverse(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GroupElement) or other.group != self.group:
            return NotImplemented if not isinstance(other, GroupElement) else False
        return self.group.distance(self, other) <= self.group.equality_tolerance

    def __hash__(self) -> int:
        if not self.group.is_finite:
            raise TypeError(f"elements of the continuous group {self.group} are not hashable")
        return hash((self.group, self.value))

    def __repr__(self) -> str:
        return f"{self.group}[{self.group.format_value(self.value)}]"


class Group(abc.ABC):
    """Base class of every group. Subclasses implement the value-level operations.

    Groups are compared by their defining parameters (``CyclicGroup(4) == CyclicGroup(4)``).
    """

    #: Whether ``elements()`` can list the whole group.
    is_finite: bool = True
    #: Elements closer than this (see :meth:`distance`) are equal.
    equality_tolerance: float = 0.0

    # --- to implement -------------------------------------------------------------------------
    @abc.abstractmethod
    def _key(self) -> tuple:
        """The defining parameters, used for equality, hashing and the name."""

    @abc.abstractmethod
    def _identity(self) -> Any: ...

    @abc.abstractmethod
    def _compose(self, a: Any, b: Any) -> Any:
        """Value of :math:`ab` (apply ``b`` first)."""

    @abc.abstractmethod
    def _inverse(self, a: Any) -> Any: ...

    @abc.abstractmethod
    def _canonical(self, value: Any) -> Any:
        """Validate a value and return its canonical form; raise ``ValueError`` naming the problem."""

    def _distance(self, a: Any, b: Any) -> float:
        """Distance between two values (0 when equal). Finite groups: 0 or 1."""
        return 0.0 if a == b else 1.0

    def format_value(self, value: Any) -> str:
        return str(value)

    # --- public API ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self)

    def element(self, value: Any) -> GroupElement:
        """The element with the given value, validated."""
        return GroupElement(self, self._canonical(value))

    def identity(self) -> GroupElement:
        return GroupElement(self, self._identity())

    def compose(self, a: GroupElement, b: GroupElement) -> GroupElement:
        """:math:`ab`: the element acting as ``b`` followed by ``a``."""
        self.check(a)
        self.check(b)
        return GroupElement(self, self._compose(a.value, b.value))

    def inverse(self, a: GroupElement) -> GroupElement:
        self.check(a)
        return GroupElement(self, self._inverse(a.value))

    def distance(self, a: GroupElement, b: GroupElement) -> float:
        self.check(a)
        self.check(b)
        return float(self._distance(a.value, b.value))

    def check(self, g: Any) -> GroupElement:
        """Raise a clear error unless ``g`` is an element of this group; return it."""
        if not isinstance(g, GroupElement):
            raise TypeError(f"expected an element of {self}, got {type(g).__name__} {g!r}")
        if g.group != self:
            raise GroupMismatchError(f"expected an element of {self}, got {g!r}, an element of {g.group}")
        return g

    @property
    def order(self) -> int | float:
        """Number of elements (``math.inf`` for continuous groups)."""
        return len(self.elements()) if self.is_finite else math.inf

    @abc.abstractmethod
    def generators(self) -> list[GroupElement]:
        """A generating set (finite groups); the discrete generators for continuous ones."""

    def elements(self) -> list[GroupElement]:
        raise TypeError(f"{self} is continuous: it has no list of elements; use sample(n)")

    def sample(self, n: int, seed: int | torch.Generator = 0) -> list[GroupElement]:
        """``n`` elements drawn uniformly (Haar measure for continuous groups), reproducibly."""
        gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
        elems = self.elements()
        idx = torch.randint(len(elems), (n,), generator=gen).tolist()
        return [elems[i] for i in idx]

    def lie_algebra(self) -> list[torch.Tensor]:
        """A basis of the Lie algebra in the group's defining (standard) representation.

        Finite groups have none (empty list).
        """
        return []

    def axioms_error(self, elements: Sequence[GroupElement] | None = None, n: int = 8,
                     seed: int = 0) -> dict[str, float]:
        """Measure the group axioms on ``elements`` (default: all, or ``n`` samples).

        Returns the worst :meth:`distance` for associativity :math:`(gh)k = g(hk)`, identity
        :math:`eg = ge = g` and inverse :math:`g g^{-1} = g^{-1} g = e`.
        """
        if elements is None:
            elements = self.elements() if self.is_finite and self.order <= 24 else self.sample(n, seed)
        e = self.identity()
        d = self.distance
        assoc = max(d((g * h) * k, g * (h * k)) for g in elements for h in elements for k in elements)
        ident = max(max(d(e * g, g), d(g * e, g)) for g in elements)
        inv = max(max(d(g * g.inverse(), e), d(g.inverse() * g, e)) for g in elements)
        return {"associativity": assoc, "identity": ident, "inverse": inv}

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._key() == other._key()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._key()))


class FiniteGroup(Group):
    """A finite group whose elements can be listed; :meth:`index` numbers them 0..|G|-1."""

    is_finite = True

    @abc.abstractmethod
    def _values(self) -> list[Hashable]:
        """All element values, the identity first."""

    def elements(self) -> list[GroupElement]:
        return [GroupElement(self, v) for v in self._values()]

    @property
    def order(self) -> int:
        return len(self._values())

    def index(self, g: GroupElement) -> int:
        """Position of ``g`` in :meth:`elements`."""
        self.check(g)
        table = self.__dict__.get("_index_table")
        if table is None:
            table = {v: i for i, v in enumerate(self._values())}
            self.__dict__["_index_table"] = table
        return table[g.value]

    def permutation(self, g: GroupElement) -> tuple[int, ...] | None:
        """The group's natural action on points ``0..n-1`` as a tuple ``p`` with ``g: i -> p[i]``,
        or ``None`` if the group has no natural permutation action."""
        return None
