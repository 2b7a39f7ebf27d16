"""The Colab path, simulated offline as today's Colab: the first cell of every chapter installs gdl into a Python
that already holds numpy 2 and torch, with nothing but the packages this test provides, and the course then runs
on the installed package in the same session.

What today's Colab has, rebuilt here in a temporary directory:

* a **fresh virtual environment** whose "system" packages (a directory put on ``sys.path`` by a ``.pth`` file, as
  Colab's ``dist-packages``) are what Colab preinstalls: numpy >= 2, torch, scipy, scikit-learn, matplotlib (and
  pandas where this environment has it; see ``PREINSTALLED``), with their dependencies, plus pip, setuptools,
  ipykernel and the notebook runner (pytest, nbval). They are linked from this project's ``.venv``. Not there:
  gdl, e3nn, ASE, tblite (Colab lacks them: the cell installs them), and never lie_learn, py3nj or escnn;
* **a package index of wheels only this test provides** (``PIP_NO_INDEX`` + ``PIP_FIND_LINKS``): the wheels of
  ``gdl[course]``'s dependencies that Colab lacks, repacked from this environment's installed files, and the build
  back-end (setuptools, wheel). escnn is not among them, as on Colab's Python 3.13, where lie_learn (escnn's
  dependency) has no wheel and pins numpy < 2;
* **no Fortran compiler**: ``gfortran``/``f95``/``f77`` on ``PATH`` are stand-ins that record the call and fail;
* **Python**: the newest CPython with a torch wheel on the project's machines is 3.11 (this environment's); what is
  particular to Colab's 3.13 (no lie_learn, hence no escnn; numpy 2) is modelled by the index above.

The cell is ``scripts/colab_cell.py`` rendered for ``_config.yml``'s repository, with that repository replaced by
this checkout, run after ``import numpy, torch`` (as a Colab kernel has them loaded) and with a stand-in
``google.colab`` module. The same process then imports the course's stack: no runtime restart. The test checks
that numpy and torch were neither replaced nor shadowed, that no Fortran compiler was called and escnn, lie_learn
and py3nj were not installed. Then, with that environment's own Python from a directory outside the checkout (so
``import gdl`` finds the installed package): chapter 6 under nbval (the architectures table: every registry row,
the steerable CNNs included) and a short GFN2-xTB molecular-dynamics run through ``gdl.data.molecules`` (tblite;
chapter 8 itself takes minutes, so only its data path runs here).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata as metadata
import io
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from colab_cell import render, requirement
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "book" / "06_architectures_table.ipynb"
# What Colab preinstalls (with their dependencies), as far as this environment has them: pandas is on Colab but
# not in this project's environment (nothing in gdl uses it), so the simulated image lacks it when absent here.
PREINSTALLED = ["numpy", "torch", "scipy", "scikit-learn", "matplotlib", "pandas", "tqdm", "networkx", "requests",
                "PyYAML", "cffi", "opt-einsum", "pip", "setuptools", "wheel", "ipykernel",
                # the notebook runner of this test (Colab runs notebooks itself)
                "pytest", "nbval"]
NEVER = ("escnn", "lie_learn", "lie-learn", "py3nj")
BUILD = ["setuptools", "wheel"]       # the build back-end pip fetches for gdl's pyproject.toml
# More wheels for the simulated index (space-separated folders), e.g. an escnn wheel to replay an old cell that
# installed escnn (pure Python, on PyPI for every Python) without its dependencies: GDL_COLAB_WHEELS=/path/to/dir
EXTRA_WHEELS = os.environ.get("GDL_COLAB_WHEELS", "").split()

KERNEL = """
import importlib.metadata as metadata, json, sys, types
import numpy, torch                               # a Colab kernel has them loaded before the first cell
before = [numpy.__version__, numpy.__file__, torch.__version__, torch.__file__]
sys.modules["google.colab"] = types.ModuleType("google.colab")
exec(compile(open(sys.argv[1]).read(), "first_cell", "exec"))
import gdl, e3nn, ase, tblite, sklearn, scipy     # in the same session: no restart
from gdl.nn import SteerableCNN
on_disk = [metadata.version("numpy"), metadata.version("torch")]
print(json.dumps({"before": before, "after": [numpy.__version__, numpy.__file__, torch.__version__, torch.__file__],
                  "on_disk": on_disk, "gdl": gdl.__file__}))
"""

MOLECULES = """
import numpy as np
from gdl.data import GraphBatch
from gdl.data.molecules import md_trajectory, xtb_calculator
frames = md_trajectory("water", steps=8, interval=4, equilibration=4, cache=False, progress=False)
assert len(frames) == 2, len(frames)
atoms = frames[-1].copy()
atoms.calc = xtb_calculator()                     # a fresh GFN2-xTB call reproduces the stored labels
assert np.allclose(atoms.get_forces(), frames[-1].get_forces(), atol=1e-6)
batch = GraphBatch.from_atoms(frames)
assert batch.pos.shape == (6, 3), batch.pos.shape
print("molecules ok", [round(float(a.get_potential_energy()), 4) for a in frames])
"""


def _dist(name: str):
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None


def _closure(roots: list[str], extras: dict[str, set[str]] | None = None) -> dict[str, metadata.Distribution]:
    """The installed distributions ``roots`` need, with their dependencies (markers evaluated here)."""
    found: dict[str, metadata.Distribution] = {}
    seen: set[tuple[str, frozenset]] = set()
    todo = [(r, frozenset((extras or {}).get(r, ()))) for r in roots]
    while todo:
        name, wanted = todo.pop()
        key = canonicalize_name(name)
        dist = _dist(name)
        if dist is None or (key, wanted) in seen:
            continue
        seen.add((key, wanted))
        found[key] = dist
        envs = [{"extra": e} for e in wanted] or [{"extra": ""}]
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or any(req.marker.evaluate(e) for e in envs):
                todo.append((req.name, frozenset(req.extras)))
    return found


def _top_level(dist: metadata.Distribution, site: Path) -> set[Path]:
    """The entries of ``site`` a distribution installed (packages, modules, its dist-info)."""
    out = set()
    for f in dist.files or []:
        parts = Path(f).parts
        if parts and parts[0] != ".." and parts[0] != "__pycache__":
            out.add(site / parts[0])
    return out


def _repack(dist: metadata.Distribution, site: Path, out: Path) -> Path:
    """A wheel of an installed distribution (its files under site-packages, with its own wheel tag)."""
    info = Path(str(dist._path))                          # the .dist-info directory
    tag = re.search(r"^Tag: (\S+)", (info / "WHEEL").read_text(), flags=re.M)[1]
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    wheel = out / f"{name}-{dist.version}-{tag}.whl"
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        for f in dist.files or []:
            parts = Path(f).parts
            path = site / f
            if not parts or parts[0] == ".." or "__pycache__" in parts or not path.is_file() or f.name == "RECORD":
                continue
            if parts[0] == info.name and f.name in ("INSTALLER", "REQUESTED", "direct_url.json"):
                continue
            data = path.read_bytes()
            z.writestr(str(f), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            writer.writerow([str(f), f"sha256={digest}", len(data)])
        writer.writerow([f"{info.name}/RECORD", "", ""])
        z.writestr(f"{info.name}/RECORD", record.getvalue())
    return wheel


def _no_fortran(bin_dir: Path, log: Path) -> dict[str, str]:
    bin_dir.mkdir()
    for name in ("gfortran", "f95", "f77"):
        tool = bin_dir / name
        tool.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\nexit 1\n')
        tool.chmod(0o755)
    return {"FC": str(bin_dir / "gfortran"), "F77": str(bin_dir / "f77"), "F90": str(bin_dir / "f95")}


def _run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def colab(tmp_path: Path, cell: str) -> dict:
    """Build the simulated Colab under ``tmp_path`` and run ``cell`` in it as a first cell; returns paths/env."""
    site = Path(sysconfig.get_paths()["purelib"])
    image = _closure(PREINSTALLED)
    assert {"numpy", "torch", "scipy", "scikit-learn", "matplotlib"} <= set(image), sorted(image)
    assert int(image["numpy"].version.split(".")[0]) >= 2, f"Colab has numpy 2; this environment has " \
                                                           f"{image['numpy'].version}"
    course = _closure(["gdl"], {"gdl": {"course"}})
    missing = {k: d for k, d in course.items() if k not in image and k != "gdl"}
    assert {"e3nn", "ase", "tblite"} <= set(missing), f"the image should lack them: {sorted(missing)}"
    assert not set(image) & {canonicalize_name(n) for n in NEVER}

    base = tmp_path / "colab-dist-packages"
    base.mkdir()
    for dist in image.values():
        for entry in _top_level(dist, site):
            if entry.exists() and not (base / entry.name).exists():
                (base / entry.name).symlink_to(entry)
    wheels = tmp_path / "index"
    wheels.mkdir()
    for dist in [*missing.values(), *_closure(BUILD).values()]:
        _repack(dist, site, wheels)

    # the checkout as committed plus the working tree's changes, without .venv/_build (a clean source tree)
    source = tmp_path / "gdl-source"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for rel in files:
        if (ROOT / rel).is_file():
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, source / rel)
    pip_url = requirement(cell)
    assert pip_url.startswith("gdl[course] @ "), pip_url
    cell = cell.replace(pip_url, f"gdl[course] @ {source.as_uri()}")

    venv = tmp_path / "colab-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    venv_site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                    capture_output=True, text=True, check=True).stdout.strip())
    (venv_site / "colab_dist_packages.pth").write_text(f"{base}\n")

    compiler_log = tmp_path / "compilers.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV", "GDL_"))}
    env.update(_no_fortran(tmp_path / "no-fortran", compiler_log))
    env.update(PATH=f"{tmp_path / 'no-fortran'}{os.pathsep}{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
               PIP_NO_INDEX="1", PIP_FIND_LINKS=" ".join([str(wheels), *EXTRA_WHEELS]), PIP_CONSTRAINT="",
               PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", GDL_SCALE="small", MPLBACKEND="Agg",
               OMP_NUM_THREADS="1", XDG_CACHE_HOME=str(tmp_path / "cache"))
    work = tmp_path / "student"
    work.mkdir()
    (work / "first_cell.py").write_text(cell)
    kernel = work / "kernel.py"
    kernel.write_text(KERNEL)
    result = _run([str(python), str(kernel), str(work / "first_cell.py")], env, work, 900)
    return {"result": result, "python": python, "env": env, "work": work, "venv_site": venv_site, "base": base,
            "compiler_log": compiler_log}


def test_colab_cell_installs_next_to_numpy_and_torch_and_the_course_runs(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is needed to copy the checkout")
    c = colab(tmp_path, render())
    run = c["result"]
    assert run.returncode == 0, f"the Colab cell (or importing the course after it) failed:\n{run.stdout}\n" \
                                f"{run.stderr[-6000:]}"
    state = json.loads(run.stdout.strip().splitlines()[-1])
    assert state["before"] == state["after"], f"the kernel's numpy/torch changed: {state}"
    assert state["on_disk"] == [state["before"][0], state["before"][2]], \
        f"pip replaced numpy or torch on disk (the kernel would need a restart): {state}"
    for module_file in (state["before"][1], state["before"][3]):
        assert Path(module_file).is_relative_to(c["base"]), f"{module_file} is not Colab's own"
    installed = {p.name.lower() for p in c["venv_site"].iterdir()}
    assert not any(n.startswith(("numpy", "torch")) for n in installed), f"pip installed its own: {installed}"
    assert not any(n.startswith(NEVER) for n in installed), f"the cell installed escnn's stack: {installed}"
    assert Path(state["gdl"]).is_relative_to(c["venv_site"]), f"gdl imported from {state['gdl']}"
    assert not c["compiler_log"].exists(), f"a Fortran compiler was called: {c['compiler_log'].read_text()}"

    python, env, work = str(c["python"]), c["env"], c["work"]
    molecules = _run([python, "-c", MOLECULES], env, work, 600)
    assert molecules.returncode == 0 and "molecules ok" in molecules.stdout, molecules.stderr[-4000:]

    notebook = work / CHAPTER.name
    shutil.copy2(CHAPTER, notebook)
    chapter = _run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env",
                    str(notebook)], env, work, 900)
    assert chapter.returncode == 0, f"{CHAPTER.name} failed in the Colab environment:\n{chapter.stdout[-4000:]}"
