"""The exercises from ex09 on: the master's reference passes every question, and each question set catches
plausible wrong answers (mutants), in the manner of tests/test_grading.py's MUTANTS."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gdl.grading import LocalSubmission, find_master, load_exercise, run_questions

MASTERS = Path(__file__).resolve().parent.parent / "exercises" / "masters"
NEW = ["ex09", "ex10", "ex11", "ex12", "ex13", "ex14"]


def _adjacency(edges, n):
    a = torch.zeros(n, n, dtype=torch.float64)
    for i, j in edges:
        a[i, j] = a[j, i] = 1.0
    return a


def _cycle(n):
    return _adjacency([(i, (i + 1) % n) for i in range(n)], n)


def _mean_aggregation(x, adj, w_self, w_nbr):
    deg = adj.sum(-1, keepdim=True).clamp_min(1)
    return torch.relu(x @ w_self + (adj @ x / deg) @ w_nbr)


def _isomorphic_pair():
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    c = _cycle(6)
    return c, c[perm][:, perm]


def _not_wl_equivalent():
    return _cycle(6), _adjacency([(i, i + 1) for i in range(5)], 6)          # a 6-cycle and a 6-path


def _message(f, r, w0, w2, normalize=True):
    from e3nn import o3

    out = 0
    for J, w in ((0, w0), (2, w2)):
        Y = o3.spherical_harmonics(J, r, normalize=normalize, normalization="component")
        out = out + w * torch.einsum("iko,ei,ek->eo", o3.wigner_3j(1, J, 1, dtype=f.dtype), f, Y)
    return out


def _with_cross_product_path(f, r, w0, w2):
    return _message(f, r, w0, w2) + 0.5 * torch.linalg.cross(f, r / r.norm(dim=-1, keepdim=True))


def _egnn(h, x, w_e, w_x, w_h, sign=1.0, dot_product=False):
    n = h.shape[1]
    diff = x[:, :, None, :] - x[:, None, :, :]
    geometry = (x[:, :, None, :] * x[:, None, :, :]).sum(-1, keepdim=True) if dot_product else \
        (diff ** 2).sum(-1, keepdim=True)
    pair = torch.cat([h[:, :, None, :].expand(-1, -1, n, -1), h[:, None, :, :].expand(-1, n, -1, -1), geometry], -1)
    m = torch.tanh(pair @ w_e) * (1.0 - torch.eye(n, dtype=h.dtype)[..., None])
    x_new = x + sign * (diff * (m @ w_x)[..., None]).sum(2) / (n - 1)
    return h + torch.tanh(torch.cat([h, m.sum(2)], -1) @ w_h), x_new


def _group_conv(x, psi, turn=True, cycle=True):
    import torch.nn.functional as F

    outputs = []
    for r in range(4):
        filt = torch.stack([torch.rot90(psi[(s - r) % 4 if cycle else s], r if turn else 0, dims=(0, 1))
                            for s in range(4)])
        outputs.append(F.conv2d(x, filt[None], padding=psi.shape[-1] // 2))
    return torch.cat(outputs, dim=1)


def _diagnose(y, y_moved, Q, absolute=False, parity=True):
    candidates = [y, y @ Q.T] + ([torch.linalg.det(Q) * (y @ Q.T)] if parity else [])
    for label, expected in enumerate(candidates):
        bound = 1e-6 if absolute else 1e-6 * expected.abs().max()
        if (y_moved - expected).abs().max() < bound:
            return label
    return 3


MUTANTS = {
    "ex09 mean, not sum, over neighbours": ("ex09", {"mp_layer": _mean_aggregation},
                                            {"mp_known_value", "mp_matches_reference"}),
    "ex09 a graph and its relabelling": ("ex09", {"wl_equivalent_pair": _isomorphic_pair}, {"pair_is_valid"}),
    "ex09 a pair that 1-WL separates": ("ex09", {"wl_equivalent_pair": _not_wl_equivalent},
                                        {"pair_is_1wl_equivalent", "pair_fools_the_layer"}),
    "ex10 the cross-product path too": ("ex10", {"tp_message": _with_cross_product_path},
                                        {"scalar_path_value", "message_is_o3_equivariant", "message_matches_reference",
                                         "message_is_equivariant_for_random_weights"}),
    "ex10 harmonics of r, not of its direction": ("ex10", {"tp_message": lambda f, r, w0, w2: _message(
        f, r, w0, w2, normalize=False)}, {"message_matches_reference", "message_is_equivariant_for_random_weights"}),
    "ex11 x_j - x_i instead of x_i - x_j": ("ex11", {"egnn_layer": lambda *a: _egnn(*a, sign=-1.0)},
                                             {"two_points_known_value", "layer_matches_reference"}),
    "ex11 raw coordinates in the message": ("ex11", {"egnn_layer": lambda *a: _egnn(*a, dot_product=True)},
                                            {"two_points_known_value", "layer_is_e3_equivariant",
                                             "layer_matches_reference"}),
    "ex12 no division by |G|": ("ex12", {"multiplicities": lambda chi, table: table @ chi},
                                {"decomposes_the_permutation_rep", "decomposes_a_disguised_sum",
                                 "decomposes_random_sums", "multiplicities_match_reference"}),
    "ex12 sum of all entries, not the trace": ("ex12", {"characters": lambda mats: mats.sum((-1, -2))},
                                               {"characters_of_permutations", "decomposes_a_disguised_sum",
                                                "decomposes_random_sums"}),
    "ex13 filters not turned": ("ex13", {"group_conv_c4": lambda x, psi: _group_conv(x, psi, turn=False)},
                                {"conv_is_equivariant", "conv_matches_reference"}),
    "ex13 orientations not read relative to r": ("ex13", {"group_conv_c4": lambda x, psi: _group_conv(
        x, psi, cycle=False)}, {"conv_known_value", "conv_is_equivariant", "conv_matches_reference"}),
    "ex14 an absolute tolerance": ("ex14", {"diagnose": lambda *a: _diagnose(*a, absolute=True)},
                                   {"labels_do_not_depend_on_units"}),
    "ex14 no pseudovectors": ("ex14", {"diagnose": lambda *a: _diagnose(*a, parity=False)},
                              {"labels_a_mirror", "labels_random_reflections", "labels_do_not_depend_on_units",
                               "labels_real_models"}),
}


@pytest.mark.parametrize("exercise_id", NEW)
@pytest.mark.parametrize("seed", [4242, 7])
def test_reference_passes_every_question(exercise_id, seed):
    ex = load_exercise(find_master(MASTERS, exercise_id))
    assert any(q.hidden for q in ex.questions) and any(not q.hidden for q in ex.questions)
    results = run_questions(ex.questions, LocalSubmission(ex.reference), LocalSubmission(ex.reference), seed=seed)
    assert all(r["passed"] for r in results), [(r["name"], r["message"]) for r in results if not r["passed"]]


@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_questions_catch_plausible_mistakes(mutant):
    exercise_id, changes, failing = MUTANTS[mutant]
    ex = load_exercise(find_master(MASTERS, exercise_id))
    ns = dict(ex.reference)
    ns.update(changes)
    results = run_questions(ex.questions, LocalSubmission(ns), LocalSubmission(ex.reference), seed=4242)
    assert {r["name"] for r in results if not r["passed"]} == failing, [(r["name"], r["message"]) for r in results]
