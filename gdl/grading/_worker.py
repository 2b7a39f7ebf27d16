"""The untrusted side: runs one submission notebook and answers calls, inside the sandbox.

Started by :mod:`gdl.grading._sandbox` as ``python -I -m gdl.grading._worker NOTEBOOK [--skip i,j]``. It keeps
the protocol channel on private duplicates of stdin/stdout, sends the submission's own output to /dev/null,
drops root (to ``nobody``) when it has it, runs the code cells in order (reporting each to the grader, which
enforces the time limits) and then answers ``call`` requests with data only. Nothing here is trusted: the
submission can change anything in this process, which is why the grader checks answers on its own side.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

MAX_MESSAGE = 300


def short(text: str, n: int = MAX_MESSAGE) -> str:
    text = "".join(ch if ch.isprintable() or ch == "\n" else "?" for ch in str(text))
    return text if len(text) <= n else text[: n - 15] + " ...[shortened]"


def cell_source(source) -> str:
    """Notebook cell source with IPython-only lines (``!cmd``, ``%magic``) made inert."""
    src = "".join(source) if isinstance(source, list) else str(source)
    out = []
    for line in src.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("!", "%")):
            line = line[: len(line) - len(stripped)] + "pass  # IPython line skipped by the grader"
        out.append(line)
    return "\n".join(out)


def _error_text(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = next((f"{fr.filename} line {fr.lineno}" for fr in reversed(tb) if fr.filename.startswith("<cell")), "")
    return short(f"{type(exc).__name__}: {exc}" + (f" ({where})" if where else ""))


def _drop_privileges(uid: int = 65534) -> None:
    """As root (the grader's root mode): become ``uid``, the host uid of this worker's slot, which no other
    concurrent worker has, so that the kernel's per-user counts (processes, keys) are this submission's alone."""
    if hasattr(os, "getuid") and os.getuid() == 0:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        if os.getuid() == 0 or os.geteuid() == 0:
            raise SystemExit("could not drop root")


def main(argv: list[str]) -> None:
    path = argv[0]
    skip = {int(i) for i in argv[2].split(",") if i} if len(argv) > 2 and argv[1] == "--skip" else set()
    keep_user = "--keep-user" in argv     # --unsafe runs: outside the sandbox, nobody could not read the stdlib
    uid = int(argv[argv.index("--uid") + 1]) if "--uid" in argv else 65534
    proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
    proto_out = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.set_inheritable(proto_in.fileno(), False)
    os.set_inheritable(proto_out.fileno(), False)
    if not keep_user:
        _drop_privileges(uid)

    from gdl.grading._protocol import (
        ProtocolError,
        decode_value,
        encode_value,
        read_message,
        to_torch,
        write_message,
    )

    def send(header, arrays=()):
        write_message(proto_out, header, arrays)

    try:
        with open(path, encoding="utf-8") as f:
            nb = json.load(f)
        cells = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    except Exception as e:  # noqa: BLE001 - a broken notebook is reported, not raised
        send({"event": "notebook", "status": "error", "error": short(f"cannot read the notebook: {e}")})
        cells = []
    else:
        send({"event": "notebook", "status": "ok", "n_cells": len(cells)})

    # loaded before the student's cells, so their import time is not charged to the first cell's timeout
    import numpy  # noqa: F401
    import torch  # noqa: F401

    ns: dict = {"__name__": "__main__", "display": lambda *a, **k: None}
    for i, cell in enumerate(cells):
        if i in skip:
            continue
        send({"event": "cell", "index": i, "status": "start"})
        try:
            exec(compile(cell_source(cell.get("source", "")), f"<cell {i}>", "exec"), ns)  # noqa: S102
        except BaseException as e:  # noqa: BLE001 - the submission's errors are data for the grader
            send({"event": "cell", "index": i, "status": "error", "error": _error_text(e)})
        else:
            send({"event": "cell", "index": i, "status": "ok"})
    send({"event": "cells_done"})

    from gdl.grading.catalogue import BUILDERS

    while True:
        try:
            req, arrays = read_message(proto_in)
        except (EOFError, ProtocolError):
            return
        rid = req.get("id")
        try:
            fn = ns.get(str(req.get("fn")))
            if fn is None or not callable(fn):
                raise NameError(f"the notebook defines no function named {str(req.get('fn'))[:60]!r}")
            args = to_torch(decode_value({"l": req.get("args", [])}, arrays, builders=BUILDERS))
            kwargs = {str(k): to_torch(decode_value(v, arrays, builders=BUILDERS))
                      for k, v in (req.get("kwargs") or {}).items()}
            value = fn(*args, **kwargs)
            out: list = []
            desc = encode_value(value, out)
        except BaseException as e:  # noqa: BLE001
            send({"event": "result", "id": rid, "status": "error", "error": _error_text(e)})
        else:
            send({"event": "result", "id": rid, "status": "ok", "value": desc}, out)


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(0)

