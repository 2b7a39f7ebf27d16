"""Direct products of groups, and the node relabellings of a batch of graphs.

- :class:`ProductGroup` :math:`G_1 \\times G_2 \\times \\dots`: elements are tuples, composed factor by factor,
  :math:`(g_1, g_2)(h_1, h_2) = (g_1 h_1, g_2 h_2)`. E(3) x S_N, the symmetry of a molecule's energy (move the
  molecule, relabel its atoms), is ``ProductGroup(E3(), BatchSymmetricGroup(sizes))``.
- :class:`BatchSymmetricGroup` :math:`S_{n_1} \\times \\dots \\times S_{n_B}`: an independent permutation of the
  nodes of each graph of a batch, never moving a node to another graph.

A product acts on data through actions that know each factor (:class:`~gdl.groups.FieldsAction`); the two
factors must act on different things (coordinates vs node order), so that their actions commute.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch

from gdl.groups._errors import GroupMismatchError
from gdl.groups._finite import SymmetricGroup
from gdl.groups._group import FiniteGroup, Group, GroupElement

__all__ = ["ProductGroup", "BatchSymmetricGroup"]

#: Finite groups larger than this are never listed element by element.
MAX_LISTED = 100_000


def _generator(seed: int | torch.Generator) -> torch.Generator:
    return seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)


class ProductGroup(Group):
    """The direct product :math:`G_1 \\times \\dots \\times G_k`. Values are tuples ``(v_1, ..., v_k)`` of factor
    values; ``group.part(g, i)`` is the factor element :math:`g_i`.

    Finite when every factor is; ``elements()`` then lists the Cartesian product (small groups only), and
    ``sample`` draws each factor independently (Haar on the product).

    Examples:
        >>> G = ProductGroup(CyclicGroup(4), SymmetricGroup(3))
        >>> G.order
        24
        >>> G.element((1, (1, 0, 2))) * G.element((3, (1, 0, 2)))
        C4xS3[(0, (0, 1, 2))]
    """

    def __init__(self, *factors: Group):
        if len(factors) < 2:
            raise ValueError(f"a ProductGroup needs at least two factors, got {len(factors)}")
        for f in factors:
            if not isinstance(f, Group):
                raise TypeError(f"factors of a ProductGroup must be gdl groups, got {type(f).__name__}")
        self.factors = tuple(factors)
        self.is_finite = all(f.is_finite for f in factors)
        self.equality_tolerance = max(f.equality_tolerance for f in factors)

    def _key(self):
        return self.factors

    def __repr__(self) -> str:
        return "x".join(repr(f) for f in self.factors)

    def _identity(self):
        return tuple(f._identity() for f in self.factors)

    def _compose(self, a, b):
        return tuple(f._compose(x, y) for f, x, y in zip(self.factors, a, b))

    def _inverse(self, a):
        return tuple(f._inverse(x) for f, x in zip(self.factors, a))

    def _canonical(self, value):
        if isinstance(value, GroupElement):
            raise ValueError(f"an element of {self} is a tuple of {len(self.factors)} factor values, got {value!r}")
        if not isinstance(value, (tuple, list)) or len(value) != len(self.factors):
            raise ValueError(f"an element of {self} is a tuple of {len(self.factors)} values, one per factor "
                             f"({', '.join(map(repr, self.factors))}); got {value!r}")
        out = []
        for f, v in zip(self.factors, value):
            if isinstance(v, GroupElement):
                v = f.check(v).value
            out.append(f._canonical(v))
        return tuple(out)

    def _distance(self, a, b) -> float:
        return sum(f._distance(x, y) for f, x, y in zip(self.factors, a, b))

    def format_value(self, value) -> str:
        return "(" + ", ".join(f.format_value(v) for f, v in zip(self.factors, value)) + ")"

    def part(self, g: GroupElement, i: int) -> GroupElement:
        """The ``i``-th factor of ``g``, as an element of that factor."""
        return GroupElement(self.factors[i], self.check(g).value[i])

    def parts(self, g: GroupElement) -> tuple[GroupElement, ...]:
        return tuple(self.part(g, i) for i in range(len(self.factors)))

    def embed(self, i: int, h: GroupElement) -> GroupElement:
        """``h`` in factor ``i``, identity elsewhere."""
        value = list(self._identity())
        value[i] = self.factors[i].check(h).value
        return GroupElement(self, tuple(value))

    @property
    def order(self) -> int | float:
        return math.prod(f.order for f in self.factors) if self.is_finite else math.inf

    def elements(self) -> list[GroupElement]:
        if not self.is_finite:
            raise TypeError(f"{self} is continuous: it has no list of elements; use sample(n)")
        if self.order > MAX_LISTED:
            raise ValueError(f"{self} has {self.order} elements: too many to list; use sample(n)")
        return [GroupElement(self, tuple(p.value for p in combo))
                for combo in itertools.product(*(f.elements() for f in self.factors))]

    def generators(self) -> list[GroupElement]:
        return [self.embed(i, h) for i, f in enumerate(self.factors) for h in f.generators()]

    def sample(self, n: int, seed: int | torch.Generator = 0) -> list[GroupElement]:
        gen = _generator(seed)
        columns = [f.sample(n, gen) for f in self.factors]
        return [GroupElement(self, tuple(c[j].value for c in columns)) for j in range(n)]

    def factor_index(self, kinds: type | tuple[type, ...]) -> int | None:
        """Index of the first factor that is an instance of ``kinds`` (``None`` if there is none)."""
        return next((i for i, f in enumerate(self.factors) if isinstance(f, kinds)), None)


class BatchSymmetricGroup(FiniteGroup):
    """:math:`S_{n_1} \\times \\dots \\times S_{n_B}`: relabel the nodes of each graph of a batch independently.

    A value is a tuple of ``B`` permutations, permutation ``b`` a tuple ``p`` with node ``i -> p[i]`` of graph
    ``b``. :meth:`node_permutation` joins them into one permutation of all :math:`N = \\sum_b n_b` nodes of the
    batch (PyTorch Geometric's layout: graph ``b`` owns nodes ``ptr[b]:ptr[b+1]``).

    The group is large (:math:`\\prod_b n_b!` elements): it lists its elements only when small; the checker
    samples it otherwise.

    Args:
        sizes: node counts ``(n_1, ..., n_B)``, e.g. ``batch.sizes`` of a :class:`gdl.data.GraphBatch`.
    """

    def __init__(self, sizes: Sequence[int]):
        sizes = tuple(int(n) for n in sizes)
        if not sizes or any(n < 0 for n in sizes):
            raise ValueError(f"sizes must be a non-empty sequence of node counts >= 0, got {sizes!r}")
        self.sizes = sizes
        self._factors = tuple(SymmetricGroup(max(n, 1)) for n in sizes)

    def _key(self):
        return self.sizes

    def __repr__(self) -> str:
        return "x".join(f"S{n}" for n in self.sizes)

    def _identity(self):
        return tuple(tuple(range(n)) for n in self.sizes)

    def _compose(self, a, b):
        return tuple(tuple(pa[i] for i in pb) for pa, pb in zip(a, b))

    def _inverse(self, a):
        out = []
        for p in a:
            inv = [0] * len(p)
            for i, j in enumerate(p):
                inv[j] = i
            out.append(tuple(inv))
        return tuple(out)

    def _canonical(self, value):
        if not isinstance(value, (tuple, list)) or len(value) != len(self.sizes):
            raise ValueError(f"an element of {self} is a tuple of {len(self.sizes)} permutations (one per graph, "
                             f"sizes {self.sizes}); got {value!r}")
        out = []
        for b, (n, p) in enumerate(zip(self.sizes, value)):
            p = tuple(int(i) for i in p)
            if sorted(p) != list(range(n)):
                raise ValueError(f"permutation {b} of {self} must rearrange 0..{n - 1}, got {p}")
            out.append(p)
        return tuple(out)

    @property
    def order(self) -> int:
        return math.prod(math.factorial(n) for n in self.sizes)

    def _values(self):
        if self.order > MAX_LISTED:
            raise ValueError(f"{self} has {self.order} elements: too many to list; use sample(n)")
        return [tuple(c) for c in itertools.product(*(itertools.permutations(range(n)) for n in self.sizes))]

    def elements(self) -> list[GroupElement]:
        return [GroupElement(self, v) for v in self._values()]

    def generators(self) -> list[GroupElement]:
        gens = []
        for b, n in enumerate(self.sizes):
            for h in (SymmetricGroup(n).generators() if n > 1 else []):
                value = list(self._identity())
                value[b] = h.value
                gens.append(GroupElement(self, tuple(value)))
        return gens

    def sample(self, n: int, seed: int | torch.Generator = 0) -> list[GroupElement]:
        gen = _generator(seed)
        return [GroupElement(self, tuple(tuple(torch.randperm(m, generator=gen).tolist()) for m in self.sizes))
                for _ in range(n)]

    def node_permutation(self, g: GroupElement, device: torch.device | str | None = None) -> torch.Tensor:
        """``(N,)`` long tensor ``p``: node ``i`` of the batch goes to ``p[i]``."""
        value = self.check(g).value
        out, offset = [], 0
        for p in value:
            out.extend(offset + i for i in p)
            offset += len(p)
        return torch.tensor(out, dtype=torch.long, device=device)

    def padded_permutation(self, g: GroupElement, n_max: int, device=None) -> torch.Tensor:
        """``(B, n_max)`` long tensor ``q`` for padded sets (valid entries first): entry ``i`` of row ``b`` goes to
        ``q[b, i]``; padding positions stay where they are."""
        value = self.check(g).value
        if max(self.sizes) > n_max:
            raise ValueError(f"{self} has a set of {max(self.sizes)} elements, more than the padded length {n_max}")
        q = torch.arange(n_max).repeat(len(value), 1)
        for b, p in enumerate(value):
            if p:
                q[b, :len(p)] = torch.tensor(p)
        return q.to(device)

    def check_sizes(self, sizes: Sequence[int], what: str = "the data") -> None:
        """Raise :class:`GroupMismatchError` unless ``sizes`` are this group's."""
        if tuple(sizes) != self.sizes:
            raise GroupMismatchError(f"{self} permutes graphs of sizes {self.sizes}, but {what} has graphs of "
                                     f"sizes {tuple(sizes)}")
