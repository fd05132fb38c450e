METHOD = "madry"

from search_spaces.common import suggest_embed_dim, suggest_lr, suggest_train_eps  # noqa: E402


def space(trial, family: str) -> None:
    suggest_lr(trial)
    suggest_embed_dim(trial, family)
    suggest_train_eps(trial, family)


def paper_defaults(family: str) -> dict:
    # Madry et al.: ε 0.3 on MNIST, 8/255 on CIFAR.
    if family == "mnist-like":
        return {"lr": 1e-3, "embed_dim": 16, "train_eps": 0.3}
    return {"lr": 1e-3, "embed_dim": 128, "train_eps": 8 / 255}

# What papers report for this setting (percent, test split, L∞ at ε 0.3 / 8/255); None: not
# given. `orch reproduce` prints it beside the measured numbers.
PAPER_CLAIMS = {
    "mnist": {"model": "LeNet", "clean": 98.8, "pgd": 93.2, "autoattack": 69.0, "worst": None,
              "source": "Madry et al. as quoted in the AFD paper, Table 1 (PGD, white-box); "
                        "AutoAttack: ER-Classifier paper Table 1 (1,000 points, its own model)"},
    "cifar10": {"model": "WRN-34-10", "clean": 87.14, "pgd": 45.72, "autoattack": 44.04, "worst": None,
                "source": "ATLD paper Table IV (clean, AutoAttack); PGD-20: TLA paper Table 1 (AT)"},
}
