"""Every paper claim says what it is, and says it from the paper: each field filled (or "not
stated"), each number found in its paper's seed text, the reproduce columns equal to their
claims, and no model name the seeds do not contain."""
from __future__ import annotations

from pathlib import Path

import pytest

from search_spaces import SPACES
from search_spaces.claims import COLUMNS, Claim

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"
ROWS = [(method, key, row) for method, space in SPACES.items()
        for key, row in space.PAPER_CLAIMS.items()]
CLAIMS = [(f"{method}/{key}", claim) for method, key, row in ROWS
          for claim in (*row["claims"].values(), *row["also"])]


@pytest.mark.parametrize("where, claim", CLAIMS, ids=[w for w, _ in CLAIMS])
def test_each_claim_says_what_it_is(where, claim: Claim):
    assert not claim.missing(), f"{where}: {claim.missing()} empty"
    assert claim.model not in ("WRN-34-10", "WRN-28-10", "ResNet", "WRN")  # not in the seeds


@pytest.mark.skipif(not SEEDS.is_dir(), reason="the papers' seed texts are not beside the repo")
@pytest.mark.parametrize("where, claim", CLAIMS, ids=[w for w, _ in CLAIMS])
def test_each_number_is_in_its_papers_text(where, claim: Claim):
    seed = claim.paper.split("(")[-1].rstrip(")")
    assert f"{claim.value:g}" in (SEEDS.parent / seed).read_text(), where


@pytest.mark.parametrize("method, key, row", ROWS, ids=[f"{m}/{k}" for m, k, _ in ROWS])
def test_the_columns_reproduce_reads_are_the_claims(method, key, row):
    for column in COLUMNS:
        claim = row["claims"].get(column)
        assert row[column] == (None if claim is None else claim.value), (method, key, column)
    if row["claims"]:
        assert row["model"] and row["source"] and "|" not in row["source"] + row["model"]
    worst = row["claims"].get("worst")
    if worst is not None:  # the strongest reported attack: nothing of the row is lower
        numbers = [c.value for k, c in row["claims"].items() if k != "clean"]
        assert worst.value == min(numbers)


def test_the_reviewers_findings_stay_fixed():
    claims = {m: s.PAPER_CLAIMS for m, s in SPACES.items()}
    assert claims["adr"]["mnist"]["worst"] == 93.99  # BIM multi-targeted, not 94.26
    assert claims["trades"]["cifar10"]["pgd"] == 56.61
    assert claims["er-classifier"]["mnist"]["worst"] == 75.8  # RayS below AutoAttack
    atld = claims["atld"]["cifar10"]
    assert (atld["clean"], atld["pgd"], atld["autoattack"]) == (90.78, 79.82, 70.60)  # ATLD+
    assert {c.value for c in atld["also"] if "(ATLD)" in c.table} >= {86.42, 79.48, 70.49}
    madry = claims["madry"]["mnist"]
    assert madry["claims"]["autoattack"].model != madry["claims"]["pgd"].model
    assert madry["worst"] is None and "1,000" in madry["claims"]["autoattack"].n_points
    assert all("cannot be checked" in c.eps for c in claims["adr"]["mnist"]["claims"].values()
               if c.attack != "none")
    for method in ("afd", "standard"):
        autoattack = claims[method]["cifar10"]["claims"]["autoattack"]
        assert autoattack.eps == "not stated" and autoattack.n_points == "100 random samples"
