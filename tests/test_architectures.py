"""Every implemented architecture of the registry passes the one checker; the table is generated from it."""

import pytest
import torch

from gdl import architectures as arch
from gdl._tree import leaves, tree_map
from gdl.testing import assert_equivariant, default_tolerance, equivariance_error

ROWS = arch.implemented()


def _skip_missing(row):
    """Nothing is optional any more: the steerable row is gdl's own (escnn is only a cross-check)."""


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_implemented_architecture_is_equivariant(row, dtype):
    _skip_missing(row)
    model, x, kwargs = arch.build(row)
    tol = kwargs.pop("atol")
    atol = max(tol, default_tolerance(dtype)) if tol is not None else None
    report = assert_equivariant(model, x, dtype=dtype, atol=atol, **kwargs)
    group = kwargs["group"]
    if group.is_finite and group.order <= 64:
        assert len(report.elements) == group.order
    n_params = sum(p.numel() for p in model.parameters())
    assert 0 < n_params < 50_000, f"{row.name}: keep the registry's instances small, got {n_params}"


def test_source_table_rows_are_all_present():
    names = {r.name for r in arch.ARCHITECTURES}
    for name in ["CNN", "GNN", "Transformer", "Steerable CNN (C8)", "SE(3)-Transformer", "SchNet", "DimeNet++",
                 "DeepSets", "G-CNN (p4)", "G-CNN (p4m)"]:
        assert name in names
    for row in arch.ARCHITECTURES:
        assert row.kind in ("invariant", "equivariant") and row.group is not None
        if not row.implemented:
            assert row.status == arch.NOT_IMPLEMENTED
            with pytest.raises(NotImplementedError, match="not implemented yet"):
                arch.build(row)


def test_table_is_measured_not_written():
    table = arch.architecture_table()
    assert [r["architecture"] for r in table] == [r.name for r in arch.ARCHITECTURES]
    for row, entry in zip(arch.ARCHITECTURES, table):
        if row.implemented:
            assert entry["error"] <= entry["tolerance"] and entry["parameters"] > 0
        else:
            assert entry["error"] is None and entry["parameters"] is None
    text = arch.table_markdown(table)
    assert text.count("\n") == len(table) + 1
    assert ("not implemented yet" in text) == any(not row.implemented for row in arch.ARCHITECTURES)


def test_adding_a_row_is_a_few_lines_and_broken_rows_fail():
    """Deliberately broken: a plain linear map registered as permutation-equivariant must fail the checker."""
    from gdl.groups import SetAction, SymmetricGroup

    S4 = SymmetricGroup(4)
    row = arch.Architecture("broken", "Permutation", S4, "equivariant", "Sets", "none",
                            builder=lambda: torch.nn.Linear(4, 4, bias=False),
                            sample_input=lambda g: torch.randn(3, 4, 2, generator=g).transpose(-1, -2),
                            in_action=SetAction(S4, dim=-1), out_action=SetAction(S4, dim=-1))
    model, x, kwargs = arch.build(row)
    kwargs.pop("atol")
    assert equivariance_error(model, x, **kwargs).worst > 1e-2
    with pytest.raises(ValueError, match="kind"):
        arch.Architecture("bad", "x", S4, "covariant", "x", "x")
    with pytest.raises(KeyError, match="no architecture named"):
        arch.get("LSTM")


def _meta_run(model, x):
    model = model.to("meta")
    x = tree_map(lambda t: t.to("meta"), x)
    return model(x)     # gradients stay on: models that return forces differentiate their energy


def _run_with_meta_default(model, x):
    """Model and data stay on the CPU, but any tensor ``forward`` creates without naming a device lands on
    ``meta``; combining it with the real data raises a device mismatch."""
    with torch.device("meta"):
        return model(x)


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_registry_models_run_on_another_device(row):
    """Every model runs where its parameters and inputs are, never on a hard-coded CPU. Two ways without a GPU:
    the model and its input on PyTorch's ``meta`` device (shapes without values; models whose neighbour lists
    need values cannot run there), and the model on the CPU with ``meta`` as the default device, so a tensor
    created inside ``forward`` without ``device=`` is caught, as a GPU run would catch it."""
    _skip_missing(row)
    model, x, _ = arch.build(row)
    out = _run_with_meta_default(model, x)
    assert all(t.device.type == "cpu" for t in leaves(out))
    try:
        out = _meta_run(model, x)
    except (NotImplementedError, RuntimeError) as err:
        message = str(err)
        if "device" in message and ("meta" in message or "cpu" in message):
            raise AssertionError(f"{row.name} mixes devices in forward: {message}") from err
        return     # an operation needs values (e.g. a radius graph): the default-device run above covered it
    for t in leaves(out):
        assert t.device.type == "meta", f"{row.name} returned a tensor on {t.device}"


class _Careless(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 3)

    def forward(self, x):
        return self.lin(x) + torch.ones(3)        # created on the default device whatever the input's device


def test_the_device_test_catches_a_tensor_made_on_the_cpu():
    with pytest.raises(RuntimeError, match="device"):
        _meta_run(_Careless(), torch.randn(2, 3))
    with pytest.raises(RuntimeError, match="device|meta"):
        _run_with_meta_default(_Careless(), torch.randn(2, 3))


# --- smooth cutoffs: every 3D row with a cutoff is continuous when an atom crosses it ---------------------------

THREE_D_ROWS = [r for r in ROWS if r.module in ("gdl.nn.schnet", "gdl.nn.dimenet", "gdl.nn.nequip",
                                                 "gdl.nn.se3_transformer", "gdl.nn.egnn")]
# EGNN has no cutoff (all pairs, or the supplied edges), so nothing can jump; every other 3D row has one
CUTOFF_ROWS = [r for r in THREE_D_ROWS if hasattr(getattr(arch.build(r)[0], "model", None), "cutoff")]


def _inner(model):
    return getattr(model, "model", model)


def _perturb_(model, seed):
    """Random weights far from the initial ones (biases included), so nothing is zero by accident."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point():
                p.add_(0.5 * (p.abs().mean() + 0.1) * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def _crossing(model, r):
    """Energy and forces of 4 atoms: A, B, C close together, D at distance ``r`` from A and farther from B, C."""
    from gdl.nn.atomistic import atoms_batch

    d = torch.tensor([-0.8, -0.36, 0.48], dtype=torch.float64)
    d = d / d.norm()
    pos = torch.tensor([[0.0, 0, 0], [1.0, 0.1, 0], [0.2, 1.1, -0.3], [0, 0, 0]], dtype=torch.float64)
    pos[3] = r * d
    out = model(atoms_batch(pos, torch.tensor([6, 1, 8, 1])))
    return out["energy"].detach(), out["forces"].detach()


def cutoff_jump(model, delta=1e-12):
    """Relative change of energy and forces when atom D moves from ``r_c - delta`` to ``r_c + delta``, and the
    relative change of the energy between ``r_c - 0.3`` and ``r_c + delta`` (the pair does interact)."""
    rc = _inner(model).cutoff
    e_in, f_in = _crossing(model, rc - delta)
    e_out, f_out = _crossing(model, rc + delta)
    e_far, _ = _crossing(model, rc - 0.3)
    scale_e = max(float(e_in.abs().max()), 1e-3)
    scale_f = max(float(f_in.abs().max()), 1e-3)
    return (float((e_in - e_out).abs().max()) / scale_e, float((f_in - f_out).abs().max()) / scale_f,
            float((e_far - e_out).abs().max()) / scale_e)


def test_every_3d_row_with_a_cutoff_is_checked():
    assert {r.name for r in CUTOFF_ROWS} == {"SchNet", "DimeNet++", "NequIP-style", "SE(3)-Transformer"}


@pytest.mark.parametrize("perturbed", [False, True], ids=["initial", "perturbed"])
@pytest.mark.parametrize("row", CUTOFF_ROWS, ids=[r.name for r in CUTOFF_ROWS])
def test_energy_and_forces_continuous_across_the_cutoff(row, perturbed):
    model = arch.build(row)[0].double()
    if perturbed:
        _perturb_(model, seed=1)
    jump_e, jump_f, inside = cutoff_jump(model)
    assert inside > 1e-6, f"{row.name}: the pair should interact inside the cutoff"
    assert jump_e < 1e-9, f"{row.name}: energy jumps by {jump_e:.1e} (relative) at the cutoff"
    assert jump_f < 1e-9, f"{row.name}: forces jump by {jump_f:.1e} (relative) at the cutoff"


@pytest.mark.parametrize("perturbed", [False, True], ids=["initial", "perturbed"])
@pytest.mark.parametrize("row", CUTOFF_ROWS, ids=[r.name for r in CUTOFF_ROWS])
def test_pair_exactly_at_the_cutoff_rotated(row, perturbed):
    """Rotating a pair at exactly r_c switches its edge on or off by rounding; the energy must not notice."""
    from gdl.nn.atomistic import atoms_batch

    model = arch.build(row)[0].double()
    if perturbed:
        _perturb_(model, seed=2)
    rc = _inner(model).cutoff
    pos = torch.tensor([[0.0, 0, 0], [-rc, 0, 0], [1.0, 0.3, 0]], dtype=torch.float64)
    z = torch.tensor([6, 8, 1])
    g = torch.Generator().manual_seed(0)
    energies = []
    for _ in range(50):
        q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
        q = q * torch.linalg.det(q)                     # a proper rotation (det +1)
        energies.append(float(model(atoms_batch(pos @ q.T, z))["energy"].detach()))
    energies = torch.tensor(energies, dtype=torch.float64)
    spread = float((energies - energies[0]).abs().max() / energies.abs().max())
    assert spread < 1e-12, f"{row.name}: energy moves by {spread:.1e} (relative) over 50 rotations"


class _EnvelopeOnInput(torch.nn.Module):
    """Today's mistake, kept as the control: the envelope goes into a biased MLP, MLP(e(r) u(r)), so the output
    at the cutoff is MLP(0) != 0."""

    def forward(self, basis, envelope):
        return self.net(basis * envelope[:, None])


@pytest.mark.parametrize("name, broken", [("NequIP-style", "radial"), ("SE(3)-Transformer", "attention"),
                                          ("SE(3)-Transformer", "radial and attention")])
def test_a_discontinuous_variant_fails_the_cutoff_test(name, broken, monkeypatch):
    """Controls: the envelope on the radial MLP's input (a biased MLP then gives MLP(0) != 0 at the cutoff), or
    a plain softmax that still counts an edge at the cutoff (it takes weight from the other neighbours). In the
    SE(3)-Transformer the enveloped attention alone already hides a discontinuous radial network (the edge's
    weight is 0 at the cutoff), so its controls break the attention."""
    from gdl.nn import se3_transformer
    from gdl.nn._radial import RadialMLP
    from gdl.nn.message_passing import scatter_softmax

    model = arch.build(name)[0].double()
    _perturb_(model, seed=1)
    if "radial" in broken:
        for module in model.modules():
            if isinstance(module, RadialMLP):
                module.forward = _EnvelopeOnInput.forward.__get__(module)
    if "attention" in broken:
        monkeypatch.setattr(se3_transformer, "enveloped_softmax",
                            lambda logits, envelope, index, n: scatter_softmax(logits, index, n))
    jump_e, jump_f, _ = cutoff_jump(model)
    assert jump_e > 1e-6 and jump_f > 1e-6, (jump_e, jump_f)
