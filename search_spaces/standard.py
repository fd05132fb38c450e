METHOD = "standard"

from search_spaces.common import suggest_embed_dim, suggest_lr  # noqa: E402


def space(trial, family: str) -> None:
    suggest_lr(trial)
    suggest_embed_dim(trial, family)


def paper_defaults(family: str) -> dict:
    return {"lr": 1e-3, "embed_dim": 16 if family == "mnist-like" else 128}

from search_spaces.claims import afd_run  # noqa: E402

# The AFD paper's natural-training re-runs (NT†).
PAPER_CLAIMS = {
    "mnist": afd_run("NT†", "MNIST", 98.80, 0.0, 0.0),
    "cifar10": afd_run("NT†", "CIFAR-10", 95.40, 0.12, 0.0),
}
