"""Start the worker for one submission in a sandbox and talk to it with time limits (the trusted side).

Isolation (Linux): `bubblewrap <https://github.com/containers/bubblewrap>`_ with new network, PID, IPC, UTS
(and user, when not root) namespaces, a read-only view of only what Python needs (the interpreter, the virtual
environment, the ``gdl`` package) plus a private scratch folder holding a copy of the submission; when started as
root the worker drops to ``nobody``. Resource limits (``setrlimit``) on address space, CPU time, file size,
processes and open files. The grader enforces three time limits from outside: per cell, per graded call and per
submission; a worker that hangs, dies or sends garbage is killed and restarted (skipping a cell that hung or
killed it), so a submission loses only the questions it broke.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gdl.grading._protocol import Limits, ProtocolError, decode_value, encode_value, read_message, write_message

__all__ = ["Timeouts", "ResourceLimits", "SandboxUnavailable", "WorkerSession", "StudentError", "CallTimeout",
           "WorkerCrashed", "SubmissionTimeout", "sandbox_description"]


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed for one notebook cell, one graded call and the whole submission."""

    cell: float = 30.0
    call: float = 10.0
    submission: float = 120.0


@dataclass(frozen=True)
class ResourceLimits:
    memory_bytes: int = 4 << 30      # address space of the worker
    file_bytes: int = 16 << 20       # largest file it may write
    processes: int = 64              # processes/threads of the sandbox user (effective when not root)
    open_files: int = 256
    message: Limits = Limits()


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create namespaces here."""


class StudentError(Exception):
    """The submission's function raised; the message is already shortened."""


class CallTimeout(Exception):
    pass


class WorkerCrashed(Exception):
    pass


class SubmissionTimeout(Exception):
    pass


_PROBE: dict[str, str | None] = {}


def _bwrap() -> str | None:
    return shutil.which("bwrap") or (os.path.exists("/usr/bin/bwrap") and "/usr/bin/bwrap") or None


def sandbox_description(unsafe: bool = False) -> str:
    """What isolates the worker, for the result files; raises :class:`SandboxUnavailable` if nothing does."""
    if unsafe:
        return "UNSAFE: no sandbox (--unsafe): the submission ran with the grader's own permissions"
    if "bwrap" not in _PROBE:
        exe = _bwrap()
        if exe is None:
            _PROBE["bwrap"] = None
            _PROBE["error"] = "bubblewrap (bwrap) is not installed: `apt-get install bubblewrap`"
        else:
            r = subprocess.run([exe, *_namespace_flags(), "--ro-bind", "/", "/", "--", "/bin/true"],
                               capture_output=True, text=True, timeout=30)
            ver = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
            _PROBE["bwrap"] = ver if r.returncode == 0 else None
            _PROBE["error"] = f"bubblewrap cannot create namespaces here: {r.stderr.strip()[:300]}"
    if _PROBE["bwrap"] is None:
        raise SandboxUnavailable(f"{_PROBE['error']}. Refusing to run submissions unsandboxed; pass --unsafe "
                                 f"(unsafe=True) only for trusted notebooks.")
    who = "as nobody" if os.geteuid() == 0 else "in a user namespace"
    return f"{_PROBE['bwrap']}: no network, own PID/IPC/UTS namespaces, read-only system, {who}"


#: Where the worker's private scratch folder (its home, with the submission) appears inside the sandbox.
SANDBOX_HOME = "/gdl-sandbox"


def _namespace_flags() -> list[str]:
    if os.geteuid() == 0:   # real root: mount namespace without a user namespace, then the worker drops to nobody
        return ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    return ["--unshare-all"]


def _python_roots() -> list[str]:
    import gdl

    roots = {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix), sys.prefix,
             os.path.dirname(os.path.realpath(gdl.__file__))}
    exe = os.path.realpath(sys.executable)
    roots.add(os.path.dirname(os.path.dirname(exe)))
    # drop paths inside other listed paths
    out = sorted(roots)
    return [r for r in out if not any(r != o and r.startswith(o.rstrip("/") + "/") for o in out)]


def _sandbox_command(scratch: str, argv: list[str]) -> list[str]:
    cmd = [_bwrap(), *_namespace_flags(), "--die-with-parent", "--new-session"]
    for d in ("/usr", "/etc/alternatives", "/etc/ld.so.cache", "/etc/ssl"):
        if os.path.exists(d):
            cmd += ["--ro-bind", d, d]
    for link in ("bin", "lib", "lib64", "sbin"):
        p = "/" + link
        if os.path.islink(p):
            cmd += ["--symlink", os.readlink(p), p]
        elif os.path.isdir(p):
            cmd += ["--ro-bind", p, p]
    roots = _python_roots()
    parents = sorted({str(a) for r in roots for a in Path(r).parents if str(a) != "/"}, key=len)
    for d in parents:   # bwrap would create them 0700 (unreadable once the worker drops root)
        cmd += ["--perms", "0755", "--dir", d]
    for r in roots:
        cmd += ["--ro-bind", r, r]
    # the scratch folder gets a mount point of its own: binding it over /tmp would hide a venv or checkout that
    # lives under /tmp (a CI runner's clone, say)
    cmd += ["--proc", "/proc", "--dev", "/dev", "--bind", scratch, SANDBOX_HOME,
            "--ro-bind", os.path.join(scratch, "submission.ipynb"), f"{SANDBOX_HOME}/submission.ipynb",
            "--chdir", SANDBOX_HOME, "--clearenv"]
    for k, v in _worker_env(SANDBOX_HOME).items():
        cmd += ["--setenv", k, v]
    return cmd + ["--", sys.executable, "-I", "-m", "gdl.grading._worker", *argv]


def _worker_env(tmp: str) -> dict[str, str]:
    return {"HOME": tmp, "TMPDIR": tmp, "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "MPLBACKEND": "Agg", "MPLCONFIGDIR": tmp, "GDL_GRADING_WORKER": "1", "GDL_SCALE": "small",
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", "LANG": "C.UTF-8"}


def _limiter(limits: ResourceLimits, cpu_seconds: int):
    def apply():  # runs in the child between fork and exec
        import resource  # POSIX only: imported here so that students on any OS can import gdl.grading

        for res, val in ((resource.RLIMIT_AS, limits.memory_bytes), (resource.RLIMIT_FSIZE, limits.file_bytes),
                         (resource.RLIMIT_CPU, cpu_seconds), (resource.RLIMIT_CORE, 0),
                         (resource.RLIMIT_NOFILE, limits.open_files), (resource.RLIMIT_NPROC, limits.processes)):
            try:
                resource.setrlimit(res, (val, val))
            except (ValueError, OSError):
                pass
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # writes past the size limit fail instead of killing
    return apply


class WorkerSession:
    """One submission's worker, restarted as needed. ``call`` returns decoded data (numpy arrays, numbers,
    lists) or raises :class:`StudentError`, :class:`CallTimeout`, :class:`WorkerCrashed`,
    :class:`SubmissionTimeout` or :class:`~gdl.grading._protocol.ProtocolError`."""

    MAX_FAILED_STARTS = 4      # starts that die or hang inside the notebook's cells
    MAX_STARTS = 40            # all starts (a restart follows every timed-out or crashed call)

    def __init__(self, notebook: Path, *, unsafe: bool = False, timeouts: Timeouts = Timeouts(),
                 limits: ResourceLimits = ResourceLimits()):
        self.notebook, self.unsafe, self.timeouts, self.limits = Path(notebook), unsafe, timeouts, limits
        self.sandbox = sandbox_description(unsafe)
        self.deadline = time.monotonic() + timeouts.submission
        self.skip: set[int] = set()
        self.cells: dict[int, dict] = {}
        self.notebook_error: str | None = None
        self.starts = self.failed_starts = 0
        self.proc: subprocess.Popen | None = None
        self._scratch: str | None = None
        self._next_id = 0

    # --- process management -------------------------------------------------------------------------------
    def _spawn(self) -> None:
        self._scratch = tempfile.mkdtemp(prefix="gdl-grade-")
        os.chmod(self._scratch, 0o1777)
        shutil.copyfile(self.notebook, os.path.join(self._scratch, "submission.ipynb"))
        os.chmod(os.path.join(self._scratch, "submission.ipynb"), 0o444)
        argv = ["submission.ipynb" if self.unsafe else f"{SANDBOX_HOME}/submission.ipynb",
                "--skip", ",".join(map(str, sorted(self.skip)))]
        cpu = int(self.timeouts.submission) + 10
        if self.unsafe:
            cmd, env, cwd = [sys.executable, "-I", "-m", "gdl.grading._worker", *argv, "--keep-user"], \
                _worker_env(self._scratch), self._scratch
        else:
            cmd, env, cwd = _sandbox_command(self._scratch, argv), {"PATH": "/usr/bin:/bin"}, self._scratch
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env=env, cwd=cwd, start_new_session=True,
                                     preexec_fn=_limiter(self.limits, cpu))
        self._queue: queue.Queue = queue.Queue(maxsize=8)
        threading.Thread(target=self._reader, args=(self.proc, self._queue), daemon=True).start()
        self.starts += 1

    def _reader(self, proc, q) -> None:
        """Messages -> a bounded queue (a submission flooding the channel blocks itself, never fills our memory)."""
        def put(item) -> bool:
            while True:
                try:
                    q.put(item, timeout=0.5)
                    return True
                except queue.Full:
                    if self.proc is not proc or proc.poll() is not None:
                        return False
        try:
            while put(read_message(proc.stdout, self.limits.message)):
                pass
        except (EOFError, ProtocolError, OSError, ValueError) as e:
            put(e)

    def kill(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:       # signal only a process we started that has not been reaped
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)   # bwrap (its own session); the sandbox dies with it
                except (ProcessLookupError, PermissionError):
                    pass
                try:
                    self.proc.kill()
                except OSError:
                    pass
            self.proc.wait()
            for f in (self.proc.stdin, self.proc.stdout):
                try:
                    f.close()
                except OSError:
                    pass
            self.proc = None
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def close(self, grace: float = 2.0) -> None:
        """End the worker: close its input (it exits on end of input), kill it if it has not gone in ``grace`` s."""
        if self.proc is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=grace)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()

    def _get(self, timeout: float):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise SubmissionTimeout(f"the submission used up its {self.timeouts.submission:g} s")
        try:
            item = self._queue.get(timeout=min(timeout, left))
        except queue.Empty:
            if time.monotonic() >= self.deadline:
                raise SubmissionTimeout(f"the submission used up its {self.timeouts.submission:g} s") from None
            raise CallTimeout from None
        if isinstance(item, ProtocolError):
            raise item
        if isinstance(item, BaseException):
            raise WorkerCrashed(str(item)[:200])
        return item

    def _ensure_started(self) -> None:
        """Run the notebook's cells (once per start), skipping cells that hung or killed an earlier start."""
        while self.proc is None:
            if self.failed_starts >= self.MAX_FAILED_STARTS or self.starts >= self.MAX_STARTS:
                raise WorkerCrashed(f"the notebook was restarted {self.starts} times and still breaks the worker")
            self._spawn()
            current = None
            try:
                head, _ = self._get(self.timeouts.cell + 20)   # interpreter start-up
                if head.get("status") == "error":
                    self.notebook_error = str(head.get("error", ""))[:300]
                while True:
                    head, _ = self._get(self.timeouts.cell + (10 if current is None else 0))
                    ev = head.get("event")
                    if ev == "cells_done":
                        return
                    if ev == "cell" and isinstance(head.get("index"), int):
                        i = head["index"]
                        if head.get("status") == "start":
                            current = i
                        else:
                            self.cells[i] = {"index": i, "status": str(head.get("status"))[:10],
                                             "message": str(head.get("error", ""))[:300]}
                            current = None
            except SubmissionTimeout:
                self.kill()
                raise
            except (CallTimeout, WorkerCrashed, ProtocolError) as e:
                self.kill()
                self.failed_starts += 1
                if current is None:   # died or hung outside any cell: nothing to skip, give up
                    raise WorkerCrashed(f"the worker failed while starting: {type(e).__name__}") from None
                what = "timed out" if isinstance(e, CallTimeout) else \
                    "broke the protocol" if isinstance(e, ProtocolError) else "crashed the worker"
                limit = f" after {self.timeouts.cell:g} s" if isinstance(e, CallTimeout) else ""
                self.cells[current] = {"index": current, "status": "killed",
                                       "message": f"cell {current} {what}{limit}; it was skipped"}
                self.skip.add(current)

    # --- calls ----------------------------------------------------------------------------------------------
    def call(self, fn: str, *args, **kwargs):
        self._ensure_started()
        arrays: list = []
        desc = [encode_value(a, arrays) for a in args]
        kdesc = {k: encode_value(v, arrays) for k, v in kwargs.items()}
        self._next_id += 1
        rid = self._next_id
        try:
            write_message(self.proc.stdin, {"op": "call", "id": rid, "fn": fn, "args": desc, "kwargs": kdesc},
                          [np.asarray(a) for a in arrays])
            while True:
                head, out = self._get(self.timeouts.call)
                if head.get("event") == "result" and head.get("id") == rid:
                    break
        except CallTimeout:
            self.kill()
            raise CallTimeout(f"{fn}() did not return within {self.timeouts.call:g} s") from None
        except (WorkerCrashed, BrokenPipeError, OSError) as e:
            self.kill()
            raise WorkerCrashed(f"the worker died during {fn}() ({type(e).__name__})") from None
        except (ProtocolError, SubmissionTimeout):
            self.kill()
            raise
        if head.get("status") != "ok":
            raise StudentError(str(head.get("error", "an error"))[:300])
        return decode_value(head.get("value"), out, limits=self.limits.message)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
