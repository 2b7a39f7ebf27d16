"""scripts/execute_chapters.py fills the book build's execution cache so that the build finds each chapter executed.

The decisive property is the cache key: a chapter executed by the script must match the notebook that myst-nb reads
during the build (with the book's MyST extensions), or the build would execute every chapter a second time.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import execute_chapters  # noqa: E402

HEADER = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# A chapter

Some maths, $x^2$, and a figure caption.

```{code-cell} ipython3
:tags: [hide-input]

value = 6 * 7
print(value)
```
"""


def _chapter(folder: Path, name: str, last_cell: str) -> Path:
    path = folder / f"{name}.md"
    path.write_text(HEADER + f"\n```{{code-cell}} ipython3\n{last_cell}\n```\n")
    return path


def _as_the_build_reads(path: Path):
    """The notebook myst-nb builds from: its reader with the book's MyST extensions from _config.yml."""
    from myst_nb.core.read import read_myst_markdown_notebook
    from myst_parser.config.main import MdParserConfig

    extensions = yaml.safe_load((ROOT / "_config.yml").read_text())["parse"]["myst_enable_extensions"]
    return read_myst_markdown_notebook(path.read_text(), MdParserConfig(enable_extensions=set(extensions)),
                                       add_source_map=True, path=str(path))


def test_executed_chapters_are_found_by_the_build_and_failures_keep_their_traceback(tmp_path, capsys):
    from jupyter_cache import get_cache

    good = _chapter(tmp_path, "good", "assert value == 42")
    bad = _chapter(tmp_path, "bad", "assert value == 41, 'the answer changed'")
    cache_dir = tmp_path / "_build" / ".jupyter_cache"

    status = execute_chapters.main([str(good), str(bad), "--cache", str(cache_dir), "--jobs", "2"])
    assert status == 1  # one chapter failed
    cache = get_cache(str(cache_dir))
    record = cache.match_cache_notebook(_as_the_build_reads(good))  # KeyError if the build would re-execute it
    executed = cache.get_cache_bundle(record.pk).nb
    assert executed.cells[-2].outputs[0]["text"] == "42\n"
    with pytest.raises(KeyError):
        cache.match_cache_notebook(_as_the_build_reads(bad))
    records = {Path(r.uri).name: r for r in cache.list_project_records()}
    assert "the answer changed" in records["bad.md"].traceback
    assert not records["good.md"].traceback
    assert (cache_dir.parent / "chapter-seconds.json").exists()

    # A second run executes only what is not cached: the failed chapter.
    capsys.readouterr()
    assert execute_chapters.main([str(good), str(bad), "--cache", str(cache_dir), "--jobs", "1"]) == 1
    assert "1 cached, 1 to execute" in capsys.readouterr().out


def test_bad_arguments_name_what_was_wrong(tmp_path, capsys):
    with pytest.raises(SystemExit):
        execute_chapters.main([str(tmp_path / "missing.md"), "--cache", str(tmp_path / "c")])
    assert "no such chapter" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        execute_chapters.main(["--jobs", "0", "--cache", str(tmp_path / "c")])
    assert "--jobs must be at least 1, got 0" in capsys.readouterr().err
