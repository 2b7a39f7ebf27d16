"""Repository-wide pytest set-up: notebook collection (nbval) and per-notebook durations."""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "scripts"))

# Notebooks run headless and small; a user's GDL_SCALE=full still wins.
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("GDL_SCALE", "small")

_NOTEBOOK_SECONDS: dict[str, float] = defaultdict(float)
_NOTEBOOK_FAILED: set[str] = set()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = report.nodeid.split("::", 1)[0]
    if path.endswith(".ipynb"):
        _NOTEBOOK_SECONDS[path] += report.duration
        if report.failed:
            _NOTEBOOK_FAILED.add(path)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not _NOTEBOOK_SECONDS:
        return
    tr = terminalreporter
    tr.section("notebook durations")
    for path, seconds in sorted(_NOTEBOOK_SECONDS.items(), key=lambda kv: -kv[1]):
        status = "FAILED" if path in _NOTEBOOK_FAILED else "ok"
        tr.write_line(f"{seconds:8.1f}s  {status:6}  {path}")
    tr.write_line(f"{sum(_NOTEBOOK_SECONDS.values()):8.1f}s  total over {len(_NOTEBOOK_SECONDS)} notebooks")
