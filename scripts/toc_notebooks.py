"""List the chapter notebooks of the book, as named in _toc.yml.

A table-of-contents entry is a notebook chapter when its MyST markdown file carries a jupytext header; its
paired ``.ipynb`` is what Colab opens and what nbval executes. Prints one ``.ipynb`` path per line.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _entries(node) -> list[str]:
    out: list[str] = []
    if isinstance(node, dict):
        if "file" in node:
            out.append(node["file"])
        for key in ("root",):
            if key in node:
                out.append(node[key])
        for key in ("parts", "chapters", "sections"):
            for child in node.get(key, []) or []:
                out.extend(_entries(child))
    elif isinstance(node, list):
        for child in node:
            out.extend(_entries(child))
    return out


def toc_files(root: Path = ROOT) -> list[Path]:
    """Every source file named in _toc.yml (with its suffix resolved), in order."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = []
    for entry in _entries(toc):
        stem = root / entry
        candidates = [stem] if stem.suffix else [stem.with_suffix(".md"), stem.with_suffix(".ipynb")]
        found = next((c for c in candidates if c.exists()), None)
        if found is None:
            raise FileNotFoundError(f"_toc.yml names {entry!r}, but none of {[str(c) for c in candidates]} exists")
        files.append(found)
    return files


def is_notebook_source(path: Path) -> bool:
    """A MyST markdown chapter with a jupytext header (executable), or an .ipynb."""
    if path.suffix == ".ipynb":
        return True
    head = path.read_text().split("\n---", 1)[0]
    return path.read_text().startswith("---") and "jupytext:" in head


def toc_notebooks(root: Path = ROOT) -> list[Path]:
    """The ``.ipynb`` of every notebook chapter in _toc.yml (whether or not it exists yet)."""
    return [p.with_suffix(".ipynb") for p in toc_files(root) if is_notebook_source(p)]


if __name__ == "__main__":
    try:
        for nb in toc_notebooks():
            print(nb.relative_to(ROOT))
    except FileNotFoundError as err:
        sys.exit(f"toc_notebooks: {err}")
