"""Questions, the submissions they query, and running them (trusted side and students' self-check).

A master notebook's test cells define questions with :func:`questions`::

    question = questions("ex07")

    @question(points=2)                      # public: students see and run it with check("ex07")
    def layer_is_equivariant(sub, ref, rng):
        f = sub.function("deepsets_layer")   # a proxy: arguments and results travel as data
        ...

    @question(points=3, hidden=True)         # hidden: only in the master, run by the grader
    def matches_reference(sub, ref, rng): ...

A question passes when it returns ``None``, scores a fraction when it returns a number in [0, 1], and fails with
its ``AssertionError`` message otherwise. ``sub`` is the submission, ``ref`` the master's reference solution
(``None`` in a student's self-check, so public questions must not use it) and ``rng`` a
``numpy.random.Generator``: seeded with a fixed seed for public questions and with the grading run's secret seed
for hidden ones.
"""

from __future__ import annotations

import builtins
import os
import re
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gdl.grading._notebook import NOT_TESTS, code_cells, exercise_id, read_notebook
from gdl.grading._protocol import ProtocolError, decode_value, encode_value, to_torch
from gdl.grading._sandbox import CallTimeout, GraderError, StudentError, SubmissionTimeout, WorkerCrashed
from gdl.grading._worker import short

__all__ = ["Question", "Exercise", "questions", "load_exercise", "LocalSubmission", "RemoteSubmission",
           "run_questions", "check", "CheckResult", "torch_generator", "assert_close", "as_bool", "shape_checked"]

_REGISTRY: dict[str, dict[str, Question]] = {}


@dataclass
class Question:
    exercise: str
    name: str
    points: float
    hidden: bool
    fn: Callable
    description: str = ""


def questions(exercise: str) -> Callable:
    """A decorator factory registering questions of ``exercise``: ``@question(points=1, hidden=False)``."""
    def question(points: float = 1, hidden: bool = False) -> Callable:
        if points <= 0:
            raise ValueError(f"{exercise}: a question needs positive points, got {points}")

        def wrap(fn: Callable) -> Callable:
            doc = (fn.__doc__ or "").strip().splitlines()
            _REGISTRY.setdefault(exercise, {})[fn.__name__] = Question(
                exercise, fn.__name__, float(points), bool(hidden), fn, doc[0] if doc else "")
            return fn
        return wrap
    return question


def torch_generator(rng: np.random.Generator) -> torch.Generator:
    """A torch generator seeded from ``rng`` (so equivariance_error's inputs follow the run's seed)."""
    return torch.Generator().manual_seed(int(rng.integers(0, 2**62)))


def assert_close(got, expected, what: str, rtol: float = 1e-6, atol: float = 1e-8) -> None:
    """Compare a submission's answer with the reference; the message names what differs, never the source."""
    got, expected = torch.as_tensor(got), torch.as_tensor(expected)
    assert got.shape == expected.shape, f"{what}: shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
    got, expected = got.to(torch.float64), expected.to(torch.float64)
    assert bool(torch.isfinite(got).all()), f"{what}: contains NaN or infinity"
    err = float((got - expected).abs().max()) if got.numel() else 0.0
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    assert err <= atol + rtol * scale, f"{what}: differs from the reference by {err:.2e} (scale {scale:.2e})"


def shape_checked(fn: Callable, what: str, expected: Callable) -> Callable:
    """``fn`` (a submission's function), checked on every call: its answer must have the shape
    ``expected(*args)`` (what the reference returns for these arguments), and at least one element. A question
    hands the checked function to ``gdl.testing.equivariance_error``, so a wrong or empty shape fails the question
    with a message instead of passing a comparison that has nothing to compare."""
    def f(*args):
        y = torch.as_tensor(fn(*args))
        want = tuple(int(d) for d in expected(*args))
        shapes = ", ".join(str(tuple(a.shape)) for a in args if torch.is_tensor(a))
        assert tuple(y.shape) == want, f"{what} returned shape {tuple(y.shape)} for input {shapes}, expected {want}"
        return y
    return f


def as_bool(value, what: str) -> bool:
    """A submission's yes/no answer: a bool, or a single-element bool tensor (e.g. ``(err < tol).all()``)."""
    if isinstance(value, bool):
        return value
    if torch.is_tensor(value) and value.numel() == 1 and value.dtype == torch.bool:
        return bool(value.item())
    shape = f" of shape {tuple(value.shape)} and dtype {value.dtype}" if torch.is_tensor(value) else ""
    raise AssertionError(f"{what} returned a {type(value).__name__}{shape}, not True or False")


# --- submissions: the same interface locally (self-check, reference) and remotely (sandboxed worker) -----------
class _Proxy:
    def function(self, name: str) -> Callable:
        def f(*args, **kwargs):
            return self.call(name, *args, **kwargs)
        f.__name__ = name
        return f

    def call(self, name: str, *args, **kwargs):
        raise NotImplementedError


class LocalSubmission(_Proxy):
    """Functions of a namespace (a student's kernel, or the master's reference solution), called with the same
    data round trip as the sandboxed worker uses, so answers look alike on both paths."""

    def __init__(self, namespace: dict, builders: dict | None = None):
        from gdl.grading.catalogue import BUILDERS

        self.ns, self.builders = namespace, builders or BUILDERS

    def call(self, name, *args, **kwargs):
        fn = self.ns.get(name)
        if fn is None or not callable(fn):
            raise StudentError(f"NameError: the notebook defines no function named {name!r}")
        arrays: list = []
        desc = encode_value(list(args), arrays)
        kdesc = {k: encode_value(v, arrays) for k, v in kwargs.items()}
        arrays = [np.array(a) for a in arrays]
        a = to_torch(decode_value(desc, arrays, builders=self.builders))
        kw = {k: to_torch(decode_value(v, arrays, builders=self.builders)) for k, v in kdesc.items()}
        try:
            with torch.enable_grad():      # as in the worker, whatever context the question runs in
                value = fn(*a, **kw)
        except Exception as e:  # noqa: BLE001
            raise StudentError(short(f"{type(e).__name__}: {e}")) from None
        out: list = []
        vdesc = encode_value(value, out)
        return to_torch(decode_value(vdesc, [np.array(x) for x in out]))


class RemoteSubmission(_Proxy):
    """Functions of a submission running in a :class:`~gdl.grading._sandbox.WorkerSession`."""

    def __init__(self, session):
        self.session = session

    def call(self, name, *args, **kwargs):
        try:
            return to_torch(self.session.call(name, *args, **kwargs))
        except (StudentError, CallTimeout, WorkerCrashed, SubmissionTimeout, ProtocolError, GraderError):
            raise
        except Exception as e:  # noqa: BLE001 - anything else on this side is the grader's failure, not a 0
            raise GraderError(f"{type(e).__name__} while calling {name}(): {str(e)[:200]}") from e


# --- exercises ------------------------------------------------------------------------------------------------
@dataclass
class Exercise:
    id: str
    title: str
    master: Path
    questions: list[Question]
    reference: dict = field(default_factory=dict, repr=False)

    @property
    def max_score(self) -> float:
        return sum(q.points for q in self.questions)


def _title(nb: dict) -> str:
    for c in nb["cells"]:
        if c.get("cell_type") == "markdown":
            for line in "".join(c.get("source", "")).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return ""


def _exec_cells(cells: list[str], ns: dict, where: str) -> None:
    from gdl.grading._worker import cell_source

    for i, src in enumerate(cells):
        exec(compile(cell_source(src), f"<{where} cell {i}>", "exec"), ns)  # noqa: S102 - instructor code


def load_exercise(master: str | Path, reference: bool = True) -> Exercise:
    """Read a master notebook: its questions (public and hidden) and, if asked, its reference solution (the
    master's own code cells, run here, on the trusted side)."""
    master = Path(master)
    nb = read_notebook(master)
    ex = exercise_id(nb, master)
    ref_ns: dict = {"__name__": f"gdl_reference_{ex}"}
    if reference:
        _exec_cells(code_cells(nb, without_tags=set(NOT_TESTS)), ref_ns, f"{master.name} reference")
    _REGISTRY.pop(ex, None)
    # the questions see what they would see in the notebook: the untagged set-up cells (imports), then the test
    # cells; never the solution cells
    _exec_cells(code_cells(nb, without_tags={"solution", "solution-only", "check", "colab"}),
                {"__name__": f"gdl_tests_{ex}"}, f"{master.name} tests")
    qs = list(_REGISTRY.pop(ex, {}).values())
    if not qs:
        raise ValueError(f"{master}: defines no questions for exercise {ex!r}")
    return Exercise(ex, _title(nb), master, qs, ref_ns)


def _rng(seed: int | None, name: str) -> np.random.Generator:
    return np.random.default_rng([0 if seed is None else seed, zlib.crc32(name.encode())])


_BUILTIN_ERRORS = {n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)}
_WHERE = re.compile(r"\((<cell \d+> line \d+)\)$")


def scrub_error(text: str) -> str:
    """An exception text from a hidden question, without anything the submission could fill with the hidden
    inputs: the exception's type if it is a built-in one (a class the submission made up could carry data in its
    name), and where it was raised (``<cell 3> line 7``), never its message."""
    kind = text.split(":", 1)[0].strip()
    if kind == "ProtocolError":      # raised by the worker when the answer is not data; its text names a type
        kind = "ProtocolError: the answer cannot be sent (only arrays, tensors, numbers, booleans, strings, None " \
               "and lists of them)"
    elif kind not in _BUILTIN_ERRORS:
        kind = "an exception"
    m = _WHERE.search(text.strip())
    return f"{kind}{f' ({m.group(1)})' if m else ''} (hidden check: the message is not shown)"


def run_questions(qs: list[Question], sub: _Proxy, ref: _Proxy | None, seed: int | None,
                  on_question: Callable | None = None) -> list[dict]:
    """Run questions; public ones with a fixed seed, hidden ones with ``seed`` (the run's secret)."""
    results, out_of_time = [], None
    for q in qs:
        t0 = time.monotonic()
        r = {"name": q.name, "description": q.description, "max_score": q.points,
             "visibility": "hidden" if q.hidden else "public", "score": 0.0, "passed": False, "message": ""}
        if out_of_time is not None:
            r["message"] = out_of_time
        else:
            try:
                frac = q.fn(sub, ref, _rng(seed if q.hidden else None, q.name))
                frac = 1.0 if frac is None else float(frac)
                if not 0.0 <= frac <= 1.0:
                    raise ValueError(f"question {q.name} returned {frac}, not a fraction in [0, 1]")
                r.update(score=round(frac * q.points, 6), passed=frac == 1.0,
                         message="" if frac == 1.0 else f"partial credit {frac:.0%}")
            except GraderError:
                raise                     # the grader's failure: the submission is not graded, never scored 0
            except AssertionError as e:
                r["message"] = short(str(e) or "assertion failed", 600)
            except StudentError as e:
                r["message"] = f"your code raised {scrub_error(str(e)) if q.hidden else short(str(e))}"
            except CallTimeout as e:
                r["message"] = f"time limit: {e}"
            except SubmissionTimeout as e:
                out_of_time = r["message"] = f"time limit: {e}"
            except WorkerCrashed as e:
                r["message"] = f"the submission crashed: {short(str(e))}"
            except ProtocolError as e:
                r["message"] = f"the answer was not plain data within the limits: {short(str(e))}"
            except Exception as e:  # noqa: BLE001 - a malformed answer (wrong shape or type) fails its question
                text = f"{type(e).__name__}: {e}"
                r["message"] = f"your answer could not be checked: {scrub_error(text) if q.hidden else short(text)}"
        r["seconds"] = round(time.monotonic() - t0, 3)
        results.append(r)
        if on_question is not None:
            on_question(r)
    return results


# --- the students' self-check -------------------------------------------------------------------------------
@dataclass
class CheckResult:
    exercise: str
    results: list[dict]

    @property
    def score(self) -> float:
        return sum(r["score"] for r in self.results)

    @property
    def max_score(self) -> float:
        return sum(r["max_score"] for r in self.results)

    def __str__(self) -> str:
        lines = [f"{self.exercise}: public checks {self.score:g}/{self.max_score:g} points"]
        for r in self.results:
            mark = "PASS" if r["passed"] else "FAIL"
            lines.append(f"  [{mark}] {r['name']} ({r['score']:g}/{r['max_score']:g})"
                         + (f": {r['message']}" if r["message"] else ""))
        lines.append("  (the grader also runs hidden checks with fresh random inputs)")
        return "\n".join(lines)

    __repr__ = __str__


def check(exercise: str, namespace: dict | None = None, verbose: bool = False) -> CheckResult | None:
    """Run the public questions of ``exercise`` against the functions of this notebook (the student's kernel).

    Run the notebook's test cell first (it defines the questions). Works anywhere ``gdl`` is installed (Colab too);
    inside the grader's worker it does nothing, since the grader runs its own copy of the questions. Returns a
    :class:`CheckResult`, which a notebook displays as a PASS/FAIL list when ``check(...)`` ends the cell
    (``verbose=True`` prints it as well).
    """
    if os.environ.get("GDL_GRADING_WORKER"):
        return None
    qs = [q for q in _REGISTRY.get(exercise, {}).values() if not q.hidden]
    if not qs:
        raise ValueError(f"no public questions for exercise {exercise!r}: run the notebook's test cell (the one "
                         f"with questions({exercise!r})) first")
    if namespace is None:
        namespace = sys.modules["__main__"].__dict__
    result = CheckResult(exercise, run_questions(qs, LocalSubmission(namespace), None, None))
    if verbose:
        print(result)
    return result


def master_paths(masters: str | Path) -> list[Path]:
    masters = Path(masters)
    paths = sorted(masters.glob("ex*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"no master notebooks (ex*.ipynb) in {masters}")
    return paths


def find_master(masters: str | Path, exercise: str) -> Path:
    for p in master_paths(masters):
        if exercise_id(read_notebook(p), p) == exercise or p.stem == exercise:
            return p
    raise FileNotFoundError(f"no master notebook for exercise {exercise!r} in {masters}")
