"""Every implemented architecture of the registry passes the one checker; the table is generated from it."""

import pytest
import torch

from gdl import architectures as arch
from gdl._tree import leaves, tree_map
from gdl.testing import assert_equivariant, default_tolerance, equivariance_error

ROWS = arch.implemented()


def _skip_missing(row):
    if row.module == "gdl.nn.steerable":
        pytest.importorskip("escnn")


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
    pytest.importorskip("escnn")
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
