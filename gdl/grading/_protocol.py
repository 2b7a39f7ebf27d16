"""The wire format between the trusted grader and the sandboxed worker: data only, never pickle.

A message is ``len(header) (8 bytes) | header (JSON, UTF-8) | raw array bytes``. The header lists each array as
``{"dtype", "shape", "nbytes"}``; the arrays follow back to back. The reader accepts only the dtypes in
:data:`DTYPES`, checks every size against :class:`Limits` before reading, and rebuilds plain ``numpy.ndarray``
objects with ``numpy.frombuffer`` (so no object produced by the submission survives the trip: a subclass with
a lying ``__eq__`` arrives as its raw bytes).

Values (arguments and return values) are encoded recursively as JSON: ``{"a": i}`` for the i-th array,
``{"n": number}``, ``{"b": bool}``, ``{"s": str}``, ``{"l": [...]}``, ``{"none": 1}`` and, for arguments only,
``{"build": name, "args": [...]}`` (an object the worker builds from the public catalogue
:mod:`gdl.grading.catalogue`).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

DTYPES = {"float64", "float32", "int64", "int32", "bool", "uint8"}


@dataclass(frozen=True)
class Build:
    """An argument the worker builds from the public catalogue: ``Build("set_model", lam, gam, bias, w)``."""

    name: str
    args: tuple = ()

    def __init__(self, name: str, *args):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "args", args)


class ProtocolError(Exception):
    """The other side sent something that is not a well-formed, within-limits message."""


@dataclass(frozen=True)
class Limits:
    header_bytes: int = 1 << 20       # 1 MiB of JSON
    total_bytes: int = 64 << 20       # 64 MiB of array data per message
    n_arrays: int = 256
    ndim: int = 8
    depth: int = 6                    # nesting of lists in a value
    string_chars: int = 2000


def _read_exact(fp: BinaryIO, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        b = fp.read(n - got)
        if not b:
            raise EOFError("the other side closed the channel")
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


def write_message(fp: BinaryIO, header: dict, arrays: list[np.ndarray] = ()) -> None:
    specs, blobs = [], []
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        if a.dtype.name not in DTYPES:
            raise ProtocolError(f"cannot send arrays of dtype {a.dtype.name}")
        b = a.tobytes()
        specs.append({"dtype": a.dtype.name, "shape": list(a.shape), "nbytes": len(b)})
        blobs.append(b)
    head = json.dumps({**header, "arrays": specs}, allow_nan=True).encode()
    fp.write(struct.pack("<Q", len(head)) + head)
    for b in blobs:
        fp.write(b)
    fp.flush()


def read_message(fp: BinaryIO, limits: Limits = Limits()) -> tuple[dict, list[np.ndarray]]:
    (n,) = struct.unpack("<Q", _read_exact(fp, 8))
    if n > limits.header_bytes:
        raise ProtocolError(f"message header of {n} bytes exceeds the limit of {limits.header_bytes}")
    try:
        header = json.loads(_read_exact(fp, n).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProtocolError(f"malformed message header: {e}") from None
    if not isinstance(header, dict) or not isinstance(header.get("arrays"), list):
        raise ProtocolError("message header is not an object with an 'arrays' list")
    specs = header.pop("arrays")
    if len(specs) > limits.n_arrays:
        raise ProtocolError(f"{len(specs)} arrays exceed the limit of {limits.n_arrays}")
    total, parsed = 0, []
    for s in specs:
        try:
            dtype, shape, nbytes = str(s["dtype"]), [int(d) for d in s["shape"]], int(s["nbytes"])
        except (KeyError, TypeError, ValueError):
            raise ProtocolError("malformed array description") from None
        if dtype not in DTYPES or len(shape) > limits.ndim or any(d < 0 for d in shape):
            raise ProtocolError(f"array of dtype {dtype[:20]!r} and {len(shape)} dims is not accepted")
        if nbytes != math.prod(shape) * np.dtype(dtype).itemsize:
            raise ProtocolError("array size does not match its shape")
        total += nbytes
        if total > limits.total_bytes:
            raise ProtocolError(f"message data exceed the limit of {limits.total_bytes >> 20} MiB")
        parsed.append((dtype, shape, nbytes))
    arrays = [np.frombuffer(_read_exact(fp, nb), dtype=dt).reshape(sh).copy() for dt, sh, nb in parsed]
    return header, arrays


# --- values --------------------------------------------------------------------------------------------------
def encode_value(value: Any, arrays: list, depth: int = 0, limits: Limits = Limits()) -> dict:
    """JSON-able description of ``value``; arrays appended to ``arrays``. Tensors become numpy arrays."""
    if depth > limits.depth:
        raise ProtocolError("value nested too deeply")
    if value is None:
        return {"none": 1}
    if isinstance(value, Build):
        return {"build": value.name, "args": [encode_value(a, arrays, depth + 1, limits) for a in value.args]}
    if isinstance(value, (bool, np.bool_)):
        return {"b": bool(value)}
    if isinstance(value, (int, float, np.integer, np.floating)):
        return {"n": value.item() if hasattr(value, "item") else value}
    if isinstance(value, str):
        return {"s": value[: limits.string_chars]}
    if isinstance(value, (list, tuple)):
        return {"l": [encode_value(v, arrays, depth + 1, limits) for v in value]}
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if value.dtype.name not in DTYPES:
            raise ProtocolError(f"arrays of dtype {value.dtype.name} are not accepted")
        arrays.append(np.asarray(value))
        return {"a": len(arrays) - 1}
    raise ProtocolError(f"a value of type {type(value).__name__[:60]} cannot be sent (only arrays, tensors, "
                        f"numbers, booleans, strings, None and lists of them)")


def to_torch(value: Any) -> Any:
    """A decoded value with its arrays as torch tensors (lists element by element); anything else unchanged."""
    import torch

    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, list):
        return [to_torch(v) for v in value]
    return value


def decode_value(desc: Any, arrays: list[np.ndarray], depth: int = 0, limits: Limits = Limits(),
                 builders: dict | None = None) -> Any:
    """Inverse of :func:`encode_value` (``build`` entries only when ``builders`` is given)."""
    if depth > limits.depth or not isinstance(desc, dict) or len(desc) not in (1, 2):
        raise ProtocolError("malformed value")
    if "none" in desc:
        return None
    if "b" in desc:
        return bool(desc["b"])
    if "n" in desc:
        v = desc["n"]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ProtocolError("malformed number")
        return v
    if "s" in desc:
        return str(desc["s"])[: limits.string_chars]
    if "a" in desc:
        i = desc["a"]
        if not isinstance(i, int) or not 0 <= i < len(arrays):
            raise ProtocolError("reference to a missing array")
        return arrays[i]
    if "l" in desc and isinstance(desc["l"], list):
        return [decode_value(d, arrays, depth + 1, limits, builders) for d in desc["l"]]
    if "build" in desc and builders is not None:
        name = desc["build"]
        if name not in builders:
            raise ProtocolError(f"unknown catalogue object {str(name)[:40]!r}")
        return builders[name](*decode_value({"l": desc.get("args", [])}, arrays, depth + 1, limits, builders))
    raise ProtocolError("malformed value")
