"""Instructor tools built from the master notebooks: student versions, the Gradescope bundle, the book's
worked-solutions page."""

from __future__ import annotations

import io
import json
import stat
import zipfile
from pathlib import Path

from gdl.grading._notebook import BEGIN, END, exercise_id, read_notebook, source, student_version, tags, write_notebook

__all__ = ["generate_student_versions", "gradescope_bundle", "solutions_page"]


def generate_student_versions(masters: str | Path, out: str | Path, progress: bool = True) -> list[Path]:
    """Write ``out/<master name>.ipynb`` for every master (generated files: always rewritten)."""
    from tqdm.auto import tqdm

    from gdl.grading._exercise import master_paths

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for m in tqdm(master_paths(masters), desc="student versions", unit="notebook", disable=not progress):
        path = out / m.name
        write_notebook(student_version(read_notebook(m)), path)
        written.append(path)
    return written


_SETUP_SH = """#!/usr/bin/env bash
# Gradescope autograder set-up (runs once when the image is built).
set -euo pipefail
apt-get update && apt-get install -y --no-install-recommends bubblewrap python3-pip python3-venv
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install -q {torch}
/autograder/venv/bin/pip install -q "{gdl}"
"""

_RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope entry point: grade the submitted notebook against the master (hidden tests + reference solution).
# The submission runs sandboxed (bubblewrap); if the image cannot create namespaces the run fails loudly
# rather than grading unsandboxed.
# AUTOGRADER_ROOT and GDL_COMMAND exist for the local simulation of this layout (tests/test_grading_gradescope.py).
set -uo pipefail
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
GDL="${{GDL_COMMAND:-$ROOT/venv/bin/gdl}}"
cd "$ROOT/source"
$GDL grade-one "$ROOT/submission" --master {master} --gradescope "$ROOT/results/results.json"
"""


def gradescope_bundle(master: str | Path, out: str | Path, *, gdl_requirement: str | None = None,
                      torch_requirement: str = "torch --index-url https://download.pytorch.org/whl/cpu") -> Path:
    """``out`` = a zip with ``setup.sh``, ``run_autograder`` and the master (hidden tests and reference); upload it
    as the autograder of a Gradescope programming assignment. Refuses to overwrite an existing zip."""
    master = Path(master)
    ex = exercise_id(read_notebook(master), master)
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; remove it or choose another name")
    import gdl

    req = gdl_requirement or f"gdl @ git+https://github.com/gdl-course/gdl@v{gdl.__version__}"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in (("setup.sh", _SETUP_SH.format(torch=torch_requirement, gdl=req)),
                           ("run_autograder", _RUN_AUTOGRADER.format(master=f"tests/{master.name}"))):
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFREG | 0o755) << 16
            z.writestr(info, text)
        z.writestr(f"tests/{master.name}", master.read_bytes())
        z.writestr("tests/README.txt", f"Exercise {ex}: the master notebook holds the hidden tests and the "
                                       f"reference solution. Never give this folder to students.\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(buf.getvalue())
    return out


# --- the book page ----------------------------------------------------------------------------------------------
_PAGE_HEAD = """# Exercises

There are {count} exercises, one per idea of the course, each a notebook you can run locally or on Colab. Each one
states the task, leaves functions for you to write, and ends with public checks that you run yourself:
`check("ex01")` shows which checks pass. The grader runs the same public checks plus hidden ones with fresh
random inputs, in a sandbox. The notebooks live in `exercises/student/` of the repository: open one in Jupyter,
or in Colab with the link below each exercise (its first cell installs `gdl` there). How grading works is
described in `exercises/README.md`.

Worked solutions follow each statement behind a toggle: try first, then compare.

<!-- This page is generated from exercises/masters by `gdl solutions-page`; edit the masters, not this page. -->
"""


def _demote(md: str) -> str:
    """Headings of a notebook one level down (the page has one title)."""
    return "\n".join("#" + line if line.startswith("#") else line for line in md.splitlines())


def solutions_page(masters: str | Path) -> str:
    """The MyST page ``book/11_exercises.md``: every exercise statement, each worked solution in a dropdown."""
    from gdl._book import repository
    from gdl.grading._exercise import master_paths

    # the Colab links come from the book's _config.yml (repository: url/branch), next to the exercises folder
    repo = repository(Path(masters).resolve().parent.parent)
    paths = master_paths(masters)
    parts = [_PAGE_HEAD.format(count=len(paths))]
    for m in paths:
        nb = read_notebook(m)
        ex = exercise_id(nb, m)
        solution_md, solution_code, statement = [], [], []
        cells = nb["cells"]
        for i, c in enumerate(cells):
            t, text = tags(c), source(c).strip()
            if "colab" in t or t & {"public-tests", "hidden-tests", "check"} or not text:
                continue
            # a statement cell that introduces the public checks: the page shows no checks, so it is left out
            introduces_checks = i + 1 < len(cells) and "public-tests" in tags(cells[i + 1])
            if c["cell_type"] == "markdown" and introduces_checks and not t & {"solution", "solution-only"}:
                continue
            if c["cell_type"] == "markdown":
                (solution_md if t & {"solution", "solution-only"} else statement).append(_demote(text))
            elif t & {"solution", "solution-only"}:
                markers = (BEGIN.match(ln) or END.match(ln) for ln in text.splitlines())
                solution_code.append("\n".join(ln for ln, m in zip(text.splitlines(), markers) if not m))
        parts.append("\n\n".join(statement))
        body = "\n\n".join(solution_md)
        code = "\n\n".join(solution_code)
        parts.append(f":::{{admonition}} Worked solution ({ex})\n:class: dropdown\n\n{body}\n\n"
                     f"```python\n{code}\n```\n:::")
        student = f"exercises/student/{m.name}"
        parts.append(f"The notebook: `{student}` ([open in Colab]({repo.colab_url(student)})).")
    return "\n\n".join(parts).rstrip() + "\n"


def results_summary(run_dir: str | Path) -> str:
    """One line per student of a run, then what needs the instructor: grader errors (with the command that grades
    them again), rejected files and flagged submissions (for the CLI)."""
    run = Path(run_dir)
    lines, errors, rejected, flagged = [], [], [], []
    for p in sorted((run / "students").glob("*.json")):
        if ".regrade-" in p.name or ".replaced-" in p.name:
            continue
        r = json.loads(p.read_text())
        status = r.get("status", "graded")
        score = "NOT GRADED (grader error)" if r["score"] is None else f"{r['score']:g}/{r['max_score']:g}"
        lines.append(f"{r['student']:>24}  {score}" + (f"  [{status}]" if status != "graded" else "")
                     + ("  [FLAGGED]" if r.get("flags") else ""))
        if status == "grader_error":
            errors.append(r["student"])
        elif status == "rejected":
            rejected.append(f"{r['student']}: {r['errors'][0] if r.get('errors') else ''}")
        for f in r.get("flags", []):
            flagged.append(f"{r['student']}: {f}")
    if flagged:
        lines += ["", f"{len(flagged)} flag(s):"] + [f"  {f}" for f in flagged]
    if rejected:
        lines += ["", f"{len(rejected)} submission(s) rejected at intake:"] + [f"  {x}" for x in rejected]
    if errors:
        lines += ["", f"{len(errors)} student(s) NOT GRADED because of a grader error: {', '.join(errors)}",
                  f"grade them again with:  gdl regrade {run} --errors"]
    return "\n".join(lines)
