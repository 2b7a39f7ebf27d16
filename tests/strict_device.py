"""A stand-in accelerator on a CPU-only machine: CUDA's one-device rule, enforced on CPU tensors.

On a GPU, ``model(x)`` with the model on ``cuda`` and ``x`` on the CPU raises "Expected all tensors to be on the same
device"; on a CPU-only machine the same code runs, so a test run there never sees the bug (chapter 7 had one). This
module makes the CPU behave like a second device:

* ``gdl.device()`` returns ``cpu:0`` (``GDL_DEVICE=cpu:0``), a device that computes on the CPU but that this module
  can tell apart from a plain ``cpu``;
* a :class:`torch.overrides.TorchFunctionMode` follows every tensor's *place*: ``"device"`` once it was sent to
  ``cpu:0`` (``t.to(device)``, ``module.to(device)``, ``torch.zeros(..., device=device)``), ``"host"`` when it was made
  on the host (a factory without ``device=``, ``torch.as_tensor(numpy_array)``, ``t.cpu()``, ``t.to("cpu")``, a
  module's parameters before ``module.to(device)``); the result of an operation takes its inputs' place. A device
  tensor reports ``t.device == cpu:0`` (so ``device=x.device`` and ``t.device == dev`` work as on CUDA). A tensor
  made outside torch's Python API (by autograd: gradients) has no place and takes the one it meets;
* an operation whose inputs include both a device tensor and a host tensor (0-d tensors excepted, as on CUDA) raises
  :class:`DeviceMismatch`, like CUDA; so does turning a device tensor into a NumPy array (``t.numpy()``,
  ``np.asarray(t)``), which on CUDA needs ``.cpu()`` first. Indexing a device tensor with host indices and copies
  between places (``t.to``, ``copy_``, ``new_tensor``) are allowed, as on CUDA.

``install()`` turns it on for the rest of the process (a notebook kernel: ``tests/test_device_hygiene.py`` runs
chapters this way).
"""

from __future__ import annotations

import os

import torch
from torch.overrides import TorchFunctionMode

__all__ = ["DeviceMismatch", "STRICT", "StrictDevice", "install", "place"]

STRICT = torch.device("cpu", 0)
_ATTR = "_gdl_place"
Tensor = torch.Tensor
_COPIES = {Tensor.copy_, Tensor.new_tensor, Tensor.new_zeros, Tensor.new_ones, Tensor.new_empty, Tensor.new_full}
_TO_NUMPY = {Tensor.numpy, Tensor.__array__}
_DEVICE_PROPERTY = Tensor.device


class DeviceMismatch(RuntimeError):
    """A host tensor met a device tensor (what CUDA refuses)."""


def place(t: Tensor) -> str | None:
    """``"device"``, ``"host"`` or ``None`` (not known: takes the place of what it meets)."""
    p = t.__dict__.get(_ATTR)
    if p is None and isinstance(t, torch.nn.Parameter):
        return "host"                       # a module's parameters start on the host
    return p


def _mark(out, p: str | None) -> None:
    if p is None:
        return
    if isinstance(out, Tensor):
        out.__dict__[_ATTR] = p
    elif isinstance(out, (tuple, list)):
        for o in out:
            if isinstance(o, Tensor):
                o.__dict__[_ATTR] = p


def _target(dev) -> str | None:
    """The place a ``device=`` argument sends to: ``cpu:0`` is the device, ``cpu`` the host; ``None``: no argument."""
    if dev is None:
        return None
    dev = torch.device(dev)
    if dev == STRICT:
        return "device"
    if dev.type != "cpu":
        raise DeviceMismatch(f"strict device mode: a tensor was sent to {dev}; only {STRICT} (gdl.device()) exists")
    return "host"


def _tensors(args, kwargs):
    for a in (*args, *kwargs.values()):
        if isinstance(a, Tensor):
            yield a
        elif isinstance(a, (list, tuple)):
            for b in a:
                if isinstance(b, Tensor):
                    yield b


def _describe(func) -> str:
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)


class StrictDevice(TorchFunctionMode):
    """Follows host/device places through torch operations and refuses to mix them (see the module docstring)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if getattr(func, "__self__", None) is _DEVICE_PROPERTY:      # t.device: cpu:0 for a device tensor
            return STRICT if place(args[0]) == "device" else func(*args, **kwargs)
        if name in ("__get__", "__set__", "__delete__"):
            return func(*args, **kwargs)            # properties (.shape, .data = ...)
        private = name.startswith("_") and not name.startswith("__")   # torch's own helpers: follow, never refuse
        if func is Tensor.cpu:
            out = func(*args, **kwargs)
            _mark(out, "host")
            return out
        if func is Tensor.to or func in _COPIES:
            dev = kwargs.get("device")
            for a in args[1:]:
                if isinstance(a, (str, torch.device)):
                    dev = a
                elif isinstance(a, Tensor) and func is Tensor.to:
                    dev = None
                    out = func(*args, **kwargs)
                    _mark(out, place(a))
                    return out
            out = func(*args, **kwargs)
            target = _target(dev)
            _mark(out, place(args[0]) if target is None else target)
            return out
        if func in _TO_NUMPY and args and place(args[0]) == "device":
            raise DeviceMismatch("strict device mode: a device tensor converted to NumPy (on CUDA this fails: "
                                 "call .cpu() first)")
        if func is Tensor.__getitem__:
            out = func(*args, **kwargs)
            _mark(out, place(args[0]))
            return out
        if func is Tensor.__setitem__:
            seen = [args[0], args[2]] if len(args) > 2 and isinstance(args[2], Tensor) else [args[0]]
        else:
            seen = list(_tensors(args, kwargs))
        target = _target(kwargs.get("device"))
        dev_in = host_in = None
        for t in seen:
            p = place(t)
            if p == "device":
                dev_in = t if dev_in is None else dev_in
            elif p == "host" and t.dim() > 0:
                host_in = t if host_in is None else host_in
        if dev_in is not None and host_in is not None and target is None and not private:
            raise DeviceMismatch(
                f"Expected all tensors to be on the same device, but {_describe(func)} got a tensor on gdl.device() "
                f"(shape {tuple(dev_in.shape)}) and a host tensor (shape {tuple(host_in.shape)}): move the host one "
                "with .to(gdl.device()) (strict device mode, tests/strict_device.py)")
        out = func(*args, **kwargs)
        if target is not None:
            _mark(out, target)
        elif dev_in is not None:
            _mark(out, "device")
        elif host_in is not None or (not seen and isinstance(out, Tensor)):
            _mark(out, "host")                                  # a factory without device=: made on the host
        elif any(place(t) == "host" for t in seen):
            _mark(out, "host")
        return out


def _module_to(original):
    def to(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        dev = torch._C._nn._parse_to(*args, **kwargs)[0]
        if dev is not None and _target(dev) == "device":
            for p in self.parameters():
                p.__dict__[_ATTR] = "device"
        return out
    return to


def _module_cpu(original):
    def cpu(self):
        out = original(self)
        for p in self.parameters():
            p.__dict__[_ATTR] = "host"
        return out
    return cpu


def _parameter_deepcopy(original):
    def __deepcopy__(self, memo):
        out = original(self, memo)                  # a new Parameter: keeps the place of the one copied
        if _ATTR in self.__dict__:
            out.__dict__[_ATTR] = self.__dict__[_ATTR]
        return out
    return __deepcopy__


PATCHES = {(torch.nn.Module, "to"): _module_to, (torch.nn.Module, "cpu"): _module_cpu,
           (torch.nn.Parameter, "__deepcopy__"): _parameter_deepcopy}

_MODE: StrictDevice | None = None


def install() -> None:
    """Turn strict device mode on for this process: ``GDL_DEVICE=cpu:0``, the mode, and ``Module.to``/``Module.cpu``
    marking parameters (a deep copy keeps the mark). Idempotent."""
    global _MODE
    if _MODE is not None:
        return
    os.environ["GDL_DEVICE"] = str(STRICT)
    for (cls, name), wrap in PATCHES.items():
        setattr(cls, name, wrap(getattr(cls, name)))
    _MODE = StrictDevice()
    _MODE.__enter__()
