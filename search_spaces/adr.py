METHOD = "adr"

from search_spaces.common import suggest_embed_dim, suggest_lr, suggest_train_eps  # noqa: E402


def space(trial, family: str) -> None:
    trial.suggest_float("lambda", 1e-3, 10.0, log=True)
    trial.suggest_float("lambda_gc", 1e-4, 10.0, log=True)
    trial.suggest_float("lambda_ent", 1e-4, 10.0, log=True)
    trial.suggest_float("lambda_vat", 1e-4, 10.0, log=True)
    trial.suggest_categorical("base", ["pgd", "trades"])
    suggest_embed_dim(trial, family)
    suggest_train_eps(trial, family)
    suggest_lr(trial)


def paper_defaults(family: str) -> dict:
    # Bui et al., Table 3: λ_lc = λ_gc = λ_ent = 1; λ_vat 1 on the CIFAR CNN and 0 on MNIST, here
    # the smallest value a log-scale space holds; ADR-ADV (PGD); ε 0.3 / 8/255. The compactness
    # layer is the wide generator output, so z starts at the widest embed_dim the space allows.
    if family == "mnist-like":
        return {"lambda": 1.0, "lambda_gc": 1.0, "lambda_ent": 1.0, "lambda_vat": 1e-4,
                "base": "pgd", "embed_dim": 64, "train_eps": 0.3, "lr": 1e-3}
    return {"lambda": 1.0, "lambda_gc": 1.0, "lambda_ent": 1.0, "lambda_vat": 1.0,
            "base": "pgd", "embed_dim": 256, "train_eps": 8 / 255, "lr": 1e-3}

from search_spaces.claims import ADR, NOT_STATED, Claim, clean, row  # noqa: E402

# The seed text lost every ε and step size (its formulas and inline numbers are gone), so the ε
# of these numbers cannot be checked from the paper text.
EPS = "cannot be checked from the paper text (lost in the seed)"
STEPS = "cannot be checked from the paper text (lost in the seed)"
CNN = "standard CNN of [2] (G=4Conv, C=3FC in Table 5; the text says 3 conv + 3 FC)"
RESNET = "ResNet of [19] with 5 residual units, (16, 16, 32, 64) filters"
PAPER_CLAIMS = {
    "mnist": row(
        clean=clean(ADR, "Table 6 (ADR-ADV)", "MNIST", CNN, NOT_STATED, 99.48),
        pgd=Claim(ADR, "Table 6 (ADR-ADV)", "MNIST", CNN, EPS, "PGD", STEPS, NOT_STATED,
                  "untargeted", NOT_STATED, 95.06),
        worst=Claim(ADR, "Table 6 (ADR-ADV; its lowest)", "MNIST", CNN, EPS, "BIM", STEPS,
                    NOT_STATED, "multi-targeted (a targeted attack per label)", NOT_STATED, 93.99),
        also=(Claim(ADR, "Table 6 (ADR-ADV)", "MNIST", CNN, EPS, "PGD", STEPS, NOT_STATED,
                    "multi-targeted (a targeted attack per label)", NOT_STATED, 94.26),)),
    "cifar10": row(
        clean=clean(ADR, "Table 2 (ADR-ADV, ResNet)", "CIFAR-10", RESNET, NOT_STATED, 78.43),
        pgd=Claim(ADR, "Table 2 (ADR-ADV, ResNet)", "CIFAR-10", RESNET, EPS, "PGD", STEPS,
                  NOT_STATED, "untargeted", NOT_STATED, 44.72),
        worst=Claim(ADR, "Table 2 (ADR-ADV, ResNet; its lowest)", "CIFAR-10", RESNET, EPS, "PGD",
                    STEPS, NOT_STATED, "multi-targeted (a targeted attack per label)", NOT_STATED,
                    41.43)),
}
