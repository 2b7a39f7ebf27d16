"""Master notebooks -> student versions, test definitions and reference solutions (plain JSON, no nbformat).

Cell tags in a master (``metadata.tags``):

- ``solution``: code (or markdown) holding ``# BEGIN SOLUTION`` ... ``# END SOLUTION`` regions; in the student
  version each region becomes ``raise NotImplementedError(...)`` at the marker's indentation, or the text after
  ``# BEGIN SOLUTION:`` when given (``# BEGIN SOLUTION: answer = None``). A markdown solution cell becomes a
  "your answer here" cell.
- ``solution-only``: dropped from the student version (worked-solution remarks).
- ``public-tests``: question definitions students see; they run in their kernel through ``check()``.
- ``hidden-tests``: question definitions that never leave the instructor's side.
- ``check``: cells calling ``gdl.grading.check(...)``.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

BEGIN = re.compile(r"^(?P<indent>[ \t]*)#+ *BEGIN SOLUTION *(?::(?P<repl>.*))?$")
END = re.compile(r"^[ \t]*#+ *END SOLUTION *$")
NOT_TESTS = ("public-tests", "hidden-tests", "check")


def read_notebook(path: str | Path) -> dict:
    path = Path(path)
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable notebook ({e})") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError(f"{path}: not a Jupyter notebook (no 'cells' list)")
    return nb


def source(cell: dict) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else str(s)


def tags(cell: dict) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []) or [])


def exercise_id(nb: dict, path: str | Path = "") -> str:
    ex = nb.get("metadata", {}).get("gdl", {}).get("exercise")
    if not ex:
        raise ValueError(f"{path}: notebook metadata has no gdl.exercise id")
    return str(ex)


def strip_solution(text: str, exercise: str, markdown: bool = False) -> str:
    if markdown:
        return "**Your answer here.**"
    out, inside = [], False
    for line in text.splitlines():
        m = BEGIN.match(line)
        if m and not inside:
            inside = True
            repl = m.group("repl")
            out.append(m.group("indent") + (repl.strip() if repl and repl.strip() else
                                             f'raise NotImplementedError("{exercise}: write your solution here")'))
        elif END.match(line) and inside:
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{exercise}: a BEGIN SOLUTION marker has no END SOLUTION")
    return "\n".join(out)


def _as_source(text: str) -> list[str]:
    lines = text.split("\n")
    return [ln + "\n" for ln in lines[:-1]] + [lines[-1]] if text else []


def student_version(master: dict) -> dict:
    """The student notebook: solutions stripped, hidden tests and solution-only cells dropped, outputs cleared."""
    ex = exercise_id(master)
    nb = copy.deepcopy(master)
    cells = []
    for cell in nb["cells"]:
        t = tags(cell)
        if t & {"hidden-tests", "solution-only"}:
            continue
        cell = copy.deepcopy(cell)
        if "solution" in t:
            cell["source"] = _as_source(strip_solution(source(cell), ex, cell["cell_type"] == "markdown"))
            cell["metadata"]["tags"] = [x for x in cell["metadata"].get("tags", []) if x != "solution"] + ["answer"]
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        cells.append(cell)
    nb["cells"] = cells
    nb.setdefault("metadata", {}).setdefault("gdl", {})["version"] = "student"
    nb["metadata"].pop("jupytext", None)
    return nb


def write_notebook(nb: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def code_cells(nb: dict, with_tags: set[str] | None = None, without_tags: set[str] = frozenset()) -> list[str]:
    return [source(c) for c in nb["cells"] if c.get("cell_type") == "code"
            and (with_tags is None or tags(c) & with_tags) and not tags(c) & set(without_tags)]
