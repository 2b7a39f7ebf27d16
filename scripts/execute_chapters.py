"""Execute the book's chapters in parallel into the book build's execution cache.

``make test`` (and ``make book``) run this before ``jupyter-book build``. The build executes every chapter with
myst-nb's ``cache`` mode, one chapter after another; on a machine with several cores most of that time one core is
idle, because the chapters' small models do not keep two threads busy. This script fills the same cache
(``_build/.jupyter_cache``, jupyter-cache) with the same executions, several chapters at a time, so the build finds
each chapter executed and only renders it. Nothing is executed twice:

* a chapter is read with myst-nb's own reader (the ``myst_nb_md`` jupyter-cache plugin), so the cache key (the
  hash of its code cells and kernel spec) is the one the build looks up;
* a chapter that is already cached with its current code is skipped;
* a chapter that fails is recorded in the cache with its traceback (as the build would record it) and not cached,
  so the build executes it once more and reports the error in its log, and
  ``pytest --chapters-from-build`` fails with the traceback.

Each worker runs one kernel at a time with ``OMP_NUM_THREADS`` = cores / workers, so the workers do not fight over
cores. Chapters are started longest first, by the times of the previous run (``_build/chapter-seconds.json``).

Usage: ``python scripts/execute_chapters.py [--jobs N] [--cache DIR] [CHAPTER.md ...]`` (default: every chapter
of ``_toc.yml``, ``N`` = the number of cores).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

READ_DATA = {"type": "plugin", "name": "myst_nb_md"}  # what myst-nb passes for a MyST markdown notebook


def _read(path: Path):
    from myst_nb.core.read import myst_nb_reader_plugin

    return myst_nb_reader_plugin(str(path))


def _threads_per_worker(jobs: int) -> int:
    return max(1, (os.cpu_count() or 1) // jobs)


def _init_worker(threads: int) -> None:
    # The kernel is a child process: it inherits these before torch/numpy are imported.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)


def _execute(path: str, timeout: int):
    """Execute one chapter (in its own folder, as myst-nb does); return (path, notebook, seconds, error text)."""
    from jupyter_cache.executors.utils import single_nb_execution

    nb = _read(Path(path))
    result = single_nb_execution(nb, cwd=str(Path(path).parent), allow_errors=False, timeout=timeout,
                                 meta_override=True)
    error = None if result.err is None else (result.exc_string or repr(result.err))
    return path, nb, result.time, error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", type=Path, help="MyST chapters (default: every chapter of _toc.yml)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="chapters executed at once")
    parser.add_argument("--cache", type=Path, default=ROOT / "_build" / ".jupyter_cache")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")

    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn
    from jupyter_cache.cache.db import NbProjectRecord
    from toc_notebooks import toc_notebooks

    chapters = [p.resolve() for p in args.chapters] or [p.with_suffix(".md").resolve() for p in toc_notebooks()]
    missing = [str(p) for p in chapters if not p.exists()]
    if missing:
        parser.error(f"no such chapter: {', '.join(missing)}")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    timeout = int(config.get("execute", {}).get("timeout", 900))

    cache = get_cache(str(args.cache))
    todo = []
    for path in chapters:
        record = cache.add_nb_to_project(str(path), read_data=READ_DATA)
        try:
            cache.match_cache_notebook(_read(path))
        except KeyError:
            NbProjectRecord.remove_tracebacks([record.pk], cache.db)
            todo.append(path)
    seconds_file = args.cache.parent / "chapter-seconds.json"
    previous = json.loads(seconds_file.read_text()) if seconds_file.exists() else {}
    todo.sort(key=lambda p: previous.get(p.name, p.stat().st_size / 1000), reverse=True)  # longest first
    print(f"execute_chapters: {len(chapters) - len(todo)} cached, {len(todo)} to execute with {args.jobs} "
          f"worker(s) of {_threads_per_worker(args.jobs)} thread(s)", flush=True)

    start, failed, seconds = time.time(), [], dict(previous)
    threads = _threads_per_worker(args.jobs)
    with ProcessPoolExecutor(max_workers=args.jobs, initializer=_init_worker, initargs=(threads,)) as pool:
        futures = [pool.submit(_execute, str(p), timeout) for p in todo]
        for future in as_completed(futures):
            path, nb, took, error = future.result()
            name = Path(path).name
            seconds[name] = round(took, 1)
            if error is None:
                cache.cache_notebook_bundle(CacheBundleIn(nb, path, data={"execution_seconds": took}),
                                            check_validity=False, overwrite=True)
                print(f"  {name}: {took:.0f} s", flush=True)
            else:
                NbProjectRecord.set_traceback(path, error, cache.db)
                failed.append(name)
                print(f"  {name}: FAILED after {took:.0f} s (the book build runs it again and shows the error)",
                      flush=True)
    seconds_file.parent.mkdir(parents=True, exist_ok=True)
    seconds_file.write_text(json.dumps(seconds, indent=1, sort_keys=True))
    print(f"execute_chapters: {len(todo)} chapter(s) in {time.time() - start:.0f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
