"""The book's own checks: every chapter in the table of contents is executed, paired and set up for Colab."""

from __future__ import annotations

from pathlib import Path

import jupytext
import pytest
from check_sync import out_of_sync
from colab_cell import render
from toc_notebooks import ROOT, toc_notebooks

COLAB_CELL = render().strip()          # the template of scripts/colab_cell.py with _config.yml's repository
NOTEBOOKS = toc_notebooks()


def test_toc_has_chapters():
    assert NOTEBOOKS, "_toc.yml lists no notebook chapters"


def test_every_toc_chapter_is_collected(request):
    """Fails when a chapter of the table of contents is not among the notebook items of this run (nbval's, or the
    checks of the book build's executions that `make test` uses: --chapters-from-build)."""
    if not any(request.config.getoption(o, default=False) for o in ("nbval_lax", "nbval", "chapters_from_build")):
        pytest.skip("run with --chapters-from-build (or --nbval-lax) and the chapter notebooks, as `make test` does")
    collected = {Path(item.path).resolve() for item in request.session.items if str(item.path).endswith(".ipynb")}
    missing = [str(nb.relative_to(ROOT)) for nb in NOTEBOOKS if nb.resolve() not in collected]
    assert not missing, f"chapters in _toc.yml that this run did not collect: {missing}"


def test_markdown_and_notebooks_are_in_sync():
    problems = out_of_sync()
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_first_cell_is_the_colab_setup(notebook: Path):
    nb = jupytext.read(notebook.with_suffix(".md"))
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{notebook.name} has no code cell"
    assert code[0].source.strip() == COLAB_CELL, (
        f"the first code cell of {notebook.with_suffix('.md').name} must be the Colab cell rendered by "
        "scripts/colab_cell.py: run `make colab-cell`"
    )


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_last_cell_prints_the_chapters_wall_time(notebook: Path):
    """Every chapter reports its own wall time, run top to bottom (issue 20: full-scale times are read off it)."""
    code = [c for c in jupytext.read(notebook.with_suffix(".md")).cells if c.cell_type == "code"]
    assert "print(gdl.chapter_timer())" in code[-1].source, (
        f"{notebook.name}: the last code cell should print gdl.chapter_timer(); it is:\n{code[-1].source}")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebooks_never_hard_code_cuda(notebook: Path):
    text = notebook.with_suffix(".md").read_text()
    assert ".cuda()" not in text, f"{notebook.name} hard-codes .cuda(); use gdl.device()"


def test_a_code_cell_that_lost_its_opening_line_fails_the_pairing_check(tmp_path):
    """Chapter 9 once had asserts after a closed cell with no ```{code-cell} line: they rendered as prose and never
    ran. The check must flag such a markdown cell even when .md and .ipynb agree."""
    chapter = (ROOT / "book" / "01_why_symmetry_matters.md").read_text()
    header = chapter[: chapter.index("\n---\n", 4) + 5]            # the jupytext front matter
    body = "# A chapter\n\n```{code-cell} ipython3\nx = 1\n```\n\nassert x == 2\n```\n\nText.\n"
    (tmp_path / "book").mkdir()
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/ch\n")
    md = tmp_path / "book" / "ch.md"
    md.write_text(header + body)
    jupytext.write(jupytext.read(md), md.with_suffix(".ipynb"))
    problems = out_of_sync(tmp_path)
    assert problems and "unpaired code fence" in problems[0], problems
    md.write_text(header + body.replace("\n\nassert x == 2\n```", "\n\n```{code-cell} ipython3\nassert x == 1\n```"))
    jupytext.write(jupytext.read(md), md.with_suffix(".ipynb"))
    assert out_of_sync(tmp_path) == []
