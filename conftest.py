"""Repository-wide pytest set-up: notebook collection (nbval, or the book build's executions) and per-notebook
durations.

Each chapter runs once per `make test`: the book build executes every chapter (myst-nb, cached in
``_build/.jupyter_cache``); ``pytest --chapters-from-build book/*.ipynb`` then makes one test per chapter that passes
when that build executed the chapter's current source without an error (every ``assert`` inside it held) and fails
with the chapter's traceback otherwise, or when the chapter changed since the build. ``--nbval-lax`` still executes a
chapter itself (``pytest --nbval-lax book/01_why_symmetry_matters.ipynb``).
"""

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
# Under pytest-xdist (`make test` runs one test process per core) each process and the kernels and subprocesses it
# starts get their share of the cores, so that the processes do not fight over them (set before torch is imported).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, str(_share))

_NOTEBOOK_SECONDS: dict[str, float] = defaultdict(float)
_NOTEBOOK_FAILED: set[str] = set()
BUILD_CACHE = Path(os.environ.get("GDL_BUILD_CACHE") or ROOT / "_build" / ".jupyter_cache")


def pytest_addoption(parser):
    parser.addoption("--chapters-from-build", action="store_true", default=False,
                     help="check each chapter notebook given on the command line against the book build's execution "
                          "(_build/.jupyter_cache) instead of executing it again")


def pytest_collect_file(file_path: Path, parent):
    if file_path.suffix == ".ipynb" and parent.config.getoption("chapters_from_build"):
        return BuiltChapter.from_parent(parent, path=file_path)
    return None


class ChapterNotExecuted(Exception):
    """The book build has no successful execution of the chapter's current source."""


class BuiltChapter(pytest.File):
    def collect(self):
        yield BuiltChapterItem.from_parent(self, name="executed by the book build")


class BuiltChapterItem(pytest.Item):
    """Passes when the book build executed the chapter's current MyST source without an error."""

    def runtest(self):
        from jupyter_cache import get_cache

        md = Path(self.path).with_suffix(".md")
        if not (BUILD_CACHE / "global.db").exists():
            raise ChapterNotExecuted(f"no book build cache at {BUILD_CACHE}: run `make book` first")
        cache = get_cache(BUILD_CACHE)
        records = [r for r in cache.list_project_records() if Path(r.uri).resolve() == md.resolve()]
        if not records:
            raise ChapterNotExecuted(f"the book build did not execute {md.name}: is it in _toc.yml?")
        record = records[-1]
        if record.traceback:
            raise ChapterNotExecuted(f"{md.name} failed in the book build:\n{record.traceback}")
        cached = cache.get_cached_project_nb(record.pk)
        if cached is None:
            raise ChapterNotExecuted(f"{md.name} changed since the book build executed it: run `make book` again")
        self.user_properties.append(("execution_seconds", cached.data.get("execution_seconds") or 0.0))

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, ChapterNotExecuted):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, 0, f"{self.path.name}: executed by the book build"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = report.nodeid.split("::", 1)[0]
    if path.endswith(".ipynb"):
        built = dict(report.user_properties).get("execution_seconds")     # run by the book build
        if built is None:
            _NOTEBOOK_SECONDS[path] += report.duration
        elif report.when == "call":
            _NOTEBOOK_SECONDS[path] += built
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
