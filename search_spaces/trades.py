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

from search_spaces.claims import AFD, ATLD, NOT_STATED, Claim, clean, lowest, row  # noqa: E402


def _afd_quoted(dataset: str, model: str, eps: str, value: float) -> Claim:
    """Zhang et al.'s PGD number as the AFD paper's Table 1 quotes it."""
    return Claim(AFD, "Table 1 (quoted from Zhang et al.)", dataset, model, eps, "PGD-L∞ (white-box)",
                 NOT_STATED, NOT_STATED, NOT_STATED, NOT_STATED, value)


def _atld_table_iv(attack: str, steps: str, value: float) -> Claim:
    """ATLD's Table IV, TRADES row (the paper does not name its baselines' model)."""
    return Claim(ATLD, "Table IV (TRADES)", "CIFAR-10", NOT_STATED, "8 (0-255 scale)", attack, steps,
                 NOT_STATED, NOT_STATED, NOT_STATED, value)


MNIST_PGD = _afd_quoted("MNIST", "LeNet", "0.3", 96.07)
AUTOATTACK, CW, RAYS = (_atld_table_iv("AutoAttack (version not stated)", NOT_STATED, 53.08),
                        _atld_table_iv("CW", "100", 56.43),
                        _atld_table_iv("RayS (black-box)", NOT_STATED, 57.30))
# Zhang et al.'s own numbers as other papers quote them. AFD's Network column says RN18 for the
# quoted CIFAR-10 row; ATLD does not name its baselines' model.
PAPER_CLAIMS = {
    "mnist": row(
        clean=clean(AFD, "Table 1 (quoted from Zhang et al.)", "MNIST", "LeNet", NOT_STATED, 99.48),
        pgd=MNIST_PGD, worst=lowest(MNIST_PGD)),
    "cifar10": row(
        clean=clean(ATLD, "Table IV (TRADES)", "CIFAR-10", NOT_STATED, NOT_STATED, 84.92),
        pgd=_afd_quoted("CIFAR-10", "RN18", "8/255", 56.61),
        autoattack=AUTOATTACK, worst=lowest(AUTOATTACK, CW, RAYS), also=(CW, RAYS)),
}
