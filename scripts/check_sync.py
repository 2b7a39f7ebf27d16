"""Fail when a chapter's MyST markdown and its paired .ipynb disagree (or the .ipynb is missing).

The .md is the reviewed source; the .ipynb is what Colab opens and nbval runs. They must hold the same cells.
Fix with `make sync` (jupytext --sync).

Also fails when a markdown cell holds an unpaired code fence: a code cell that lost its ```{code-cell} line is
read as text, so its asserts would never run (the page shows them as prose).
"""

from __future__ import annotations

import sys
from pathlib import Path

import jupytext

sys.path.insert(0, str(Path(__file__).resolve().parent))
from toc_notebooks import ROOT, toc_notebooks  # noqa: E402


def _cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def out_of_sync(root: Path = ROOT) -> list[str]:
    """One message per chapter whose pair is missing or differs."""
    problems = []
    for ipynb in toc_notebooks(root):
        md = ipynb.with_suffix(".md")
        rel = ipynb.relative_to(root)
        if not ipynb.exists():
            problems.append(f"{rel} is missing: run `make sync` to create it from {md.relative_to(root)}")
            continue
        if not md.exists():
            continue
        a, b = _cells(jupytext.read(md)), _cells(jupytext.read(ipynb))
        for i, (kind, source) in enumerate(a):
            fences = [line.strip() for line in source.splitlines() if line.strip().startswith("```")]
            if kind == "markdown" and (len(fences) % 2 or any("{code-cell}" in f for f in fences)):
                problems.append(f"{md.relative_to(root)}: markdown cell {i} holds an unpaired code fence (a code "
                                f"cell without its ```{{code-cell}} line is text, and its code never runs)")
        if a != b:
            first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            problems.append(f"{rel} is out of sync with {md.relative_to(root)} (first difference at cell "
                            f"{first}; {len(a)} vs {len(b)} cells): run `make sync`")
    return problems


if __name__ == "__main__":
    issues = out_of_sync()
    for line in issues:
        print(f"check_sync: {line}", file=sys.stderr)
    if issues:
        sys.exit(1)
    print(f"check_sync: {len(toc_notebooks())} notebook chapters in sync with their markdown")
