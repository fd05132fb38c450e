METHOD = "standard"

from search_spaces.common import suggest_embed_dim, suggest_lr  # noqa: E402


def space(trial, family: str) -> None:
    suggest_lr(trial)
    suggest_embed_dim(trial, family)


def paper_defaults(family: str) -> dict:
    return {"lr": 1e-3, "embed_dim": 16 if family == "mnist-like" else 128}

from search_spaces.claims import AFD, NOT_STATED, Claim, clean, row  # noqa: E402

# The AFD paper's natural-training re-runs (†): its own PGD settings (Table A2) apply; its
# AutoAttack numbers come from 100 random test points at an ε Table A3 does not state.
PAPER_CLAIMS = {
    "mnist": row(
        clean=clean(AFD, "Table 1 (NT†, mean of 3 runs)", "MNIST", "RN18", NOT_STATED, 98.80),
        pgd=Claim(AFD, "Table 1 (NT†)", "MNIST", "RN18", "0.3", "PGD-L∞ (white-box, Foolbox)",
                  "40 (Table A2, step 0.033)", NOT_STATED, NOT_STATED, NOT_STATED, 0.0),
        autoattack=Claim(AFD, "Table A3 (NT)", "MNIST", "RN18", NOT_STATED,
                         "AutoAttack (version not stated)", NOT_STATED, NOT_STATED, NOT_STATED,
                         "100 random samples", 0.0),
        worst=Claim(AFD, "Table 1 (NT†)", "MNIST", "RN18", "0.3", "PGD-L∞ (white-box, Foolbox)",
                    "40 (Table A2, step 0.033)", NOT_STATED, NOT_STATED, NOT_STATED, 0.0)),
    "cifar10": row(
        clean=clean(AFD, "Table 1 (NT†)", "CIFAR-10", "RN18", NOT_STATED, 95.40),
        pgd=Claim(AFD, "Table 1 (NT†)", "CIFAR-10", "RN18", "8/255", "PGD-L∞ (white-box, Foolbox)",
                  "20 (Table A2, step 2/255)", NOT_STATED, NOT_STATED, NOT_STATED, 0.12),
        autoattack=Claim(AFD, "Table A3 (NT)", "CIFAR-10", "RN18", NOT_STATED,
                         "AutoAttack (version not stated)", NOT_STATED, NOT_STATED, NOT_STATED,
                         "100 random samples", 0.0),
        worst=Claim(AFD, "Table A3 (NT)", "CIFAR-10", "RN18", NOT_STATED,
                    "AutoAttack (version not stated)", NOT_STATED, NOT_STATED, NOT_STATED,
                    "100 random samples", 0.0)),
}
