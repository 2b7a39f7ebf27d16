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
from gdl.grading._sandbox import ResourceLimits, Timeouts, WorkerCrashed, WorkerSession, sandbox_description

__all__ = ["grade_submission", "grade_folder", "regrade", "find_submissions", "gradescope_results",
           "MAX_NOTEBOOK_BYTES"]

MAX_NOTEBOOK_BYTES = 20 << 20
_STUDENT = re.compile(r"[^A-Za-z0-9._-]+")
_TIMEOUTS, _LIMITS = Timeouts(), ResourceLimits()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def student_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root)
    name = rel.parts[0] if len(rel.parts) > 1 else rel.stem
    return _STUDENT.sub("_", name)[:80] or "student"


def find_submissions(folder: str | Path) -> dict[str, Path]:
    """``folder/<student>.ipynb`` or ``folder/<student>/<one notebook>.ipynb`` -> {student: path}."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"submissions folder {folder} does not exist")
    found: dict[str, Path] = {}
    for p in sorted(folder.rglob("*.ipynb")):
        if ".ipynb_checkpoints" in p.parts:
            continue
        name = student_name(p, folder)
        if name in found:
            raise ValueError(f"student {name!r} has two notebooks: {found[name]} and {p}; keep one")
        found[name] = p
    if not found:
        raise FileNotFoundError(f"no .ipynb submissions in {folder}")
    return found


def grade_submission(notebook: str | Path, exercise: Exercise, *, seed: int, unsafe: bool = False,
                     timeouts: Timeouts = _TIMEOUTS, limits: ResourceLimits = _LIMITS,
                     student: str | None = None) -> dict:
    """Grade one notebook; always returns a result (a broken or hostile notebook scores what it earned)."""
    notebook = Path(notebook)
    t0 = time.monotonic()
    result = {"student": student or notebook.stem, "exercise": exercise.id, "file": str(notebook),
              "sha256": None, "score": 0.0, "max_score": exercise.max_score, "questions": [], "cells": [],
              "sandbox": sandbox_description(unsafe), "unsafe": bool(unsafe), "errors": [],
              "graded_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    qs = exercise.questions
    problem = None
    try:
        size = notebook.stat().st_size
        result["sha256"] = _sha256(notebook)
        if size > MAX_NOTEBOOK_BYTES:
            problem = f"the notebook is {size >> 20} MiB, above the {MAX_NOTEBOOK_BYTES >> 20} MiB limit"
        else:
            nb = json.loads(notebook.read_text(encoding="utf-8"))
            if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
                problem = "the file is not a Jupyter notebook"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        problem = f"the notebook cannot be read: {type(e).__name__}"
    if problem is not None:
        result["errors"].append(problem)
        result["questions"] = [{"name": q.name, "description": q.description, "max_score": q.points,
                                "visibility": "hidden" if q.hidden else "public", "score": 0.0,
                                "passed": False, "message": problem, "seconds": 0.0} for q in qs]
    else:
        session = WorkerSession(notebook, unsafe=unsafe, timeouts=timeouts, limits=limits)
        try:
            result["questions"] = run_questions(qs, RemoteSubmission(session), LocalSubmission(exercise.reference),
                                                seed)
        finally:
            session.close()
        result["cells"] = [c for _, c in sorted(session.cells.items()) if c["status"] != "ok"]
        result["restarts"] = max(0, session.starts - 1)
        if session.notebook_error:
            result["errors"].append(session.notebook_error)
    result["score"] = round(sum(q["score"] for q in result["questions"]), 6)
    result["seconds"] = round(time.monotonic() - t0, 3)
    return result


def gradescope_results(result: dict) -> dict:
    """Gradescope's ``results.json``: hidden questions show name and message only after grades are published."""
    tests = [{"name": q["name"] + (f": {q['description']}" if q["description"] else ""),
              "score": q["score"], "max_score": q["max_score"], "output": q["message"] or "passed",
              "visibility": "visible" if q["visibility"] == "public" else "after_published"}
             for q in result["questions"]]
    notes = [f"cell {c['index']}: {c['message']}" for c in result.get("cells", [])] + result.get("errors", [])
    if result.get("unsafe"):
        notes.insert(0, "graded WITHOUT a sandbox (--unsafe)")
    return {"score": result["score"], "tests": tests, "output": "\n".join(notes)[:4000],
            "visibility": "visible", "stdout_visibility": "hidden"}


def _write_json(path: Path, data: dict, overwrite: bool = False) -> Path:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; results are never overwritten silently")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def write_csv(run_dir: Path, exercise: Exercise) -> Path:
    rows = []
    for p in sorted((run_dir / "students").glob("*.json")):
        if ".regrade-" in p.name or ".replaced-" in p.name:
            continue
        r = json.loads(p.read_text())
        rows.append([r["student"], r["score"], r["max_score"]] + [q["score"] for q in r["questions"]])
    path = run_dir / "grades.csv"
    with open(path.with_name("grades.csv.tmp"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["student", "total", "max_score"] + [q.name for q in exercise.questions])
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
    student, path, seed, unsafe, timeouts = args
    try:
        return grade_submission(path, _POOL_EXERCISE, seed=seed, unsafe=unsafe, timeouts=Timeouts(**timeouts),
                                student=student)
    except WorkerCrashed as e:  # pragma: no cover - grade_submission already turns these into scores
        return {"student": student, "error": str(e)}


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


def grade_folder(submissions: str | Path, master: str | Path, out: str | Path, *, jobs: int = 2,
                 unsafe: bool = False, timeouts: Timeouts = _TIMEOUTS, seed: int | None = None,
                 progress: bool = True) -> Path:
    """Grade every notebook in ``submissions`` against ``master`` in ``jobs`` parallel processes; returns the
    new run folder. ``seed`` defaults to a fresh secret (recorded in ``run.json`` for re-grading)."""
    from tqdm.auto import tqdm

    master = Path(master)
    subs = find_submissions(submissions)
    exercise = load_exercise(master, reference=False)
    sandbox = sandbox_description(unsafe)       # refuse before doing anything if there is no sandbox
    seed = secrets.randbits(63) if seed is None else int(seed)
    run = new_run_dir(out, exercise.id)
    (run / "students").mkdir()
    (run / "gradescope").mkdir()
    meta = {"exercise": exercise.id, "title": exercise.title, "master": str(master), "master_sha256": _sha256(master),
            "submissions": str(submissions), "seed": seed, "sandbox": sandbox, "unsafe": unsafe,
            "timeouts": asdict(timeouts), "jobs": jobs, "students": len(subs),
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    _write_json(run / "run.json", meta)
    t0 = time.monotonic()
    ctx = get_context("spawn")
    with ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=ctx, initializer=_pool_init,
                             initargs=(str(master),)) as pool:
        futs = {pool.submit(_pool_grade, (s, str(p), seed, unsafe, asdict(timeouts))): s for s, p in subs.items()}
        bar = tqdm(total=len(futs), desc=f"grading {exercise.id}", unit="notebook", disable=not progress)
        for fut in as_completed(futs):
            student = futs[fut]
            try:
                r = fut.result()
            except Exception as e:  # noqa: BLE001 - a grader failure is recorded, never lost
                r = {"student": student, "exercise": exercise.id, "score": 0.0, "max_score": exercise.max_score,
                     "questions": [], "errors": [f"grader error: {type(e).__name__}: {str(e)[:300]}"],
                     "sandbox": sandbox, "unsafe": unsafe}
            _write_json(run / "students" / f"{student}.json", r)
            _write_json(run / "gradescope" / f"{student}.json", gradescope_results(r))
            bar.update(1)
        bar.close()
    write_csv(run, exercise)
    meta["seconds"] = round(time.monotonic() - t0, 2)
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
        subs = find_submissions(meta["submissions"])
        if student not in subs:
            have = ", ".join(list(subs)[:10])
            raise KeyError(f"no submission of {student!r} in {meta['submissions']} (have: {have})")
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
