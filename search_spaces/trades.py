METHOD = "trades"

from search_spaces.common import suggest_embed_dim, suggest_lr, suggest_train_eps  # noqa: E402


def space(trial, family: str) -> None:
    trial.suggest_float("lambda", 0.1, 20.0, log=True)
    suggest_embed_dim(trial, family)
    suggest_train_eps(trial, family)
    suggest_lr(trial)


def paper_defaults(family: str) -> dict:
    # Zhang et al.: β = 6; ε 0.3 on MNIST, 0.031 on CIFAR-10.
    eps = 0.3 if family == "mnist-like" else 0.031
    return {"lambda": 6.0, "embed_dim": 16 if family == "mnist-like" else 128, "train_eps": eps, "lr": 1e-3}

# What papers report for this setting (percent, test split, L∞ at ε 0.3 / 8/255); None: not
# given. `orch reproduce` prints it beside the measured numbers.
PAPER_CLAIMS = {
    "mnist": {"model": "LeNet", "clean": 99.48, "pgd": 96.07, "autoattack": None, "worst": None,
              "source": "Zhang et al. as quoted in the AFD paper, Table 1"},
    "cifar10": {"model": "WRN-34-10", "clean": 84.92, "pgd": None, "autoattack": 53.08, "worst": None,
                "source": "ATLD paper Table IV"},
}
