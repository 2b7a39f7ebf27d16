"""Run-time settings shared by every notebook: the device, the experiment scale, seeding."""

from __future__ import annotations

import os
import random
import time

import numpy as np
import torch

__all__ = ["device", "scale", "scaled", "seed_everything", "on_colab", "SCALES", "Stopwatch", "chapter_timer"]

#: Allowed values of the ``GDL_SCALE`` environment variable.
SCALES = ("small", "full")


def device(verbose: bool = True) -> torch.device:
    """Return the best available device: CUDA if present, else Apple MPS, else the CPU.

    Code in ``gdl`` never hard-codes ``.cuda()``; models and tensors are moved with
    ``.to(gdl.device())``. With ``verbose=True`` the choice is printed, so a notebook's
    output says where it ran. ``GDL_DEVICE=cpu`` forces a device.
    """
    forced = os.environ.get("GDL_DEVICE")
    if forced:
        dev = torch.device(forced)
    elif torch.cuda.is_available():
        dev = torch.device("cuda")
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        dev = torch.device("mps")
    else:
        dev = torch.device("cpu")
    if verbose:
        name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
        print(f"gdl: using device {dev.type} ({name})")
    return dev


def scale() -> str:
    """The experiment scale from ``GDL_SCALE``: ``"small"`` (default, a minute on 2 CPU cores
    per notebook) or ``"full"`` (sizes meant for a GPU)."""
    value = os.environ.get("GDL_SCALE", "small").strip().lower() or "small"
    if value not in SCALES:
        raise ValueError(
            f"GDL_SCALE={os.environ.get('GDL_SCALE')!r} is not a valid scale; "
            f"allowed values are {', '.join(repr(s) for s in SCALES)}"
        )
    return value


def scaled(small, full):
    """Pick the value for the current scale: ``n = gdl.scaled(small=200, full=5000)``."""
    return small if scale() == "small" else full


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a torch generator with that seed."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def on_colab() -> bool:
    """True inside Google Colab."""
    import sys

    return "google.colab" in sys.modules


class Stopwatch:
    """Wall time since it was started (or restarted), for a notebook to report its own run time.

    ``str(watch)`` reads ``"wall time 1 min 23 s (GDL_SCALE=small, device cpu)"``.
    """

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> Stopwatch:
        self.start = time.perf_counter()
        return self

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def __str__(self) -> str:
        s = self.seconds
        text = f"{s:.1f} s" if s < 60 else f"{int(s // 60)} min {s % 60:.0f} s"
        return f"wall time {text} (GDL_SCALE={scale()}, device {device(verbose=False).type})"

    __repr__ = __str__


_CHAPTER = Stopwatch()


def chapter_timer() -> Stopwatch:
    """The stopwatch started when ``gdl`` was first imported: the last cell of every chapter prints it, so a
    notebook run top to bottom reports its own wall time (``print(gdl.chapter_timer())``)."""
    return _CHAPTER
