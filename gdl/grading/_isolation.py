"""Per-submission isolation: seccomp filter, cgroup caps, a distinct uid per concurrent worker, safe file intake.

Everything here runs on the trusted side (the grader's process and the child between ``fork`` and ``exec`` of
bubblewrap). The layers, and what each one stops, are described in ``exercises/README.md`` ("Threat model"):

- :func:`seccomp_program`: a classic-BPF program handed to ``bwrap --seccomp FD``; it refuses (``EPERM``) the
  system calls a submission never needs: kernel keyrings (``add_key``, ``keyctl``, ``request_key``), ``ptrace``,
  mounts, ``bpf``, ``perf_event_open``, ``userfaultfd``, ``memfd_create``, namespaces, modules, ... and kills a
  process that uses another system-call ABI (i386, x32), which would bypass the numbers.
- :class:`Cgroup`: a cgroup per worker (v2 ``memory.max``/``pids.max``, or v1 ``memory.limit_in_bytes``/
  ``pids.max``) where the grader may create one (as root, or with a delegated v2 subtree). The memory cap counts
  every page the submission makes: anonymous memory, tmpfs and memfd pages, in all its processes.
- :class:`UidSlot`: as root, each concurrent worker runs bubblewrap as its own host uid (a range nobody else
  uses), so ``RLIMIT_NPROC`` and everything else the kernel counts per user is per submission; on release every
  process of that uid is killed.
- :func:`read_submission`: ``lstat`` first (regular files only), the size checked before reading, a bounded read.
- :func:`remove_tree`: clean-up that neither recursion depth nor path length can defeat.
"""

from __future__ import annotations

import errno
import fcntl
import os
import platform
import signal
import stat
import struct
import subprocess
import time
from pathlib import Path

__all__ = ["DENIED_SYSCALLS", "seccomp_program", "Cgroup", "UidSlot", "SubmissionRejected", "read_submission",
           "remove_tree", "cgroup_support"]

# --- seccomp ---------------------------------------------------------------------------------------------------
#: System calls refused with EPERM, with their numbers on x86_64 and on aarch64 (the generic table); checked
#: against /usr/include/x86_64-linux-gnu/asm/unistd_64.h and /usr/include/asm-generic/unistd.h.
DENIED_SYSCALLS: dict[str, tuple[int, int]] = {
    "add_key": (248, 217), "keyctl": (250, 219), "request_key": (249, 218),
    "ptrace": (101, 117), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271),
    "kcmp": (312, 272), "pidfd_getfd": (438, 438), "process_madvise": (440, 440),
    "mount": (165, 40), "umount2": (166, 39), "pivot_root": (155, 41), "chroot": (161, 51),
    "fsopen": (430, 430), "fsconfig": (431, 431), "fsmount": (432, 432), "fspick": (433, 433),
    "open_tree": (428, 428), "move_mount": (429, 429), "mount_setattr": (442, 442),
    "unshare": (272, 97), "setns": (308, 268),
    "bpf": (321, 280), "perf_event_open": (298, 241), "userfaultfd": (323, 282),
    "memfd_create": (319, 279), "memfd_secret": (447, 447),
    "io_uring_setup": (425, 425), "io_uring_enter": (426, 426), "io_uring_register": (427, 427),
    "kexec_load": (246, 104), "kexec_file_load": (320, 294), "init_module": (175, 105),
    "finit_module": (313, 273), "delete_module": (176, 106), "reboot": (169, 142), "swapon": (167, 224),
    "swapoff": (168, 225), "acct": (163, 89), "syslog": (103, 116), "quotactl": (179, 60),
    "open_by_handle_at": (304, 265), "name_to_handle_at": (303, 264), "fanotify_init": (300, 262),
    "settimeofday": (164, 170), "clock_settime": (227, 112), "clock_adjtime": (305, 266), "adjtimex": (159, 171),
    "lookup_dcookie": (212, 18), "vhangup": (153, 58),
}
_X86_ONLY = {"iopl": 172, "ioperm": 173, "uselib": 134, "_sysctl": 156}

_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_JGE_K, _BPF_JSET_K, _BPF_RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_CLONE = {"x86_64": (56, 435), "aarch64": (220, 435)}          # clone, clone3
#: CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET: new namespaces from clone()
_CLONE_NEW_MASK = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
_RET_ALLOW, _RET_KILL_PROCESS, _RET_ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_X32_BIT = 0x40000000


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k & 0xFFFFFFFF)


def seccomp_program(machine: str | None = None) -> bytes | None:
    """The filter as raw ``struct sock_filter`` records (what ``bwrap --seccomp FD`` reads), or ``None`` on a
    machine whose system-call table is not listed here.

    Program: load ``seccomp_data.arch``; another ABI -> kill; load ``nr``; on x86_64 an x32 call
    (``nr >= 0x40000000``) -> ``EPERM``; ``clone3`` -> ``ENOSYS`` (its flags sit behind a pointer; the C library
    falls back to ``clone``); ``clone`` with a new-namespace flag -> ``EPERM``; each denied number -> ``EPERM``;
    anything else -> allow.
    """
    machine = machine or platform.machine()
    if machine not in _AUDIT_ARCH:
        return None
    col = 0 if machine == "x86_64" else 1
    numbers = sorted({v[col] for v in DENIED_SYSCALLS.values()}
                     | (set(_X86_ONLY.values()) if machine == "x86_64" else set()))
    eperm = _RET_ERRNO | errno.EPERM
    prog = [_insn(_BPF_LD_W_ABS, 0, 0, 4),                       # arch
            _insn(_BPF_JEQ_K, 1, 0, _AUDIT_ARCH[machine]),
            _insn(_BPF_RET_K, 0, 0, _RET_KILL_PROCESS),
            _insn(_BPF_LD_W_ABS, 0, 0, 0)]                       # nr
    if machine == "x86_64":
        prog += [_insn(_BPF_JGE_K, 0, 1, _X32_BIT), _insn(_BPF_RET_K, 0, 0, eperm)]
    clone, clone3 = _CLONE[machine]
    prog += [_insn(_BPF_JEQ_K, 0, 1, clone3), _insn(_BPF_RET_K, 0, 0, _RET_ERRNO | errno.ENOSYS),  # -> clone()
             _insn(_BPF_JEQ_K, 0, 4, clone),
             _insn(_BPF_LD_W_ABS, 0, 0, 16),                        # args[0], low 32 bits: the flags
             _insn(_BPF_JSET_K, 0, 1, _CLONE_NEW_MASK), _insn(_BPF_RET_K, 0, 0, eperm),
             _insn(_BPF_RET_K, 0, 0, _RET_ALLOW)]
    for nr in numbers:
        prog += [_insn(_BPF_JEQ_K, 0, 1, nr), _insn(_BPF_RET_K, 0, 0, eperm)]
    prog.append(_insn(_BPF_RET_K, 0, 0, _RET_ALLOW))
    return b"".join(prog)


# --- cgroups ---------------------------------------------------------------------------------------------------
_CGROUP_ROOT = Path("/sys/fs/cgroup")


def _own_cgroups() -> dict[str, str]:
    """controller ('' for the v2 hierarchy) -> this process's cgroup path."""
    out = {}
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, ctrls, path = line.split(":", 2)
            for c in ctrls.split(",") if ctrls else [""]:
                out[c] = path
    except (OSError, ValueError):
        pass
    return out


def _is_cgroup2(path: Path) -> bool:
    return (path / "cgroup.controllers").exists()


class Cgroup:
    """A cgroup (v2, or v1 memory + pids) capping one worker's memory (every page) and process count.

    ``Cgroup.create`` returns ``None`` where the grader may not make one (no root, no delegated subtree); the
    worker then runs with the per-process fallback (``RLIMIT_AS``, ``RLIMIT_NPROC``, capped tmpfs, no memfd).
    """

    def __init__(self, version: int, dirs: list[Path]):
        self.version, self.dirs = version, dirs

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    @staticmethod
    def _parents() -> tuple[int, list[tuple[Path, str]]] | None:
        own = _own_cgroups()
        if _is_cgroup2(_CGROUP_ROOT) and "" in own:
            return 2, [(_CGROUP_ROOT, own[""])]
        mem, pids, acct = _CGROUP_ROOT / "memory", _CGROUP_ROOT / "pids", _CGROUP_ROOT / "cpuacct"
        if (mem / "memory.limit_in_bytes").exists() and (pids / "cgroup.procs").exists():
            found = [(mem, own.get("memory", "/")), (pids, own.get("pids", "/"))]
            if (acct / "cpuacct.usage").exists():      # only measures (the CPU time in the result)
                found.append((acct, own.get("cpuacct", own.get("cpu,cpuacct", "/"))))
            return 1, found
        return None

    @classmethod
    def create(cls, name: str, memory_bytes: int, pids: int) -> Cgroup | None:
        found = cls._parents()
        if found is None:
            return None
        version, parents = found
        made: list[Path] = []
        try:
            for mount, rel in parents:
                base = mount / rel.lstrip("/")
                if not base.is_dir():
                    base = mount
                d = base / name
                d.mkdir()
                made.append(d)
            if version == 2:
                (d,) = made
                if not (d / "memory.max").exists() or not (d / "pids.max").exists():
                    raise OSError("memory or pids controller not enabled for the grader's cgroup")
                (d / "memory.max").write_text(str(memory_bytes))
                (d / "memory.swap.max").exists() and (d / "memory.swap.max").write_text("0")
                (d / "pids.max").write_text(str(pids))
            else:
                mem, pid = made[:2]
                (mem / "memory.limit_in_bytes").write_text(str(memory_bytes))
                if (mem / "memory.memsw.limit_in_bytes").exists():
                    try:
                        (mem / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
                    except OSError:
                        pass
                (pid / "pids.max").write_text(str(pids))
        except OSError:
            for d in made:
                try:
                    d.rmdir()
                except OSError:
                    pass
            return None
        return cls(version, made)

    def pids(self) -> list[int]:
        out = []
        for f in self.procs_files:
            try:
                out += [int(x) for x in Path(f).read_text().split()]
            except (OSError, ValueError):
                pass
        return out

    def cpu_seconds(self) -> float | None:
        """CPU time used by all processes that were in this cgroup (v2 ``cpu.stat``, v1 ``cpuacct.usage``)."""
        try:
            if self.version == 2:
                for line in (self.dirs[0] / "cpu.stat").read_text().splitlines():
                    if line.startswith("usage_usec "):
                        return int(line.split()[1]) / 1e6
                return None
            acct = [d for d in self.dirs if (d / "cpuacct.usage").exists()]
            return int((acct[0] / "cpuacct.usage").read_text()) / 1e9 if acct else None
        except (OSError, ValueError):
            return None

    def peak_memory(self) -> int | None:
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        try:
            return int((self.dirs[0] / name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of this cgroup for going over the memory cap."""
        try:
            if self.version == 2:
                for line in (self.dirs[0] / "memory.events").read_text().splitlines():
                    k, v = line.split()
                    if k == "oom_kill" and int(v) > 0:
                        return True
                return False
            for line in (self.dirs[0] / "memory.oom_control").read_text().splitlines():
                k, _, v = line.partition(" ")
                if k == "oom_kill" and int(v) > 0:
                    return True
            return False
        except (OSError, ValueError):
            return False

    def kill(self) -> None:
        """Kill every process in the cgroup (``cgroup.kill`` on v2, else one by one until none is left)."""
        if self.version == 2 and (self.dirs[0] / "cgroup.kill").exists():
            try:
                (self.dirs[0] / "cgroup.kill").write_text("1")
            except OSError:
                pass
        for _ in range(200):
            left = self.pids()
            if not left:
                return
            for p in left:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.01)

    def remove(self) -> None:
        self.kill()
        for d in reversed(self.dirs):
            for _ in range(100):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


def cgroup_support() -> str | None:
    """'v2' / 'v1' if this process can create capped cgroups, else ``None`` (tries and removes one)."""
    cg = Cgroup.create(f"gdl-probe-{os.getpid()}", 256 << 20, 16)
    if cg is None:
        return None
    cg.remove()
    return f"v{cg.version}"


# --- a host uid per concurrent worker (root only) --------------------------------------------------------------
class UidSlot:
    """An exclusive host uid for one worker (as root): ``UID_BASE + n``, held by an ``flock`` on a lock file, so
    parallel pools and parallel ``gdl grade`` runs never share one. Nothing in the system uses this range."""

    UID_BASE = 1_700_000_000
    COUNT = 1024
    LOCK_DIR = Path("/run/gdl-grading") if os.path.isdir("/run") else Path("/tmp/gdl-grading-locks")

    def __init__(self):
        self.LOCK_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.LOCK_DIR, 0o700)
        start = (os.getpid() * 7) % self.COUNT
        for i in range(self.COUNT):
            n = (start + i) % self.COUNT
            fd = os.open(self.LOCK_DIR / f"uid-{n}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                         0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self.fd, self.uid = fd, self.UID_BASE + n
            self.kill_all()           # a previous holder's leftovers, if any
            return
        raise RuntimeError(f"all {self.COUNT} grading uids are in use")

    def kill_all(self) -> None:
        """SIGKILL every process of this uid: ``kill(-1)`` sent as that uid reaches exactly its processes."""
        subprocess.run(["kill", "-9", "-1"], user=self.uid, group=self.uid, extra_groups=[],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)

    def release(self) -> None:
        if getattr(self, "fd", None) is not None:
            self.kill_all()
            os.close(self.fd)
            self.fd = None


# --- submission intake -----------------------------------------------------------------------------------------
class SubmissionRejected(Exception):
    """The submission file is not something the grader reads (a link, a FIFO, a device, too large)."""


def read_submission(path: str | os.PathLike, max_bytes: int) -> bytes:
    """The bytes of a submission file: ``lstat`` first (a regular file, not a symbolic link, FIFO or device), its
    size checked before reading, opened without following links and without blocking, read with a bound."""
    path = os.fspath(path)
    try:
        st = os.lstat(path)
    except OSError as e:
        raise SubmissionRejected(f"the submission cannot be read: {type(e).__name__}") from None
    if stat.S_ISLNK(st.st_mode):
        raise SubmissionRejected("the submission is a symbolic link, not a notebook file; submit the file itself")
    if not stat.S_ISREG(st.st_mode):
        raise SubmissionRejected("the submission is not a regular file (a FIFO, device, socket or folder)")
    if st.st_size > max_bytes:
        raise SubmissionRejected(f"the notebook is {st.st_size / 2**20:.1f} MiB, above the "
                                 f"{max_bytes / 2**20:g} MiB limit")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        raise SubmissionRejected(f"the submission cannot be opened: {type(e).__name__}") from None
    try:
        st2 = os.fstat(fd)
        if not stat.S_ISREG(st2.st_mode) or (st2.st_dev, st2.st_ino) != (st.st_dev, st.st_ino):
            raise SubmissionRejected("the submission file changed while it was being read")
        chunks, got = [], 0
        while got <= max_bytes:
            b = os.read(fd, min(1 << 20, max_bytes + 1 - got))
            if not b:
                break
            chunks.append(b)
            got += len(b)
        if got > max_bytes:
            raise SubmissionRejected(f"the notebook is larger than the {max_bytes / 2**20:g} MiB limit")
        return b"".join(chunks)
    finally:
        os.close(fd)


# --- clean-up --------------------------------------------------------------------------------------------------
def remove_tree(path: str | os.PathLike) -> None:
    """Remove ``path`` and everything below it, whatever its depth: ``rm -rf`` (iterative, relative opens), then a
    check; a pure-Python fallback flattens the tree one level at a time with descriptor-relative renames, so
    neither the recursion limit nor ``PATH_MAX`` can stop it."""
    path = os.fspath(path)
    if not os.path.lexists(path):
        return
    try:
        subprocess.run(["rm", "-rf", "--one-file-system", "--", path], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired):
        pass
    if os.path.lexists(path):
        _remove_tree_python(path)


def _remove_tree_python(path: str) -> None:
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    root = os.open(path, flags)
    try:
        counter = 0
        while True:
            subdirs = [e.name for e in os.scandir(root) if e.is_dir(follow_symlinks=False)]
            for e in os.scandir(root):
                if not e.is_dir(follow_symlinks=False):
                    os.unlink(e.name, dir_fd=root)
            if not subdirs:
                break
            for name in subdirs:
                child = os.open(name, flags, dir_fd=root)
                try:
                    os.fchmod(child, 0o700)
                    inner = [e.name for e in os.scandir(child)]
                    for n in inner:
                        counter += 1
                        os.rename(n, f".gdl-rm-{counter}", src_dir_fd=child, dst_dir_fd=root)
                finally:
                    os.close(child)
                os.rmdir(name, dir_fd=root)
    finally:
        os.close(root)
    os.rmdir(path)
