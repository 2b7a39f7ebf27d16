"""Charged N-body systems, as in the EGNN paper's dynamics task (Satorras et al. 2021, section 5.1).

Five particles with charges :math:`q_i = \\pm 1` start at Gaussian positions with velocities of fixed speed and
move under Coulomb forces (like charges repel),

.. math::  \\ddot{\\vec x}_i = \\sum_{j \\ne i} q_i q_j
           \\frac{\\vec x_i - \\vec x_j}{\\lVert \\vec x_i - \\vec x_j \\rVert^3},

integrated with semi-implicit Euler steps of :math:`\\Delta t = 10^{-3}` (the NRI simulator's scheme, Kipf et al.
2018). The task: from the positions, velocities and charges at step 3000, predict the positions 1000 steps later.
The simulator has no walls and clips the *norm* of each force (not its components), so the map from input to
target commutes exactly with rotations, reflections, translations and particle relabellings: an E(3) x S_5
equivariant model is the right inductive bias.

Everything is computed in float64 from one seed: the same seed gives the same systems on every machine.

Examples:
    >>> data = charged_nbody(8, seed=0)
    >>> data.pos.shape, data.target.shape, data.charges.shape
    (torch.Size([8, 5, 3]), torch.Size([8, 5, 3]), torch.Size([8, 5]))
    >>> graphs = data.graphs()
    >>> sorted(graphs[0])
    ['edge_attr', 'edge_index', 'pos', 'q', 'target', 'vel']
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["NBodyData", "charged_nbody", "nbody_splits", "simulate_charged", "fully_connected_edges",
           "PAPER_MSE"]

#: Test MSE on charged 5-body position prediction reported by Satorras et al. 2021 (Table 2).
PAPER_MSE = {"Linear": 0.0819, "SE(3)-Transformer": 0.0244, "TFN": 0.0155, "GNN": 0.0107,
             "Radial Field": 0.0104, "EGNN": 0.0071}


def fully_connected_edges(n: int) -> torch.Tensor:
    """``(2, n (n - 1))`` every ordered pair ``j -> i`` with ``j != i`` (sources in row 0)."""
    j, i = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    keep = j != i
    return torch.stack([j[keep], i[keep]])


def simulate_charged(pos: torch.Tensor, vel: torch.Tensor, charges: torch.Tensor, steps: int, dt: float = 1e-3,
                     strength: float = 1.0, max_force: float = 100.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Advance systems ``steps`` semi-implicit Euler steps: :math:`x \\leftarrow x + \\Delta t\\, v`, then
    :math:`v \\leftarrow v + \\Delta t\\, F(x)`, with :math:`F` clipped to norm ``max_force``.

    Shapes: ``pos``, ``vel`` (S, n, 3), ``charges`` (S, n) -> new ``pos``, ``vel`` (S, n, 3).
    """
    if pos.shape != vel.shape or pos.ndim != 3 or pos.shape[-1] != 3:
        raise ValueError(f"pos and vel must both have shape (S, n, 3), got {tuple(pos.shape)} and {tuple(vel.shape)}")
    if charges.shape != pos.shape[:2]:
        raise ValueError(f"charges must have shape (S, n)={tuple(pos.shape[:2])}, got {tuple(charges.shape)}")
    i, j = torch.triu_indices(pos.shape[1], pos.shape[1], 1, device=pos.device)    # (P,) each pair once
    qq = strength * charges[:, i] * charges[:, j]                              # (S, P)
    incidence = torch.zeros(pos.shape[1], len(i), dtype=pos.dtype, device=pos.device)  # (n, P): +1 at i, -1 at j
    incidence[i, torch.arange(len(i))] = 1.0
    incidence[j, torch.arange(len(i))] = -1.0
    for _ in range(steps):
        pos = pos + dt * vel
        diff = pos[:, i] - pos[:, j]                                           # (S, P, 3): x_i - x_j
        r2 = (diff * diff).sum(-1)
        pair = (qq / (r2 * r2.sqrt()))[..., None] * diff                       # force on i from j; -that on j
        force = torch.einsum("np,spk->snk", incidence, pair)                   # (S, n, 3)
        norm = force.norm(dim=-1, keepdim=True)
        force = force * (max_force / norm.clamp_min(max_force))                # clip the norm: stays equivariant
        vel = vel + dt * force
    return pos, vel


@dataclass
class NBodyData:
    """Systems ``S``, particles ``n``: inputs ``pos``, ``vel`` (S, n, 3), ``charges`` (S, n); ``target`` (S, n, 3)
    the positions ``horizon`` steps later."""

    pos: torch.Tensor
    vel: torch.Tensor
    charges: torch.Tensor
    target: torch.Tensor

    def __len__(self) -> int:
        return self.pos.shape[0]

    def __getitem__(self, idx) -> NBodyData:
        return NBodyData(self.pos[idx], self.vel[idx], self.charges[idx], self.target[idx])

    def graphs(self) -> list[dict[str, torch.Tensor]]:
        """One graph dict per system for :func:`gdl.data.collate`: node fields ``pos``, ``vel``, ``q`` (n, 1),
        ``target``; fully connected ``edge_index`` with ``edge_attr`` :math:`q_i q_j` (n (n-1), 1)."""
        n = self.pos.shape[1]
        ei = fully_connected_edges(n)
        out = []
        for s in range(len(self)):
            q = self.charges[s]
            out.append({"pos": self.pos[s], "vel": self.vel[s], "q": q[:, None], "target": self.target[s],
                        "edge_index": ei, "edge_attr": (q[ei[0]] * q[ei[1]])[:, None]})
        return out


def charged_nbody(num_systems: int, n_particles: int = 5, seed: int = 0, *, burn_in: int = 3000,
                  horizon: int = 1000, dt: float = 1e-3, loc_std: float = 1.0, speed: float = 0.5,
                  dtype: torch.dtype | None = None) -> NBodyData:
    """Simulate ``num_systems`` charged systems (float64, seeded) and return inputs at step ``burn_in`` and
    targets at step ``burn_in + horizon``.

    Initial positions are :math:`\\mathcal N(0, \\text{loc\\_std}^2)`, velocities have random directions and norm
    ``speed``, charges are :math:`\\pm 1` with equal probability (the NRI/EGNN settings).
    """
    if num_systems < 1 or n_particles < 2:
        raise ValueError(f"need at least one system of at least 2 particles, got num_systems={num_systems}, "
                         f"n_particles={n_particles}")
    if burn_in < 0 or horizon < 1:
        raise ValueError(f"burn_in must be >= 0 and horizon >= 1, got {burn_in} and {horizon}")
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    pos = loc_std * torch.randn(num_systems, n_particles, 3, generator=g, dtype=f64)
    vel = torch.randn(num_systems, n_particles, 3, generator=g, dtype=f64)
    vel = speed * vel / vel.norm(dim=-1, keepdim=True)
    charges = torch.randint(0, 2, (num_systems, n_particles), generator=g).to(f64) * 2 - 1
    pos, vel = simulate_charged(pos, vel, charges, burn_in, dt)
    target, _ = simulate_charged(pos, vel, charges, horizon, dt)
    dtype = dtype or torch.get_default_dtype()
    return NBodyData(pos.to(dtype), vel.to(dtype), charges.to(dtype), target.to(dtype))


def nbody_splits(n_train: int, n_val: int, n_test: int, seed: int = 0,
                 **kwargs) -> tuple[NBodyData, NBodyData, NBodyData]:
    """Disjoint train/validation/test sets: one simulation of ``n_train + n_val + n_test`` systems, split in
    order (the paper uses 3000/2000/2000)."""
    data = charged_nbody(n_train + n_val + n_test, seed=seed, **kwargs)
    return data[:n_train], data[n_train:n_train + n_val], data[n_train + n_val:]
