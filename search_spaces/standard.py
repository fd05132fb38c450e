METHOD = "standard"

from search_spaces.common import suggest_embed_dim, suggest_lr  # noqa: E402


def space(trial, family: str) -> None:
    suggest_lr(trial)
    suggest_embed_dim(trial, family)


def paper_defaults(family: str) -> dict:
    return {"lr": 1e-3, "embed_dim": 16 if family == "mnist-like" else 128}

# What papers report for this setting (percent, test split, L∞ at ε 0.3 / 8/255); None: not
# given. `orch reproduce` prints it beside the measured numbers.
PAPER_CLAIMS = {
    "mnist": {"model": "ResNet-18", "clean": 98.80, "pgd": 0.0, "autoattack": 0.0, "worst": None,
              "source": "AFD paper (Bashivan et al.) Table 1, NT (their re-run, PGD-40); "
                        "AutoAttack: its Table A3 (100 points)"},
    "cifar10": {"model": "ResNet-18", "clean": 95.40, "pgd": 0.12, "autoattack": 0.0, "worst": None,
                "source": "AFD paper Table 1, NT (PGD-20); AutoAttack: its Table A3 (100 points)"},
}
