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

from search_spaces.claims import NOT_STATED, TLA, Claim, clean, row  # noqa: E402

LENET = "a variant of LeNet with a larger capacity"
WRN = "the wide residual network of Madry et al. (depth and width not stated)"
TEST = "not stated (the test set has 10,000 images)"
# Table 1: untargeted L∞ attacks; "20PGD" is PGD with 20 random restarts.
PAPER_CLAIMS = {
    "mnist": row(
        clean=clean(TLA, "Table 1 (TLA)", "MNIST", LENET, TEST, 99.52),
        pgd=Claim(TLA, "Table 1 (TLA)", "MNIST", LENET, "0.3", "PGD", "40",
                  "not stated (20PGD is the 20-restart column)", "untargeted", TEST, 97.72),
        worst=Claim(TLA, "Table 1 (TLA; its lowest)", "MNIST", LENET, "0.3", "MIM", "200",
                    NOT_STATED, "untargeted", TEST, 96.64)),
    "cifar10": row(
        clean=clean(TLA, "Table 1 (TLA)", "CIFAR-10", WRN, TEST, 86.21),
        pgd=Claim(TLA, "Table 1 (TLA)", "CIFAR-10", WRN, "8/255", "PGD", "20",
                  "not stated (20PGD is the 20-restart column)", "untargeted", TEST, 51.59),
        worst=Claim(TLA, "Table 1 (TLA; its lowest: 20PGD)", "CIFAR-10", WRN, "8/255", "PGD",
                    "20", "20", "untargeted", TEST, 50.03)),
}
