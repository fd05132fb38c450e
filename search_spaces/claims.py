"""What the papers claim, each number with what it is: paper, table, dataset, model as the paper
names it, ε, attack (name, steps, restarts, targeted or not), test points. A field the paper
does not give says NOT_STATED; nothing is filled in from memory or from another paper.

`row(...)` gives what `orch reproduce` reads for one method on one dataset: the numbers under
"clean", "pgd", "autoattack" and "worst" (percent; None: not claimed), "model" and "source" as
text, and the `Claim` behind each number under "claims" (plus labelled extra numbers under
"also"). "worst" is the lowest number reported for the same model in the cited tables (the
strongest reported attack); None when the numbers of a row come from different models.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

NOT_STATED = "not stated"
NOT_APPLICABLE = "not applicable"  # the attack fields of a clean accuracy

AFD = "Bashivan et al., AFD (seeds/afd.txt)"
ADR = "Bui et al., ADR (seeds/adr.txt)"
ATLD = "Qian et al., ATLD (seeds/atld.txt)"
ER = "Li et al., ER-Classifier (seeds/er-classifier.txt)"
TLA = "Mao et al., TLA (seeds/tla.txt)"


@dataclass(frozen=True)
class Claim:
    paper: str
    table: str
    dataset: str
    model: str  # as the paper names it
    eps: str  # as the paper gives it (pixel scale noted), or NOT_STATED
    attack: str  # "none" for a clean accuracy
    steps: str
    restarts: str
    targeted: str  # "untargeted", "targeted", "multi-targeted", ..., or NOT_STATED
    n_points: str  # test points the number is measured on
    value: float  # percent
    note: str = ""

    def missing(self) -> list[str]:
        """The fields left empty (every field must hold a value or say NOT_STATED)."""
        return [f.name for f in fields(self) if f.name != "note" and getattr(self, f.name) in (None, "")]


def clean(paper: str, table: str, dataset: str, model: str, n_points: str, value: float,
          note: str = "") -> Claim:
    return Claim(paper, table, dataset, model, NOT_APPLICABLE, "none", NOT_APPLICABLE,
                 NOT_APPLICABLE, NOT_APPLICABLE, n_points, value, note)


def lowest(*claims: Claim) -> Claim:
    """The claim of the strongest reported attack (the lowest number), noted as such."""
    return replace(min(claims, key=lambda c: c.value), note="the lowest number reported for this model")


# The AFD paper's own runs: PGD as its Table A2 sets it, AutoAttack (Table A3) on 100 random test
# points at an ε the table does not state.
AFD_PGD = {"MNIST": ("0.3", "40 (Table A2, step 0.033)"), "CIFAR-10": ("8/255", "20 (Table A2, step 2/255)")}


def afd_run(label: str, dataset: str, clean_acc: float, pgd: float, autoattack: float) -> dict[str, Any]:
    """A row of the AFD paper's Tables 1 and A3 for its `label` run (RN18)."""
    eps, steps = AFD_PGD[dataset]
    pgd_claim = Claim(AFD, f"Table 1 ({label})", dataset, "RN18", eps, "PGD-L∞ (white-box, Foolbox)",
                      steps, NOT_STATED, NOT_STATED, NOT_STATED, pgd)
    aa = Claim(AFD, f"Table A3 ({label})", dataset, "RN18", NOT_STATED, "AutoAttack (version not stated)",
               NOT_STATED, NOT_STATED, NOT_STATED, "100 random samples", autoattack)
    return row(clean(AFD, f"Table 1 ({label})", dataset, "RN18", NOT_STATED, clean_acc), pgd_claim, aa,
               lowest(pgd_claim, aa))


COLUMNS = {"clean": "clean", "pgd": "PGD", "autoattack": "AutoAttack", "worst": "worst"}


def row(clean: Claim | None = None, pgd: Claim | None = None, autoattack: Claim | None = None,
        worst: Claim | None = None, also: tuple[Claim, ...] = (), note: str = "") -> dict[str, Any]:
    """One method on one dataset, as `orch reproduce` reads it (see the module docstring)."""
    claims = {key: claim for key, claim in
              (("clean", clean), ("pgd", pgd), ("autoattack", autoattack), ("worst", worst))
              if claim is not None}
    return {
        **{key: claims[key].value if key in claims else None for key in COLUMNS},
        "model": _by_column(claims, lambda c: c.model),
        "source": "; ".join(filter(None, [_by_column(claims, lambda c: f"{c.paper} {c.table}"),
                                          note])),
        "claims": claims,
        "also": also,
    }


def _by_column(claims: dict[str, Claim], text) -> str | None:
    """One text if every claim shares it, else each text with the columns it belongs to."""
    groups: dict[str, list[str]] = {}
    for key, claim in claims.items():
        groups.setdefault(text(claim), []).append(COLUMNS[key])
    if len(groups) <= 1:
        return next(iter(groups), None)
    return "; ".join(f"{', '.join(columns)}: {value}" for value, columns in groups.items())
