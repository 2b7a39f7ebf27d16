"""Grading runs: one submission, a folder in parallel workers, one student again; the result files.

Layout of a run (``gdl grade SUBMISSIONS --exercise ex07 --out RESULTS``)::

    RESULTS/ex07-20261125-143012-3fa9/   a new folder per run (never reused)
        run.json                         exercise, master sha256, secret seed, sandbox, time limits, versions
        students/<student>.json          per-question scores and messages, cell errors, time, sandbox
        grades.csv                       one row per student, one column per question
        gradescope/<student>.json        the same result in Gradescope's results.json format
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import json
import os
import re
import secrets
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

from gdl.grading._exercise import Exercise, LocalSubmission, RemoteSubmission, load_exercise, run_questions
from gdl.grading._isolation import SubmissionRejected, read_submission
from gdl.grading._sandbox import (
    GraderError,
    ResourceLimits,
    Timeouts,
    WorkerSession,
    isolation_mode,
    sandbox_description,
)

__all__ = ["grade_submission", "grade_folder", "regrade", "regrade_errors", "find_submissions", "scan_submissions",
           "gradescope_results", "MAX_NOTEBOOK_BYTES", "GRADER_ERROR"]

MAX_NOTEBOOK_BYTES = 20 << 20
GRADER_ERROR = "not graded: grader error"
_STUDENT = re.compile(r"[^A-Za-z0-9._-]+")
_TIMEOUTS, _LIMITS = Timeouts(), ResourceLimits()


def _sha256(path: Path) -> str:
    """Of a trusted file (the master), which may be a link the instructor made."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def student_name(path: Path, root: Path) -> str:
    """The student's name from ``root/<name>.ipynb`` or ``root/<name>/...``: letters, digits, ``._-``; a name that
    had to be changed gets a short hash of the original, so two names that clean up alike ("a b", "a_b", any two
    non-ASCII names) stay distinct, and the same name always gives the same result file."""
    rel = path.relative_to(root)
    raw = rel.parts[0] if len(rel.parts) > 1 else rel.stem
    safe = _STUDENT.sub("_", raw)[:60]
    if safe != raw or not safe or safe.startswith("."):
        tag = hashlib.sha256(raw.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        safe = f"{safe.lstrip('.') or 'student'}-{tag}"
    return safe


def scan_submissions(folder: str | Path) -> tuple[dict[str, Path], dict[str, str]]:
    """``folder/<student>.ipynb`` or ``folder/<student>/<one notebook>.ipynb`` -> ({student: path},
    {student: why it cannot be graded}). Symbolic links are never followed; a student with two notebooks, a
    link, a FIFO or a device is listed with the reason, and the rest of the class is graded."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"submissions folder {folder} does not exist")
    candidates: dict[str, list[Path]] = {}
    problems: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        d = Path(dirpath)
        dirnames[:] = sorted(x for x in dirnames if x != ".ipynb_checkpoints")
        for x in list(dirnames):
            if os.path.islink(d / x):             # os.walk lists links to folders as folders; never enter them
                dirnames.remove(x)
                problems[student_name(d / x / "link", folder)] = "the submission is a symbolic link; submit the file"
        for f in sorted(filenames):
            if f.endswith(".ipynb"):
                candidates.setdefault(student_name(d / f, folder), []).append(d / f)
    found: dict[str, Path] = {}
    for name, paths in sorted(candidates.items()):
        if len(paths) > 1:
            problems[name] = (f"two or more notebooks ({', '.join(str(p.relative_to(folder)) for p in paths)}); "
                              f"keep one and re-grade this student")
        else:
            found[name] = paths[0]
            problems.pop(name, None)
    if not found and not problems:
        raise FileNotFoundError(f"no .ipynb submissions in {folder}")
    return found, problems


def find_submissions(folder: str | Path) -> dict[str, Path]:
    """``folder/<student>.ipynb`` or ``folder/<student>/<one notebook>.ipynb`` -> {student: path} (the students
    whose submission can be graded; :func:`scan_submissions` also lists the others with the reason)."""
    return scan_submissions(folder)[0]


def count_code_cells(data: bytes) -> int:
    """Number of code cells of a notebook's bytes (0 if it is not a notebook): the worker may report no others."""
    try:
        nb = json.loads(data)
        return sum(1 for c in nb.get("cells", []) if isinstance(c, dict) and c.get("cell_type") == "code")
    except (ValueError, RecursionError, AttributeError, TypeError):
        return 0


def _question_rows(exercise: Exercise, message: str, score) -> list[dict]:
    return [{"name": q.name, "description": q.description, "max_score": q.points,
             "visibility": "hidden" if q.hidden else "public", "score": score, "passed": False,
             "message": message, "seconds": 0.0} for q in exercise.questions]


def not_graded(student: str, exercise: Exercise, why: str, *, sandbox: str = "", unsafe: bool = False,
               file: str = "", status: str = "grader_error") -> dict:
    """A result for a submission the grader could not grade: no score (``None``), never a 0 as if answered."""
    msg = f"{GRADER_ERROR}: {why}" if status == "grader_error" else why
    return {"student": student, "exercise": exercise.id, "file": file, "status": status, "sha256": None,
            "score": None if status == "grader_error" else 0.0, "max_score": exercise.max_score,
            "questions": _question_rows(exercise, msg, None if status == "grader_error" else 0.0), "cells": [],
            "sandbox": sandbox, "unsafe": bool(unsafe), "errors": [msg], "flags": [],
            "graded_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def grade_submission(notebook: str | Path, exercise: Exercise, *, seed: int, unsafe: bool = False,
                     timeouts: Timeouts = _TIMEOUTS, limits: ResourceLimits = _LIMITS,
                     student: str | None = None) -> dict:
    """Grade one notebook; always returns a result. A broken or hostile notebook scores what it earned
    (``status: "graded"``); a file that is not a notebook the grader reads (a link, a FIFO, too large) scores 0
    with the reason (``"rejected"``); a failure of the grader itself gives ``"grader_error"`` and no score."""
    notebook = Path(notebook)
    t0 = time.monotonic()
    result = {"student": student or notebook.stem, "exercise": exercise.id, "file": str(notebook),
              "status": "graded", "sha256": None, "score": 0.0, "max_score": exercise.max_score, "questions": [],
              "cells": [], "sandbox": sandbox_description(unsafe), "unsafe": bool(unsafe), "errors": [],
              "flags": [], "graded_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    if not unsafe:
        result["isolation"] = isolation_mode()
    problem, data = None, b""
    try:
        data = read_submission(notebook, MAX_NOTEBOOK_BYTES)
        result["sha256"] = hashlib.sha256(data).hexdigest()
        nb = json.loads(data.decode("utf-8"))
        if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
            problem = "the file is not a Jupyter notebook"
    except SubmissionRejected as e:
        problem = str(e)
        result["status"] = "rejected"
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        problem = f"the notebook cannot be read: {type(e).__name__}"
    if problem is not None:
        result["errors"].append(problem)
        result["questions"] = _question_rows(exercise, problem, 0.0)
    else:
        try:
            session = WorkerSession(data, unsafe=unsafe, timeouts=timeouts, limits=limits,
                                    n_cells=count_code_cells(data))
            try:
                result["questions"] = run_questions(exercise.questions, RemoteSubmission(session),
                                                    LocalSubmission(exercise.reference), seed)
            finally:
                session.close()
        except GraderError as e:
            r = not_graded(result["student"], exercise, str(e)[:300], sandbox=result["sandbox"], unsafe=unsafe,
                           file=str(notebook))
            r["sha256"], r["seconds"] = result["sha256"], round(time.monotonic() - t0, 3)
            return r
        result["cells"] = [c for _, c in sorted(session.cells.items()) if c["status"] != "ok"]
        result["restarts"] = max(0, session.starts - 1)
        if session.cpu_seconds is not None:
            result["worker_cpu_seconds"] = round(session.cpu_seconds, 3)
        if session.peak_memory is not None:
            result["worker_peak_memory_mib"] = round(session.peak_memory / 2**20, 1)
        if session.oom:
            result["errors"].append("the submission went over its memory cap and was killed")
        if session.notebook_error:
            result["errors"].append(session.notebook_error)
    result["score"] = round(sum(q["score"] for q in result["questions"]), 6)
    result["seconds"] = round(time.monotonic() - t0, 3)
    return result


def gradescope_results(result: dict) -> dict:
    """Gradescope's ``results.json``: hidden questions show name and message only after grades are published."""
    tests = [{"name": q["name"] + (f": {q['description']}" if q["description"] else ""),
              "score": q["score"] or 0.0, "max_score": q["max_score"], "output": q["message"] or "passed",
              "visibility": "visible" if q["visibility"] == "public" else "after_published"}
             for q in result["questions"]]
    notes = [f"cell {c['index']}: {c['message']}" for c in result.get("cells", [])] + result.get("errors", [])
    notes += [f"FLAG: {f}" for f in result.get("flags", [])]
    if result.get("unsafe"):
        notes.insert(0, "graded WITHOUT a sandbox (--unsafe)")
    return {"score": result["score"] or 0.0, "tests": tests, "output": "\n".join(notes)[:4000],
            "visibility": "visible", "stdout_visibility": "hidden"}


def _write_json(path: Path, data: dict, overwrite: bool = False) -> Path:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; results are never overwritten silently")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def _main_results(run_dir: Path) -> list[Path]:
    return [p for p in sorted((run_dir / "students").glob("*.json"))
            if ".regrade-" not in p.name and ".replaced-" not in p.name]


def write_csv(run_dir: Path, exercise: Exercise) -> Path:
    """``grades.csv``: student, total (empty when not graded), max_score, status, flags, one column per question."""
    rows = []
    for p in _main_results(run_dir):
        r = json.loads(p.read_text())
        by_name = {q["name"]: q["score"] for q in r.get("questions", [])}
        total = "" if r.get("score") is None else r["score"]
        rows.append([r["student"], total, r["max_score"], r.get("status", "graded"), "; ".join(r.get("flags", []))]
                    + ["" if by_name.get(q.name) is None else by_name[q.name] for q in exercise.questions])
    path = run_dir / "grades.csv"
    with open(path.with_name("grades.csv.tmp"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["student", "total", "max_score", "status", "flags"] + [q.name for q in exercise.questions])
        w.writerows(rows)
    os.replace(path.with_name("grades.csv.tmp"), path)
    return path


# --- the pool: each process loads the exercise once -----------------------------------------------------------
_POOL_EXERCISE: Exercise | None = None


def _pool_init(master: str) -> None:
    global _POOL_EXERCISE
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    _POOL_EXERCISE = load_exercise(master)


def _pool_grade(args: tuple) -> dict:
    student, path, seed, unsafe, timeouts, limits = args
    try:
        return grade_submission(path, _POOL_EXERCISE, seed=seed, unsafe=unsafe, timeouts=Timeouts(**timeouts),
                                limits=limits, student=student)
    except Exception as e:  # noqa: BLE001 - any failure here is the grader's, never the student's score
        return not_graded(student, _POOL_EXERCISE, f"{type(e).__name__}: {str(e)[:300]}", unsafe=unsafe,
                          file=str(path))


def new_run_dir(out: str | Path, exercise: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        d = out / f"{exercise}-{stamp}-{secrets.token_hex(2)}"
        try:
            d.mkdir()
            return d
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run folder in {out}")


def _flags(shas: dict[str, str | None], master_sha: str) -> dict[str, list[str]]:
    """Byte-identical submissions: to the master (its hidden tests and solutions) or to another student's."""
    by_sha: dict[str, list[str]] = {}
    for s, h in shas.items():
        if h is not None:
            by_sha.setdefault(h, []).append(s)
    flags: dict[str, list[str]] = {s: [] for s in shas}
    for s, h in shas.items():
        if h is None:
            continue
        if h == master_sha:
            flags[s].append("byte-identical to the master notebook (hidden tests and solutions)")
        others = [o for o in by_sha[h] if o != s]
        if others:
            flags[s].append(f"byte-identical to the submission of {', '.join(sorted(others)[:5])}"
                            + (f" and {len(others) - 5} more" if len(others) > 5 else ""))
    return flags


def grade_folder(submissions: str | Path, master: str | Path, out: str | Path, *, jobs: int = 2,
                 unsafe: bool = False, timeouts: Timeouts = _TIMEOUTS, seed: int | None = None,
                 progress: bool = True, limits: ResourceLimits = _LIMITS) -> Path:
    """Grade every notebook in ``submissions`` against ``master`` in ``jobs`` parallel processes; returns the
    new run folder. ``seed`` defaults to a fresh secret (recorded in ``run.json`` for re-grading).

    Every student gets a result file. If a pool process dies or the grader fails, the students it affected get
    ``status: "grader_error"`` and no score; ``run.json`` lists them under ``grader_errors`` and
    :func:`regrade_errors` (``gdl regrade RUN --errors``) grades them again."""
    from concurrent.futures.process import BrokenProcessPool

    from tqdm.auto import tqdm

    master = Path(master)
    subs, problems = scan_submissions(submissions)
    exercise = load_exercise(master, reference=False)
    sandbox = sandbox_description(unsafe)       # refuse before doing anything if there is no sandbox
    seed = secrets.randbits(63) if seed is None else int(seed)
    run = new_run_dir(out, exercise.id)
    (run / "students").mkdir()
    (run / "gradescope").mkdir()
    master_sha = _sha256(master)
    meta = {"exercise": exercise.id, "title": exercise.title, "master": str(master), "master_sha256": master_sha,
            "submissions": str(submissions), "seed": seed, "sandbox": sandbox, "unsafe": unsafe,
            "isolation": None if unsafe else isolation_mode(), "limits": asdict(limits),
            "timeouts": asdict(timeouts), "jobs": jobs, "students": len(subs) + len(problems),
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    _write_json(run / "run.json", meta)
    t0 = time.monotonic()

    def record(r: dict) -> None:
        _write_json(run / "students" / f"{r['student']}.json", r)
        _write_json(run / "gradescope" / f"{r['student']}.json", gradescope_results(r))

    # intake on this side first (lstat, size, bounded read): rejected files never reach a worker
    shas: dict[str, str | None] = {}
    for s, p in list(subs.items()):
        try:
            shas[s] = hashlib.sha256(read_submission(p, MAX_NOTEBOOK_BYTES)).hexdigest()
        except SubmissionRejected as e:
            problems[s] = str(e)
            del subs[s]
    flags = _flags(shas, master_sha)
    for s, why in problems.items():
        record(not_graded(s, exercise, why, sandbox=sandbox, unsafe=unsafe, status="rejected"))
    try:
        ctx = get_context("spawn")
        with ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=ctx, initializer=_pool_init,
                                 initargs=(str(master),)) as pool:
            futs = {pool.submit(_pool_grade, (s, str(p), seed, unsafe, asdict(timeouts), limits)): s
                    for s, p in subs.items()}
            bar = tqdm(total=len(futs), desc=f"grading {exercise.id}", unit="notebook", disable=not progress)
            for fut in as_completed(futs):
                student = futs[fut]
                try:
                    r = fut.result()
                except BrokenProcessPool:
                    r = not_graded(student, exercise, "a grading process died (BrokenProcessPool)", sandbox=sandbox,
                                   unsafe=unsafe, file=str(subs[student]))
                except Exception as e:  # noqa: BLE001 - a grader failure is recorded, never lost
                    r = not_graded(student, exercise, f"{type(e).__name__}: {str(e)[:300]}", sandbox=sandbox,
                                   unsafe=unsafe, file=str(subs[student]))
                r["flags"] = list(r.get("flags", [])) + flags.get(student, [])
                if r.get("sha256") and shas.get(student) and r["sha256"] != shas[student]:
                    r["flags"].append("the file changed while the run was grading it")
                record(r)
                bar.update(1)
            bar.close()
    finally:
        done = {p.stem for p in _main_results(run)}
        for s in subs:         # whatever was not recorded (an interrupted run): not graded, never lost
            if s not in done:
                record(not_graded(s, exercise, "the run ended before this submission was graded", sandbox=sandbox,
                                  unsafe=unsafe, file=str(subs[s])))
        write_csv(run, exercise)
        meta["seconds"] = round(time.monotonic() - t0, 2)
        meta["grader_errors"] = sorted(p.stem for p in _main_results(run)
                                       if json.loads(p.read_text()).get("status") == "grader_error")
        meta["flagged"] = sorted(s for s, f in flags.items() if f)
        meta["rejected"] = sorted(problems)
        _write_json(run / "run.json", meta, overwrite=True)
    return run


def regrade(run_dir: str | Path, student: str, *, submission: str | Path | None = None, replace: bool = False,
            unsafe: bool | None = None, timeouts: Timeouts | None = None, progress: bool = True) -> Path:
    """Grade one student of an earlier run again (same master, same secret seed). Writes
    ``students/<student>.regrade-N.json``; with ``replace=True`` it becomes ``<student>.json`` (the previous file
    is kept as ``<student>.replaced-N.json``) and ``grades.csv`` is rebuilt."""
    from tqdm.auto import tqdm

    run = Path(run_dir)
    meta = json.loads((run / "run.json").read_text())
    unsafe = meta["unsafe"] if unsafe is None else unsafe
    timeouts = Timeouts(**meta["timeouts"]) if timeouts is None else timeouts
    if submission is None:
        subs, problems = scan_submissions(meta["submissions"])
        if student not in subs:
            have = ", ".join(list(subs)[:10])
            why = f" ({problems[student]})" if student in problems else ""
            raise KeyError(f"no gradable submission of {student!r} in {meta['submissions']}{why} (have: {have})")
        submission = subs[student]
    bar = tqdm(total=2, desc=f"re-grading {student}", disable=not progress)
    exercise = load_exercise(meta["master"])
    bar.update(1)
    r = grade_submission(submission, exercise, seed=meta["seed"], unsafe=unsafe, timeouts=timeouts, student=student)
    r["regraded"] = True
    bar.update(1)
    bar.close()
    students = run / "students"
    n = 1
    while (students / f"{student}.regrade-{n}.json").exists() or (students / f"{student}.replaced-{n}.json").exists():
        n += 1
    if replace:
        cur = students / f"{student}.json"
        if cur.exists():
            os.replace(cur, students / f"{student}.replaced-{n}.json")
        path = _write_json(cur, r)
        _write_json(run / "gradescope" / f"{student}.json", gradescope_results(r), overwrite=True)
        write_csv(run, exercise)
        return path
    return _write_json(students / f"{student}.regrade-{n}.json", r)


def grader_errors(run_dir: str | Path) -> list[str]:
    """Students of a run whose current result is ``status: "grader_error"`` (not graded)."""
    return [p.stem for p in _main_results(Path(run_dir))
            if json.loads(p.read_text()).get("status") == "grader_error"]


def regrade_errors(run_dir: str | Path, progress: bool = True) -> dict[str, Path]:
    """Grade again every student of a run that the grader failed (``gdl regrade RUN --errors``); each new result
    replaces the old one, which is kept as ``<student>.replaced-N.json``."""
    return {s: regrade(run_dir, s, replace=True, progress=progress) for s in grader_errors(run_dir)}
