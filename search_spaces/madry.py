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

from search_spaces.claims import AFD, ATLD, ER, NOT_STATED, TLA, Claim, clean, lowest, row  # noqa: E402


def _atld_table_iv(attack: str, steps: str, value: float) -> Claim:
    """ATLD's Table IV, AT row (the paper does not name its baselines' model)."""
    return Claim(ATLD, "Table IV (AT)", "CIFAR-10", NOT_STATED, "8 (0-255 scale)", attack, steps,
                 NOT_STATED, NOT_STATED, NOT_STATED, value)


TLA_WRN = "the wide residual network of Madry et al. (depth and width not stated)"
AUTOATTACK, RAYS = (_atld_table_iv("AutoAttack (version not stated)", NOT_STATED, 44.04),
                    _atld_table_iv("RayS (black-box)", NOT_STATED, 50.70))
# Two models on MNIST: Madry et al.'s LeNet as the AFD paper quotes it, and the ER-Classifier
# paper's own re-run of Madry's training on its 4-conv + 4-FC baseline: no single worst case.
PAPER_CLAIMS = {
    "mnist": row(
        clean=clean(AFD, "Table 1 (quoted from Madry et al.)", "MNIST", "LeNet", NOT_STATED, 98.8),
        pgd=Claim(AFD, "Table 1 (quoted from Madry et al.)", "MNIST", "LeNet", "0.3",
                  "PGD-L∞ (white-box)", NOT_STATED, NOT_STATED, NOT_STATED, NOT_STATED, 93.2),
        autoattack=Claim(ER, "Table 1 (Madry's Adv)", "MNIST", "4Conv. + 4FC layers (Table 15)",
                         "0.3", "AutoAttack (version not stated)", NOT_STATED, NOT_STATED,
                         NOT_STATED, "1,000 random samples", 69.0,
                         "the ER paper's own Madry model, not the LeNet of the other columns")),
    "cifar10": row(
        clean=clean(TLA, "Table 1 (AT)", "CIFAR-10", TLA_WRN, NOT_STATED, 87.14),
        pgd=Claim(TLA, "Table 1 (AT)", "CIFAR-10", TLA_WRN, "8/255", "PGD", "20",
                  "not stated (20PGD, 20 restarts, is another column)", "untargeted", NOT_STATED,
                  45.72),
        autoattack=AUTOATTACK,
        worst=lowest(AUTOATTACK, RAYS),
        also=(RAYS, Claim(TLA, "Table 1 (AT; its lowest: MIM)", "CIFAR-10", TLA_WRN, "8/255", "MIM",
                          "40", NOT_STATED, "untargeted", NOT_STATED, 45.16))),
}
