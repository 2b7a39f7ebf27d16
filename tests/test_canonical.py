"""Canonical frames and 3D rotation augmentation: the frame is a rotation, the MLP on it is invariant (and not
mirror invariant), and the augmentation turns positions and forces together."""

import pytest
import torch

from gdl.data.graphs import collate
from gdl.nn.canonical import CanonicalMLP, RandomRotation3d, principal_axes_frame, random_rotations


def _molecules(b=4, n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(b, n, 3, generator=g, dtype=torch.float64) * torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64)
    z = torch.tensor([6, 1, 8, 1, 1])[:n]
    forces = torch.randn(b, n, 3, generator=g, dtype=torch.float64)
    return pos, z, forces


def test_frame_is_a_rotation_and_canonical_coordinates_are_invariant():
    pos, z, _ = _molecules()
    rot = principal_axes_frame(pos, z)
    eye = torch.eye(3, dtype=torch.float64).expand(len(pos), 3, 3)
    assert torch.allclose(rot @ rot.transpose(1, 2), eye, atol=1e-12)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(len(pos), dtype=torch.float64))
    q = random_rotations(len(pos), torch.Generator().manual_seed(1), torch.float64)
    turned = pos @ q.transpose(1, 2) + 3.0
    c = lambda p: (p - p.mean(1, keepdim=True)) @ principal_axes_frame(p, z).transpose(1, 2)  # noqa: E731
    assert torch.allclose(c(pos), c(turned), atol=1e-9)
    with pytest.raises(ValueError, match="shape"):
        principal_axes_frame(pos[0])


def test_canonical_mlp_is_rotation_invariant_but_sees_mirror_images():
    pos, z, _ = _molecules()
    torch.manual_seed(0)
    model = CanonicalMLP(5, hidden=16).double()
    batch = collate([{"pos": p, "z": z} for p in pos])
    q = random_rotations(len(pos), torch.Generator().manual_seed(2), torch.float64)
    turned = collate([{"pos": p @ r.T, "z": z} for p, r in zip(pos, q)])
    mirrored = collate([{"pos": p * torch.tensor([-1.0, 1, 1], dtype=torch.float64), "z": z} for p in pos])
    assert torch.allclose(model(batch), model(turned), atol=1e-9)
    assert not torch.allclose(model(batch), model(mirrored), atol=1e-6)
    with pytest.raises(ValueError, match="built for molecules of 5 atoms"):
        model(collate([{"pos": pos[0, :4], "z": z[:4]}]))


def test_random_rotation_turns_positions_and_forces_together():
    pos, z, forces = _molecules()
    batch = collate([{"pos": p, "z": z, "forces": f} for p, f in zip(pos, forces)])
    out = RandomRotation3d()(batch, torch.Generator().manual_seed(3))
    for b in range(len(pos)):
        sel = out.batch == b
        p0 = pos[b] - pos[b].mean(0)
        p1 = out.pos[sel] - out.pos[sel].mean(0)
        q = torch.linalg.lstsq(p0, p1).solution.T                       # p1 = p0 Q^T
        assert torch.allclose(q @ q.T, torch.eye(3, dtype=torch.float64), atol=1e-9)
        assert torch.allclose(out.forces[sel], forces[b] @ q.T, atol=1e-9)
        assert torch.allclose(out.pos[sel].mean(0), pos[b].mean(0), atol=1e-12)   # about the centroid
    assert not torch.allclose(out.pos, batch.pos)
