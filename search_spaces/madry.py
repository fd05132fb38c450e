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
