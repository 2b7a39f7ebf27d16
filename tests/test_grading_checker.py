"""The checker refuses empty inputs and outputs; exercise 1's questions check shapes and draw batch sizes from
the secret seed (issue 22, item 7)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gdl.grading import LocalSubmission, load_exercise, run_questions
from gdl.groups import SetAction, SymmetricGroup, TrivialAction
from gdl.testing import equivariance_error

MASTER = Path(__file__).resolve().parent.parent / "exercises" / "masters" / "ex01_permutation_invariance.ipynb"


def test_equivariance_error_refuses_empty_output_and_input():
    S4 = SymmetricGroup(4)
    kw = dict(group=S4, in_action=SetAction(S4, dim=-1), out_action=TrivialAction(S4))
    x = torch.randn(6, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="output is empty"):
        equivariance_error(lambda t: t[:, :0].sum(-1)[:0], x, **kw)
    with pytest.raises(ValueError, match="input is empty"):
        equivariance_error(lambda t: t.sum(-1), x[:0], **kw)
    assert equivariance_error(lambda t: t.sum(-1), x, **kw).passed


CHEATS = {
    # invariant_i return an empty tensor: "0 error" on today's checker
    "empty": "def _f(x):\n    return x[:0, 0]\n",
    # a wrong shape that still has zero error: one number for the whole batch
    "one number": "def _f(x):\n    return x.sum().reshape(1)\n",
    # invariant only when the batch looks like a check (batch size 6), position-dependent otherwise
    "tells checks apart": "def _f(x):\n    return x.sum(-1) if x.shape[0] == 6 else x[:, 0]\n",
}


@pytest.mark.parametrize("cheat", list(CHEATS))
def test_ex01_cheats_earn_nothing_on_invariance(cheat):
    ex = load_exercise(MASTER)
    ns: dict = {}
    exec("import torch\n" + CHEATS[cheat] + "invariant_1 = invariant_2 = invariant_3 = _f\n"  # noqa: S102
         "def not_invariant(x):\n    return x[:, 0] - x[:, 1]\n", ns)
    res = {r["name"]: r for r in run_questions(ex.questions, LocalSubmission(ns), LocalSubmission(ex.reference),
                                               seed=12345)}
    assert res["three_are_invariant"]["score"] == 0, res["three_are_invariant"]
    assert res["invariant_for_any_n"]["score"] == 0, res["invariant_for_any_n"]


def test_ex01_hidden_batch_sizes_follow_the_secret_seed():
    ex = load_exercise(MASTER)
    seen: dict[int, set] = {}
    for seed in (1, 2, 3):
        sizes: set = set()
        ns: dict = {}
        exec("import torch\n"  # noqa: S102
             "def invariant_1(x):\n    SIZES.add(x.shape[0])\n    return x.sum(-1)\n"
             "invariant_2 = invariant_3 = invariant_1\n"
             "def not_invariant(x):\n    SIZES.add(x.shape[0])\n    return x[:, 0] - x[:, 1]\n", ns)
        ns["SIZES"] = sizes
        run_questions([q for q in ex.questions if q.hidden], LocalSubmission(ns), LocalSubmission(ex.reference), seed)
        seen[seed] = sizes
    assert len(set.union(*seen.values())) > 3 and len({frozenset(v) for v in seen.values()}) > 1, seen
    assert np.all([6 not in v or len(v) > 1 for v in seen.values()])
