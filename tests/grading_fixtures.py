"""What the grader tests share: the exercise they grade, honest and failing submissions, programs that fork, and
the skip marker for machines without bubblewrap."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MASTER = ROOT / "exercises" / "masters" / "ex07_deepsets_layer.ipynb"

needs_bwrap = pytest.mark.skipif(not shutil.which("bwrap") and not os.path.exists("/usr/bin/bwrap"),
                                 reason="bubblewrap is not installed (scripts/setup.sh installs it)")

# A full-score answer to exercise 7 (the DeepSets layer).
CORRECT = '''
import torch

def deepsets_layer(x, lam, gam):
    return x @ lam + x.sum(dim=1, keepdim=True) @ gam

def set_summary(x, lam, gam):
    return torch.tanh(x @ lam + x.sum(dim=1, keepdim=True) @ gam).sum(dim=1)
'''


def forking(count: int, child_seconds: int, then: str) -> str:
    """A submission that forks up to ``count`` children that sleep ``child_seconds`` each, then runs ``then``."""
    return f'''
import os, time
n = 0
try:
    for _ in range({count}):
        if os.fork() == 0:
            time.sleep({child_seconds})
            os._exit(0)
        n += 1
except OSError:
    pass
{then}
'''
