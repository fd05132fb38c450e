METHOD = "afd"

from search_spaces.common import suggest_embed_dim, suggest_lr, suggest_train_eps  # noqa: E402


def space(trial, family: str) -> None:
    trial.suggest_float("lambda", 0.1, 10.0, log=True)  # γ / α: step 4's lr relative to step 2's
    suggest_embed_dim(trial, family)
    suggest_train_eps(trial, family)
    suggest_lr(trial)  # α: encoder + decoder on clean CE
    trial.suggest_float("lr_disc", 1e-4, 1e-1, log=True)  # β: Da
    # Fixed per family (a one-choice categorical keeps it a recorded trial parameter).
    trial.suggest_categorical("disc_width", [_disc_width(family)])


def _disc_width(family: str) -> int:
    # Bashivan et al.: 64 hidden units in Da on MNIST, 512 on CIFAR.
    return 64 if family == "mnist-like" else 512


def paper_defaults(family: str) -> dict:
    # Bashivan et al. and their code: Adam lrs γ = α (λ = 1), β = 10·α (the code's
    # MNIST Adam setting); ε 0.3 / 0.031; 64-d features on MNIST, 512-d on CIFAR (the space
    # stops at 256).
    if family == "mnist-like":
        return {"lambda": 1.0, "embed_dim": 64, "train_eps": 0.3, "lr": 1e-3,
                "lr_disc": 1e-2, "disc_width": 64}
    return {"lambda": 1.0, "embed_dim": 256, "train_eps": 0.031, "lr": 1e-3,
            "lr_disc": 1e-2, "disc_width": 512}

from search_spaces.claims import afd_run  # noqa: E402

# Table 1: mean of 3 runs (± 0.12 / 0.35 on MNIST, ± 2.71 / 10.78 on CIFAR-10).
PAPER_CLAIMS = {
    "mnist": afd_run("AFD", "MNIST", 99.15, 96.13, 92.0),
    "cifar10": afd_run("AFD", "CIFAR-10", 89.38, 77.72, 25.0),
}
