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

from search_spaces.claims import AFD, ATLD, NOT_STATED, Claim, clean, row  # noqa: E402

# Zhang et al.'s own numbers as other papers quote them (AFD Table 1, ATLD Table IV). AFD's
# Network column says RN18 for the quoted CIFAR-10 row; ATLD does not name its baselines' model.
PAPER_CLAIMS = {
    "mnist": row(
        clean=clean(AFD, "Table 1 (quoted from Zhang et al.)", "MNIST", "LeNet", NOT_STATED, 99.48),
        pgd=Claim(AFD, "Table 1 (quoted from Zhang et al.)", "MNIST", "LeNet", "0.3",
                  "PGD-L∞ (white-box)", NOT_STATED, NOT_STATED, NOT_STATED, NOT_STATED, 96.07),
        worst=Claim(AFD, "Table 1 (quoted; its only attack)", "MNIST", "LeNet", "0.3",
                    "PGD-L∞ (white-box)", NOT_STATED, NOT_STATED, NOT_STATED, NOT_STATED, 96.07)),
    "cifar10": row(
        clean=clean(ATLD, "Table IV (TRADES)", "CIFAR-10", NOT_STATED, NOT_STATED, 84.92),
        pgd=Claim(AFD, "Table 1 (quoted from Zhang et al.)", "CIFAR-10", "RN18", "8/255",
                  "PGD-L∞ (white-box)", NOT_STATED, NOT_STATED, NOT_STATED, NOT_STATED, 56.61),
        autoattack=Claim(ATLD, "Table IV (TRADES)", "CIFAR-10", NOT_STATED, "8 (0-255 scale)",
                         "AutoAttack (version not stated)", NOT_STATED, NOT_STATED, NOT_STATED,
                         NOT_STATED, 53.08),
        worst=Claim(ATLD, "Table IV (TRADES; its lowest: AutoAttack)", "CIFAR-10", NOT_STATED,
                    "8 (0-255 scale)", "AutoAttack (version not stated)", NOT_STATED, NOT_STATED,
                    NOT_STATED, NOT_STATED, 53.08),
        also=(Claim(ATLD, "Table IV (TRADES)", "CIFAR-10", NOT_STATED, "8 (0-255 scale)",
                    "CW", "100", NOT_STATED, NOT_STATED, NOT_STATED, 56.43),
              Claim(ATLD, "Table IV (TRADES)", "CIFAR-10", NOT_STATED, "8 (0-255 scale)",
                    "RayS (black-box)", NOT_STATED, NOT_STATED, NOT_STATED, NOT_STATED, 57.30))),
}
