"""Expressivity of geometric graph networks: counterexample pairs and geometric Weisfeiler-Leman tests.

Two geometric graphs that a test cannot tell apart get the same output from every network that test bounds,
whatever its weights. The pairs below are local environments (a centre atom and the neighbours inside a
cutoff, the graph being the centre's bonds) built so that a given kind of invariant is identical:

- :func:`angle_pair`: the same distances (two-body), different angles (three-body);
- :func:`homometric_pair`: the same distances *and* the same multiset of angles at the centre, so every
  two-body and every three-body correlation agrees (Pozdnyakov et al. 2020), yet the clouds are not congruent;
- :func:`mirror_pair`: a chiral environment and its mirror image, congruent under O(3) but not under SO(3).

The tests (:func:`wl_test`) refine node colours as in Joshi et al. 2023, "On the expressive power of geometric
graph neural networks" (https://arxiv.org/abs/2301.09308). Colours are compared across both graphs at once;
two graphs are *separated* when their multisets of colours differ after some iteration:

- ``"2-body"``: a node's new colour is its colour and the multiset :math:`\\{\\{(c_j, r_{ij})\\}\\}` of its
  neighbours' colours and distances (the invariant WL test, two-body: SchNet's messages);
- ``"3-body"``: in addition the multiset over pairs of neighbours :math:`\\{\\{(c_j, c_k, r_{ij}, r_{ik},
  \\theta_{jik})\\}\\}` (three-body: angles at the node);
- ``"edge"``: colours live on directed edges :math:`j \\to i` and are refined by the multiset over
  :math:`k \\in \\mathcal N(j) \\setminus \\{i\\}` of :math:`(c_{k \\to j}, r_{kj}, \\theta_{kji})` (DimeNet's
  directional messages); a node's colour is the multiset of its incoming edge colours;
- ``"geometric"``: a node's new colour is its neighbourhood :math:`\\{\\{(c_j, \\vec x_j - \\vec x_i)\\}\\}` up to
  a rotation (``group="SO3"``) or a rotation or reflection (``group="O3"``): what one equivariant message
  passing step can see. Joshi et al.'s geometric WL also keeps the relative orientation of neighbourhoods
  across iterations; for the one-hop environments here a single step already sees everything.

Distances and cosines are compared after rounding to ``decimals`` places, which is far coarser than float64
round-off and far finer than the differences in the pairs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping

import numpy as np
import torch

__all__ = ["angle_pair", "homometric_pair", "mirror_pair", "COUNTEREXAMPLES", "congruent", "wl_test", "WL_TESTS",
           "local_environment", "angles_at_centre", "complete_graph", "neighbour_profiles", "CUTOFF"]

WL_TESTS = ("2-body", "3-body", "edge", "geometric")

#: The cutoff (in units of the centre-neighbour distance) that turns each pair into star graphs.
CUTOFF = 1.1


def local_environment(neighbours: torch.Tensor, centre_type: int = 6, neighbour_type: int = 1,
                      cutoff: float = CUTOFF) -> dict[str, torch.Tensor]:
    """A centre atom at the origin and ``neighbours`` (n, 3), with the edges of the radius graph at ``cutoff``.

    Returns a dict for :func:`gdl.data.collate`: ``pos`` (n + 1, 3) float64 (the centre first), ``z`` (n + 1,)
    and ``edge_index`` (2, E), both directions of every pair closer than ``cutoff``.

    Raises:
        ValueError: if ``neighbours`` is not a finite (n, 3) array.
    """
    x = torch.as_tensor(neighbours, dtype=torch.float64)
    if x.ndim != 2 or x.shape[1] != 3 or not torch.isfinite(x).all():
        raise ValueError(f"neighbours must be a finite (n, 3) array, got shape {tuple(x.shape)}")
    pos = torch.cat([x.new_zeros(1, 3), x])
    z = torch.tensor([centre_type] + [neighbour_type] * len(x))
    dist = torch.cdist(pos, pos)
    close = (dist < cutoff) & ~torch.eye(len(pos), dtype=torch.bool)
    dst, src = close.nonzero(as_tuple=True)
    return {"pos": pos, "z": z, "edge_index": torch.stack([src, dst])}


def angle_pair() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Three neighbours at distance 1: along three perpendicular axes (a tripod, 90 degrees apart) and in a
    plane, 120 degrees apart. Within the cutoff 1.1 each is a star of three bonds of length 1: the same
    distances, different angles."""
    tripod = torch.eye(3, dtype=torch.float64)
    t = torch.arange(3, dtype=torch.float64) * 2 * math.pi / 3
    planar = torch.stack([t.cos(), t.sin(), torch.zeros(3, dtype=torch.float64)], 1)
    return local_environment(tripod), local_environment(planar)


def homometric_pair() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Four neighbours on the unit sphere with the same multiset of angles at the centre, not congruent.

    The points :math:`p_k = S^k p_0` are the orbit of the rotoreflection :math:`S` (a 135-degree turn about
    :math:`z` times the mirror :math:`z \\to -z`), which generates the cyclic group of order 8. The angle between
    :math:`p_k` and :math:`p_l` depends only on :math:`(l - k) \\bmod 8` and is the same for :math:`\\pm(l-k)`.
    The subsets :math:`\\{0, 1, 2, 5\\}` and :math:`\\{0, 1, 3, 4\\}` of :math:`\\mathbb Z_8` have the same
    multiset of differences :math:`\\{1, 1, 2, 3, 3, 4\\}` (a homometric pair), so the two environments have the
    same distances and the same angles; the height of :math:`p_0` is chosen so that the closest neighbours are
    as far apart as possible (about 1.22), which keeps them out of each other's cutoff.
    """
    # closest neighbour pairs: difference 2 (chord^2 = 2 r^2) and 3 (chord^2 = (2 - sqrt 2) r^2 + 4 h^2);
    # equal when h^2 = sqrt(2) / (4 + sqrt(2)) with r^2 + h^2 = 1
    h = math.sqrt(math.sqrt(2) / (4 + math.sqrt(2)))
    r = math.sqrt(1 - h * h)

    def point(k: int) -> list[float]:
        phi = 3 * math.pi / 4 * k
        return [r * math.cos(phi), r * math.sin(phi), h * (-1) ** k]

    return tuple(local_environment(torch.tensor([point(k) for k in subset], dtype=torch.float64))
                 for subset in ((0, 1, 2, 5), (0, 1, 3, 4)))


def mirror_pair() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A chiral environment (four neighbours in tetrahedral directions at distances 1.00, 1.02, 1.04, 1.06) and
    its mirror image :math:`(x, y, z) \\to (-x, y, z)`: congruent under O(3), not under SO(3)."""
    tetra = torch.tensor([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=torch.float64) / math.sqrt(3)
    chiral = tetra * torch.tensor([1.00, 1.02, 1.04, 1.06], dtype=torch.float64)[:, None]
    mirror = chiral * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    return local_environment(chiral), local_environment(mirror)


#: name -> constructor of each pair.
COUNTEREXAMPLES = {"same distances, different angles": angle_pair,
                   "same distances and angles (homometric)": homometric_pair,
                   "mirror images": mirror_pair}


def angles_at_centre(env: Mapping[str, torch.Tensor], decimals: int = 10) -> list[tuple[float, float, float]]:
    """The sorted multiset of three-body invariants :math:`(r_{0j}, r_{0k}, \\cos\\theta_{j0k})`, :math:`j < k`,
    of the neighbours of node 0 (the centre), rounded to ``decimals`` places (each pair with the shorter
    distance first)."""
    pos, ei = env["pos"], env["edge_index"]
    nbrs = sorted(int(j) for j in ei[0][ei[1] == 0])
    out = []
    for j, k in itertools.combinations(nbrs, 2):
        a, b = pos[j] - pos[0], pos[k] - pos[0]
        ra, rb = float(a.norm()), float(b.norm())
        cos = float(a @ b) / (ra * rb)
        out.append((round(min(ra, rb), decimals), round(max(ra, rb), decimals), round(cos, decimals)))
    return sorted(out)


def _rotation_exists(a: np.ndarray, b: np.ndarray, proper: bool, tol: float) -> bool:
    """Whether an orthogonal Q (det +1 if ``proper``) maps the rows of ``a`` onto those of ``b`` (same order)."""
    if a.shape != b.shape:
        return False
    if len(a) and not np.allclose(a @ a.T, b @ b.T, atol=tol, rtol=0):      # Gram matrices: O(3)-congruence
        return False
    if not proper or np.linalg.matrix_rank(a, tol=1e-8) < 3:                 # planar: a mirror in the plane is
        return True                                                         # a rotation of 3D space
    u, _, vt = np.linalg.svd(a.T @ b)                                       # Kabsch: Q = u vt
    return np.linalg.det(u @ vt) > 0


def _congruent_sets(a: np.ndarray, ca: list, b: np.ndarray, cb: list, proper: bool, tol: float) -> bool:
    """Coloured point sets (vectors from a common origin) equal up to a rotation and a colour-keeping bijection."""
    if len(a) != len(b) or sorted(ca) != sorted(cb):
        return False
    for perm in itertools.permutations(range(len(b))):
        if all(ca[i] == cb[p] for i, p in enumerate(perm)) and _rotation_exists(a, b[list(perm)], proper, tol):
            return True
    return False


def congruent(env_a: Mapping[str, torch.Tensor], env_b: Mapping[str, torch.Tensor], group: str = "O3",
              tol: float = 1e-8) -> bool:
    """Whether a rigid motion (in ``group``, ``"O3"`` or ``"SO3"``, plus a translation) and a relabelling that
    keeps atom types map one point cloud onto the other. Brute force over relabellings (small clouds only).

    Raises:
        ValueError: for an unknown group or clouds of more than 9 points.
    """
    if group not in ("O3", "SO3"):
        raise ValueError(f"group must be 'O3' or 'SO3', got {group!r}")
    pa, pb = (np.asarray(e["pos"], dtype=np.float64) for e in (env_a, env_b))
    if len(pa) > 9:
        raise ValueError(f"congruent() tries every relabelling and takes at most 9 points, got {len(pa)}")
    pa, pb = pa - pa.mean(0), pb - pb.mean(0)
    za, zb = (np.asarray(e["z"]).tolist() for e in (env_a, env_b))
    return _congruent_sets(pa, za, pb, zb, group == "SO3", tol)


def _adjacency(env: Mapping[str, torch.Tensor]) -> list[list[int]]:
    n = len(env["pos"])
    nbrs: list[set[int]] = [set() for _ in range(n)]
    for j, i in env["edge_index"].T.tolist():
        nbrs[i].add(j)
    return [sorted(s) for s in nbrs]


def _canonical(colours: list) -> list[int]:
    """Replace hashable colours by small integers, consistently across all nodes given."""
    table = {c: i for i, c in enumerate(sorted(set(colours), key=repr))}
    return [table[c] for c in colours]


def _refine_invariant(graphs, colours, body: str, decimals: int):
    new = []
    for (pos, adj), col in zip(graphs, colours):
        out = []
        for i, nb in enumerate(adj):
            vec = {j: pos[j] - pos[i] for j in nb}
            r = {j: round(float(np.linalg.norm(vec[j])), decimals) for j in nb}
            two = tuple(sorted((col[j], r[j]) for j in nb))
            three = ()
            if body == "3-body":
                three = tuple(sorted(
                    (col[j], col[k], r[j], r[k],
                     round(float(vec[j] @ vec[k] / (np.linalg.norm(vec[j]) * np.linalg.norm(vec[k]))), decimals))
                    for j, k in itertools.permutations(nb, 2)))
            out.append((col[i], two, three))
        new.append(out)
    return new


def _refine_geometric(graphs, colours, proper: bool, tol: float):
    nodes = [(g, i) for g, (_, adj) in enumerate(graphs) for i in range(len(adj))]

    def hood(g, i):
        pos, adj = graphs[g]
        return np.array([pos[j] - pos[i] for j in adj[i]]).reshape(-1, 3), [colours[g][j] for j in adj[i]]

    classes: list[tuple[int, int]] = []                  # representatives
    label = {}
    for g, i in nodes:
        a, ca = hood(g, i)
        for c, (h, k) in enumerate(classes):
            b, cb = hood(h, k)
            if colours[g][i] == colours[h][k] and _congruent_sets(a, ca, b, cb, proper, tol):
                label[g, i] = c
                break
        else:
            label[g, i] = len(classes)
            classes.append((g, i))
    return [[(colours[g][i], label[g, i]) for i in range(len(graphs[g][1]))] for g in range(len(graphs))]


def _edge_colours(graphs, decimals: int, iterations: int):
    """Directed-edge refinement (DimeNet-style); returns node colours (multisets of incoming edge colours)."""
    def angle(pos, k, j, i):
        a, b = pos[k] - pos[j], pos[i] - pos[j]
        return round(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))), decimals)

    z = [g[2] for g in graphs]
    edges = [{(j, i): (z[g][j], z[g][i], round(float(np.linalg.norm(pos[j] - pos[i])), decimals))
              for i, nb in enumerate(adj) for j in nb} for g, (pos, adj, _) in enumerate(graphs)]
    history = []
    for _ in range(iterations + 1):
        flat = _canonical([c for e in edges for c in e.values()])
        it = iter(flat)
        edges = [{k: next(it) for k in e} for e in edges]
        history.append([sorted((z[g][i], tuple(sorted(e[j, i] for j in adj[i]))) for i in range(len(adj)))
                        for g, ((_, adj, _), e) in enumerate(zip(graphs, edges))])
        edges = [{(j, i): (c, tuple(sorted((e[k, j], angle(pos, k, j, i)) for k in adj[j] if k != i)))
                  for (j, i), c in e.items()} for (pos, adj, _), e in zip(graphs, edges)]
    return history


def wl_test(env_a: Mapping[str, torch.Tensor], env_b: Mapping[str, torch.Tensor], test: str = "2-body",
            group: str = "O3", iterations: int = 3, decimals: int = 8) -> bool:
    """Whether the geometric Weisfeiler-Leman ``test`` tells the two geometric graphs apart.

    Args:
        env_a, env_b: dicts with ``pos`` (n, 3), ``z`` (n,) and ``edge_index`` (2, E).
        test: one of :data:`WL_TESTS` (see the module docstring).
        group: ``"O3"`` or ``"SO3"`` for the ``"geometric"`` test (the invariant tests see only distances and
            angles, which cannot tell mirror images apart).
        iterations: refinement steps.
        decimals: rounding of distances and cosines before comparing.

    Returns:
        ``True`` when the multisets of node colours differ after some iteration.

    Raises:
        ValueError: for an unknown test or group.
    """
    if test not in WL_TESTS:
        raise ValueError(f"test must be one of {WL_TESTS}, got {test!r}")
    if group not in ("O3", "SO3"):
        raise ValueError(f"group must be 'O3' or 'SO3', got {group!r}")
    graphs = [(np.asarray(e["pos"], dtype=np.float64), _adjacency(e), np.asarray(e["z"]).tolist())
              for e in (env_a, env_b)]
    if test == "edge":
        return any(a != b for a, b in _edge_colours(graphs, decimals, iterations))
    colours = [list(g[2]) for g in graphs]
    for _ in range(iterations + 1):
        if sorted(colours[0], key=repr) != sorted(colours[1], key=repr):
            return True
        if test == "geometric":
            new = _refine_geometric([g[:2] for g in graphs], colours, group == "SO3", 10.0 ** -decimals)
        else:
            new = _refine_invariant([g[:2] for g in graphs], colours, test, decimals)
        flat = _canonical([c for col in new for c in col])
        colours = [flat[:len(new[0])], flat[len(new[0]):]]
    return False


def complete_graph(env: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same environment with every pair of atoms joined (both directions), as a model with a large cutoff
    would see it."""
    n = len(env["pos"])
    dst, src = (~torch.eye(n, dtype=torch.bool)).nonzero(as_tuple=True)
    return {**env, "edge_index": torch.stack([src, dst])}


def neighbour_profiles(env: Mapping[str, torch.Tensor], decimals: int = 8) -> list[list[float]]:
    """For each neighbour :math:`a` of node 0 (the centre), the sorted angles in degrees
    :math:`\\theta_{a0k}` to the centre's other neighbours :math:`k`: what a directed message from the centre to
    :math:`a` collects (the edge test)."""
    pos, ei = env["pos"], env["edge_index"]
    nbrs = sorted(int(j) for j in ei[0][ei[1] == 0])
    out = []
    for a in nbrs:
        u = pos[a] - pos[0]
        row = []
        for k in nbrs:
            if k != a:
                v = pos[k] - pos[0]
                cos = float(u @ v / (u.norm() * v.norm()))
                row.append(round(math.degrees(math.acos(max(-1.0, min(1.0, cos)))), decimals))
        out.append(sorted(row))
    return out

