METHOD = "tla"

from search_spaces.common import suggest_embed_dim, suggest_lr, suggest_train_eps  # noqa: E402


def space(trial, family: str) -> None:
    trial.suggest_float("lambda", 1e-2, 10.0, log=True)
    trial.suggest_float("lambda_norm", 1e-5, 1e-1, log=True)
    trial.suggest_float("margin", 5e-3, 0.5, log=True)
    trial.suggest_categorical("negative", ["hard", "random"])
    suggest_embed_dim(trial, family)
    suggest_train_eps(trial, family)
    suggest_lr(trial)


def paper_defaults(family: str) -> dict:
    # Mao et al.'s configs: CIFAR λ1 = 2, λ2 = 1e-3, margin 0.03, ε 8/255; MNIST λ1 = 0.5,
    # λ2 = 1e-4, margin 0.05, ε 0.3; hard negatives. The paper regularises the wide penultimate
    # layer, so z starts at the widest embed_dim the space allows; lr as in the other spaces.
    if family == "mnist-like":
        return {"lambda": 0.5, "lambda_norm": 1e-4, "margin": 0.05, "negative": "hard",
                "embed_dim": 64, "train_eps": 0.3, "lr": 1e-3}
    return {"lambda": 2.0, "lambda_norm": 1e-3, "margin": 0.03, "negative": "hard",
            "embed_dim": 256, "train_eps": 8 / 255, "lr": 1e-3}

# What the paper reports (percent, test split, L∞ at ε 0.3 / 8/255); None: not given. Worst: the
# lowest of its eight attacks. `orch reproduce` prints it beside the measured numbers.
PAPER_CLAIMS = {
    "mnist": {"model": "LeNet variant", "clean": 99.52, "pgd": 97.72, "autoattack": None, "worst": 96.64,
              "source": "Mao et al. Table 1 (PGD-40; worst: MIM-200)"},
    "cifar10": {"model": "WRN", "clean": 86.21, "pgd": 51.59, "autoattack": None, "worst": 50.03,
                "source": "Mao et al. Table 1 (PGD-20; worst: 20-restart PGD)"},
}
