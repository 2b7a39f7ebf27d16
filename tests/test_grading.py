"""The exercise set and the grader's workflow: masters score 100 %, unmodified student versions 0, generated
files are up to date, self-check, seeds, the CLI (generate, grade a folder, re-grade, Gradescope) and the wire
format's limits. Hostile submissions: tests/test_grading_hostile.py."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from colab_cell import render

from gdl.grading import (
    Timeouts,
    check,
    generate_student_versions,
    grade_submission,
    gradescope_bundle,
    load_exercise,
    master_paths,
    run_questions,
    solutions_page,
    student_version,
)
from gdl.grading._notebook import read_notebook, source, tags
from gdl.grading._protocol import Build, Limits, ProtocolError, decode_value, encode_value, read_message, write_message

ROOT = Path(__file__).resolve().parent.parent
MASTERS = ROOT / "exercises" / "masters"
STUDENT = ROOT / "exercises" / "student"
MASTER_PATHS = master_paths(MASTERS)
HAS_BWRAP = bool(shutil.which("bwrap") or os.path.exists("/usr/bin/bwrap"))
sandboxed = pytest.mark.skipif(not HAS_BWRAP, reason="bubblewrap is not installed (scripts/setup.sh installs it)")


def test_at_least_eight_exercises_with_public_and_hidden_questions():
    assert len(MASTER_PATHS) >= 8
    ids = set()
    for m in MASTER_PATHS:
        ex = load_exercise(m, reference=False)
        ids.add(ex.id)
        assert any(q.hidden for q in ex.questions) and any(not q.hidden for q in ex.questions), ex.id
    assert len(ids) == len(MASTER_PATHS)


@sandboxed
@pytest.mark.parametrize("master", MASTER_PATHS, ids=lambda p: p.stem)
def test_master_scores_full_and_student_version_scores_zero(master, tmp_path):
    ex = load_exercise(master)
    full = grade_submission(master, ex, seed=int.from_bytes(os.urandom(4), "little"))
    assert full["score"] == full["max_score"] > 0, [(q["name"], q["message"]) for q in full["questions"]
                                                    if not q["passed"]]
    assert full["cells"] == [] and "bubblewrap" in full["sandbox"]
    blank = grade_submission(STUDENT / master.name, ex, seed=1)
    assert blank["score"] == 0, [(q["name"], q["score"]) for q in blank["questions"]]
    assert all("NotImplementedError" in q["message"] for q in blank["questions"]), \
        [q["message"] for q in blank["questions"]]


#: Seeds at which a hidden question once failed its own master (ex14's broken model was an absolute value, which
#: a reflection close to a permutation of the axes left alone on points with positive coordinates).
FAILED_THEIR_MASTER = {"ex14": [329, 889, 1967, 2105, 2758]}


@pytest.mark.parametrize("master", MASTER_PATHS, ids=lambda p: p.stem)
def test_hidden_questions_pass_the_master_at_every_seed(master):
    """A hidden question draws fresh inputs from the run's secret seed: it must pass the reference solution at every
    seed, or the grader would take points for its own unlucky draw. 100 seeds in-process (about 0.1 to 5 s per
    exercise), plus the seeds that caught a question before."""
    from gdl.grading._exercise import LocalSubmission

    ex = load_exercise(master)
    hidden = [q for q in ex.questions if q.hidden]
    ref = LocalSubmission(ex.reference)
    for seed in [*range(100), *FAILED_THEIR_MASTER.get(ex.id, [])]:
        failed = [(r["name"], r["message"]) for r in run_questions(hidden, LocalSubmission(ex.reference), ref, seed)
                  if not r["passed"]]
        assert not failed, (seed, failed)


def test_student_versions_are_generated_from_the_masters(tmp_path):
    written = generate_student_versions(MASTERS, tmp_path, progress=False)
    assert [p.name for p in written] == [m.name for m in MASTER_PATHS]
    colab = render().strip()           # scripts/colab_cell.py's cell for _config.yml's repository
    for m in MASTER_PATHS:
        committed = STUDENT / m.name
        assert committed.exists(), f"{committed} is missing: run `gdl generate`"
        assert read_notebook(committed) == read_notebook(tmp_path / m.name), f"{committed} is stale: `gdl generate`"
        nb = read_notebook(committed)
        text = json.dumps(nb)
        assert "BEGIN SOLUTION" not in text and "hidden-tests" not in text and "solution-only" not in text
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert source(code[0]).strip() == colab, f"{m.name}: the first code cell must be scripts/colab_cell.py"
        assert any("check(" in source(c) for c in code) and any("public-tests" in tags(c) for c in code)


def test_master_markdown_and_notebook_hold_the_same_cells():
    jupytext = pytest.importorskip("jupytext")
    for m in MASTER_PATHS:
        md, nb = jupytext.read(m.with_suffix(".md")), jupytext.read(m)
        cells = [[(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", []))) for c in x.cells]
                 for x in (md, nb)]
        assert cells[0] == cells[1], f"{m.name} differs from {m.with_suffix('.md').name}: jupytext --to ipynb"
        assert nb.metadata["gdl"]["exercise"] == m.stem.split("_")[0]


def test_strip_solution_keeps_indentation_and_optional_replacement():
    master = {"metadata": {"gdl": {"exercise": "exT"}}, "cells": [
        {"cell_type": "code", "metadata": {"tags": ["solution"]}, "outputs": [], "execution_count": 3,
         "source": "def f(x):\n    # BEGIN SOLUTION\n    return 2 * x\n    # END SOLUTION\n\n"
                   "# BEGIN SOLUTION: answer = None\nanswer = 42\n# END SOLUTION"},
        {"cell_type": "markdown", "metadata": {"tags": ["solution"]}, "source": "Because of weight sharing."},
        {"cell_type": "code", "metadata": {"tags": ["hidden-tests"]}, "outputs": [], "source": "secret"}]}
    nb = student_version(master)
    assert len(nb["cells"]) == 2
    assert source(nb["cells"][0]) == ('def f(x):\n    raise NotImplementedError("exT: write your solution here")\n\n'
                                      "answer = None")
    assert nb["cells"][0]["execution_count"] is None and "answer" in tags(nb["cells"][0])
    assert "weight sharing" not in source(nb["cells"][1])
    broken = {"metadata": {"gdl": {"exercise": "exT"}}, "cells": [
        {"cell_type": "code", "metadata": {"tags": ["solution"]}, "source": "# BEGIN SOLUTION\nx = 1\n"}]}
    with pytest.raises(ValueError, match="no END SOLUTION"):
        student_version(broken)


def test_solutions_page_is_up_to_date_and_in_the_toc():
    page = ROOT / "book" / "11_exercises.md"
    assert page.read_text() == solutions_page(MASTERS), "book/11_exercises.md is stale: `gdl solutions-page`"
    text = page.read_text()
    assert text.count(":class: dropdown") == len(MASTER_PATHS)
    assert "BEGIN SOLUTION" not in text and "@question" not in text
    assert "book/11_exercises" in (ROOT / "_toc.yml").read_text()


def _kernel(notebook: Path) -> dict:
    """The namespace a student's kernel has after running every cell but the check (no hidden tests in it)."""
    from gdl.grading._exercise import _exec_cells
    from gdl.grading._notebook import code_cells

    ns: dict = {"__name__": "__main__"}
    _exec_cells(code_cells(read_notebook(notebook), without_tags={"check", "hidden-tests"}), ns, notebook.name)
    return ns


def test_self_check_passes_the_reference_and_fails_blanks(capsys):
    from gdl.grading._exercise import _REGISTRY

    _REGISTRY.pop("ex07", None)
    blank = _kernel(STUDENT / "ex07_deepsets_layer.ipynb")
    assert _REGISTRY["ex07"] and all(not q.hidden for q in _REGISTRY["ex07"].values())   # public questions only
    bad = check("ex07", namespace=blank, verbose=False)
    assert bad.score == 0 and bad.max_score == 4 and "NotImplementedError" in str(bad)
    good = check("ex07", namespace=_kernel(MASTERS / "ex07_deepsets_layer.ipynb"))
    assert good.score == good.max_score == 4 and "[PASS] layer_shape" in repr(good)
    assert capsys.readouterr().out == ""          # library code does not print; the notebook displays the result
    check("ex07", namespace=blank, verbose=True)
    assert "[FAIL] layer_shape" in capsys.readouterr().out
    with pytest.raises(ValueError, match="run the notebook's test cell"):
        check("ex99")


def test_self_check_is_silent_inside_the_worker(monkeypatch):
    monkeypatch.setenv("GDL_GRADING_WORKER", "1")
    assert check("ex07") is None


def test_public_questions_use_fixed_seeds_hidden_ones_the_run_seed():
    from gdl.grading._exercise import Question

    draws: dict = {}

    def record(sub, ref, rng):
        draws.setdefault(record.key, []).append(float(rng.normal()))
    qs = [Question("exT", "pub", 1, False, record), Question("exT", "hid", 1, True, record)]
    for seed in (1, 2):
        record.key = seed
        run_questions(qs, None, None, seed)
    assert draws[1][0] == draws[2][0]            # public: the same inputs every run (students can reproduce them)
    assert draws[1][1] != draws[2][1]            # hidden: new inputs with every run's secret seed


def test_question_outcomes_are_scored():
    from gdl.grading._exercise import Question

    def partial(sub, ref, rng):
        return 0.5

    def bad_fraction(sub, ref, rng):
        return 3

    def fails(sub, ref, rng):
        raise AssertionError("expected 3, got 4")
    r = run_questions([Question("exT", "a", 2, False, partial), Question("exT", "b", 1, False, bad_fraction),
                       Question("exT", "c", 1, True, fails)], None, None, 0)
    assert [x["score"] for x in r] == [1.0, 0.0, 0.0]
    assert r[2]["message"] == "expected 3, got 4" and r[2]["visibility"] == "hidden"


# --- the instructors' workflow through the CLI --------------------------------------------------------------------
@sandboxed
def test_cli_grade_folder_regrade_and_never_overwrite(tmp_path, capsys):
    from gdl.cli import main

    master = MASTERS / "ex07_deepsets_layer.ipynb"
    subs = tmp_path / "submissions"
    (subs / "carol").mkdir(parents=True)
    shutil.copy(master, subs / "alice.ipynb")
    shutil.copy(STUDENT / master.name, subs / "bob.ipynb")
    shutil.copy(master, subs / "carol" / "my work.ipynb")
    (subs / "dave.ipynb").write_text("this is not a notebook")
    out = tmp_path / "results"
    assert main(["grade", str(subs), "-e", "ex07", "--masters", str(MASTERS), "-o", str(out), "-j", "2"]) == 0
    (run,) = out.iterdir()
    meta = json.loads((run / "run.json").read_text())
    assert meta["exercise"] == "ex07" and isinstance(meta["seed"], int) and meta["students"] == 4
    assert "bubblewrap" in meta["sandbox"] and meta["unsafe"] is False
    rows = list(csv.DictReader((run / "grades.csv").open()))
    assert {r["student"]: float(r["total"]) for r in rows} == {"alice": 8, "bob": 0, "carol": 8, "dave": 0}
    assert "layer_matches_reference" in rows[0]
    dave = json.loads((run / "students" / "dave.json").read_text())
    assert dave["errors"] and dave["questions"][0]["message"].startswith("the notebook cannot be read")
    gs = json.loads((run / "gradescope" / "alice.json").read_text())
    assert gs["score"] == 8 and {t["visibility"] for t in gs["tests"]} == {"visible", "after_published"}
    # a second run never touches the first
    (tmp_path / "late").mkdir()
    shutil.copy(STUDENT / master.name, tmp_path / "late" / "erin.ipynb")
    assert main(["grade", str(tmp_path / "late"), "-e", "ex07", "--masters", str(MASTERS), "-o", str(out)]) == 0
    assert len(list(out.iterdir())) == 2 and len(list((run / "students").glob("*.json"))) == 4
    # re-grade one student: a new file, unless --replace (which keeps the old one)
    shutil.copy(master, subs / "bob.ipynb")
    assert main(["regrade", str(run), "bob"]) == 0
    assert json.loads((run / "students" / "bob.regrade-1.json").read_text())["score"] == 8
    assert json.loads((run / "students" / "bob.json").read_text())["score"] == 0
    assert main(["regrade", str(run), "bob", "--replace"]) == 0
    assert json.loads((run / "students" / "bob.json").read_text())["score"] == 8
    assert json.loads((run / "students" / "bob.replaced-2.json").read_text())["score"] == 0
    rows = list(csv.DictReader((run / "grades.csv").open()))
    assert {r["student"]: float(r["total"]) for r in rows}["bob"] == 8 and len(rows) == 4
    # grade-one (what Gradescope runs) refuses to overwrite without --overwrite
    res = tmp_path / "results.json"
    args = ["grade-one", str(subs / "carol"), "-e", "ex07", "--masters", str(MASTERS), "--gradescope", str(res)]
    assert main(args) == 0 and json.loads(res.read_text())["score"] == 8
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err


def test_cli_generate_and_gradescope_bundle(tmp_path):
    from gdl.cli import main

    assert main(["generate", "--masters", str(MASTERS), "--out", str(tmp_path / "student")]) == 0
    assert len(list((tmp_path / "student").glob("*.ipynb"))) == len(MASTER_PATHS)
    zpath = gradescope_bundle(MASTERS / "ex06_lifting_convolution.ipynb", tmp_path / "ex06.zip")
    with zipfile.ZipFile(zpath) as z:
        names = set(z.namelist())
        assert {"setup.sh", "run_autograder", "tests/ex06_lifting_convolution.ipynb"} <= names
        assert (z.getinfo("run_autograder").external_attr >> 16) & 0o111
        assert "bubblewrap" in z.read("setup.sh").decode()
        assert "grade-one \"$ROOT/submission\"" in z.read("run_autograder").decode()
    with pytest.raises(FileExistsError):
        gradescope_bundle(MASTERS / "ex06_lifting_convolution.ipynb", zpath)
    assert main(["gradescope", "-e", "ex06", "--masters", str(MASTERS), "-o", str(zpath)]) == 2


# --- the wire format ---------------------------------------------------------------------------------------------
def _roundtrip(header, arrays):
    buf = io.BytesIO()
    write_message(buf, header, arrays)
    buf.seek(0)
    return read_message(buf, Limits())


def test_protocol_carries_plain_data_only():
    class Liar(np.ndarray):
        def __eq__(self, other):
            return True
    arrays: list = []
    desc = encode_value([np.arange(3.0).view(Liar), torch.ones(2, dtype=torch.int64), 1.5, True, None, "s"], arrays)
    header, got = _roundtrip({"value": desc}, arrays)
    value = decode_value(header["value"], got)
    assert type(value[0]) is np.ndarray and not (value[0] == np.zeros(3)).all()
    assert value[1].dtype == np.int64 and value[2:] == [1.5, True, None, "s"]
    with pytest.raises(ProtocolError, match="cannot be sent"):
        encode_value(object(), [])
    with pytest.raises(ProtocolError, match="dtype"):
        encode_value(np.array([object()]), [])
    with pytest.raises(ProtocolError, match="catalogue"):
        arr: list = []
        decode_value(encode_value(Build("os.system", "rm -rf /"), arr), arr, builders={"set_model": None})
    with pytest.raises(ProtocolError):
        decode_value({"build": "set_model", "args": []}, [], builders=None)     # no building where not expected


@pytest.mark.parametrize("attack", ["huge_header", "bad_json", "object_dtype", "size_mismatch", "too_much_data",
                                    "missing_array"])
def test_protocol_rejects_malformed_messages(attack):
    head = {"arrays": [{"dtype": "float64", "shape": [2], "nbytes": 16}]}
    body = b"\0" * 16
    if attack == "huge_header":
        raw = struct.pack("<Q", 1 << 40)
    elif attack == "bad_json":
        raw = struct.pack("<Q", 3) + b"{x}"
    else:
        if attack == "object_dtype":
            head["arrays"][0]["dtype"] = "object"
        elif attack == "size_mismatch":
            head["arrays"][0]["nbytes"] = 8
        elif attack == "too_much_data":
            head["arrays"][0].update(shape=[1 << 30], nbytes=8 << 30)
        elif attack == "missing_array":
            head["value"] = {"a": 5}
        h = json.dumps(head).encode()
        raw = struct.pack("<Q", len(h)) + h + body
    with pytest.raises(ProtocolError):
        header, arrays = read_message(io.BytesIO(raw))
        decode_value(header.get("value"), arrays)


def test_timeouts_are_configurable_from_the_cli():
    from gdl.cli import _timeouts, main  # noqa: F401

    class A:
        cell_timeout, call_timeout, submission_timeout = 1.0, 2.0, 3.0
    assert _timeouts(A) == Timeouts(1.0, 2.0, 3.0)


def test_self_check_in_a_real_kernel(tmp_path):
    """The check cell of the notebooks students get works in a Jupyter kernel (as on Colab): 4/4 for a solved
    notebook, 0/4 with the reason for an unsolved one; the notebook runs to the end either way."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    outputs = {}
    for name, path in (("master", MASTERS / "ex07_deepsets_layer.ipynb"),
                       ("student", STUDENT / "ex07_deepsets_layer.ipynb")):
        nb = nbformat.read(path, 4)
        nbclient.NotebookClient(nb, timeout=120, allow_errors=True, kernel_name="python3",
                                resources={"metadata": {"path": str(tmp_path)}}).execute()
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert not errors, (name, [e.ename for e in errors])
        outputs[name] = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for c in nb.cells
                                if "check" in c.metadata.get("tags", []) for o in c.outputs)
    assert "public checks 4/4" in outputs["master"] and "FAIL" not in outputs["master"]
    assert "public checks 0/4" in outputs["student"] and "NotImplementedError" in outputs["student"]


def test_yes_no_answers_accept_bools_and_one_element_bool_tensors():
    from gdl.grading import as_bool

    assert as_bool(True, "f") is True and as_bool(torch.tensor(False), "f") is False
    assert as_bool(torch.tensor([True]), "f") is True
    for bad in (1, 0.0, "True", None, torch.tensor(1), torch.tensor([True, False])):
        with pytest.raises(AssertionError, match="not True or False"):
            as_bool(bad, "f")


# --- the questions catch plausible mistakes (each must lose points, on the named questions) ------------------------
def _lift_turning_the_other_way(x, w):
    filters = torch.stack([torch.rot90(w, -r, dims=(0, 1)) for r in range(4)]).unsqueeze(1)
    return torch.nn.functional.conv2d(x.unsqueeze(1), filters, padding=w.shape[-1] // 2)


def _detector_with_loose_tolerance(model, n, c):
    from gdl.groups import SetAction, SymmetricGroup
    from gdl.testing import equivariance_error

    Sn = SymmetricGroup(n)
    return equivariance_error(model, torch.randn(4, n, c, dtype=torch.float64), group=Sn, in_action=SetAction(Sn),
                              out_action=SetAction(Sn), atol=1e-2).passed


def _latin_square_is_enough(table):
    t = torch.as_tensor(table).long()
    m = t.shape[0]
    return all(torch.equal(torch.sort(r).values, torch.arange(m)) for r in torch.cat([t, t.T]))


def _action_composed_the_wrong_way(table, perms):
    t, p = torch.as_tensor(table).long(), torch.as_tensor(perms).long()
    return all(torch.equal(p[t[g, h]], p[h][p[g]]) for g in range(len(p)) for h in range(len(p)))


MUTANTS = {
    "ex01 mean is not a new idea": ("ex01", {"invariant_3": lambda x: x.mean(-1)}, {"genuinely_different"}),
    "ex01 min is invariant": ("ex01", {"not_invariant": lambda x: x.min(-1).values},
                              {"counter_example_is_not_invariant", "counter_example_for_any_n"}),
    "ex02 convolution, not correlation": ("ex02", {"circular_conv": lambda x, w: sum(
        w[j] * torch.roll(x, j, dims=-1) for j in range(w.shape[0]))},
        {"conv_known_value", "matrix_reproduces_conv", "conv_matches_reference"}),
    "ex03 a Latin square is a group": ("ex03", {"is_group": _latin_square_is_enough},
                                       {"subtraction_is_not_a_group", "group_axioms_on_hidden_tables"}),
    "ex03 wrong composition order": ("ex03", {"is_action": _action_composed_the_wrong_way},
                                     {"action_axioms_on_hidden_actions"}),
    "ex04 loose tolerance": ("ex04", {"is_permutation_equivariant": _detector_with_loose_tolerance},
                             {"catches_planted_violations"}),
    "ex05 always 15": ("ex05", {"count_graph_layer_params": lambda n: 15}, {"graph_layer_counts"}),
    "ex06 filters turned the other way": ("ex06", {"lift_c4": _lift_turning_the_other_way},
                                          {"lift_is_equivariant", "lift_matches_reference"}),
    "ex07 mean, not sum": ("ex07", {"deepsets_layer": lambda x, lam, gam: x @ lam + x.mean(1, keepdim=True) @ gam},
                           {"layer_known_value", "layer_matches_reference"}),
    "ex08 forces are +grad": ("ex08", {"forces": "plus_grad"}, {"forces_are_minus_the_gradient"}),
}


@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_questions_catch_plausible_mistakes(mutant):
    from gdl.grading import LocalSubmission, find_master

    exercise_id, changes, failing = MUTANTS[mutant]
    ex = load_exercise(find_master(MASTERS, exercise_id))
    ns = dict(ex.reference)
    if changes.get("forces") == "plus_grad":
        def plus_grad(pos, energy=ex.reference["pair_energy"]):
            pos = pos.detach().requires_grad_(True)
            return torch.autograd.grad(energy(pos).sum(), pos)[0]
        changes = {"forces": plus_grad}
    ns.update(changes)
    results = run_questions(ex.questions, LocalSubmission(ns), LocalSubmission(ex.reference), seed=4242)
    assert {r["name"] for r in results if not r["passed"]} == failing, [(r["name"], r["message"]) for r in results]
