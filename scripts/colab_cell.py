"""The Colab set-up cell: the first code cell of every chapter and exercise notebook.

Colab cannot read the book's ``_config.yml``, so the cell is rendered from the template below and the
``repository`` entry of ``_config.yml`` (the one place the course's address is set; see ``gdl/_book.py``), then
written into the notebooks. ``tests/test_book.py`` and ``tests/test_grading.py`` fail when a notebook's first
code cell differs from the rendered cell.

    python scripts/colab_cell.py           print the cell
    python scripts/colab_cell.py --write   write it into every chapter of _toc.yml and every exercise master
                                           (``make colab-cell``), then pair them and regenerate the student
                                           notebooks and the Exercises page

What the cell does on Colab (and nothing anywhere else): ``pip install "gdl[course] @ git+<url>@<branch>"``
under a constraint that pins Colab's numpy and torch to the versions already loaded, so pip can neither replace
them (a replaced numpy needs a runtime restart) nor install a package that needs another numpy (lie_learn, which
escnn needs, pins numpy < 2 and has no wheels for Colab's Python 3.13: escnn is not part of ``gdl[course]``).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

TEMPLATE = '''\
# Set-up. On Colab this installs gdl, leaving Colab's numpy and torch as they are; anywhere else it does nothing.
import sys

if "google.colab" in sys.modules:
    import importlib
    import importlib.metadata as metadata
    import subprocess
    import tempfile

    GDL = "gdl[course] @ {pip_url}"
    # pip may not replace a package the kernel has loaded, nor install one that needs another numpy or torch
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as keep:
        keep.write("".join(f"{{p}}=={{metadata.version(p)}}\\n" for p in ("numpy", "torch")))
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "-c", keep.name, GDL])
    importlib.invalidate_caches()   # the new packages import in this session: no restart'''


def render(root: Path = ROOT) -> str:
    """The cell for the repository named in ``root/_config.yml``."""
    from gdl._book import repository

    return TEMPLATE.format(pip_url=repository(root).pip_url)


def requirement(cell: str) -> str:
    """The ``gdl[course] @ ...`` requirement string a rendered cell installs."""
    found = re.findall(r'GDL = "([^"]+)"', cell)
    if len(found) != 1:
        raise ValueError(f"expected one 'GDL = \"...\"' line in the Colab cell, found {len(found)}")
    return found[0]


def _replace_first_code_cell(md: Path, cell: str) -> bool:
    """Rewrite the body of the first ``{code-cell}`` of a MyST file (keeping its options); True if it changed."""
    text = md.read_text(encoding="utf-8")
    m = re.search(r"^```\{code-cell\}[^\n]*\n((?::[^\n]*\n)*)(?:\n)?(.*?)^```$", text, flags=re.S | re.M)
    if m is None:
        raise ValueError(f"{md} has no code cell")
    options = m.group(1)
    new = text[:m.start()] + text[m.start():m.start(1)] + options + ("\n" if options else "") + cell + "\n" \
        + text[m.end(2):]
    if new == text:
        return False
    md.write_text(new, encoding="utf-8")
    return True


def write(root: Path = ROOT) -> list[Path]:
    """Write the rendered cell into every chapter and exercise master; return the files changed."""
    from toc_notebooks import toc_notebooks

    cell = render(root)
    bin_dir = Path(sys.executable).parent
    chapters = [nb.with_suffix(".md") for nb in toc_notebooks(root)]
    masters = sorted((root / "exercises" / "masters").glob("ex*.md"))
    changed = [md for md in chapters + masters if _replace_first_code_cell(md, cell)]
    for md in changed:
        if md in chapters:
            subprocess.check_call([str(bin_dir / "jupytext"), "-q", "--sync", str(md)])
        else:
            subprocess.check_call([str(bin_dir / "jupytext"), "-q", "--to", "ipynb", "--update", str(md)])
    # generated from the masters (and, for the Exercises page's Colab links, from _config.yml): always rewritten
    for command in (["generate"], ["solutions-page"]):
        subprocess.check_call([sys.executable, "-m", "gdl.cli", *command], cwd=root, stdout=subprocess.DEVNULL)
    return changed


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="write the cell into every chapter and exercise master")
    args = ap.parse_args()
    if args.write:
        for path in write():
            print(f"colab_cell: wrote {path.relative_to(ROOT)}")
    else:
        print(render())
