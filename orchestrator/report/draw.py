"""Matplotlib figures of sweeps, each written as PNG and PDF at a size fixed by its layout.

Figures take plain data (lists, dicts, DataFrames) and never read files: `orchestrator.report`
decides what to plot. Sizes are fixed per layout (no tight bounding box), so a figure's pixel
size is known in advance: `size_px`.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # the driver and CI have no display

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from trainables.attacks import ATTACKS  # noqa: E402
from trainables.attacks import label as attack_name  # noqa: E402

DPI = 100
PANEL_IN = (3.6, 3.0)  # width, height of one panel of a grid, inches
WIDE_IN = (7.2, 4.5)  # single-panel figures
GRID_COLUMNS = {"clean_vs_robust": 4, "importances": 4, "latent_tsne": 4, "hp_effects": 4}
HP_EFFECTS = ("lambda", "embed_dim", "prior", "train_eps")


def grid(n_panels: int, max_columns: int) -> tuple[int, int]:
    """(rows, columns) of a grid holding n panels, filled row by row."""
    columns = max(1, min(n_panels, max_columns))
    return max(1, math.ceil(n_panels / columns)), columns


def size_px(name: str, n_panels: int = 1) -> tuple[int, int]:
    """The pixel size (width, height) of figure `name` with n panels."""
    if name not in GRID_COLUMNS:
        return round(WIDE_IN[0] * DPI), round(WIDE_IN[1] * DPI)
    rows, columns = grid(n_panels, GRID_COLUMNS[name])
    return round(columns * PANEL_IN[0] * DPI), round(rows * PANEL_IN[1] * DPI)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, which always follows the 8-byte signature."""
    header = Path(path).read_bytes()[:24]
    if header[:8] != b"\x89PNG\r\n\x1a\n" or header[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG file")
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def _grid_figure(name: str, n_panels: int) -> tuple[Figure, list[Any]]:
    rows, columns = grid(n_panels, GRID_COLUMNS[name])
    fig, axes = plt.subplots(rows, columns, figsize=(columns * PANEL_IN[0], rows * PANEL_IN[1]),
                             dpi=DPI, squeeze=False, layout="constrained")
    flat = list(axes.flat)
    for unused in flat[n_panels:]:
        unused.set_axis_off()
    return fig, flat[:n_panels]


def _wide_figure() -> tuple[Figure, Any]:
    fig, ax = plt.subplots(figsize=WIDE_IN, dpi=DPI, layout="constrained")
    return fig, ax


def save(fig: Figure, folder: Path, name: str) -> list[Path]:
    """name.png and name.pdf in folder; the figure is closed (pyplot keeps figures alive)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.png", folder / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=DPI)
    # No creation date: the same figure is the same bytes, so a regenerated one only differs in git when it changed.
    fig.savefig(paths[1], dpi=DPI, metadata={"CreationDate": None})
    plt.close(fig)
    return paths


def save_png(fig: Figure, path: Path) -> Path:
    """One PNG (an MLflow artifact); the figure is closed."""
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def method_colors(methods: Iterable[str]) -> dict[str, Any]:
    """One color per method, stable across figures of one report."""
    cmap = plt.get_cmap("tab10")
    return {m: cmap(i % 10) for i, m in enumerate(sorted(set(methods)))}


def attack_label(attack: str, path: str = "predict") -> str:
    # The attack registry names each attack; an attack no longer registered keeps its own name.
    label = attack_name(attack) if attack in ATTACKS or attack in ("clean", "worst") else attack
    return label if path in ("predict", None) else f"{label} on the {path} model"


def curve_figure(curve: Sequence[Mapping[str, Any]], title: str) -> Figure:
    """One trial's robustness curve: accuracy vs ε per attack, the worst case in bold."""
    fig, ax = _wide_figure()
    clean = [p["accuracy"] for p in curve if p["attack"] == "clean"]
    series: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for p in curve:
        if p["attack"] != "clean" and p.get("norm", "Linf") == "Linf":
            series.setdefault((p["attack"], p.get("path", "predict")), []).append((p["eps"], p["accuracy"]))
    for (attack, path), points in sorted(series.items(), key=lambda item: item[0][0] == "worst"):
        eps, acc = zip(*sorted([(0.0, clean[0])] + points if clean else points))
        worst = attack == "worst"
        ax.plot(eps, acc, marker="o", markersize=3, linewidth=2.5 if worst else 1.2,
                color="black" if worst else None, label=attack_label(attack, path))
    _accuracy_axes(ax, "ε (L∞, pixel units)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return fig


def robust_vs_eps(series: Mapping[str, Mapping[str, Sequence[float]]], attack_set: str,
                  target_eps: float | None) -> Figure:
    """Per method: {"eps", "mean", "std", "label"} of the worst-case accuracy of its best config.
    The title is one line; the attacks and their budgets (`attack_set`) belong in the caption,
    which the callers write (figures.py; summary_figures saves it beside the PNG)."""
    fig, ax = _wide_figure()
    colors = method_colors(series)
    for method, s in sorted(series.items()):
        eps, mean, std = (np.asarray(s[k], dtype=float) for k in ("eps", "mean", "std"))
        ax.plot(eps, mean, marker="o", markersize=3, color=colors[method], label=s["label"])
        ax.fill_between(eps, mean - np.nan_to_num(std), mean + np.nan_to_num(std),
                        color=colors[method], alpha=0.2, linewidth=0)
    if target_eps is not None:
        ax.axvline(target_eps, color="grey", linestyle=":", linewidth=1)
    _accuracy_axes(ax, "ε (L∞, pixel units)")
    several_seeds = any(np.isfinite(np.asarray(s["std"], dtype=float)).any() for s in series.values())
    ax.set_title("Worst-case accuracy vs ε, best configuration per method"
                 + (" (mean ± std over seeds)" if several_seeds else ""), fontsize=9)
    ax.legend(fontsize=8)
    return fig


def clean_vs_robust(panels: Mapping[str, Mapping[str, Sequence[Any]]]) -> Figure:
    """Per method panel: {"clean", "robust", "pareto", "trusted"} per trial; the Pareto front is
    drawn as a step line and filled markers; untrusted trials are crosses."""
    fig, axes = _grid_figure("clean_vs_robust", len(panels))
    colors = method_colors(panels)
    for ax, (method, p) in zip(axes, sorted(panels.items())):
        clean, robust = np.asarray(p["clean"], float), np.asarray(p["robust"], float)
        front, trusted = np.asarray(p["pareto"], bool), np.asarray(p["trusted"], bool)
        layers = [(~front & trusted, dict(s=18, facecolors="none", edgecolors=colors[method], label="trial")),
                  (front, dict(s=30, color=colors[method], label="Pareto front")),
                  (~trusted, dict(s=30, marker="x", color="red", label="untrusted"))]
        for mask, style in layers:
            if mask.any():  # an empty layer would still get a legend entry
                ax.scatter(clean[mask], robust[mask], **style)
        order = np.argsort(-clean[front])
        ax.step(clean[front][order], robust[front][order], where="post", color=colors[method], linewidth=1)
        _accuracy_axes(ax, "clean accuracy")
        ax.set_xlim(0, 1.02)
        ax.set_title(method, fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    axes[0].set_ylabel("robust accuracy (worst case)")
    return fig


def hp_effects(points: Mapping[str, Mapping[str, Sequence[Any]]]) -> Figure:
    """points[method][hp] = values, points[method]["robust"] = robust accuracy, per trial; one
    panel per searched dimension of HP_EFFECTS."""
    fig, axes = _grid_figure("hp_effects", len(HP_EFFECTS))
    colors = method_colors(points)
    for ax, hp in zip(axes, HP_EFFECTS):
        plotted = False
        categories = sorted({str(v) for p in points.values() for v in p.get(hp, []) if _present(v)})
        numeric = hp != "prior"
        for method, p in sorted(points.items()):
            pairs = [(v, r) for v, r in zip(p.get(hp, []), p["robust"]) if _present(v)]
            if not pairs:
                continue
            xs, ys = zip(*pairs)
            xs = [float(x) for x in xs] if numeric else [categories.index(str(x)) for x in xs]
            ax.scatter(xs, ys, s=18, color=colors[method], label=method)
            plotted = True
        if hp == "lambda" and plotted:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(categories)), categories)
        _accuracy_axes(ax, hp)
        if plotted:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not searched", ha="center", va="center", transform=ax.transAxes)
    axes[0].set_ylabel("robust accuracy (worst case)")
    return fig


def importances(panels: Mapping[str, Mapping[str, float]]) -> Figure:
    """Optuna's parameter importances (for the robust objective), one panel per study."""
    fig, axes = _grid_figure("importances", len(panels))
    for ax, (label, values) in zip(axes, sorted(panels.items())):
        names = sorted(values, key=values.get)
        ax.barh(names, [values[n] for n in names], color="tab:blue")
        ax.set_xlim(0, 1)
        ax.set_xlabel("importance (fANOVA)")
        ax.set_title(label, fontsize=9)
    return fig


def latent_tsne(panels: Mapping[str, Mapping[str, np.ndarray]]) -> Figure:
    """Per method two panels sharing axes: clean and adversarial codes, colored by true class."""
    fig, axes = _grid_figure("latent_tsne", 2 * len(panels))
    cmap = plt.get_cmap("tab10")
    for i, (method, p) in enumerate(sorted(panels.items())):
        xy, labels, adversarial = p["tsne"], p["label"], p["adversarial"]
        for ax, adv, kind in ((axes[2 * i], False, "clean"), (axes[2 * i + 1], True, "adversarial")):
            mask = adversarial == adv
            ax.scatter(xy[mask, 0], xy[mask, 1], c=[cmap(int(c) % 10) for c in labels[mask]], s=6)
            ax.set_xlim(xy[:, 0].min() - 1, xy[:, 0].max() + 1)
            ax.set_ylim(xy[:, 1].min() - 1, xy[:, 1].max() + 1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{method}: {kind}", fontsize=9)
    return fig


def _accuracy_axes(ax: Any, xlabel: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)


def _padded_span(values: Sequence[float], pad: float = 0.15) -> tuple[float, float]:
    """From below the lowest to above the highest value, by `pad` of their span (at least 0.01),
    inside -0.02 to 1.02."""
    low, high = min(values), max(values)
    margin = max(pad * (high - low), 0.01)
    return max(low - margin, -0.02), min(high + margin, 1.02)


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def worst_vs_eps_bands(series: Mapping[str, Mapping[str, Any]], target_eps: float,
                       target_label: str = "target ε") -> Figure:
    """Per method: {"eps", "mean", "low", "high", "label"}: the worst-case accuracy and its
    interval band; the target ε dotted, named in the legend by `target_label`."""
    fig, ax = _wide_figure()
    colors = method_colors(series)
    for method, s in sorted(series.items()):
        eps, mean, low, high = (np.asarray(s[k], dtype=float) for k in ("eps", "mean", "low", "high"))
        ax.plot(eps, mean, marker="o", markersize=3, color=colors[method], label=s["label"])
        ax.fill_between(eps, low, high, color=colors[method], alpha=0.2, linewidth=0)
    ax.axvline(target_eps, color="grey", linestyle=":", linewidth=1, label=target_label)
    _accuracy_axes(ax, "ε (L∞, pixel units)")
    ax.set_title("Worst-case accuracy vs ε (95% intervals)", fontsize=9)
    ax.legend(fontsize=8)
    return fig


def clean_vs_worst_bars(points: Mapping[str, tuple[Any, Any, bool]]) -> Figure:
    """Per method: (clean, worst case, flagged), each an estimate with mean, low and high."""
    fig, ax = _wide_figure()
    colors = method_colors(points)
    for method, (clean, worst, flagged) in sorted(points.items()):
        ax.errorbar(clean.mean, worst.mean, xerr=[[clean.mean - clean.low], [clean.high - clean.mean]],
                    yerr=[[worst.mean - worst.low], [worst.high - worst.mean]], fmt="o",
                    color=colors[method], mfc="none" if flagged else colors[method],
                    label=method + (" (flagged)" if flagged else ""), capsize=3)
        ax.annotate(method, (clean.mean, worst.mean), xytext=(6, 4), textcoords="offset points",
                    fontsize=8, color=colors[method])
    _accuracy_axes(ax, "clean accuracy")
    # Clean accuracies of trained models sit within a few points of each other: on a 0-1 axis
    # their error bars would be one blur, so the x axis spans the intervals (worst case keeps 0-1).
    ax.set_xlim(*_padded_span([v for clean, _, _ in points.values() for v in (clean.low, clean.high)]))
    ax.set_ylabel("worst-case accuracy at the target ε")
    ax.set_title("Clean vs worst case (95% intervals)", fontsize=9)
    ax.legend(fontsize=8)
    return fig
