"""Per-submission isolation, intake, protocol bounds and grader errors (issue 22's regression suite).

Each test reproduces one attack of the outside suite against ``gdl grade`` (exercise 7 here: 8 points, 4 public,
4 hidden) and fails on the grader before issue 22: keys shared through the kernel keyring, one uid's process
limit shared by all workers, memory in memfds and children that counts against nothing, a shared uncapped
scratch folder, symbolic links / FIFOs / huge files read before any check, unbounded protocol events, time limits
that messages reset, hidden inputs echoed in feedback, names that collide, and a pool process whose death turns
into zeros. Caps are small so that each test runs in seconds.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from grading_fixtures import CORRECT, MASTER, ROOT, forking, needs_bwrap

from gdl.grading import ResourceLimits, Timeouts, grade_folder, grade_submission, isolation_mode, load_exercise
from gdl.grading._isolation import SubmissionRejected, read_submission, remove_tree, seccomp_program
from gdl.grading._notebook import write_notebook

FAST = Timeouts(cell=8, call=5, submission=90)
ROOT_MODE = os.geteuid() == 0

pytestmark = needs_bwrap


BROKEN = '''
def deepsets_layer(x, lam, gam):
    raise RuntimeError("no solution")

def set_summary(x, lam, gam):
    raise RuntimeError("no solution")
'''

# writes a forged protocol message to every descriptor it can (the grading channel among them)
FORGE = '''
import json as _json, os as _os
def _forge(header):
    b = _json.dumps({**header, "arrays": []}).encode()
    msg = len(b).to_bytes(8, "little") + b
    for fd in range(3, 30):
        try:
            _os.write(fd, msg)
        except OSError:
            pass
'''


def _notebook(path: Path, *cells: str) -> Path:
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": c, "outputs": [], "execution_count": None}
                    for c in cells],
          "metadata": {"gdl": {"exercise": "ex07"}}, "nbformat": 4, "nbformat_minor": 5}
    write_notebook(nb, path)
    return path


@pytest.fixture(scope="module")
def exercise():
    return load_exercise(MASTER)


DEFAULT_LIMITS = ResourceLimits()


def _grade(exercise, path, *cells, limits=DEFAULT_LIMITS, timeouts=FAST):
    return grade_submission(_notebook(path, *cells), exercise, seed=20261204, timeouts=timeouts, limits=limits)


def _public(r) -> float:
    return sum(q["score"] for q in r["questions"] if q["visibility"] == "public")


# --- 1. kernel keyring ----------------------------------------------------------------------------------------
KEY_STORE = '''
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
SOLUTION = b"CORRECT"
r = libc.syscall(248, b"user", b"gdl-ex07-solution", SOLUTION, len(SOLUTION), ctypes.c_int(-4))  # add_key, @u
raise RuntimeError(f"add_key={r} errno={ctypes.get_errno()}")
'''
KEY_FIND = '''
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
kid = libc.syscall(249, b"user", b"gdl-ex07-solution", None, ctypes.c_int(-4))   # request_key
if kid > 0:
    exec(CORRECT_SOURCE)
'''


def test_keyring_is_closed_so_no_key_passes_between_students(exercise, tmp_path):
    a = _grade(exercise, tmp_path / "a.ipynb", KEY_STORE)
    assert "errno=1" in a["cells"][0]["message"], a["cells"]          # add_key refused with EPERM
    b = _grade(exercise, tmp_path / "b.ipynb", f"CORRECT_SOURCE = {CORRECT!r}\n{BROKEN}", KEY_FIND)
    assert b["score"] == 0, b["questions"]


def test_seccomp_refuses_what_a_submission_never_needs(exercise, tmp_path):
    cell = '''
import ctypes, os, subprocess
libc = ctypes.CDLL(None, use_errno=True)
out = {}
for name, nr, args in (("keyctl", 250, (0, ctypes.c_int(-4), 0)), ("ptrace", 101, (16, 1, 0, 0)),
                       ("bpf", 321, (0, 0, 0)), ("perf_event_open", 298, (0, 0, -1, -1, 0)),
                       ("userfaultfd", 323, (0,)), ("mount", 165, (b"none", b"/gdl-sandbox", b"tmpfs", 0, 0)),
                       ("unshare", 272, (0x10000000,))):
    r = libc.syscall(nr, *args)
    out[name] = ctypes.get_errno() if r == -1 else "allowed"
try:
    os.memfd_create("m")
    out["memfd_create"] = "allowed"
except OSError as e:
    out["memfd_create"] = e.errno
out["subprocess"] = subprocess.run(["true"]).returncode      # ordinary processes still work
raise RuntimeError(repr(out))
'''
    if os.uname().machine != "x86_64":
        pytest.skip("the system-call numbers in this test are x86_64's")
    r = _grade(exercise, tmp_path / "s.ipynb", cell, CORRECT)
    out = eval(r["cells"][0]["message"].split("RuntimeError: ", 1)[1].rsplit(" (<cell", 1)[0])   # noqa: S307
    assert out.pop("subprocess") == 0
    assert set(out.values()) == {1}, out                    # every one EPERM
    assert r["score"] == 8
    assert seccomp_program("x86_64") and seccomp_program("aarch64") and seccomp_program("riscv64") is None


# --- 2. process limit per submission ----------------------------------------------------------------------------
HOLD_PROCESSES = forking(62, 40, "time.sleep(4)          # hold them while the other student is graded")


@pytest.mark.skipif(not ROOT_MODE, reason="as a normal user all workers share the grader's uid")
def test_one_submissions_processes_do_not_starve_another(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    _notebook(subs / "hog.ipynb", HOLD_PROCESSES, CORRECT)
    for name in ("honest1", "honest2"):
        _notebook(subs / f"{name}.ipynb", CORRECT)
    run = grade_folder(subs, MASTER, tmp_path / "out", jobs=2, timeouts=Timeouts(cell=20, call=5, submission=90),
                       seed=3, progress=False)
    res = {p.stem: json.loads(p.read_text()) for p in (run / "students").glob("*.json")}
    assert res["honest1"]["score"] == res["honest2"]["score"] == 8, {k: v["questions"] for k, v in res.items()}
    assert res["hog"]["score"] == 8


# --- 3. memory counted per submission, every page ---------------------------------------------------------------
MEMORY_IN_CHILDREN = '''
import os, time
import numpy as np
kids = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        a = np.ones(160 << 20 >> 3)      # 160 MiB each, touched; each child alone is under every per-process limit
        time.sleep(3)
        os._exit(0)
    kids.append(pid)
killed = sum(os.WIFSIGNALED(os.waitpid(p, 0)[1]) for p in kids)
raise RuntimeError(f"children killed: {killed}")
'''


@pytest.mark.skipif(not (ROOT_MODE and isolation_mode()["cgroup"]), reason="needs a writable cgroup (root)")
def test_memory_cap_counts_all_processes_of_a_submission(exercise, tmp_path):
    t = Timeouts(cell=20, call=5, submission=90)
    small = ResourceLimits(cgroup_memory_bytes=512 << 20)
    honest = _grade(exercise, tmp_path / "h.ipynb", CORRECT, limits=small)
    assert honest["score"] == 8, honest          # the cap leaves room for an honest submission
    r = _grade(exercise, tmp_path / "m.ipynb", MEMORY_IN_CHILDREN, CORRECT, limits=small, timeouts=t)
    text = json.dumps(r)
    assert "memory cap" in text, r["cells"]       # the kernel killed a process of this submission, and says so
    assert "children killed: 0" not in text
    assert r["score"] == 8                        # its functions still earn their points
    # control: under a cap of 3 GiB the same children live (per-process limits alone never stop them)
    big = _grade(exercise, tmp_path / "b.ipynb", MEMORY_IN_CHILDREN, CORRECT, timeouts=t)
    assert "children killed: 0" in big["cells"][0]["message"] and "memory cap" not in json.dumps(big)


def test_no_memfd_and_a_capped_shm(exercise, tmp_path):
    cell = '''
import os
out = []
try:
    os.memfd_create("big")
except OSError as e:
    out.append(f"memfd errno {e.errno}")
try:
    with open("/dev/shm/fill", "wb") as f:
        for i in range(64):
            f.write(b"x" * (1 << 20))
except OSError as e:
    out.append(f"shm errno {e.errno} after {i} MiB")
raise RuntimeError("; ".join(out))
'''
    r = _grade(exercise, tmp_path / "m.ipynb", cell, CORRECT, limits=ResourceLimits(shm_bytes=4 << 20))
    msg = r["cells"][0]["message"]
    assert "memfd errno 1" in msg and "shm errno 28 after 4 MiB" in msg, msg
    assert r["score"] == 8


# --- 4. scratch: capped, private, removed ---------------------------------------------------------------------
FILL_SCRATCH = '''
import os
written = 0
try:
    for i in range(100):
        with open(os.path.join(os.environ["TMPDIR"], f"f{i}"), "wb") as f:
            f.write(b"x" * (1 << 20))
        written += 1
except OSError as e:
    raise RuntimeError(f"errno {e.errno} after {written} MiB")
'''
DEEP_TREE = '''
import os
d = os.environ["TMPDIR"]
os.chdir(d)
for i in range(1500):
    os.mkdir("d")
    os.chdir("d")
open("GDL-DEEP-MARKER", "w").write("x")
'''


def test_scratch_is_capped_and_private_to_the_submission(exercise, tmp_path, monkeypatch):
    import tempfile

    def no_host_scratch(*a, **k):
        raise AssertionError("a sandboxed worker must not use the host's temporary folder")

    monkeypatch.setattr(tempfile, "mkdtemp", no_host_scratch)
    r = _grade(exercise, tmp_path / "f.ipynb", FILL_SCRATCH, CORRECT, limits=ResourceLimits(scratch_bytes=8 << 20))
    msg = r["cells"][0]["message"]
    assert "errno 28" in msg and int(msg.split("after ")[1].split()[0]) <= 8, msg    # ENOSPC at the cap
    assert r["score"] == 8
    d = _grade(exercise, tmp_path / "d.ipynb", DEEP_TREE, CORRECT)
    assert d["score"] == 8 and d["status"] == "graded"


def test_clean_up_removes_a_1500_deep_tree(tmp_path):
    for python_only in (False, True):
        top = tmp_path / f"deep{python_only}"
        top.mkdir()
        fd = os.open(top, os.O_RDONLY)
        for _ in range(1500):                       # deeper than PATH_MAX and the recursion limit allow
            os.mkdir("d", dir_fd=fd)
            nfd = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        with open(os.open("f", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd), "w") as f:
            f.write("x")
        os.close(fd)
        if python_only:
            from gdl.grading import _isolation

            _isolation._remove_tree_python(str(top))
        else:
            remove_tree(top)
        assert not top.exists()


def test_unsafe_scratch_with_a_deep_tree_is_removed(exercise, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    r = grade_submission(_notebook(tmp_path / "d.ipynb", DEEP_TREE, CORRECT), exercise, seed=1, unsafe=True,
                         timeouts=FAST)
    assert r["score"] == 8 and r["status"] == "graded"
    assert not list(tmp_path.glob("gdl-grade-*"))


# --- 5. intake -------------------------------------------------------------------------------------------------
def test_intake_rejects_links_fifos_devices_and_huge_files_before_reading(tmp_path):
    real = _notebook(tmp_path / "real.ipynb", CORRECT)
    (tmp_path / "link.ipynb").symlink_to(real)
    os.mkfifo(tmp_path / "fifo.ipynb")
    with open(tmp_path / "huge.ipynb", "wb") as f:       # sparse: 4 GiB on paper, nothing on disk
        f.truncate(4 << 30)
    t0 = time.monotonic()
    for name, why in (("link", "symbolic link"), ("fifo", "not a regular file"), ("huge", "MiB limit")):
        with pytest.raises(SubmissionRejected, match=why):
            read_submission(tmp_path / f"{name}.ipynb", 20 << 20)
    with pytest.raises(SubmissionRejected, match="not a regular file"):
        read_submission("/dev/zero", 20 << 20)
    assert time.monotonic() - t0 < 2
    assert read_submission(real, 20 << 20) == real.read_bytes()


def test_grade_folder_flags_copies_rejects_links_and_keeps_colliding_names(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    _notebook(subs / "a b.ipynb", CORRECT)
    _notebook(subs / "a_b.ipynb", CORRECT)                   # byte-identical to "a b", and the same cleaned name
    _notebook(subs / "Zoë.ipynb", BROKEN)
    _notebook(subs / "Zoé.ipynb", BROKEN + "\n# other\n")    # two non-ASCII names
    shutil.copyfile(MASTER, subs / "copycat.ipynb")
    (subs / "linker.ipynb").symlink_to(MASTER)
    (subs / "pal.ipynb").symlink_to(subs / "a_b.ipynb")
    os.mkfifo(subs / "piper.ipynb")
    with open(subs / "huge.ipynb", "wb") as f:
        f.truncate(4 << 30)
    (subs / "twice").mkdir()
    _notebook(subs / "twice" / "one.ipynb", CORRECT)
    _notebook(subs / "twice" / "two.ipynb", CORRECT)
    run = grade_folder(subs, MASTER, tmp_path / "out", jobs=2, timeouts=FAST, seed=5, progress=False)
    res = {p.stem: json.loads(p.read_text()) for p in (run / "students").glob("*.json")}
    assert len(res) == 10, sorted(res)                       # every student has a result, distinct names
    assert "a_b" in res and any(k.startswith("a_b-") for k in res)
    assert len([k for k in res if k.startswith("Zo_-")]) == 2
    for name in ("linker", "pal", "piper", "huge", "twice"):
        assert res[name]["status"] == "rejected" and res[name]["score"] == 0, res[name]
    assert "symbolic link" in res["linker"]["errors"][0] and "two or more" in res["twice"]["errors"][0]
    assert any("master" in f for f in res["copycat"]["flags"])
    ab = [k for k in res if k.startswith("a_b")]
    assert all(any("byte-identical to the submission of" in f for f in res[k]["flags"]) for k in ab)
    assert res["a_b"]["score"] == 8
    rows = list(csv.DictReader(open(run / "grades.csv")))
    assert len(rows) == 10 and {r["status"] for r in rows} == {"graded", "rejected"}
    meta = json.loads((run / "run.json").read_text())
    assert meta["grader_errors"] == [] and "copycat" in meta["flagged"] and "isolation" in meta


# --- 6. protocol bounds ----------------------------------------------------------------------------------------
def test_forged_events_are_bounded_and_reported(exercise, tmp_path):
    flood = FORGE + '''
for i in range(200_000):
    _forge({"event": "cell", "index": i, "status": "error", "error": "x" * 200})
'''
    r = _grade(exercise, tmp_path / "f.ipynb", flood, CORRECT)
    text = json.dumps(r)
    assert len(text) < 50_000
    assert r["cells"][0]["status"] == "killed" and "messages" in r["cells"][0]["message"], r["cells"]
    assert r["score"] == 8            # the cell that flooded was skipped; the rest was graded


def test_messages_cannot_reset_the_cell_and_call_time_limits(exercise, tmp_path):
    cell_loop = FORGE + '''
import time
while True:
    _forge({"event": "cell", "index": 1, "status": "start"})
    time.sleep(0.3)
'''
    call_loop = FORGE + '''
import time
def deepsets_layer(x, lam, gam):
    while True:
        _forge({"event": "cell", "index": 0, "status": "ok"})
        time.sleep(0.3)
'''
    t = Timeouts(cell=4, call=3, submission=60)
    r = _grade(exercise, tmp_path / "t.ipynb", cell_loop, CORRECT, timeouts=t)
    assert r["cells"][0]["status"] == "killed" and "timed out after 4 s" in r["cells"][0]["message"], r["cells"]
    assert r["score"] == 8
    r = _grade(exercise, tmp_path / "c.ipynb", CORRECT, call_loop, timeouts=t)
    msgs = {q["name"]: q["message"] for q in r["questions"]}
    assert any("did not return within 3 s" in m for m in msgs.values()), msgs
    assert r["seconds"] < 50


def test_feedback_of_hidden_questions_never_echoes_inputs(exercise, tmp_path):
    leak = CORRECT + '''
class Found(Exception):
    pass
def deepsets_layer(x, lam, gam):
    raise ValueError("LEAK " + repr(x.flatten()[:4].tolist()))
def set_summary(x, lam, gam):
    raise type("LEAK_" + str(int(abs(float(x.flatten()[0])) * 1e6)), (Exception,), {})("LEAK")
'''
    r = _grade(exercise, tmp_path / "l.ipynb", leak)
    hidden = [q["message"] for q in r["questions"] if q["visibility"] == "hidden"]
    public = [q["message"] for q in r["questions"] if q["visibility"] == "public"]
    assert hidden and not any("LEAK" in m for m in hidden), hidden
    assert any("ValueError" in m for m in hidden)              # which question failed and why, without the input
    assert any("LEAK" in m for m in public)                    # public inputs are public: the message stays


# --- 7. nothing lost -------------------------------------------------------------------------------------------
def _pool_children() -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            cmd = (p / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and b"spawn_main" in cmd:        # a pool process (not the resource tracker)
            out.append(int(p.name))
    return out


def test_a_dying_pool_process_gives_not_graded_and_one_command_regrades(tmp_path, capsys):
    import signal

    from gdl.cli import main

    subs = tmp_path / "subs"
    subs.mkdir()
    for name in ("ann", "ben", "cat"):
        _notebook(subs / f"{name}.ipynb", "import time\ntime.sleep(5)", CORRECT)
    out = tmp_path / "out"
    rc: list[int] = []
    th = threading.Thread(target=lambda: rc.append(main(["grade", str(subs), "--master", str(MASTER), "-o", str(out),
                                                         "-j", "2", "--seed", "9", "--cell-timeout", "30"])))
    th.start()
    killed = False
    for _ in range(600):                      # kill one pool process while it grades (an OOM kill, say)
        time.sleep(0.1)
        kids = _pool_children()
        if kids and list(out.glob("*/run.json")):
            time.sleep(2)
            os.kill(kids[0], signal.SIGKILL)
            killed = True
            break
    th.join(300)
    assert killed and rc == [3], rc
    (run,) = out.iterdir()
    res = {p.stem: json.loads(p.read_text()) for p in (run / "students").glob("*.json")}
    errors = [s for s, r in res.items() if r["status"] == "grader_error"]
    assert errors and set(res) == {"ann", "ben", "cat"}
    for s in errors:
        assert res[s]["score"] is None and "not graded: grader error" in res[s]["errors"][0]
        assert all(q["score"] is None for q in res[s]["questions"])
    rows = {r["student"]: r for r in csv.DictReader(open(run / "grades.csv"))}
    assert all(rows[s]["total"] == "" and rows[s]["status"] == "grader_error" for s in errors)
    assert json.loads((run / "run.json").read_text())["grader_errors"] == sorted(errors)
    assert "gdl regrade" in capsys.readouterr().out
    assert main(["regrade", str(run), "--errors"]) == 0
    for s in errors:
        assert json.loads((run / "students" / f"{s}.json").read_text())["score"] == 8
        assert list((run / "students").glob(f"{s}.replaced-*.json"))       # the old result is kept


def test_a_sandbox_that_cannot_start_is_a_grader_error_not_a_zero(exercise, tmp_path, monkeypatch):
    from gdl.grading import _sandbox

    monkeypatch.setattr(_sandbox, "_sandbox_command", lambda argv, *a: ["/bin/false"])
    r = _grade(exercise, tmp_path / "x.ipynb", CORRECT)
    assert r["status"] == "grader_error" and r["score"] is None, r
    assert "not graded: grader error" in r["errors"][0]


@pytest.mark.skipif(not ROOT_MODE, reason="simulates non-root mode by running bubblewrap as nobody (needs root)")
def test_non_root_mode_sandbox_works_unprivileged(monkeypatch):
    """The non-root command line (own user namespace, no nested ones, seccomp, capped tmpfs, read-only root) run by
    an unprivileged uid. The Python installation is swapped for a world-readable folder: here it lives under
    /root, which nobody may enter (root mode binds it as root)."""
    import subprocess
    from unittest import mock

    from gdl.grading import _sandbox

    _sandbox.sandbox_description()                   # fills in the bubblewrap version
    fds = [_sandbox._memfd("nb", b"{}"), _sandbox._memfd("filter", seccomp_program())]
    with mock.patch("os.geteuid", return_value=1000), \
            mock.patch.object(_sandbox, "_python_roots", lambda: [str(ROOT / "gdl")]):
        cmd = _sandbox._sandbox_command(["x"], ResourceLimits(scratch_bytes=8 << 20), *fds)
    assert "--unshare-user" in cmd and "--seccomp" in cmd
    script = ("id -u; df -k /gdl-sandbox | tail -1; cat /gdl-sandbox/submission.ipynb; echo; "
              "unshare -U true 2>/dev/null && echo nested-userns || echo no-nested-userns; "
              "touch /x 2>/dev/null && echo root-rw || echo root-ro")
    cmd = cmd[:cmd.index("--")] + ["--", "/bin/sh", "-c", script]

    def as_nobody():
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)

    try:
        r = subprocess.run(cmd, pass_fds=fds, preexec_fn=as_nobody, capture_output=True, text=True, timeout=60)
    finally:
        for fd in fds:
            os.close(fd)
    lines = r.stdout.split("\n")
    assert r.returncode == 0, r.stderr
    assert lines[0] == "65534" and lines[1].split()[1] == "8192" and lines[2] == "{}", lines
    assert "no-nested-userns" in r.stdout and "root-ro" in r.stdout
