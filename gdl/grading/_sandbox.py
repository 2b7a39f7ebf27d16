"""Start the worker for one submission in a sandbox and talk to it with time limits (the trusted side).

Isolation (Linux), one sandbox per worker start (see ``exercises/README.md``, "Threat model"):

- `bubblewrap <https://github.com/containers/bubblewrap>`_, always run unprivileged: its own user namespace
  (nested ones refused), network, PID, IPC, UTS and cgroup namespaces; a read-only view of only what Python
  needs (the interpreter, the virtual environment, the ``gdl`` package); the submission handed in as data
  (``--ro-bind-data``) on a size-capped tmpfs scratch folder that lives only inside the sandbox (nothing of it in
  the host's ``/tmp``), a size-capped ``/dev/shm`` and a read-only root.
- a seccomp filter (:func:`gdl.grading._isolation.seccomp_program`) refusing keyrings, ``ptrace``, mounts,
  ``bpf``, ``perf_event_open``, ``userfaultfd``, ``memfd_create``, namespaces, ...
- as root: a host uid of its own per concurrent worker (:class:`~gdl.grading._isolation.UidSlot`) and a cgroup
  capping memory (every page) and processes; otherwise (or where cgroups cannot be made) ``RLIMIT_AS`` per
  process, the capped tmpfs and no memfd. Resource limits (``setrlimit``) on CPU time, file size, processes and
  open files in both modes.

The grader enforces three time limits from outside, as deadlines that no message can move: per cell, per graded
call and per submission. It bounds what a worker may send (messages per start and per call, bytes per message,
bytes per submission). A worker that hangs, dies or sends garbage is killed and restarted (skipping a cell that
hung or killed it), so a submission loses only the questions it broke. A failure of the grader's own machinery
(the sandbox cannot start) raises :class:`GraderError`, which is never scored as the student's answer.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gdl.grading._isolation import Cgroup, UidSlot, cgroup_support, remove_tree, seccomp_program
from gdl.grading._protocol import Limits, ProtocolError, decode_value, encode_value, read_message, write_message

__all__ = ["Timeouts", "ResourceLimits", "SandboxUnavailable", "WorkerSession", "StudentError", "CallTimeout",
           "WorkerCrashed", "SubmissionTimeout", "GraderError", "sandbox_description", "isolation_mode"]


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed for one notebook cell, one graded call and the whole submission."""

    cell: float = 30.0
    call: float = 10.0
    submission: float = 120.0


@dataclass(frozen=True)
class ResourceLimits:
    memory_bytes: int = 4 << 30      # address space of each worker process (RLIMIT_AS)
    cgroup_memory_bytes: int = 3 << 30   # all pages of one submission (cgroup; root or delegated cgroups)
    file_bytes: int = 16 << 20       # largest file it may write
    scratch_bytes: int = 64 << 20    # its tmpfs scratch folder (home, TMPDIR)
    shm_bytes: int = 16 << 20        # its /dev/shm
    processes: int = 64              # processes and threads of one submission
    open_files: int = 256
    events_per_start: int = 2000     # messages while its cells run (3 per cell are needed)
    events_per_call: int = 16        # messages while one graded call runs (1 is needed)
    submission_bytes: int = 512 << 20    # everything it sends over the protocol, all calls together
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


class GraderError(RuntimeError):
    """The grader's own machinery failed (the sandbox could not start, the machine ran out of something):
    the submission is *not graded*, never scored 0."""


_PROBE: dict[str, str | None] = {}


def _bwrap() -> str | None:
    import shutil

    return shutil.which("bwrap") or (os.path.exists("/usr/bin/bwrap") and "/usr/bin/bwrap") or None


def _bwrap_version(exe: str) -> tuple[int, ...]:
    out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
    return tuple(int(x or 0) for x in m.groups()) if m else (0, 0, 0)


def isolation_mode() -> dict:
    """What this machine gives each submission (recorded in ``run.json`` and every result): root or non-root
    mode, the distinct uid, the cgroup version, the memory cap's mechanism, the seccomp filter."""
    if "mode" not in _PROBE:
        root = os.geteuid() == 0
        cg = cgroup_support() if root or os.access("/sys/fs/cgroup", os.W_OK) else None
        prog = seccomp_program()
        _PROBE["mode"] = {
            "mode": "root" if root else "non-root",
            "user_namespace": not root,
            "uid": "a host uid of its own per concurrent worker" if root else "the grader's uid (shared)",
            "cgroup": cg,
            "memory_cap": f"cgroup {cg}: every page of the submission" if cg else
                          "RLIMIT_AS per process + capped tmpfs + no memfd (fallback)",
            "process_cap": f"cgroup {cg} pids.max + RLIMIT_NPROC of its own uid" if cg and root else
                           "RLIMIT_NPROC of its own uid" if root else
                           "RLIMIT_NPROC (counts all processes of the grader's uid)",
            "seccomp": f"{len(prog) // 8} BPF instructions" if prog else None,
        }
    return dict(_PROBE["mode"])   # type: ignore[arg-type]


def sandbox_description(unsafe: bool = False) -> str:
    """What isolates the worker, for the result files; raises :class:`SandboxUnavailable` if nothing does."""
    if unsafe:
        return "UNSAFE: no sandbox (--unsafe): the submission ran with the grader's own permissions"
    if "bwrap" not in _PROBE:
        exe = _bwrap()
        if exe is None:
            _PROBE["bwrap"] = None
            _PROBE["error"] = "bubblewrap (bwrap) is not installed: `apt-get install bubblewrap`"
        elif seccomp_program() is None:
            _PROBE["bwrap"] = None
            _PROBE["error"] = f"no seccomp filter for this machine ({os.uname().machine}; x86_64 and aarch64 have one)"
        else:
            _PROBE["bwrap_version"] = _bwrap_version(exe)    # type: ignore[assignment]
            r = subprocess.run([exe, *_namespace_flags(), "--ro-bind", "/", "/", "--", "/bin/true"],
                               capture_output=True, text=True, timeout=30)
            ver = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
            _PROBE["bwrap"] = ver if r.returncode == 0 else None
            _PROBE["error"] = f"bubblewrap cannot create namespaces here: {r.stderr.strip()[:300]}"
    if _PROBE["bwrap"] is None:
        raise SandboxUnavailable(f"{_PROBE['error']}. Refusing to run submissions unsandboxed; pass --unsafe "
                                 f"(unsafe=True) only for trusted notebooks.")
    m = isolation_mode()
    who = "own host uid per worker" if m["mode"] == "root" else "own user namespace"
    mem = f"cgroup {m['cgroup']} memory+pids cap" if m["cgroup"] else "RLIMIT_AS memory cap (no cgroup)"
    return (f"{_PROBE['bwrap']}: {m['mode']} mode, {who}, seccomp, {mem}, capped tmpfs "
            f"scratch, no network, own PID/IPC/UTS namespaces, read-only system")


#: Where the worker's private scratch folder (its home, with the submission) appears inside the sandbox.
SANDBOX_HOME = "/gdl-sandbox"
def _namespace_flags() -> list[str]:
    """As root, bubblewrap runs privileged (it can bind whatever Python needs, even under a 0700 /root) and the
    worker switches to its slot's own host uid before any submission code runs; otherwise bubblewrap makes a user
    namespace of its own. Nested namespaces are refused in both modes by the seccomp filter (``unshare``,
    ``setns``, ``clone`` with namespace flags) and, where bubblewrap >= 0.8 can, ``--disable-userns``."""
    if os.geteuid() == 0:
        return ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    flags = ["--unshare-all", "--unshare-user"]
    if tuple(_PROBE.get("bwrap_version") or (0,)) >= (0, 8):    # type: ignore[arg-type]
        flags.append("--disable-userns")
    return flags


def _python_roots() -> list[str]:
    import gdl

    roots = {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix), sys.prefix,
             os.path.dirname(os.path.realpath(gdl.__file__))}
    exe = os.path.realpath(sys.executable)
    roots.add(os.path.dirname(os.path.dirname(exe)))
    # drop paths inside other listed paths
    out = sorted(roots)
    return [r for r in out if not any(r != o and r.startswith(o.rstrip("/") + "/") for o in out)]


def _sandbox_command(argv: list[str], limits: ResourceLimits, notebook_fd: int, seccomp_fd: int) -> list[str]:
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
    for d in parents:
        cmd += ["--perms", "0755", "--dir", d]
    for r in roots:
        cmd += ["--ro-bind", r, r]
    # the scratch folder: a tmpfs of its own (capped), alive only as long as this sandbox; the submission is
    # copied in from a descriptor, so no copy of it ever exists in the host's file system
    cmd += ["--proc", "/proc", "--dev", "/dev",
            "--size", str(limits.shm_bytes), "--perms", "1777", "--tmpfs", "/dev/shm",
            "--size", str(limits.scratch_bytes), "--perms", "1777", "--tmpfs", SANDBOX_HOME,
            "--perms", "0444", "--ro-bind-data", str(notebook_fd), f"{SANDBOX_HOME}/submission.ipynb",
            # the new root and /dev are tmpfs too, uncapped: read-only (non-recursive, so the two above stay rw)
            "--remount-ro", "/dev", "--remount-ro", "/",
            "--seccomp", str(seccomp_fd), "--chdir", SANDBOX_HOME, "--clearenv"]
    for k, v in _worker_env(SANDBOX_HOME).items():
        cmd += ["--setenv", k, v]
    return cmd + ["--", sys.executable, "-I", "-m", "gdl.grading._worker", *argv]


def _worker_env(tmp: str) -> dict[str, str]:
    return {"HOME": tmp, "TMPDIR": tmp, "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "MPLBACKEND": "Agg", "MPLCONFIGDIR": tmp, "GDL_GRADING_WORKER": "1", "GDL_SCALE": "small",
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", "LANG": "C.UTF-8"}


def _limiter(limits: ResourceLimits, cpu_seconds: int, cgroup: Cgroup | None):
    """Runs in the child between fork and exec of bubblewrap: join the cgroup, set the limits and make the
    sandbox the OOM killer's first choice."""
    procs_files = cgroup.procs_files if cgroup is not None else []

    def apply():
        import resource  # POSIX only: imported here so that students on any OS can import gdl.grading

        pid = str(os.getpid()).encode()
        for f in procs_files:
            fd = os.open(f, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)
        try:
            fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
            os.write(fd, b"1000")
            os.close(fd)
        except OSError:
            pass
        for res, val in ((resource.RLIMIT_AS, limits.memory_bytes), (resource.RLIMIT_FSIZE, limits.file_bytes),
                         (resource.RLIMIT_CPU, cpu_seconds), (resource.RLIMIT_CORE, 0),
                         (resource.RLIMIT_NOFILE, limits.open_files), (resource.RLIMIT_NPROC, limits.processes)):
            try:
                resource.setrlimit(res, (val, val))
            except (ValueError, OSError):
                pass
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # writes past the size limit fail instead of killing
    return apply


def _memfd(name: str, data: bytes) -> int:
    """A memory file holding ``data``, positioned at its start (bubblewrap reads descriptors to their end)."""
    fd = os.memfd_create(name, 0)     # not close-on-exec: passed to bubblewrap with pass_fds
    view, done = memoryview(data), 0
    while done < len(view):
        done += os.write(fd, view[done:])
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


class WorkerSession:
    """One submission's worker, restarted as needed. ``call`` returns decoded data (numpy arrays, numbers,
    lists) or raises :class:`StudentError`, :class:`CallTimeout`, :class:`WorkerCrashed`,
    :class:`SubmissionTimeout`, :class:`~gdl.grading._protocol.ProtocolError` or :class:`GraderError`.

    ``notebook`` is the submission's bytes (already read by the intake) or a path (read with the intake's rules).
    """

    MAX_FAILED_STARTS = 4      # starts that die or hang inside the notebook's cells
    MAX_STARTS = 40            # all starts (a restart follows every timed-out or crashed call)
    START_UP = 20.0            # seconds for the interpreter to start and import torch, on top of the cell limit

    def __init__(self, notebook: Path | bytes, *, unsafe: bool = False, timeouts: Timeouts = Timeouts(),
                 limits: ResourceLimits = ResourceLimits(), n_cells: int | None = None):
        if isinstance(notebook, (bytes, bytearray)):
            self.data = bytes(notebook)
        else:
            from gdl.grading._grade import MAX_NOTEBOOK_BYTES
            from gdl.grading._isolation import read_submission

            self.data = read_submission(notebook, MAX_NOTEBOOK_BYTES)
        if n_cells is None:
            from gdl.grading._grade import count_code_cells

            n_cells = count_code_cells(self.data)
        self.n_cells = n_cells
        self.unsafe, self.timeouts, self.limits = unsafe, timeouts, limits
        self.sandbox = sandbox_description(unsafe)
        self.deadline = time.monotonic() + timeouts.submission
        self.skip: set[int] = set()
        self.cells: dict[int, dict] = {}
        self.notebook_error: str | None = None
        self.starts = self.failed_starts = 0
        self.proc: subprocess.Popen | None = None
        self._scratch: str | None = None
        self._next_id = 0
        self._received = 0                 # protocol bytes received from this submission, all starts together
        self._stderr = b""
        try:
            self._slot = UidSlot() if not unsafe and os.geteuid() == 0 else None
        except (OSError, RuntimeError) as e:
            raise GraderError(f"no grading uid available: {type(e).__name__}: {str(e)[:200]}") from None
        self.cgroup: Cgroup | None = None
        self.oom = False
        self.cpu_seconds: float | None = None     # of the sandboxed processes (from the cgroup, where there is one)
        self.peak_memory: int | None = None
        if not unsafe and isolation_mode()["cgroup"]:
            name = f"gdl-grade-{os.getpid()}-{self._slot.uid if self._slot else 0}-{time.monotonic_ns() % 10**9}"
            self.cgroup = Cgroup.create(name, limits.cgroup_memory_bytes, limits.processes)
            if self.cgroup is None:
                self.close()
                raise GraderError("could not create the submission's cgroup")

    # --- process management -------------------------------------------------------------------------------
    def _spawn(self) -> None:
        argv = ["--skip", ",".join(map(str, sorted(self.skip)))]
        cpu = int(self.timeouts.submission) + 10
        fds: list[int] = []
        try:
            if self.unsafe:
                self._scratch = tempfile.mkdtemp(prefix="gdl-grade-")
                nb = os.path.join(self._scratch, "submission.ipynb")
                with open(nb, "wb") as f:
                    f.write(self.data)
                cmd, env, cwd = [sys.executable, "-I", "-m", "gdl.grading._worker", nb, *argv, "--keep-user"], \
                    _worker_env(self._scratch), self._scratch
                pre = _limiter(self.limits, cpu, None)
            else:
                fds = [_memfd("submission", self.data), _memfd("seccomp", seccomp_program())]
                if self._slot is not None:
                    argv += ["--uid", str(self._slot.uid)]
                cmd = _sandbox_command([f"{SANDBOX_HOME}/submission.ipynb", *argv], self.limits, *fds)
                env, cwd = {"PATH": "/usr/bin:/bin"}, "/"
                pre = _limiter(self.limits, cpu, self.cgroup)
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         env=env, cwd=cwd, start_new_session=True, pass_fds=fds, preexec_fn=pre)
        except Exception as e:  # noqa: BLE001 - whatever stops the start is the grader's failure
            raise GraderError(f"the sandbox could not be started: {type(e).__name__}: {str(e)[:200]}") from None
        finally:
            for fd in fds:
                os.close(fd)
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._stderr = b""
        threading.Thread(target=self._reader, args=(self.proc, self._queue), daemon=True).start()
        threading.Thread(target=self._drain_stderr, args=(self.proc,), daemon=True).start()
        self.starts += 1

    def _drain_stderr(self, proc) -> None:
        """bubblewrap's own messages (the worker sends its stderr to /dev/null): the first 4 KiB are kept."""
        try:
            while True:
                b = proc.stderr.read(4096)
                if not b:
                    return
                if len(self._stderr) < 4096:
                    self._stderr += b[: 4096 - len(self._stderr)]
        except (OSError, ValueError):
            return

    def _reader(self, proc, q) -> None:
        """Messages -> a small bounded queue (a submission flooding the channel blocks itself, never fills our
        memory); the bytes of all messages of the submission are counted against ``limits.submission_bytes``."""
        def put(item) -> bool:
            while True:
                try:
                    q.put(item, timeout=0.5)
                    return True
                except queue.Full:
                    if self.proc is not proc or proc.poll() is not None:
                        return False
        try:
            while True:
                head, arrays = read_message(proc.stdout, self.limits.message)
                self._received += 8 + len(str(head)) + sum(a.nbytes for a in arrays)
                if self._received > self.limits.submission_bytes:
                    raise ProtocolError(f"the submission sent more than {self.limits.submission_bytes >> 20} MiB "
                                        f"over the grading channel")
                if not put((head, arrays)):
                    return
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
            for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                try:
                    f.close()
                except OSError:
                    pass
            self.proc = None
        if self.cgroup is not None:
            self.oom = self.oom or self.cgroup.oom_killed()
            self.cgroup.kill()
        if self._slot is not None:
            self._slot.kill_all()
        if self._scratch:
            remove_tree(self._scratch)
            self._scratch = None

    def close(self, grace: float = 2.0) -> None:
        """End the worker: close its input (it exits on end of input), kill it if it has not gone in ``grace`` s;
        then give back the cgroup and the uid."""
        if self.proc is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=grace)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()
        if self.cgroup is not None:
            self.cpu_seconds, self.peak_memory = self.cgroup.cpu_seconds(), self.cgroup.peak_memory()
            self.cgroup.remove()
            self.cgroup = None
        if self._slot is not None:
            self._slot.release()
            self._slot = None

    def _get(self, deadline: float):
        """The next message, waiting until ``deadline`` (a fixed point in time: messages never move it)."""
        now = time.monotonic()
        if now >= self.deadline:
            raise SubmissionTimeout(f"the submission used up its {self.timeouts.submission:g} s")
        try:
            item = self._queue.get(timeout=max(0.0, min(deadline, self.deadline) - now))
        except queue.Empty:
            if time.monotonic() >= self.deadline:
                raise SubmissionTimeout(f"the submission used up its {self.timeouts.submission:g} s") from None
            raise CallTimeout from None
        if isinstance(item, ProtocolError):
            raise item
        if isinstance(item, BaseException):
            raise WorkerCrashed(str(item)[:200])
        return item

    def _start_failure(self) -> str:
        err = self._stderr.decode("utf-8", "replace").strip()
        return err.splitlines()[-1][:200] if err else "no message"

    def _ensure_started(self) -> None:
        """Run the notebook's cells (once per start), skipping cells that hung or killed an earlier start."""
        while self.proc is None:
            if self.failed_starts >= self.MAX_FAILED_STARTS or self.starts >= self.MAX_STARTS:
                raise WorkerCrashed(f"the notebook was restarted {self.starts} times and still breaks the worker")
            self._spawn()
            current, last, events, started_any = None, -1, 0, False
            try:
                head, _ = self._get(time.monotonic() + self.timeouts.cell + self.START_UP)  # interpreter start-up
                if head.get("event") != "notebook":
                    raise ProtocolError("the worker did not start properly")
                if head.get("status") == "error":
                    self.notebook_error = str(head.get("error", ""))[:300]
                deadline = time.monotonic() + self.START_UP      # importing numpy and torch, up to the first cell
                while True:
                    head, _ = self._get(deadline)
                    events += 1
                    if events > self.limits.events_per_start:
                        raise ProtocolError(f"the notebook sent more than {self.limits.events_per_start} "
                                            f"messages while its cells ran")
                    ev, i = head.get("event"), head.get("index")
                    if ev == "cells_done":
                        return
                    if ev != "cell" or not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < self.n_cells:
                        continue                       # ignored (and counted): only real cells are recorded
                    status = head.get("status")
                    if status == "start" and current is None and i > last and i not in self.skip:
                        current, last, started_any = i, i, True
                        deadline = time.monotonic() + self.timeouts.cell   # set once per cell
                    elif status in ("ok", "error") and i == current:
                        self.cells[i] = {"index": i, "status": status,
                                         "message": str(head.get("error", ""))[:300] if status == "error" else ""}
                        current = None
                        deadline = time.monotonic() + 10.0   # the worker's own step to the next cell
            except SubmissionTimeout:
                self.kill()
                raise
            except (CallTimeout, WorkerCrashed, ProtocolError) as e:
                first = self.starts == 1 and not started_any
                self.kill()
                self.failed_starts += 1
                if current is None and last >= 0:
                    # between cells only the worker's own step runs, unless the last cell forged its own end (a
                    # fake "ok") or left a thread behind: that cell is to blame
                    current = last
                if current is None:   # died or hung before any cell ran
                    if first and not isinstance(e, ProtocolError):
                        raise GraderError(f"the sandboxed worker did not start ({type(e).__name__}: "
                                          f"{self._start_failure()})") from None
                    if isinstance(e, ProtocolError):
                        raise
                    raise WorkerCrashed(f"the worker failed before its first cell: {type(e).__name__}") from None
                what = "timed out" if isinstance(e, CallTimeout) else \
                    f"broke the protocol ({str(e)[:120]})" if isinstance(e, ProtocolError) else \
                    "went over the memory cap and was killed" if self._oom_now() else "crashed the worker"
                limit = f" after {self.timeouts.cell:g} s" if isinstance(e, CallTimeout) else ""
                self.cells[current] = {"index": current, "status": "killed",
                                       "message": f"cell {current} {what}{limit}; it was skipped"}
                self.skip.add(current)

    def _oom_now(self) -> bool:
        return self.oom or (self.cgroup is not None and self.cgroup.oom_killed())

    # --- calls ----------------------------------------------------------------------------------------------
    def call(self, fn: str, *args, **kwargs):
        self._ensure_started()
        arrays: list = []
        desc = [encode_value(a, arrays) for a in args]
        kdesc = {k: encode_value(v, arrays) for k, v in kwargs.items()}
        self._next_id += 1
        rid = self._next_id
        deadline = time.monotonic() + self.timeouts.call     # fixed when the call is sent
        try:
            write_message(self.proc.stdin, {"op": "call", "id": rid, "fn": fn, "args": desc, "kwargs": kdesc},
                          [np.asarray(a) for a in arrays])
            events = 0
            while True:
                head, out = self._get(deadline)
                events += 1
                if head.get("event") == "result" and head.get("id") == rid:
                    break
                if events >= self.limits.events_per_call:
                    raise ProtocolError(f"{fn}() sent more than {self.limits.events_per_call} messages")
        except CallTimeout:
            self.kill()
            raise CallTimeout(f"{fn}() did not return within {self.timeouts.call:g} s") from None
        except (WorkerCrashed, BrokenPipeError, OSError) as e:
            self.kill()
            why = "went over the memory cap" if self._oom_now() else f"died ({type(e).__name__})"
            raise WorkerCrashed(f"the worker {why} during {fn}()") from None
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
