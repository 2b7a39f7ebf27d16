"""The structured checker: batches of graphs and sets, product groups, several outputs, caller-chosen seeds.

Every feature has a deliberately broken model that must fail.
"""

import pytest
import torch
from torch import nn

from gdl.data import GraphBatch, collate, unbatch
from gdl.groups import (
    E3,
    SE3,
    BatchSymmetricGroup,
    CyclicGroup,
    FieldsAction,
    GroupMismatchError,
    ProductGroup,
    ShapeError,
    SymmetricGroup,
)
from gdl.testing import assert_equivariant, equivariance_error


# --- data --------------------------------------------------------------------------------------------
def _graphs(sizes=(3, 5, 7), channels=4, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    items = []
    for n in sizes:
        i, j = torch.triu_indices(n, n, 1)
        keep = torch.rand(i.shape[0], generator=g) < 0.5
        ei = torch.cat([torch.stack([i[keep], j[keep]]), torch.stack([j[keep], i[keep]])], 1)
        items.append({"x": torch.randn(n, channels, generator=g, dtype=dtype), "edge_index": ei,
                      "pos": torch.randn(n, 3, generator=g, dtype=dtype) * 1.5,
                      "z": torch.randint(0, 3, (n,), generator=g)})
    return collate(items)


def _scatter_sum(src, index, size):
    return torch.zeros(size, *src.shape[1:], dtype=src.dtype, device=src.device).index_add_(0, index, src)


# --- toy models ---------------------------------------------------------------------------------------
class ToyMessagePassing(nn.Module):
    """h_i = W1 x_i + sum_{j -> i} W2 x_j (+ the mean over the whole batch when ``leak_between_graphs``)."""

    def __init__(self, c=4, leak_between_graphs=False):
        super().__init__()
        self.self_ = nn.Linear(c, c)
        self.neigh = nn.Linear(c, c, bias=False)
        self.leak = leak_between_graphs

    def forward(self, batch: GraphBatch):
        src, dst = batch.edge_index
        h = self.self_(batch.x) + _scatter_sum(self.neigh(batch.x)[src], dst, batch.num_nodes)
        if self.leak:
            h = h + batch.x.mean(0)          # mixes every graph of the batch: wrong
        return torch.tanh(h)


class PaddedDeepSet(nn.Module):
    """rho(sum_i phi(x_i)) over the valid entries of padded sets (x (B, N_max, C), mask (B, N_max))."""

    def __init__(self, c=3, leak_padding=False):
        super().__init__()
        self.phi = nn.Sequential(nn.Linear(c, 8), nn.Tanh())
        self.rho = nn.Linear(8, 2)
        self.leak = leak_padding

    def forward(self, data):
        h = self.phi(data["x"])                                   # (B, N_max, 8)
        if not self.leak:
            h = h * data["mask"][..., None]
        return self.rho(h.sum(1))                                 # (B, 2)


class ToyEnergy(nn.Module):
    """E = sum over pairs of an MLP of the distance, per graph; forces = -dE/dpos (+ an optional error)."""

    def __init__(self, force_error=0.0, offset=1e4):
        super().__init__()
        self.pair = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1))
        self.force_error, self.offset = force_error, offset

    def forward(self, batch: GraphBatch):
        with torch.enable_grad():
            pos = batch.pos if batch.pos.requires_grad else batch.pos.detach().requires_grad_(True)
            same = batch.batch[:, None] == batch.batch[None, :]
            d = (pos[:, None] - pos[None, :]).pow(2).sum(-1).add(1e-12).sqrt()
            pair = self.pair(d[..., None]).squeeze(-1) * same * (1 - torch.eye(len(pos), dtype=pos.dtype))
            energy = _scatter_sum(pair.sum(1), batch.batch, batch.num_graphs) + self.offset   # large energies
            forces = -torch.autograd.grad(energy.sum(), pos, create_graph=True)[0]
        if self.force_error:
            # a tiny systematic error along a fixed axis: not equivariant
            forces = forces + self.force_error * forces.abs().max() * torch.tensor([1.0, 0.0, 0.0], dtype=pos.dtype)
        return {"energy": energy, "forces": forces}


def _e3_x_sn(batch):
    return ProductGroup(E3(), BatchSymmetricGroup(batch.sizes))


# --- the done-means cases of the issue ------------------------------------------------------------------
def test_message_passing_on_graphs_of_sizes_3_5_7_passes(dtype, float_tolerance):
    batch = _graphs()
    G = BatchSymmetricGroup(batch.sizes)
    report = assert_equivariant(ToyMessagePassing(), batch, group=G, in_action=FieldsAction(G),
                                out_action=FieldsAction(G, out="node scalar"), dtype=dtype)
    assert report.worst < float_tolerance
    assert set(report.checks) == {"batch independence"}
    assert len(report.elements) == 16


def test_batch_wide_mean_fails_only_the_batch_independence_check():
    batch = _graphs()
    G = BatchSymmetricGroup(batch.sizes)
    report = equivariance_error(ToyMessagePassing(leak_between_graphs=True), batch, group=G,
                                in_action=FieldsAction(G), out_action=FieldsAction(G, out="node scalar"))
    assert float(report.errors.max()) < 1e-12            # relabelling within graphs cannot see the mixing ...
    assert report.checks["batch independence"]["out"] > 1e-3   # ... running each graph alone does
    assert not report.passed and "batch independence" in str(report)


def test_padded_set_model_passes_and_padding_leak_fails():
    g = torch.Generator().manual_seed(1)
    sizes = (2, 5, 3)
    x = torch.randn(3, 5, 3, generator=g, dtype=torch.float64)
    mask = torch.arange(5)[None] < torch.tensor(sizes)[:, None]
    data = {"x": x * mask[..., None], "mask": mask}
    G = BatchSymmetricGroup(sizes)
    kwargs = dict(group=G, in_action=FieldsAction(G, default="padded scalar"),
                  out_action=FieldsAction(G, out="graph scalar"))
    good = assert_equivariant(PaddedDeepSet(), data, **kwargs)
    assert good.checks["padding"]["out"] < 1e-12
    bad = equivariance_error(PaddedDeepSet(leak_padding=True), data, **kwargs)
    assert bad.checks["padding"]["out"] > 1e-2 and not bad.passed


def test_energy_and_autograd_forces_pass_e3_x_sn():
    batch = _graphs()
    G = _e3_x_sn(batch)
    report = assert_equivariant(ToyEnergy(), batch, group=G, in_action=FieldsAction(G, pos="point"),
                                out_action=FieldsAction(G, energy="graph scalar", forces="node vector"))
    assert set(report.field_errors) == {"energy", "forces"}
    assert float(report.field_errors["forces"].max()) < 1e-12


def test_forces_off_by_1e_minus_3_fail_although_energies_are_large():
    batch = _graphs()
    G = _e3_x_sn(batch)
    kwargs = dict(group=G, in_action=FieldsAction(G, pos="point"),
                  out_action=FieldsAction(G, energy="graph scalar", forces="node vector"))
    report = equivariance_error(ToyEnergy(force_error=1e-3), batch, **kwargs)
    assert not report.passed and report.worst_field == "forces"
    assert float(report.field_errors["energy"].max()) < 1e-12
    assert float(report.field_errors["forces"].max()) > 1e-4
    assert "'forces'" in str(report) and "above tolerance" in str(report)
    # one relative error over all outputs together would have hidden it behind the energies (~1e4): below the
    # float32 tolerance
    torch.manual_seed(0)
    bad = ToyEnergy(force_error=1e-3).double()
    torch.manual_seed(0)
    good = ToyEnergy().double()
    out, ref = bad(batch), good(batch)
    assert max((out[k] - ref[k]).abs().max() for k in out) / max(ref[k].abs().max() for k in ref) < 1e-4


def test_permuting_across_graphs_is_not_an_element():
    G = BatchSymmetricGroup((2, 3))
    with pytest.raises(ValueError, match="permutation 0"):
        G.element(((0, 2), (0, 1, 2)))
    g = G.element(((1, 0), (2, 0, 1)))
    assert G.node_permutation(g).tolist() == [1, 0, 4, 2, 3]


def test_product_groups_exhaustive_when_small_and_sampled_otherwise():
    G = ProductGroup(CyclicGroup(4), SymmetricGroup(3))
    assert G.order == 24 and len(G.elements()) == 24
    assert G.axioms_error()["associativity"] == 0
    H = ProductGroup(SE3(), BatchSymmetricGroup((3, 4)))
    assert not H.is_finite and len(H.sample(5, 0)) == 5
    assert H.axioms_error(n=4)["associativity"] < 1e-12
    # C4 x S3 acting on point clouds in the plane (rotation) and on node labels: every element checked
    sizes = (3,)
    P = ProductGroup(CyclicGroup(4), BatchSymmetricGroup(sizes))
    batch = collate([{"pos": torch.randn(3, 2, dtype=torch.float64)}])
    report = assert_equivariant(lambda b: b.pos * 2, batch, group=P, in_action=FieldsAction(P, pos="vector"),
                                out_action=FieldsAction(P, out="node vector"))
    assert len(report.elements) == 24


def test_adversarial_search_runs_over_both_factors():
    batch = _graphs(sizes=(3, 4))
    G = _e3_x_sn(batch)

    def almost(b):        # equivariant except for a tiny term that grows with |pos|^3
        return b.pos + 1e-6 * b.pos.pow(3)

    kwargs = dict(group=G, in_action=FieldsAction(G, pos="vector"), out_action=FieldsAction(G, out="node vector"),
                  n_elements=3)
    plain = equivariance_error(almost, batch, **kwargs)
    searched = equivariance_error(almost, batch, adversarial_steps=30, adversarial_lr=0.5, **kwargs)
    assert searched.worst > 3 * plain.worst > 0


def test_seeds_come_from_the_caller():
    batch = _graphs()
    G = _e3_x_sn(batch)
    kwargs = dict(group=G, in_action=FieldsAction(G, pos="point"),
                  out_action=FieldsAction(G, energy="graph scalar", forces="node vector"), n_elements=2)
    torch.manual_seed(0)
    model = ToyEnergy()
    a = equivariance_error(model, batch, seed=torch.Generator().manual_seed(123), **kwargs)
    b = equivariance_error(model, batch, seed=torch.Generator().manual_seed(123), **kwargs)
    c = equivariance_error(model, batch, seed=torch.Generator().manual_seed(124), **kwargs)
    assert [g.value[1] for g in a.elements] == [g.value[1] for g in b.elements]
    assert [g.value[1] for g in a.elements] != [g.value[1] for g in c.elements]
    # random inputs come from the same generator
    fa = equivariance_error(model, None, seed=5, **{**kwargs, "in_action": FieldsAction(G, pos="point")})
    fb = equivariance_error(model, None, seed=5, **{**kwargs, "in_action": FieldsAction(G, pos="point")})
    assert torch.equal(fa.errors, fb.errors)
    with pytest.raises(TypeError, match="seed"):
        equivariance_error(model, batch, seed="secret", **kwargs)


# --- actions and batches --------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["point", "vector", "pseudovector", "irreps:1x0e+1x1o+1x2e"])
def test_fields_action_satisfies_the_axioms(spec):
    batch = _graphs(sizes=(2, 3))
    G = _e3_x_sn(batch)
    dim = {"point": 3, "vector": 3, "pseudovector": 3}.get(spec, 9)
    batch = batch.replace(f=torch.randn(batch.num_nodes, dim, dtype=torch.float64))
    A = FieldsAction(G, f=spec)
    err = A.axioms_error(batch, n=4)
    assert err["identity"] < 1e-14 and err["compatibility"] < 1e-12


def test_pseudovectors_ignore_inversion_and_vectors_flip():
    G = E3()
    inversion = G.element((-torch.eye(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)))
    v = {"a": torch.randn(4, 3, dtype=torch.float64), "b": torch.randn(4, 3, dtype=torch.float64)}
    out = FieldsAction(G, a="vector", b="pseudovector")(inversion, v)
    assert torch.equal(out["a"], -v["a"]) and torch.allclose(out["b"], v["b"])


def test_edge_index_is_relabelled_and_edge_fields_keep_their_order():
    batch = _graphs(sizes=(3, 4))
    batch = batch.replace(edge_attr=torch.arange(batch.num_edges, dtype=torch.float64)[:, None])
    G = BatchSymmetricGroup(batch.sizes)
    g = G.sample(1, 3)[0]
    p = G.node_permutation(g)
    out = FieldsAction(G)(g, batch)
    assert torch.equal(out.edge_index, p[batch.edge_index])
    assert torch.equal(out.edge_attr, batch.edge_attr)
    assert torch.equal(out.x[p], batch.x) and torch.equal(out.batch, batch.batch)


def test_collate_unbatch_roundtrip_and_padded_view():
    batch = _graphs()
    again = collate(unbatch(batch))
    for k in ("x", "pos", "z"):
        assert torch.equal(again[k], batch[k])
    assert torch.equal(again.edge_index, batch.edge_index) and batch.sizes == [3, 5, 7]
    x, mask = batch.to_padded("x")
    assert x.shape == (3, 7, 4) and mask.sum(1).tolist() == [3, 5, 7]
    assert torch.equal(x[mask], batch.x)


def test_bad_input_names_what_is_wrong():
    with pytest.raises(ValueError, match="edge_index refers to nodes"):
        collate([{"x": torch.randn(3, 2), "edge_index": torch.tensor([[0], [5]])}])
    with pytest.raises(ValueError, match="node field 'pos' has 4 rows"):
        collate([{"x": torch.randn(3, 2), "pos": torch.randn(4, 3)}])
    with pytest.raises(ValueError, match="batch must be sorted"):
        GraphBatch({"x": torch.randn(3, 2)}, batch=torch.tensor([1, 0, 0]))
    with pytest.raises(ValueError, match="edges between different graphs"):
        GraphBatch({"x": torch.randn(3, 2)}, edge_index=torch.tensor([[0], [2]]), batch=torch.tensor([0, 0, 1]))
    batch = _graphs(sizes=(3, 4))
    with pytest.raises(GroupMismatchError, match="sizes"):
        FieldsAction(BatchSymmetricGroup((4, 3)))(BatchSymmetricGroup((4, 3)).identity(), batch)
    G = _e3_x_sn(batch)
    with pytest.raises(ShapeError, match="no field"):
        FieldsAction(G, velocity="vector")(G.identity(), batch)
    with pytest.raises(ShapeError, match="'x' is a vector"):
        FieldsAction(G, x="vector")(G.identity(), batch)
    with pytest.raises(ShapeError, match="node, graph, edge or padded"):
        FieldsAction(G, out="vector")(G.identity(), torch.randn(7, 3))
    with pytest.raises(ValueError, match="role must be"):
        FieldsAction(G, f="spinor")
    with pytest.raises(GroupMismatchError, match="no geometric factor"):
        FieldsAction(BatchSymmetricGroup((3, 4)), pos="point")


def test_graph_batch_moves_devices_and_ase_roundtrip():
    from ase.build import molecule

    batch = GraphBatch.from_atoms([molecule("H2O"), molecule("CH4")], dtype=torch.float64)
    assert batch.sizes == [3, 5] and batch.z.tolist()[:3] == [8, 1, 1]
    back = batch.to_atoms()
    assert [a.get_chemical_formula() for a in back] == ["H2O", "CH4"]
    meta = batch.to("meta")
    assert meta.pos.device.type == "meta" and meta.z.dtype == torch.long
    assert batch.to(torch.float32).pos.dtype == torch.float32 and batch.to(torch.float32).z.dtype == torch.long
