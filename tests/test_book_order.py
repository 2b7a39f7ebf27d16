"""The book's order: no chapter uses a building block that a later chapter teaches.

Each chapter that introduces a building block (a layer, a model family, a tool of the course) lists it in
``TAUGHT``. The test reads the code cells of every chapter in the table of contents' order and fails if one uses
(by name) a block from a later chapter, unless ``FORWARD`` names that exact use with the reason it is fine (a
preview used as a black box, never a model that is trained). Stale ``FORWARD`` entries fail too.
"""

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

TAUGHT = {
    "02b_representations": {"character_dimension"},
    "04_weight_sharing": {"equivariant_basis", "GroupConv2d", "LiftingConv2d"},
    "05_image_architectures": {"GCNN", "SteerableConv2d", "FieldType", "RandomRotation"},
    "07_sets_and_graphs": {"DeepSets", "DeepSetsLayer", "GNN", "GCNConv", "MessagePassing", "TransformerEncoder",
                           "MultiHeadSelfAttention", "AttentionMessagePassing", "GRUSetBaseline", "AdjacencyMLP"},
    "07b_spectral": {"LapPEGNN", "NodeDeletedGNN", "laplacian_eigenvectors", "node_deleted_subgraphs"},
    "08_molecules": {"SchNet", "DimeNetPlusPlus", "EnergyForces", "SphericalBasis", "radius_graph", "triplets",
                     "CanonicalMLP", "RandomRotation3d", "energy_force_loss"},
    "09_equivariant_point_clouds": {"NequIP", "EGNN", "SE3Transformer", "CoordinateGNN", "exact_clebsch_gordan_",
                                    },
}

# (chapter, name): why this forward use is fine. Nothing here may be trained before its chapter.
FORWARD = {
    ("01_why_symmetry_matters", "equivariant_basis"): "a preview: chapter 1 shows the solver's output (weight "
                                                       "sharing) as a picture; chapter 4 builds it",
    ("02b_representations", "equivariant_basis"): "a black-box cross-check of character counts, announced as "
                                                  "ahead of its chapter",
    ("03_equivariance_and_invariance", "EnergyForces"): "forces as -grad E of a fixed pair potential, to show "
                                                        "what the checker measures; nothing is trained with it",
}


def chapters() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    names = [c["file"].split("/")[-1] for part in toc["parts"] for c in part["chapters"]]
    return [n for n in names if (ROOT / "book" / f"{n}.md").exists()]


def code_identifiers(chapter: str) -> set[str]:
    text = (ROOT / "book" / f"{chapter}.md").read_text()
    cells = re.findall(r"```\{code-cell\}[^\n]*\n(.*?)```", text, flags=re.S)
    code = "\n".join(re.sub(r"#[^\n]*", "", c) for c in cells)          # comments are prose
    code = re.sub(r"(\"[^\"\n]*\"|'[^'\n]*')", "", code)                 # so are strings
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", code))


def later_uses() -> dict[tuple[str, str], str]:
    order = chapters()
    found = {}
    for i, chapter in enumerate(order):
        used = code_identifiers(chapter)
        for later in order[i + 1:]:
            for name in TAUGHT.get(later, set()) & used:
                found[chapter, name] = later
    return found


def test_every_taught_block_is_used_in_its_own_chapter():
    order = chapters()
    for chapter, names in TAUGHT.items():
        if chapter in order:
            missing = names - code_identifiers(chapter)
            assert not missing, f"{chapter} is said to teach {sorted(missing)} but its code never uses them"


def test_no_chapter_uses_a_block_taught_later():
    found = later_uses()
    bad = {k: v for k, v in found.items() if k not in FORWARD}
    assert not bad, "chapters using building blocks taught later: " + ", ".join(
        f"{c} uses {n} (taught in {later})" for (c, n), later in sorted(bad.items()))
    stale = set(FORWARD) - set(found)
    assert not stale, f"FORWARD entries no longer needed: {sorted(stale)}"


def test_the_check_fails_on_a_chapter_that_trains_a_later_model(tmp_path, monkeypatch):
    """The test itself can fail: a fake chapter 8 that imports NequIP is caught."""
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "08_molecules.md").write_text("```{code-cell} ipython3\nfrom gdl.nn import NequIP\n```\n")
    (tmp_path / "book" / "09_equivariant_point_clouds.md").write_text("```{code-cell} ipython3\nNequIP\n```\n")
    (tmp_path / "_toc.yml").write_text("parts:\n  - chapters:\n      - file: book/08_molecules\n"
                                       "      - file: book/09_equivariant_point_clouds\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    assert ("08_molecules", "NequIP") in later_uses()
    with pytest.raises(AssertionError, match="08_molecules uses NequIP"):
        test_no_chapter_uses_a_block_taught_later()
