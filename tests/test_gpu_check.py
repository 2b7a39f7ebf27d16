"""`make gpu-check` (scripts/gpu_check.py) where no GPU is: it says so, runs nothing, exits 0; its plan names every
chapter and benchmark; its registry step works (checked here on the CPU, two rows)."""

from __future__ import annotations

import gpu_check
import pytest
import torch
from toc_notebooks import toc_notebooks

from gdl import architectures


def test_without_a_gpu_nothing_runs_and_it_exits_0(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(gpu_check, "_run", lambda *a, **k: pytest.fail("gpu-check ran a step without a GPU"))
    assert gpu_check.main(["--out", str(tmp_path / "gc")]) == 0
    assert "no CUDA GPU is present" in capsys.readouterr().out
    assert not (tmp_path / "gc").exists()


def test_the_plan_names_every_chapter_and_benchmark(capsys):
    assert gpu_check.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    for nb in toc_notebooks():
        assert nb.name in out, f"{nb.name} missing from the gpu-check plan"
    for bench in gpu_check.BENCHMARKS:
        assert bench.name in out
    assert gpu_check.BENCHMARKS, "no benchmarks/bench_*.py found"


def test_registry_rows_report_error_and_tolerance(monkeypatch):
    rows = [architectures.get("CNN"), architectures.get("GNN")]
    monkeypatch.setattr(architectures, "implemented", lambda: rows)
    report = gpu_check.registry_rows(torch.device("cpu"))
    assert [(r["architecture"], r["dtype"]) for r in report] == [
        ("CNN", "float32"), ("CNN", "float64"), ("GNN", "float32"), ("GNN", "float64")]
    assert all(r["ok"] and r["error"] <= r["tolerance"] for r in report), report
