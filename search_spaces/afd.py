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

from search_spaces.claims import AFD, NOT_STATED, Claim, clean, row  # noqa: E402

# Table 1: the AFD paper's own runs (PGD settings in Table A2, mean ± std over 3 runs). Table A3:
# AutoAttack on 100 random test points, at an ε the table does not state.
PAPER_CLAIMS = {
    "mnist": row(
        clean=clean(AFD, "Table 1 (AFD, mean of 3 runs)", "MNIST", "RN18", NOT_STATED, 99.15),
        pgd=Claim(AFD, "Table 1 (AFD, ± 0.35)", "MNIST", "RN18", "0.3",
                  "PGD-L∞ (white-box, Foolbox)", "40 (Table A2, step 0.033)", NOT_STATED,
                  NOT_STATED, NOT_STATED, 96.13),
        autoattack=Claim(AFD, "Table A3 (AFD)", "MNIST", "RN18", NOT_STATED,
                         "AutoAttack (version not stated)", NOT_STATED, NOT_STATED, NOT_STATED,
                         "100 random samples", 92.0),
        worst=Claim(AFD, "Table A3 (AFD; its lowest L∞ number)", "MNIST", "RN18", NOT_STATED,
                    "AutoAttack (version not stated)", NOT_STATED, NOT_STATED, NOT_STATED,
                    "100 random samples", 92.0)),
    "cifar10": row(
        clean=clean(AFD, "Table 1 (AFD, ± 2.71)", "CIFAR-10", "RN18", NOT_STATED, 89.38),
        pgd=Claim(AFD, "Table 1 (AFD, ± 10.78)", "CIFAR-10", "RN18", "8/255",
                  "PGD-L∞ (white-box, Foolbox)", "20 (Table A2, step 2/255)", NOT_STATED,
                  NOT_STATED, NOT_STATED, 77.72),
        autoattack=Claim(AFD, "Table A3 (AFD)", "CIFAR-10", "RN18", NOT_STATED,
                         "AutoAttack (version not stated)", NOT_STATED, NOT_STATED, NOT_STATED,
                         "100 random samples", 25.0),
        worst=Claim(AFD, "Table A3 (AFD; its lowest L∞ number)", "CIFAR-10", "RN18", NOT_STATED,
                    "AutoAttack (version not stated)", NOT_STATED, NOT_STATED, NOT_STATED,
                    "100 random samples", 25.0)),
}
