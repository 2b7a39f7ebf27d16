"""Measure: grade 30 submissions of one exercise with `gdl grade` in 2 parallel workers (sandboxed).

    .venv/bin/python exercises/bench_grading.py [--exercise ex07] [--n 30] [--jobs 2] [--unsafe | --compare]

It reports the wall time and the CPU time of every process (grader, pool, bubblewrap, and the sandboxed workers
as their cgroups measured them: root mode), i.e. the wall time the run would take on otherwise idle cores.
``--unsafe`` grades without the sandbox; ``--compare`` runs both, one after the other on the same submissions, and
prints what the isolation costs (wall and CPU ratios). The submissions are a mix the grader meets in practice: a
third full solutions (the master), a third unmodified student versions, a third half-finished (one function
solved, the other still raising). Prints the wall time of the whole run (loading the exercise in each worker
process included) and the score distribution.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from gdl.grading import find_master, grade_folder
from gdl.grading._notebook import BEGIN, END, read_notebook, source, student_version, tags, write_notebook

ROOT = Path(__file__).resolve().parent


def half_solved(master: Path, out: Path) -> None:
    """The student version with only the master's first solution region filled in."""
    nb = read_notebook(master)
    for cell in nb["cells"]:
        if "solution" in tags(cell) and cell["cell_type"] == "code":
            kept, seen, inside_first = [], 0, False
            for line in source(cell).splitlines():
                if BEGIN.match(line):
                    seen += 1
                    inside_first = seen == 1
                    if inside_first:
                        continue          # unmarked: this region survives student_version
                elif END.match(line) and inside_first:
                    inside_first = False
                    continue
                kept.append(line)
            cell["source"] = "\n".join(kept)
            break
    write_notebook(student_version(nb), out)


def _cpu() -> float:
    """User + system seconds of this process and of its waited-for descendants."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _run(subs: Path, master: Path, out: Path, jobs: int, unsafe: bool) -> tuple[float, float, dict]:
    t0, c0 = time.perf_counter(), _cpu()
    run = grade_folder(subs, master, out, jobs=jobs, unsafe=unsafe, progress=False)
    seconds, cpu = time.perf_counter() - t0, _cpu() - c0
    results = [json.loads(p.read_text()) for p in (run / "students").glob("*.json")]
    # sandboxed workers are not reaped by the processes above them (bubblewrap's pid 1 is not waited for by its
    # parent), so their CPU time comes from each submission's cgroup (root mode), recorded in its result
    cpu += sum(r.get("worker_cpu_seconds", 0.0) for r in results)
    scores = collections.Counter(str(r["score"]) for r in results)
    return seconds, cpu, dict(sorted(scores.items()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--exercise", default="ex07")
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--unsafe", action="store_true", help="no sandbox")
    ap.add_argument("--compare", action="store_true", help="sandboxed, then unsafe: the cost of the isolation")
    a = ap.parse_args()
    master = find_master(ROOT / "masters", a.exercise)
    student = ROOT / "student" / master.name
    modes = [False, True] if a.compare else [a.unsafe]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        subs = Path(tmp) / "submissions"
        subs.mkdir()
        half_solved(master, Path(tmp) / "half.ipynb")
        for i in range(a.n):
            kind = ("full", "blank", "half")[i % 3]
            dst = subs / f"student{i:03d}_{kind}.ipynb"
            if kind == "half":
                shutil.copy(Path(tmp) / "half.ipynb", dst)
            else:
                shutil.copy(master if kind == "full" else student, dst)
        for unsafe in modes:
            seconds, cpu, scores = _run(subs, master, Path(tmp) / "results", a.jobs, unsafe)
            results[unsafe] = (seconds, cpu)
            print(f"{'UNSAFE (no sandbox)' if unsafe else 'sandboxed'}: graded {a.n} submissions of {a.exercise} "
                  f"with {a.jobs} workers in {seconds:.1f} s wall ({seconds / a.n:.2f} s per submission); "
                  f"CPU time of all processes {cpu:.1f} s, i.e. {cpu / a.jobs:.1f} s on {a.jobs} otherwise idle "
                  f"cores; load average now {os.getloadavg()[0]:.1f}; scores: {scores}")
            if sum(scores.values()) != a.n or "None" in scores:
                sys.exit(1)
    if a.compare:
        (ws, cs), (wu, cu) = results[False], results[True]
        print(f"isolation cost: wall {ws / wu:.2f}x, CPU {cs / cu:.2f}x (sandboxed / unsafe)")


if __name__ == "__main__":
    main()
