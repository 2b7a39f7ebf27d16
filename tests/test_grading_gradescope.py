"""The Gradescope autograder bundle, run in a simulation of Gradescope's layout (issue 22).

Gradescope unpacks the bundle into ``/autograder/source``, puts the student's files in ``/autograder/submission``
and runs ``/autograder/source/run_autograder``, which must write ``/autograder/results/results.json``. Here the
same layout is built under a temporary folder (``AUTOGRADER_ROOT``) and ``gdl`` is this checkout's
(``GDL_COMMAND``); everything else is the bundle's own script, unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from grading_fixtures import CORRECT, MASTER, needs_bwrap

from gdl.grading import gradescope_bundle
from gdl.grading._notebook import write_notebook

pytestmark = needs_bwrap


# writes a full score where Gradescope reads it, and takes the solutions from the master if it can read it
HOSTILE = '''
import glob, json, os
for path in ("{root}/results/results.json", "/autograder/results/results.json"):
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump({{"score": 100, "output": "FORGED"}}, f)
    except OSError:
        pass
for master in glob.glob("{root}/source/tests/*.ipynb") + glob.glob("/autograder/source/tests/*.ipynb"):
    nb = json.load(open(master))
    for cell in nb["cells"]:
        if "solution" in cell["metadata"].get("tags", []):
            exec("".join(cell["source"]))

def deepsets_layer(x, lam, gam):
    raise NotImplementedError

def set_summary(x, lam, gam):
    raise NotImplementedError
'''


def _layout(tmp_path: Path, name: str, bundle: Path, source: str) -> Path:
    root = tmp_path / name
    (root / "source").mkdir(parents=True)
    (root / "submission").mkdir()
    (root / "results").mkdir()
    with zipfile.ZipFile(bundle) as z:
        z.extractall(root / "source")
    os.chmod(root / "source" / "run_autograder", 0o755)
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": source.format(root=root), "outputs": [],
                     "execution_count": None}],
          "metadata": {"gdl": {"exercise": "ex07"}}, "nbformat": 4, "nbformat_minor": 5}
    write_notebook(nb, root / "submission" / "ex07_deepsets_layer.ipynb")
    return root


def _run(root: Path, gdl: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "GDL_COMMAND": str(gdl), "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(root / "source" / "run_autograder")], env=env, capture_output=True, text=True,
                          timeout=600)


def test_bundle_grades_honest_and_hostile_submissions_in_gradescopes_layout(tmp_path):
    bundle = gradescope_bundle(MASTER, tmp_path / "ex07-autograder.zip")
    gdl = tmp_path / "gdl"
    gdl.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m gdl.cli "$@"\n')
    gdl.chmod(0o755)

    honest = _layout(tmp_path, "honest", bundle, CORRECT)
    p = _run(honest, gdl)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads((honest / "results" / "results.json").read_text())
    assert res["score"] == 8 and len(res["tests"]) == 6, res
    assert {t["visibility"] for t in res["tests"]} == {"visible", "after_published"}

    hostile = _layout(tmp_path, "hostile", bundle, HOSTILE)
    p = _run(hostile, gdl)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads((hostile / "results" / "results.json").read_text())
    assert res["score"] == 0 and "FORGED" not in json.dumps(res), res      # it could neither write nor read
    assert len(res["tests"]) == 6
