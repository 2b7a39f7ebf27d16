"""Bases of equivariant linear maps: the solutions of the intertwiner constraint.

A linear map :math:`W: \\mathbb{R}^{M_{in}} \\to \\mathbb{R}^{M_{out}}` is equivariant when

.. math::  W \\rho_{in}(g) = \\rho_{out}(g) W \\quad \\text{for every } g \\in G .

The solutions form a linear subspace of :math:`\\mathbb{R}^{M_{out} \\times M_{in}}`. Because the constraint is
linear in :math:`W` and :math:`\\rho` is a homomorphism, it is enough to impose it for a *generating set*
:math:`g_1, \\dots, g_s` of the group and, for a continuous group, for a basis :math:`X_1, \\dots, X_r` of its
Lie algebra (Finzi, Welling & Wilson 2021, https://arxiv.org/abs/2104.09459):

.. math::  \\rho_{out}(g_i) W - W \\rho_{in}(g_i) = 0, \\qquad
           d\\rho_{out}(X_j) W - W d\\rho_{in}(X_j) = 0 .

With row-major :math:`\\operatorname{vec}`, each is
:math:`(A \\otimes I - I \\otimes B^\\top)\\operatorname{vec}(W) = 0`, and the basis is the null space
of the stacked constraints.
Three methods solve it (``method=``):

``"orbits"``
    Both representations are permutation matrices on the generators (regular, permutation, trivial
    representations and their sums and tensor products). Then :math:`W` is equivariant iff it is constant on
    the orbits of :math:`(a, b) \\mapsto (\\pi_{out}(a), \\pi_{in}(b))`; the basis is one normalised indicator
    per orbit, found as the connected components of a sparse graph in :math:`O(s M_{out} M_{in})`. This is
    exactly the weight sharing of a convolution: one free weight per orbit.
``"block"``
    Orthogonal representations (every :class:`~gdl.groups.Rep` of gdl). Every equivariant :math:`W` also
    intertwines any element of the group algebra, in particular a random symmetric one
    :math:`S = \\sum_w r_w(\\rho(w) + \\rho(w)^\\top)` (words :math:`w` of length <= 2 in the generators, plus
    :math:`d\\rho(X_i)d\\rho(X_j) + d\\rho(X_j)d\\rho(X_i)`): :math:`S_{out} W = W S_{in}`. In the eigenbases of
    :math:`S_{out}, S_{in}` this forces :math:`X = V_{out}^\\top W V_{in}` to vanish wherever the eigenvalues
    differ, which leaves roughly :math:`\\sum_\\pi \\dim\\pi\\, m^{out}_\\pi m^{in}_\\pi` unknowns instead of
    :math:`M_{out} M_{in}` (a randomised block diagonalisation, as in Murota et al. 2010). The generator
    constraints are then solved on those unknowns through their Gram matrix. Cost: two :math:`M^3`
    eigendecompositions plus a small dense problem, so a 512-dimensional representation takes about a second.
``"dense"``
    The plain SVD of the stacked constraint matrix, for any (also non-orthogonal) representation with
    :math:`M_{out} M_{in} \\le 2500`. It is the reference the other two are tested against.

``"auto"`` picks the first that applies. Results are cached in memory (never on disk, never at import time), keyed
on what the representations are (group and defining data, see :class:`~gdl.groups.Rep`), never on their names.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from gdl.groups import FiniteGroup, GroupMismatchError, Rep, RepresentationError

__all__ = ["equivariant_basis", "invariant_basis", "character_dimension", "constraint_residual",
           "constraint_pairs", "METHODS"]

#: The solver methods; ``"auto"`` chooses among them.
METHODS = ("auto", "orbits", "block", "dense")
_DENSE_LIMIT = 2500      # M_out * M_in for the plain SVD
_BLOCK_LIMIT = 6000      # unknowns left after the block reduction
_HOMOMORPHISM_TOL = 1e-6


# --- input checks ----------------------------------------------------------------------------------
def _check_pair(rep_in: Rep, rep_out: Rep) -> None:
    for name, rep in (("rep_in", rep_in), ("rep_out", rep_out)):
        if not isinstance(rep, Rep):
            raise TypeError(f"{name} must be a gdl.groups.Rep, got {type(rep).__name__} {rep!r}")
    if rep_in.group != rep_out.group:
        raise GroupMismatchError(f"rep_in {rep_in} is a representation of {rep_in.group} but rep_out {rep_out} "
                                 f"is a representation of {rep_out.group}; an equivariant map needs one group")


# --- the constraints -------------------------------------------------------------------------------
def constraint_pairs(rep_in: Rep, rep_out: Rep) -> tuple[list[tuple[torch.Tensor, torch.Tensor]],
                                                          list[tuple[torch.Tensor, torch.Tensor]]]:
    """The matrices the constraint is imposed on: ``(discrete, lie)``, lists of ``(A_out, B_in)`` pairs with
    :math:`A W = W B` required: :math:`(\\rho_{out}(g_i), \\rho_{in}(g_i))` for the generators and
    :math:`(d\\rho_{out}(X_j), d\\rho_{in}(X_j))` for the Lie algebra basis."""
    _check_pair(rep_in, rep_out)
    group = rep_in.group
    discrete = [(rep_out.matrix(g), rep_in.matrix(g)) for g in group.generators()]
    lie: list[tuple[torch.Tensor, torch.Tensor]] = []
    if not group.is_finite:
        lo, li = rep_out.lie_algebra(), rep_in.lie_algebra()
        if len(lo) != len(li):
            raise RepresentationError(f"{rep_out} and {rep_in} give {len(lo)} and {len(li)} Lie algebra "
                                      f"generators; expected the same basis of the Lie algebra of {group}")
        lie = [(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64))
               for a, b in zip(lo, li)]
    return discrete, lie


def constraint_residual(basis: torch.Tensor, rep_in: Rep, rep_out: Rep) -> float:
    """:math:`\\max_k \\max_i \\lVert A_i B_k - B_k C_i \\rVert_\\infty` over the basis maps :math:`B_k` and the
    constraint pairs :math:`(A_i, C_i)` of :func:`constraint_pairs` (0 for an exact basis)."""
    discrete, lie = constraint_pairs(rep_in, rep_out)
    basis = torch.as_tensor(basis, dtype=torch.float64)
    if basis.numel() == 0:
        return 0.0
    return max((float((a @ basis - basis @ b).abs().max()) for a, b in discrete + lie), default=0.0)


# --- the three methods -----------------------------------------------------------------------------
def _permutation_of(m: torch.Tensor) -> np.ndarray | None:
    """``p`` with ``m[p[j], j] = 1`` if ``m`` is a permutation matrix, else ``None``."""
    if not bool(((m == 0) | (m == 1)).all()):
        return None
    if not (bool((m.sum(0) == 1).all()) and bool((m.sum(1) == 1).all())):
        return None
    return m.argmax(0).numpy()


def _solve_orbits(rep_in: Rep, rep_out: Rep, discrete) -> torch.Tensor:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    mo, mi = rep_out.dim, rep_in.dim
    n = mo * mi
    pair = np.arange(n).reshape(mo, mi)                     # flat index of (a, b)
    rows, cols = [], []
    for a_mat, b_mat in discrete:                           # W[pi_out(a), pi_in(b)] = W[a, b]
        po, pi = _permutation_of(a_mat), _permutation_of(b_mat)
        rows.append(pair.ravel())
        cols.append(pair[po][:, pi].ravel())
    if rows:
        r, c = np.concatenate(rows), np.concatenate(cols)
        graph = coo_matrix((np.ones(len(r)), (r, c)), shape=(n, n))
        _, labels = connected_components(graph, directed=True, connection="weak")
    else:
        labels = np.arange(n)
    # number orbits by their first pair (row-major), so the basis order is deterministic
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    labels = order[inverse]
    sizes = np.bincount(labels)
    basis = torch.zeros(len(sizes), n, dtype=torch.float64)
    basis[torch.from_numpy(labels), torch.arange(n)] = torch.from_numpy(1.0 / np.sqrt(sizes[labels]))
    return basis.reshape(len(sizes), mo, mi)


def _is_orthogonal(m: torch.Tensor, tol: float = 1e-9) -> bool:
    return bool((m.T @ m - torch.eye(m.shape[0], dtype=m.dtype)).abs().max() <= tol)


def _is_skew(m: torch.Tensor, tol: float = 1e-9) -> bool:
    return bool((m + m.T).abs().max() <= tol * max(1.0, float(m.abs().max())))


def _group_algebra_element(mats: list[torch.Tensor], lie: list[torch.Tensor], coeffs: torch.Tensor,
                           lie_scale: float) -> torch.Tensor:
    """:math:`S = \\sum_w r_w (\\rho(w) + \\rho(w)^\\top) + \\sum_{i \\le j} r_{ij}(L_i L_j + L_j L_i)/c^2`.

    The same coefficients (and the same scale :math:`c`) must be used for both representations: :math:`S` is
    one element of the group algebra evaluated in two representations."""
    dim = (mats or lie)[0].shape[0]
    s = torch.zeros(dim, dim, dtype=torch.float64)
    words = list(mats) + [a @ b for a in mats for b in mats]
    lie_words = [(lie[i] @ lie[j] + lie[j] @ lie[i]) / lie_scale ** 2
                 for i in range(len(lie)) for j in range(i, len(lie))]
    k = 0
    for w in words:
        s += coeffs[k] * (w + w.T)
        k += 1
    for w in lie_words:
        s += coeffs[k] * w
        k += 1
    return s


def _solve_block(rep_in: Rep, rep_out: Rep, discrete, lie) -> torch.Tensor:
    mo, mi = rep_out.dim, rep_in.dim
    n_words = len(discrete) + len(discrete) ** 2 + len(lie) * (len(lie) + 1) // 2
    coeffs = torch.randn(n_words, generator=torch.Generator().manual_seed(1234), dtype=torch.float64)
    lie_scale = max([1.0] + [float(x.abs().max()) for pair in lie for x in pair])
    s_out = _group_algebra_element([a for a, _ in discrete], [a for a, _ in lie], coeffs, lie_scale)
    s_in = _group_algebra_element([b for _, b in discrete], [b for _, b in lie], coeffs, lie_scale)
    lam_o, v_o = torch.linalg.eigh(s_out)
    lam_i, v_i = torch.linalg.eigh(s_in)
    # X = V_o^T W V_i may be non-zero only where the eigenvalues agree (a generous tolerance only adds unknowns)
    tol = 1e-4 * max(1.0, float(lam_o.abs().max()), float(lam_i.abs().max()))
    ai, bi = torch.nonzero((lam_o[:, None] - lam_i[None, :]).abs() <= tol, as_tuple=True)
    nx = len(ai)
    if nx == 0:
        return torch.zeros(0, mo, mi, dtype=torch.float64)
    if nx > _BLOCK_LIMIT:
        raise RepresentationError(f"{rep_in} -> {rep_out}: {nx} unknowns remain after the block reduction "
                                  f"(limit {_BLOCK_LIMIT}); the basis itself would be very large")
    # Gram matrix of the constraints on the unknowns X[a_p, b_p]:
    #   G[p, q] = sum_i (A^T A)[a_p, a_q] d(b_p, b_q) + d(a_p, a_q) (B B^T)[b_p, b_q]
    #                   - A[a_q, a_p] B[b_q, b_p] - A[a_p, a_q] B[b_p, b_q]
    same_a = (ai[:, None] == ai[None, :]).to(torch.float64)
    same_b = (bi[:, None] == bi[None, :]).to(torch.float64)
    gram = torch.zeros(nx, nx, dtype=torch.float64)
    for a_mat, b_mat in discrete + lie:
        at = v_o.T @ a_mat @ v_o
        bt = v_i.T @ b_mat @ v_i
        cross = at[ai][:, ai] * bt[bi][:, bi]
        gram += (at.T @ at)[ai][:, ai] * same_b + same_a * (bt @ bt.T)[bi][:, bi] - cross - cross.T
    evals, evecs = torch.linalg.eigh(gram)
    null = evals <= 1e-10 * max(1.0, float(evals.abs().max()))
    x = evecs[:, null].T                                    # (D, nx)
    x_full = torch.zeros(x.shape[0], mo, mi, dtype=torch.float64)
    x_full[:, ai, bi] = x
    return v_o @ x_full @ v_i.T                             # (D, M_out, M_in)


def _solve_dense(rep_in: Rep, rep_out: Rep, discrete, lie) -> torch.Tensor:
    mo, mi = rep_out.dim, rep_in.dim
    if mo * mi > _DENSE_LIMIT:
        raise RepresentationError(f"method='dense' handles M_out * M_in <= {_DENSE_LIMIT}, got {mo} * {mi}; "
                                  f"use orthogonal representations (method='block') or permutation ones")
    eye_o, eye_i = torch.eye(mo, dtype=torch.float64), torch.eye(mi, dtype=torch.float64)
    blocks = [torch.kron(a, eye_i) - torch.kron(eye_o, b.T.contiguous()) for a, b in discrete + lie]
    if not blocks:
        return torch.eye(mo * mi, dtype=torch.float64).reshape(mo * mi, mo, mi)
    c = torch.cat(blocks)                                   # (n_constraints * M_out * M_in, M_out * M_in)
    _, sv, vh = torch.linalg.svd(c, full_matrices=True)
    sv_full = torch.zeros(mo * mi, dtype=torch.float64)
    sv_full[:len(sv)] = sv
    tol = 1e-9 * max(1.0, float(sv.max()))
    return vh[sv_full <= tol].reshape(-1, mo, mi)


def _choose(discrete, lie) -> str:
    if all(_permutation_of(a) is not None and _permutation_of(b) is not None for a, b in discrete) and \
            all(not a.any() and not b.any() for a, b in lie):
        return "orbits"
    if all(_is_orthogonal(a) and _is_orthogonal(b) for a, b in discrete) and \
            all(_is_skew(a) and _is_skew(b) for a, b in lie):
        return "block"
    return "dense"


@functools.lru_cache(maxsize=256)
def _solve(rep_in: Rep, rep_out: Rep, method: str) -> torch.Tensor:
    # the constraint is imposed on generators only, which is sound only for a homomorphism: check it (the one
    # check, Rep.check_homomorphism)
    rep_in.check_homomorphism(_HOMOMORPHISM_TOL)
    rep_out.check_homomorphism(_HOMOMORPHISM_TOL)
    discrete, lie = constraint_pairs(rep_in, rep_out)
    chosen = _choose(discrete, lie) if method == "auto" else method
    if chosen == "orbits":
        if _choose(discrete, lie) != "orbits":
            raise RepresentationError(f"method='orbits' needs permutation matrices on the generators; "
                                      f"{rep_in} -> {rep_out} has others")
        basis = _solve_orbits(rep_in, rep_out, discrete)
    elif chosen == "block":
        if _choose(discrete, lie) == "dense":
            raise RepresentationError(f"method='block' needs orthogonal rho(g) and skew d rho(X); "
                                      f"{rep_in} -> {rep_out} has others (use method='dense')")
        basis = _solve_block(rep_in, rep_out, discrete, lie)
    else:
        basis = _solve_dense(rep_in, rep_out, discrete, lie)
    return basis.contiguous()


def equivariant_basis(rep_in: Rep, rep_out: Rep, method: str = "auto") -> torch.Tensor:
    """An orthonormal basis of the equivariant linear maps from ``rep_in`` to ``rep_out``.

    .. math::  \\{W \\in \\mathbb{R}^{M_{out} \\times M_{in}} : W \\rho_{in}(g) = \\rho_{out}(g) W \\;\\forall g\\}
               = \\operatorname{span}\\{B_1, \\dots, B_D\\}, \\qquad \\langle B_k, B_l \\rangle_F = \\delta_{kl}.

    Args:
        rep_in, rep_out: representations of the same group.
        method: ``"auto"`` (default), ``"orbits"``, ``"block"`` or ``"dense"`` (see the module docstring).

    Returns:
        a float64 tensor of shape ``(D, M_out, M_in)`` (a fresh copy of the cached result).

    Raises:
        GroupMismatchError: the representations belong to different groups.
        RepresentationError: the matrices are not a representation, or the method does not apply.

    Examples:
        >>> from gdl.groups import CyclicGroup, RegularRep
        >>> equivariant_basis(RegularRep(CyclicGroup(5)), RegularRep(CyclicGroup(5))).shape
        torch.Size([5, 5, 5])
    """
    _check_pair(rep_in, rep_out)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return _solve(rep_in, rep_out, method).clone()


def invariant_basis(rep: Rep, method: str = "auto") -> torch.Tensor:
    """An orthonormal basis ``(D, M)`` of the invariant vectors :math:`\\rho(g) v = v` (maps from the trivial
    representation, e.g. a bias that does not break equivariance)."""
    from gdl.groups import TrivialRep

    return equivariant_basis(TrivialRep(rep.group), rep, method)[..., 0]


def character_dimension(rep_in: Rep, rep_out: Rep) -> int:
    """The dimension of the space of equivariant maps from characters, for a finite group:

    .. math::  D = \\frac{1}{|G|} \\sum_{g \\in G} \\overline{\\chi_{in}(g)}\\, \\chi_{out}(g),
               \\qquad \\chi(g) = \\operatorname{tr} \\rho(g).

    It needs every element (not just generators), so it is an independent check of :func:`equivariant_basis`.

    Raises:
        TypeError: the group is not finite.
    """
    _check_pair(rep_in, rep_out)
    group = rep_in.group
    if not isinstance(group, FiniteGroup):
        raise TypeError(f"character_dimension needs a finite group, got {group}; "
                        f"for continuous groups integrate over the Haar measure instead")
    total = math.fsum(rep_in.character(g) * rep_out.character(g) for g in group.elements())
    value = total / group.order
    if abs(value - round(value)) > 1e-6:
        raise RepresentationError(f"character inner product {value} of {rep_in}, {rep_out} is not an integer: "
                                  f"not representations of {group}")
    return int(round(value))
