"""Where the course is published: the book's ``_config.yml`` ``repository`` entry, read in one place.

The Colab set-up cell (``scripts/colab_cell.py``), the book's launch buttons (Jupyter Book reads the same
entry) and the "Open in Colab" links of the Exercises page all derive from it, so publishing the course
elsewhere means editing ``repository: url:`` (and ``branch:``) in ``_config.yml`` and nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Repository", "repository"]

COLAB = "https://colab.research.google.com"


@dataclass(frozen=True)
class Repository:
    """The repository the course is published from (``url`` without a trailing slash, ``branch``)."""

    url: str
    branch: str

    @property
    def pip_url(self) -> str:
        """What ``pip install "gdl @ ..."`` installs from: ``git+<url>@<branch>``."""
        return f"git+{self.url}@{self.branch}"

    def colab_url(self, path: str) -> str:
        """The Colab address that opens the notebook at ``path`` (relative to the repository root).

        Colab opens notebooks straight from GitHub only: another host raises ``ValueError``.
        """
        m = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?", self.url)
        if m is None:
            raise ValueError(f"Colab opens notebooks from GitHub only; the repository url is {self.url!r}, "
                             "expected https://github.com/OWNER/NAME")
        return f"{COLAB}/github/{m[1]}/{m[2]}/blob/{self.branch}/{path.lstrip('/')}"


def repository(root: str | Path) -> Repository:
    """The ``repository`` entry of ``root/_config.yml``.

    Raises:
        FileNotFoundError: no ``_config.yml`` in ``root``.
        ValueError: the file has no ``repository: url:`` entry.
    """
    import yaml

    config = Path(root) / "_config.yml"
    if not config.is_file():
        raise FileNotFoundError(f"{config} not found: the course's repository is set in the book's _config.yml")
    entry = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("repository") or {}
    url = str(entry.get("url") or "").rstrip("/")
    if not url:
        raise ValueError(f"{config} has no repository url; expected 'repository:\\n  url: https://github.com/...'")
    return Repository(url=url, branch=str(entry.get("branch") or "main"))
