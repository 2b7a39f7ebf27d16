"""The Colab path, simulated offline: the first cell of every chapter installs gdl next to a torch that is
already there, without a Fortran compiler, and a chapter then runs on the installed package.

What Colab has, rebuilt here in a temporary directory:

* a **fresh virtual environment** whose "system" packages (a directory put on ``sys.path`` by a ``.pth`` file,
  as Colab's ``dist-packages``) are this project's tested ``.venv`` packages *except* gdl itself (not installed
  yet) and py3nj, escnn's Fortran-compiled fast path, which a machine without a Fortran compiler cannot build;
  torch 2.13.0 is among them, as on Colab;
* **no Fortran compiler**: ``gfortran``/``f95``/``f77`` on ``PATH`` are stand-ins that record the call and fail, and
  ``FC`` points at one of them;
* **no package index** (``PIP_NO_INDEX``): everything pip needs is already there, so nothing is downloaded.

The cell itself is ``scripts/colab_cell.py`` with the repository URL replaced by this checkout and a stand-in
``google.colab`` module, so its ``if`` takes the Colab branch. Its first ``pip install gdl[course]`` cannot
succeed without py3nj (on Colab: without a Fortran compiler to build it), so the cell's fallback runs: gdl with
its data extras, then escnn without dependencies. The test then checks that torch was neither reinstalled nor
upgraded (same version, same files, nothing new in the virtual environment) and that no compiler was called,
and runs chapter 6 (escnn's steerable CNN included) under nbval with that environment's own Python, from a
directory outside the checkout, so ``import gdl`` finds the installed package.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CELL = ROOT / "scripts" / "colab_cell.py"
REPO_URL = "git+https://github.com/gdl-course/gdl"
CHAPTER = ROOT / "book" / "06_architectures_table.ipynb"
# Not part of the simulated Colab image: the package under test, and what needs a Fortran compiler.
HIDDEN = ("gdl", "__editable__", "__editable___gdl", "py3nj")

TORCH_PROBE = "import json, torch; print(json.dumps([torch.__version__, torch.__file__]))"
GDL_PROBE = ("import json, gdl, escnn, importlib.util; "
             "print(json.dumps([gdl.__file__, importlib.util.find_spec('py3nj') is not None]))")


def _colab_image(base: Path) -> None:
    """``base``: a directory of links to this environment's packages, minus the ones Colab lacks here."""
    site = Path(sysconfig.get_paths()["purelib"])
    base.mkdir()
    for entry in site.iterdir():
        name = entry.name
        if name.endswith(".pth") or name.startswith(HIDDEN) or name == "__pycache__":
            continue
        (base / name).symlink_to(entry)


def _no_fortran(bin_dir: Path, log: Path) -> dict[str, str]:
    bin_dir.mkdir()
    for name in ("gfortran", "f95", "f77"):
        tool = bin_dir / name
        tool.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\nexit 1\n')
        tool.chmod(0o755)
    return {"FC": str(bin_dir / "gfortran"), "F77": str(bin_dir / "f77"), "F90": str(bin_dir / "f95")}


def _run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: int) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return result


def test_colab_cell_installs_next_to_torch_and_a_chapter_runs(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is needed to copy the checkout")
    cell = CELL.read_text(encoding="utf-8")
    assert cell.count(REPO_URL) == 1, f"{CELL} no longer installs from {REPO_URL}; update this test"
    # the checkout as committed plus the working tree's changes, without .venv/_build (a clean source tree)
    source = tmp_path / "gdl-source"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for rel in files:
        if (ROOT / rel).is_file():
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, source / rel)
    cell = cell.replace(REPO_URL, source.as_uri())

    base = tmp_path / "colab-dist-packages"
    _colab_image(base)
    venv = tmp_path / "colab-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    venv_site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                    capture_output=True, text=True, check=True).stdout.strip())
    (venv_site / "colab_dist_packages.pth").write_text(f"{base}\n")

    compiler_log = tmp_path / "compilers.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(_no_fortran(tmp_path / "no-fortran", compiler_log))
    env.update(PATH=f"{tmp_path / 'no-fortran'}{os.pathsep}{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
               # build gdl with the image's setuptools (no index to fetch one from); "0" is pip's spelling of off
               PIP_NO_INDEX="1", PIP_FIND_LINKS="", PIP_NO_BUILD_ISOLATION="0", PIP_DISABLE_PIP_VERSION_CHECK="1",
               PIP_CONSTRAINT="", PIP_CONFIG_FILE=os.devnull, GDL_SCALE="small", MPLBACKEND="Agg",
               OMP_NUM_THREADS="1")
    work = tmp_path / "student"
    work.mkdir()

    before = _run([str(python), "-c", TORCH_PROBE], env, work, 120)
    assert before.returncode == 0, before.stderr
    torch_before = json.loads(before.stdout)
    assert Path(torch_before[1]).is_relative_to(base), f"torch should come from the simulated image: {torch_before}"
    with pytest.raises(subprocess.CalledProcessError):       # gdl is not installed yet
        subprocess.run([str(python), "-c", "import gdl"], env=env, cwd=work, check=True, capture_output=True)

    # the first cell, verbatim but for the URL, inside a process that looks like Colab
    script = work / "first_cell.py"
    script.write_text("import sys, types\nsys.modules['google.colab'] = types.ModuleType('google.colab')\n" + cell)
    installed = _run([str(python), str(script)], env, work, 600)
    assert installed.returncode == 0, f"the Colab cell failed:\n{installed.stdout}\n{installed.stderr}"
    # the cell took its fallback: gdl[course] needs py3nj, which cannot be had here
    assert "py3nj" in installed.stderr, f"the first install did not fail on py3nj:\n{installed.stderr}"

    after = _run([str(python), "-c", TORCH_PROBE], env, work, 120)
    assert json.loads(after.stdout) == torch_before, "the Colab cell reinstalled or upgraded torch"
    assert not any(p.name.startswith("torch") for p in venv_site.iterdir()), "pip installed a torch of its own"
    assert not compiler_log.exists(), f"a Fortran compiler was called: {compiler_log.read_text()}"
    probe = _run([str(python), "-c", GDL_PROBE], env, work, 300)
    assert probe.returncode == 0, probe.stderr
    gdl_file, has_py3nj = json.loads(probe.stdout)
    assert Path(gdl_file).is_relative_to(venv_site), f"gdl imported from {gdl_file}, not from the installed package"
    assert not has_py3nj, "py3nj should be missing: escnn runs on its numerical fallback here"

    notebook = work / CHAPTER.name
    shutil.copy2(CHAPTER, notebook)
    chapter = _run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env",
                    str(notebook)], env, work, 600)
    assert chapter.returncode == 0, f"{CHAPTER.name} failed in the Colab environment:\n{chapter.stdout[-4000:]}"
