"""The ``gdl`` command: instructors' grading workflow (see exercises/README.md).

    gdl generate                        student versions of every master (exercises/masters -> exercises/student)
    gdl grade SUBMISSIONS -e ex07       grade a folder in parallel; writes a new run folder under results/
    gdl regrade RUN_DIR STUDENT         grade one student of a run again (same secret seed)
    gdl grade-one NOTEBOOK -e ex07      grade one notebook (Gradescope's run_autograder uses it)
    gdl gradescope -e ex07 -o ex07.zip  the Gradescope autograder bundle
    gdl solutions-page                  regenerate book/11_exercises.md from the masters
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _timeouts(a):
    from gdl.grading import Timeouts

    return Timeouts(cell=a.cell_timeout, call=a.call_timeout, submission=a.submission_timeout)


def _master(a) -> Path:
    from gdl.grading import find_master

    if getattr(a, "master", None):
        return Path(a.master)
    if not a.exercise:
        raise SystemExit("error: name the exercise (--exercise ex07) or the master notebook (--master PATH)")
    return find_master(a.masters, a.exercise)


def _add_grading_options(p):
    p.add_argument("-e", "--exercise", help="exercise id, e.g. ex07 (its master is looked up in --masters)")
    p.add_argument("--master", help="path of the master notebook (instead of --exercise)")
    p.add_argument("--masters", default="exercises/masters", help="folder of master notebooks")
    p.add_argument("--unsafe", action="store_true",
                   help="run submissions WITHOUT a sandbox (only for trusted notebooks; recorded in the results)")
    p.add_argument("--cell-timeout", type=float, default=30.0, help="seconds per notebook cell (default 30)")
    p.add_argument("--call-timeout", type=float, default=10.0, help="seconds per graded call (default 10)")
    p.add_argument("--submission-timeout", type=float, default=120.0,
                   help="seconds per submission in all (default 120)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gdl", description="gdl course tools: exercises and grading")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("generate", help="write the student version of every master notebook")
    p.add_argument("--masters", default="exercises/masters")
    p.add_argument("--out", default="exercises/student")

    p = sub.add_parser("grade", help="grade a folder of submissions in parallel worker processes")
    p.add_argument("submissions", help="folder: <student>.ipynb or <student>/<notebook>.ipynb")
    _add_grading_options(p)
    p.add_argument("-o", "--out", default="results", help="a new run folder is created in here")
    p.add_argument("-j", "--jobs", type=int, default=2, help="parallel worker processes (default 2)")
    p.add_argument("--seed", type=int, help="seed of the hidden questions (default: a fresh secret)")

    p = sub.add_parser("regrade", help="grade one student (or every grader error) of an earlier run again")
    p.add_argument("run", help="the run folder written by `gdl grade`")
    p.add_argument("student", nargs="?")
    p.add_argument("--errors", action="store_true",
                   help="grade again every student the grader failed (status grader_error); replaces their results "
                        "(old files kept as .replaced-N.json)")
    p.add_argument("--submission", help="grade this notebook instead of the one in the run's folder")
    p.add_argument("--replace", action="store_true",
                   help="make the new result the student's result (the old file is kept as .replaced-N.json)")

    p = sub.add_parser("grade-one", help="grade one notebook (or the single notebook in a folder)")
    p.add_argument("notebook")
    _add_grading_options(p)
    p.add_argument("-o", "--out", help="write the result JSON here")
    p.add_argument("--gradescope", help="write Gradescope's results.json here")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--seed", type=int, help="seed of the hidden questions (default: a fresh secret)")

    p = sub.add_parser("gradescope", help="build the Gradescope autograder zip for one exercise")
    p.add_argument("-e", "--exercise")
    p.add_argument("--master")
    p.add_argument("--masters", default="exercises/masters")
    p.add_argument("-o", "--out", required=True, help="the zip to write")
    p.add_argument("--gdl-requirement", help="pip requirement installing gdl in the autograder image")

    p = sub.add_parser("solutions-page", help="regenerate the book's exercises page from the masters")
    p.add_argument("--masters", default="exercises/masters")
    p.add_argument("--out", default="book/11_exercises.md")

    a = ap.parse_args(argv)
    from gdl import grading

    try:
        if a.cmd == "generate":
            for path in grading.generate_student_versions(a.masters, a.out):
                print(f"wrote {path}")
        elif a.cmd == "grade":
            run = grading.grade_folder(a.submissions, _master(a), a.out, jobs=a.jobs, unsafe=a.unsafe,
                                       timeouts=_timeouts(a), seed=a.seed)
            from gdl.grading._instructor import results_summary

            print(results_summary(run))
            print(f"results: {run} (grades.csv, students/*.json, gradescope/*.json)")
            errors = grading.grader_errors(run)
            if errors:
                print(f"error: {len(errors)} student(s) not graded (grader error); "
                      f"re-grade with: gdl regrade {run} --errors", file=sys.stderr)
                return 3
        elif a.cmd == "regrade":
            if a.errors == bool(a.student):
                raise ValueError("name one student, or pass --errors to re-grade every grader error of the run")
            paths = grading.regrade_errors(a.run) if a.errors else \
                {a.student: grading.regrade(a.run, a.student, submission=a.submission, replace=a.replace)}
            if a.errors and not paths:
                print("no grader errors in this run")
            left = []
            for student, path in paths.items():
                r = json.loads(Path(path).read_text())
                score = "NOT GRADED (grader error)" if r["score"] is None else f"{r['score']:g}/{r['max_score']:g}"
                print(f"{student}: {score} -> {path}")
                if r.get("status") == "grader_error":
                    left.append(student)
            if left:
                print(f"error: still not graded: {', '.join(left)}", file=sys.stderr)
                return 3
        elif a.cmd == "grade-one":
            return _grade_one(a)
        elif a.cmd == "gradescope":
            print(f"wrote {grading.gradescope_bundle(_master(a), a.out, gdl_requirement=a.gdl_requirement)}")
        elif a.cmd == "solutions-page":
            Path(a.out).write_text(grading.solutions_page(a.masters))
            print(f"wrote {a.out}")
    except (grading.SandboxUnavailable, FileNotFoundError, FileExistsError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _grade_one(a) -> int:
    import secrets

    from gdl import grading

    nb = Path(a.notebook)
    if nb.is_dir() and not nb.is_symlink():
        found = []
        for d, dirs, files in os.walk(nb, followlinks=False):   # never follows links; grade_submission lstat()s
            dirs[:] = [x for x in dirs if x != ".ipynb_checkpoints"]
            found += [Path(d) / f for f in files if f.endswith(".ipynb")]
        if len(found) != 1:
            raise FileNotFoundError(f"{nb} holds {len(found)} notebooks; expected exactly one")
        nb = found[0]
    for out in (a.out, a.gradescope):
        if out and Path(out).exists() and not a.overwrite:
            raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    exercise = grading.load_exercise(_master(a))
    seed = secrets.randbits(63) if a.seed is None else a.seed
    r = grading.grade_submission(nb, exercise, seed=seed, unsafe=a.unsafe, timeouts=_timeouts(a))
    if r.get("status") == "grader_error":
        # no results.json: Gradescope then shows the run as failed (re-run it) instead of a score of 0
        if a.out:
            Path(a.out).write_text(json.dumps(r, indent=1) + "\n")
        print(f"{r['student']}: {r['errors'][0]}", file=sys.stderr)
        return 3
    if a.out:
        Path(a.out).write_text(json.dumps(r, indent=1) + "\n")
    if a.gradescope:
        Path(a.gradescope).parent.mkdir(parents=True, exist_ok=True)
        Path(a.gradescope).write_text(json.dumps(grading.gradescope_results(r), indent=1) + "\n")
    for q in r["questions"]:
        print(f"  {'PASS' if q['passed'] else 'FAIL'} {q['name']} {q['score']:g}/{q['max_score']:g} {q['message']}")
    print(f"{r['student']}: {r['score']:g}/{r['max_score']:g} ({r['sandbox']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
