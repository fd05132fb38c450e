METHOD = "standard"

from search_spaces.common import suggest_embed_dim, suggest_lr  # noqa: E402


def space(trial, family: str) -> None:
    suggest_lr(trial)
    suggest_embed_dim(trial, family)


def paper_defaults(family: str) -> dict:
    return {"lr": 1e-3, "embed_dim": 16 if family == "mnist-like" else 128}
