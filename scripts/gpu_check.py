"""`make gpu-check`: the course on a CUDA GPU, in one command, with one report.

Where a CUDA GPU is present (Colab, a lab machine, a cloud box) it runs, each step on ``cuda``:

1. the registry (``gdl.architectures``): every implemented row built, moved to the GPU with its sample input and
   checked with ``gdl.testing.equivariance_error`` in float32 and in float64 (error, tolerance, pass/fail);
2. every chapter of ``_toc.yml`` under nbval at ``GDL_SCALE=small`` with ``GDL_DEVICE=cuda`` (pass/fail, seconds;
   ``--jobs N`` runs N chapters at a time); ``--scale full`` runs them at the full scale instead, one at a time
   by default, each spreading its independent training runs over ``GDL_WORKERS`` processes (``gdl.parallel``:
   one per CPU core, at most 16), and reports every chapter's wall time: the figures issue 20 asks for;
3. every benchmark script (``benchmarks/bench_*.py``) with ``--device cuda`` (its printed tables, as they are);

and writes ``_build/gpu-check/report.md`` after each step (plus each step's full output under
``_build/gpu-check/logs/``). It exits 1 when a chapter, a registry row or a benchmark failed, else 0.

Without a CUDA GPU it says so, runs nothing and exits 0. ``--dry-run`` lists what it would run (and writes nothing).

    python scripts/gpu_check.py [--dry-run] [--only TEXT] [--jobs N] [--scale small|full] [--out _build/gpu-check]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from toc_notebooks import toc_notebooks  # noqa: E402

BENCHMARKS = sorted((ROOT / "benchmarks").glob("bench_*.py"))


def _tail(text: str, n: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def _run(cmd: list[str], env: dict[str, str], log: Path, timeout: int) -> tuple[bool, float, str]:
    start = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        ok, out = r.returncode == 0, r.stdout + r.stderr
    except subprocess.TimeoutExpired as e:
        ok, out = False, f"{e.stdout or ''}{e.stderr or ''}\ntimed out after {timeout} s"
    seconds = time.perf_counter() - start
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(" ".join(cmd) + "\n\n" + out)
    return ok, seconds, out


def _device_flag(script: Path) -> list[str]:
    """``--device cuda`` for the scripts that take it (benchmarks/_common.py's options)."""
    text = script.read_text()
    return ["--device", "cuda"] if "add_common_arguments" in text or '"--device"' in text else []


def plan(only: str = "") -> dict[str, list]:
    """What the check runs: chapters (notebooks), benchmark scripts; the registry is one step."""
    return {"chapters": [nb for nb in toc_notebooks() if only in nb.stem],
            "benchmarks": [b for b in BENCHMARKS if only in b.stem]}


def registry_rows(device) -> list[dict]:
    """Every implemented registry row on ``device`` in float32 and float64."""
    import torch

    from gdl import architectures
    from gdl._tree import tree_map
    from gdl.testing import default_tolerance, equivariance_error

    rows = []
    for arch in architectures.implemented():
        for dtype in (torch.float32, torch.float64):
            row = {"architecture": arch.name, "dtype": str(dtype).removeprefix("torch."), "error": None,
                   "tolerance": None, "ok": False, "message": ""}
            try:
                model, x, kwargs = architectures.build(arch)
                model, x = model.to(device), tree_map(lambda t: t.to(device), x)   # tensors, batches, dicts
                tol = kwargs.pop("atol")                    # the row's own, never below the dtype's (as the tests)
                atol = max(tol, default_tolerance(dtype)) if tol is not None else None
                report = equivariance_error(model, x, dtype=dtype, atol=atol, **kwargs)
                row.update(error=report.worst, tolerance=report.tolerance, ok=report.passed)
            except Exception as e:  # noqa: BLE001 - every failure goes into the report
                row["message"] = f"{type(e).__name__}: {e}"[:300]
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="list what would run; run nothing, write nothing")
    ap.add_argument("--only", default="", help="chapters and benchmarks whose name contains this text")
    ap.add_argument("--out", default=str(ROOT / "_build" / "gpu-check"))
    ap.add_argument("--logs", default="", help="where each step's full output goes (default: OUT/logs)")
    ap.add_argument("--jobs", type=int, default=1, help="chapters run at a time (they share the GPU)")
    ap.add_argument("--scale", choices=("small", "full"), default="small", help="GDL_SCALE of the chapters")
    ap.add_argument("--chapter-timeout", type=int, default=1800, help="seconds per chapter")
    ap.add_argument("--bench-timeout", type=int, default=1800, help="seconds per benchmark script")
    args = ap.parse_args(argv)

    todo = plan(args.only)
    if args.dry_run:
        print(f"gpu-check (dry run): would run on cuda, at GDL_SCALE={args.scale}:")
        for nb in todo["chapters"]:
            print(f"  chapter    {nb.relative_to(ROOT)} (nbval)")
        print("  registry   every implemented row of gdl.architectures, float32 and float64")
        for b in todo["benchmarks"]:
            print(f"  benchmark  {' '.join([str(b.relative_to(ROOT)), *_device_flag(b)])}")
        print(f"  report     {Path(args.out) / 'report.md'}")
        return 0

    import torch

    if not torch.cuda.is_available():
        print(f"gpu-check: no CUDA GPU is present (torch {torch.__version__}: torch.cuda.is_available() is False). "
              "Nothing was run. Run `make gpu-check` on a machine with an NVIDIA GPU (Colab, a lab machine, a "
              "cloud box).")
        return 0

    out = Path(args.out)
    logs = Path(args.logs) if args.logs else out / "logs"
    out.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name(0)
    env = {**os.environ, "GDL_DEVICE": "cuda", "GDL_SCALE": args.scale, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    lines = ["# gpu-check report", "",
             f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; GPU: {gpu}; torch {torch.__version__} (CUDA "
             f"{torch.version.cuda}); Python {platform.python_version()}; {os.cpu_count()} CPU cores; "
             f"GDL_SCALE={args.scale}, GDL_WORKERS={env.get('GDL_WORKERS', 'default')}", ""]
    failed = 0

    def flush():                                   # the report so far: a run cut short still leaves one
        (out / "report.md").write_text("\n".join(lines) + "\n")

    print("gpu-check: registry", flush=True)
    lines += ["## Registry (gdl.architectures) on cuda", "",
              "| architecture | dtype | error | tolerance | result |", "|---|---|---|---|---|"]
    for row in registry_rows(torch.device("cuda")):
        failed += not row["ok"]
        err = "-" if row["error"] is None else f"{row['error']:.1e}"
        tol = "-" if row["tolerance"] is None else f"{row['tolerance']:.1e}"
        result = "pass" if row["ok"] else f"FAIL {row['message']}".replace("|", "/")
        lines.append(f"| {row['architecture']} | {row['dtype']} | {err} | {tol} | {result} |")
    lines.append("")
    flush()

    def chapter(nb: Path):
        print(f"gpu-check: chapter {nb.name}", flush=True)
        return nb, *_run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                          "--nbval-current-env", "--nbval-cell-timeout", str(args.chapter_timeout), str(nb)], env,
                         logs / f"{nb.stem}.txt", args.chapter_timeout)

    lines += [f"## Chapters (nbval, GDL_DEVICE=cuda, {args.jobs} at a time)", "",
              "| chapter | result | seconds |", "|---|---|---|"]
    details = []
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for nb, ok, seconds, text in pool.map(chapter, todo["chapters"]):
            failed += not ok
            lines.append(f"| {nb.stem} | {'pass' if ok else 'FAIL'} | {seconds:.0f} |")
            if not ok:
                details.append(f"### {nb.stem}\n\n```\n{_tail(text)}\n```\n")
            flush()
    lines += ["", *details]
    flush()

    lines += ["## Benchmarks (--device cuda)", ""]
    for b in todo["benchmarks"]:
        print(f"gpu-check: benchmark {b.name}", flush=True)
        ok, seconds, text = _run([sys.executable, str(b), *_device_flag(b)], env, logs / f"{b.stem}.txt",
                                 args.bench_timeout)
        failed += not ok
        lines += [f"### {b.stem}: {'pass' if ok else 'FAIL'} ({seconds:.0f} s)", "", "```",
                  text.strip() if ok else _tail(text), "```", ""]
        flush()

    print(f"gpu-check: {failed} failure(s); report: {out / 'report.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
