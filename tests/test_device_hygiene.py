"""Device hygiene without a GPU: chapters run in strict device mode (``tests/strict_device.py``), where
``gdl.device()`` is a stand-in accelerator that refuses to meet host tensors, as CUDA does.

Why this and not a scan or the ``meta`` device: ``meta`` tensors carry no values, so nothing trains; a scan of the
chapters for model calls on tensors not sent to ``device`` cannot follow a tensor through functions (chapter 7's
batch was built by ``collate`` from ``from_networkx`` graphs, the model moved by ``train``). Strict mode follows
every tensor at run time, so it finds that bug where CUDA would, on the line CUDA would.

Which chapters: the mode adds a Python hook to every torch call (30 training steps of a small GIN: 1.5x the time,
median of 3 round-robin runs on 1 thread), and each chapter run here is a second execution of it, so ``make test``
runs chapter 7 only, the chapter where the bug was, whose graphs are built on the host by ``collate`` before they meet
trained models; ``GDL_STRICT_CHAPTERS=all`` runs every chapter of ``_toc.yml`` (what ``make gpu-check`` would find
on CUDA, without a GPU), ``=none`` none, ``=05_image_architectures,08_molecules`` those.
"""

from __future__ import annotations

import os
from copy import deepcopy
from pathlib import Path

import pytest
import strict_device  # tests/ is on sys.path (pytest's rootdir-less test folder)
import torch
from toc_notebooks import ROOT, toc_notebooks

from gdl.data import collate
from gdl.nn import GNN

TESTS = Path(__file__).resolve().parent
# chapter 7: its 1-WL pairs were collated on the host while the trained GIN was on gdl.device()
STRICT_CHAPTERS = ["07_sets_and_graphs"]
SETUP = f"import sys\nsys.path.insert(0, {str(TESTS)!r})\nimport strict_device\nstrict_device.install()\n"


def _chapters() -> list[Path]:
    """``GDL_STRICT_CHAPTERS``: unset, ``STRICT_CHAPTERS``; ``all``; ``none``; or chapter stems, comma-separated."""
    choice = os.environ.get("GDL_STRICT_CHAPTERS", "").strip()
    if choice == "all":
        return toc_notebooks()
    if choice == "none":
        return []
    names = [c.strip() for c in choice.split(",") if c.strip()] or STRICT_CHAPTERS
    return [ROOT / "book" / f"{name}.ipynb" for name in names]


def run_strict(notebook: Path, timeout: int = 1200) -> None:
    """Execute ``notebook`` (its own folder as working directory) after turning strict device mode on."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(SETUP))
    env = {"GDL_SCALE": os.environ.get("GDL_SCALE", "small"), "MPLBACKEND": "Agg"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(notebook.parent)}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def strict(monkeypatch):
    """Strict mode inside this test process, undone afterwards."""
    monkeypatch.setenv("GDL_DEVICE", str(strict_device.STRICT))
    for (cls, name), wrap in strict_device.PATCHES.items():
        monkeypatch.setattr(cls, name, wrap(getattr(cls, name)))
    with strict_device.StrictDevice():
        yield torch.device(strict_device.STRICT)


def _pair():
    g = {"x": torch.ones(3, 1), "edge_index": torch.tensor([[0, 1], [1, 2]])}
    return [g, dict(g)]


def test_strict_mode_refuses_host_data_for_a_model_on_the_device(strict):
    model = GNN(1, 8, 2, num_layers=2, conv="gin", readout="sum").to(strict)
    with pytest.raises(strict_device.DeviceMismatch, match="same device"):
        model(collate(_pair()))                           # chapter 7's bug: collated on the host
    with pytest.raises(strict_device.DeviceMismatch, match="same device"):
        GNN(1, 8, 2, num_layers=2, conv="gin")(collate(_pair(), device=strict))   # model left on the host
    with pytest.raises(strict_device.DeviceMismatch, match="NumPy"):
        model(collate(_pair(), device=strict)).detach().numpy()


def test_strict_mode_lets_correct_code_run(strict):
    model = GNN(1, 8, 2, num_layers=2, conv="gin", readout="sum").to(strict)
    batch = collate(_pair(), device=strict)
    assert strict_device.place(batch.x) == strict_device.place(batch.edge_index) == "device"
    assert strict_device.place(collate(_pair()).to(strict).x) == "device"       # GraphBatch.to: one call
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss = model(batch).square().sum()
    loss.backward()
    opt.step()                                            # gradients (made by autograd) meet the parameters
    copy = deepcopy(model)
    assert strict_device.place(next(copy.parameters())) == "device" and copy(batch).shape == (2, 2)
    out = model.double()(batch.to(torch.float64))
    assert out.dtype == torch.float64 and strict_device.place(out) == "device"
    assert out.detach().cpu().numpy().shape == (2, 2)
    host = GNN(1, 8, 2, num_layers=2, conv="gin", readout="sum")
    assert host(collate(_pair())).shape == (2, 2)         # host model, host data: fine, as on a GPU machine


@pytest.mark.slow
@pytest.mark.parametrize("notebook", _chapters(), ids=lambda p: p.stem)
def test_chapter_keeps_its_tensors_on_the_device(notebook):
    run_strict(notebook)
