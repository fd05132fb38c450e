"""`orch benchmark`'s presets and what it writes: the leaderboard (benchmark.md, .csv, .html) and
its two figures, all computed from the per-example records of each method's fresh-seed sweep
(report.leaderboard), beside the chosen configuration, the cost and each paper's claim."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from orchestrator.records import examples, parquet
from orchestrator.report import draw, html, pairs, verdicts
from orchestrator.report.leaderboard import (METRICS, estimate, leaderboard, outcome_matrices, p_cell,
                                             p_text, per_seed)
from search_spaces import SPACES

TABLE_FILE, CSV_FILE, HTML_FILE = "benchmark.md", "benchmark.csv", "benchmark.html"
SEEDS_CSV_FILE = "benchmark_seeds.csv"
REFERENCE = "madry"


@dataclass(frozen=True)
class BenchmarkPreset:
    dataset: str
    model: str
    trials: int  # Optuna trials per method (the paper's defaults first)
    seeds: int  # fresh seeds the chosen configuration is re-trained with
    epochs: int  # the most any trial trains; ASHA may stop a search trial earlier
    test_examples: int  # the first T points of the test split (0: all of it)
    claims: str  # the key of each method's PAPER_CLAIMS
    why: str  # why these numbers
    sets: dict[str, str] = field(default_factory=dict)  # --set values every sweep gets
    needs_data_dir: bool = False


BENCHMARKS = {
    "digits": BenchmarkPreset(
        dataset="digits", model="small-cnn", trials=6, seeds=3, epochs=10, test_examples=0, claims="mnist",
        why="CPU, offline, all 8 methods in about an hour on 2 cores: 6 trials per method (the paper's "
            "defaults and 5 Optuna proposals; ASHA stops the weak early), 10 epochs, 3 fresh seeds to show "
            "seed-to-seed spread, and all 359 test points (one accuracy is known to about ±5 points; a "
            "paired difference more finely)."),
    "mnist-cpu": BenchmarkPreset(
        dataset="npz", model="small-cnn", trials=4, seeds=3, epochs=20, test_examples=500, claims="mnist",
        sets={"target_eps": "0.3", "train_steps": "10", "eval_steps": "20", "batch_size": "50"},
        needs_data_dir=True,
        why="10,000 real MNIST digits (--data-dir mnist-10k.npz) on 2 CPU cores, 1.4 to 3.5 hours per method: "
            "a search of about 25-70 min, then 3 seeds at once, each 9-36 CPU-min of training and 5-100 of the "
            "standard evaluation of 500 points (mostly AutoAttack, on the points still standing: the "
            "undefended model took 1.4 hours in all and atld 1.6; madry, tla and er-classifier about 3-3.3). "
            "Run --methods one at a time, then merge with orch leaderboard. 4 trials, 3 seeds, 500 test "
            "points (one accuracy to about ±4 points). 20 epochs from madry's learning curve "
            "(docs/benchmark/mnist-cpu/learning-curve.csv): its strong validation accuracy gains about "
            "3 points an epoch up to epoch 9, then under 1 (0.742 at epoch 14, 0.782 at 20), inside "
            "the ±2 points that 500 validation points resolve."),
    "mnist": BenchmarkPreset(
        dataset="mnist", model="lenet", trials=20, seeds=5, epochs=50, test_examples=1000, claims="mnist",
        sets={"target_eps": "0.3", "train_steps": "40", "train_step_size": "0.01", "eval_steps": "40"},
        why="GPU, paper scale: full MNIST, LeNet, ε 0.3, PGD-40 training, 50 epochs, 20 trials and 5 "
            "seeds per method, 1,000 test points (±3 points per accuracy; paired differences finer)."),
    "cifar10": BenchmarkPreset(
        dataset="cifar10", model="resnet18", trials=20, seeds=5, epochs=100, test_examples=1000,
        claims="cifar10",
        sets={"target_eps": "8/255", "train_steps": "10", "train_step_size": "2/255", "eval_steps": "20"},
        why="GPU, paper scale: CIFAR-10, ResNet-18, ε 8/255, PGD-10 training, 100 epochs, 20 trials and "
            "5 seeds per method, 1,000 test points. Measured on one H200 (bench/throughput.py): madry's "
            "PGD-10 training steps at about 1,500 images/s at batch 128 (4,500 at batch 512), so 100 "
            "epochs are about 55 min of training per trial before validation and evaluation."),
}


def read_records(final_dirs: list[Path]) -> pd.DataFrame:
    """The per-example records of every method's fresh-seed sweep."""
    paths = [d / examples.EXAMPLES_FILE for d in final_dirs if (d / examples.EXAMPLES_FILE).is_file()]
    return examples.read(paths).to_pandas()


def trial_rows(final_dirs: list[Path]) -> pd.DataFrame:
    frames = [pd.read_parquet(d / parquet.TRIALS_FILE) for d in final_dirs if (d / parquet.TRIALS_FILE).is_file()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def rows(records: pd.DataFrame, judged: dict[str, verdicts.Judged], info: dict[str, dict[str, Any]],
         target_eps: float, claims: str, reference: str = REFERENCE) -> list[dict[str, Any]]:
    """The leaderboard's rows: the statistics (report.leaderboard, each method compared with
    `reference`) with each method's chosen configuration, costs, sanity flags, verdict and paper
    claim (`judged`: verdicts.judge's); flagged methods after the sound ones."""
    board = leaderboard(records, target_eps, reference)
    reference_reading = judged[reference].reading if reference in judged else None
    out = [{**row, **info.get(row["method"], {}), "flags": judged[row["method"]].flags,
            "verdict": verdicts.verdict(row["comparison"], judged[row["method"]].reading, reference_reading),
            "claim": _claim(row["method"], claims)}
           for row in board.to_dict("records")]
    return sorted(out, key=lambda r: bool(r["flags"]))  # stable: sound ones keep their order


def _claim(method: str, key: str) -> str:
    """The paper's worst-case (else AutoAttack) number for this dataset, with what it is."""
    row = SPACES[method].PAPER_CLAIMS.get(key, {}) if method in SPACES else {}
    claim = row.get("claims", {}).get("worst") or row.get("claims", {}).get("autoattack")
    if claim is None:
        return "—"
    return (f"{claim.value:g} ({claim.paper.split(' (')[0]}, {claim.table}; {claim.dataset}; {claim.model}; "
            f"{claim.attack}; ε {claim.eps}; points: {claim.n_points})")


def header(reference: str) -> list[str]:
    return ["method", "seeds × points", "clean", "AutoAttack alone", "worst case", f"vs {reference} (worst case)",
            "verdict", "chosen configuration", "search core-s", "train CPU-s / seed", "eval CPU-s / seed",
            "flags", "paper's claim (its own protocol)"]


def cells(row: dict[str, Any]) -> list[str]:
    comparison = row["comparison"]
    difference = "—" if comparison is None else (
        "reference" if comparison.verdict == "reference" else
        f"{comparison.difference.signed()} (p{p_text(comparison.p_value)})")
    return [row["method"], f"{row['seeds']} × {row['points']}", row["clean"].percent(),
            row["autoattack"].percent(), row["worst"].percent(), difference, row["verdict"],
            row.get("config", "—"), _seconds(row.get("search_core_s")), _seconds(row.get("train_cpu_s")),
            _seconds(row.get("eval_cpu_s")), ", ".join(row["flags"]) or "none", row["claim"]]


def _seconds(value: Any) -> str:
    return "—" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:,.0f}"


def legend(reference: str) -> str:
    return _LEGEND.format(reference=reference)


_LEGEND = ("Test accuracy in %, mean over seeds and test points, at the target ε, with a 95% two-way "
          "bootstrap interval (test points and seeds resampled together). Worst case: a point counts "
          "as robust only if no attack (AutoAttack, PGD, CW, FGSM, the sanity attacks) broke it at any "
          "ε up to the target. vs {reference}: the paired difference in worst-case accuracy (same points, "
          "same seed index) with its 95% interval and McNemar's exact p; better/worse only when the "
          "interval excludes 0 and p < 0.05. Rows are ordered by mean worst case; an order within "
          "'not distinguishable' is not a ranking. A flagged method (a failed sanity check, a "
          "collapsed training) is listed last and not ranked, except where the flag cannot change the "
          "verdict: every check it failed says the attacks may have missed points, so its worst case "
          "is an upper bound, and one already worse than a sound reference is 'worse' (a flagged "
          "reference's worst case is an upper bound too: a sound method can still be 'better'); the black-box checks (whitebox_le_blackbox, "
          "autoattack_square_gain_small) are judged here from the records, at ε up to the target. Costs: the search "
          "in core-seconds (every trial's wall time times the cores it held); training and evaluation in "
          "CPU-seconds of the trial processes, the mean over the seeds that counted them; — where a count was "
          "lost (a run resumed from a checkpoint that did not carry it). Paper's claim: its own model and protocol, not comparable with these numbers.")


SEEDS_HEADER = ["method", "seeds", "clean", "AutoAttack alone", "worst case", "worst case: best − worst seed",
                "epoch evaluated"]
SEEDS_LEGEND = ("Each seed's own accuracy at the target ε over the same test points, in %, seeds in increasing "
                "order. The spread says how far one configuration's seeds fall apart; the intervals above "
                "include it. Epoch evaluated: the epoch whose weights were tested (the best one under the "
                "per-epoch validation PGD, the same rule for every method), of the epochs trained.")


def seed_cells(board: list[dict[str, Any]], seeds: pd.DataFrame) -> list[list[str]]:
    """Per method, in the leaderboard's order: the seeds, each metric and the evaluated epoch seed
    by seed."""
    out = []
    for r in board:
        mine = seeds[seeds["method"] == r["method"]]
        by_metric = [" / ".join("—" if np.isnan(v) else f"{100 * v:.1f}" for v in mine[m]) for m in METRICS]
        spread = mine["worst"].max() - mine["worst"].min()
        out.append([r["method"], ", ".join(map(str, mine["seed"])), *by_metric, f"{100 * spread:.1f}",
                    _epochs_cell(mine)])
    return out


def _epochs_cell(seeds: pd.DataFrame) -> str:
    """E.g. "18 / 13 / 1 of 20"; — for a seed whose records do not say."""
    evaluated = " / ".join("—" if pd.isna(e) else f"{e:.0f}" for e in seeds["evaluated_epoch"])
    trained = seeds["epochs"].dropna().unique()
    return evaluated + (f" of {trained[0]:.0f}" if len(trained) == 1 else "")


def write(root: Path, title: str, merged: Leaderboard) -> list[Path]:
    """benchmark.md/.csv/.html, the per-seed CSV and the figures of `merged` in `root`."""
    board, records, target_eps, reference = merged.rows, merged.records, merged.target_eps, merged.reference
    table = [cells(r) for r in board]
    head, said = header(reference), legend(reference)
    seeds = per_seed(records, target_eps).merge(merged.epochs, on=["method", "seed"], how="left")
    by_seed = seed_cells(board, seeds)
    every_pair, pairs_said = [pairs.cells(p) for p in merged.pairs], pairs.legend(len(merged.pairs))
    (root / TABLE_FILE).write_text("\n".join([
        title, "", *_markdown(head, table), "", said, "", "Per seed:", "", *_markdown(SEEDS_HEADER, by_seed),
        "", SEEDS_LEGEND, "", "Every pair:", "", *_markdown(pairs.HEADER, every_pair), "", pairs_said, ""]))
    _write_csv(root / CSV_FILE, board, reference)
    seeds.to_csv(root / SEEDS_CSV_FILE, index=False)
    pairs.write_csv(root / pairs.PAIRS_CSV_FILE, merged.pairs)
    figures = _figures(root, board, records, target_eps)
    shown = html.table(head, table, ["untrusted" if r["flags"] else "" for r in board]) + html.paragraph(said)
    shown += "".join(html.figure(path, caption) for path, caption in figures)
    per_seed_section = html.table(SEEDS_HEADER, by_seed) + html.paragraph(SEEDS_LEGEND)
    pairs_section = html.table(pairs.HEADER, every_pair) + html.paragraph(pairs_said)
    (root / HTML_FILE).write_text(html.page("orch benchmark", title, [
        ("Leaderboard", shown), ("Per seed", per_seed_section), ("Every pair", pairs_section)]))
    return [root / TABLE_FILE, root / CSV_FILE, root / HTML_FILE, root / SEEDS_CSV_FILE,
            root / pairs.PAIRS_CSV_FILE, *(p for p, _ in figures)]


def _markdown(header: list[str], table: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in table)]


def _write_csv(path: Path, board: list[dict[str, Any]], reference: str) -> None:
    """Numbers as numbers (fractions), empty where absent."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "seeds", "points", *(f"{m}_{s}" for m in ("clean", "autoattack", "worst")
                                                        for s in ("mean", "low", "high")),
                         *(f"diff_vs_{reference}_{s}" for s in ("mean", "low", "high")), "p_value", "verdict",
                         "config", "search_core_s", "train_cpu_s", "eval_cpu_s", "flags", "paper_claim"])
        for r in board:
            c = r["comparison"]
            estimates = [v for m in ("clean", "autoattack", "worst") for v in (r[m].mean, r[m].low, r[m].high)]
            diff = [c.difference.mean, c.difference.low, c.difference.high, p_cell(c.p_value)] if c else [""] * 4
            writer.writerow([r["method"], r["seeds"], r["points"], *estimates, *diff, r["verdict"], r.get("config", ""),
                             r.get("search_core_s", ""), r.get("train_cpu_s", ""), r.get("eval_cpu_s", ""),
                             ";".join(r["flags"]), r["claim"]])


def _figures(root: Path, board: list[dict[str, Any]], records: pd.DataFrame,
             target_eps: float) -> list[tuple[Path, str]]:
    rng = np.random.default_rng(0)
    # The curve's ε grid: the sanity measurements' (`<attack>/<role>`) large and unbounded ε are not on it.
    curve_rows = records[~records["attack"].str.contains("/", regex=False)]
    grid = sorted(e for e in curve_rows["eps"].unique() if e > 0)
    series = {}
    for r in board:
        points = [(0.0, r["clean"])] + [
            (eps, estimate(outcome_matrices(records[records["method"] == r["method"]], eps)[r["method"]]["worst"], rng))
            for eps in grid]
        series[r["method"]] = {"eps": [e for e, _ in points], "mean": [s.mean for _, s in points],
                               "low": [s.low for _, s in points], "high": [s.high for _, s in points],
                               "label": r["method"] + (" (flagged)" if r["flags"] else "")}
    autoattack_only_at_target = set(records.loc[records["attack"] == "autoattack", "eps"]) == {target_eps}
    target_label = "target ε (AutoAttack runs here only)" if autoattack_only_at_target else "target ε"
    draw.save(draw.worst_vs_eps_bands(series, target_eps, target_label), root, "benchmark_worst_vs_eps")
    draw.save(draw.clean_vs_worst_bars({r["method"]: (r["clean"], r["worst"], bool(r["flags"])) for r in board}),
              root, "benchmark_clean_vs_worst")
    return [(root / "benchmark_worst_vs_eps.png",
             "Worst-case test accuracy vs ε per method (mean over seeds and points; band: 95% two-way "
             "bootstrap interval). Dotted: the target ε"
             + (", the only ε AutoAttack runs at: below it the curve is over the other attacks, so part of "
                "a drop at it is AutoAttack's, not the ε's." if autoattack_only_at_target else ".")),
            (root / "benchmark_clean_vs_worst.png",
             "Clean vs worst-case accuracy at the target ε per method, with 95% intervals; hollow: flagged.")]


class BenchmarkError(ValueError):
    """Benchmark folders that cannot make one leaderboard; the message says why."""


CLAIMS_OF = {"digits": "mnist", "npz": "mnist", "mnist": "mnist", "cifar10": "cifar10"}


def seed_sweeps(dirs: list[Path]) -> list[Path]:
    """Each benchmark folder's fresh-seed sweeps (`<method>-seeds`), or the folder itself if it is one."""
    found = []
    for folder in dirs:
        found += [folder] if folder.name.endswith("-seeds") else sorted(folder.glob("*-seeds"))
    return [d for d in found if (d / parquet.TRIALS_FILE).is_file()]


def costs(seeds_sweep: Path) -> dict[str, float]:
    """The method's whole search (its sibling `-search` sweep) in core-seconds: every trial's wall
    time, stopped ones included, times the cores it held; and per fresh seed the CPU-seconds of
    its training and of its evaluation (the trial process's own count), averaged over the seeds
    that have one. A count lost (NaN: a run resumed from a checkpoint that did not carry it) is
    left out of the mean, and makes the search's sum unknown rather than smaller."""
    search_dir = seeds_sweep.with_name(seeds_sweep.name.removesuffix("-seeds") + "-search")
    search = pd.read_parquet(search_dir / parquet.TRIALS_FILE) if (search_dir / parquet.TRIALS_FILE).is_file() \
        else pd.DataFrame()
    seeds = pd.read_parquet(seeds_sweep / parquet.TRIALS_FILE)
    seeds = seeds[seeds["status"] == "FINISHED"]
    cores = _cores_per_trial(search_dir)
    counted = len(search) and cores and search["duration_s"].notna().all()
    return {"search_core_s": float(search["duration_s"].sum() * cores) if counted else float("nan"),
            "train_cpu_s": float(seeds["train_cpu_s"].mean()) if "train_cpu_s" in seeds else float("nan"),
            "eval_cpu_s": float(seeds["eval_cpu_s"].mean()) if "eval_cpu_s" in seeds else float("nan")}


def _saved_sweep(sweep_dir: Path) -> dict[str, Any]:
    """The sweep's sweep.json (what orchestrator.sweep.resume saved; report may not import it),
    or {} where committed records came without it."""
    path = sweep_dir / "sweep.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _cores_per_trial(sweep_dir: Path) -> int | None:
    """The cores each trial of the sweep held: as resolved when it started (sweep.json), else
    --cpus-per-trial as given (sweeps saved before the resolved value was); None when unknown."""
    saved = _saved_sweep(sweep_dir)
    return saved.get("cpus_per_trial") or saved.get("settings", {}).get("cpus_per_trial")


def config_text(trials: pd.DataFrame) -> str:
    """The configuration every fresh seed trained (its hp_* values other than the seed)."""
    row = trials.iloc[0]
    return " ".join(f"{c.removeprefix('hp_')}={row[c]:.4g}" if isinstance(row[c], float) else
                    f"{c.removeprefix('hp_')}={row[c]}" for c in sorted(trials)
                    if c.startswith("hp_") and c != "hp_seed" and pd.notna(row[c]) and not c.startswith("hp_eval")
                    and c != "hp_evaluate_test")


@dataclass(frozen=True)
class Leaderboard:
    """One or more benchmark folders merged: the rows, the per-example records they were computed
    from, and what they are measured at and compared with."""
    rows: list[dict[str, Any]]
    records: pd.DataFrame
    target_eps: float
    dataset: str
    reference: str
    pairs: list[dict[str, Any]]  # report.pairs: every method against every one below it
    data_files: tuple[str, ...]  # the --data-dir files' names (the dataset "npz" names no file)
    epochs: pd.DataFrame  # seed_epochs: per (method, seed), the evaluated epoch and the epochs trained

    def data_text(self) -> str:
        """What the numbers were measured on, e.g. "npz test split of mnist-10k.npz"."""
        return f"{self.dataset} test split" + (" of " + ", ".join(self.data_files) if self.data_files else "")


def seed_epochs(finished: pd.DataFrame) -> pd.DataFrame:
    """Each fresh seed's evaluated epoch (early stopping's best validation epoch) and the epochs it
    trained: an early epoch explains a low clean accuracy the per-seed table shows. NaN where the
    records predate `evaluated_epoch`."""
    frame = finished.reindex(columns=["method", "seed", "evaluated_epoch", "epochs_completed"])
    return frame.rename(columns={"epochs_completed": "epochs"})


def data_files(sweeps: list[Path]) -> tuple[str, ...]:
    """The names of the data files the seed sweeps read (--data-dir as a file, in sweep.json), not
    their folders: the same file lies at different paths on the machines whose records merge."""
    data_dirs = (_saved_sweep(sweep_dir).get("settings", {}).get("data_dir") for sweep_dir in sweeps)
    return tuple(sorted({Path(d).name for d in data_dirs if d and Path(d).suffix == ".npz"}))


def check_same_data(finished: pd.DataFrame) -> None:
    """Two npz files (or two --val-fraction splits) give the same dataset name and the same test
    indices: only the data's content digest tells them apart. Records written before trials
    reported it (schema 3 and older) have none and are not compared."""
    digests = finished["data_digest"].dropna().unique() if "data_digest" in finished else []
    if len(digests) > 1:
        raise BenchmarkError(f"the records were measured on different data (content digests "
                             f"{', '.join(sorted(digests))}): merge only benchmarks run on the same --data-dir")


def build(dirs: list[Path], reference: str | None = None) -> Leaderboard:
    """The leaderboard of one or more benchmark folders merged, every method compared with
    `reference` (default madry, where it was run); BenchmarkError (or RecordsMismatch) when they
    cannot be compared or a `reference` given is not among them."""
    sweeps = seed_sweeps(dirs)
    if not sweeps:
        raise BenchmarkError("no finished fresh-seed sweep (<method>-seeds) in " + ", ".join(map(str, dirs)))
    trials = trial_rows(sweeps)
    methods = trials.groupby("method")["sweep"].nunique()
    if (methods > 1).any():
        raise BenchmarkError(f"method {methods[methods > 1].index[0]} is in more than one of the merged benchmarks")
    finished = trials[trials["status"] == "FINISHED"]
    for column, what in (("target_eps", "target ε"), ("dataset", "dataset")):
        values = finished[column].dropna().unique()
        if len(values) > 1:
            raise BenchmarkError(f"the records were measured at different {what}s "
                                 f"({', '.join(map(str, sorted(values)))}): merge only benchmarks of one preset")
    check_same_data(finished)
    if reference is not None and reference not in set(finished["method"]):
        raise BenchmarkError(f"--reference {reference}: not among the merged methods "
                             f"({', '.join(sorted(set(finished['method'])))})")
    records = read_records(sweeps)
    if records.empty:
        raise BenchmarkError("no per-example records (examples.parquet) in " + ", ".join(map(str, sweeps)))
    target, dataset = float(finished["target_eps"].iloc[0]), str(finished["dataset"].iloc[0])
    info = {}
    for sweep_dir in sweeps:
        mine = finished[finished["sweep"] == sweep_dir.name]
        if len(mine):
            info[mine["method"].iloc[0]] = {"config": config_text(mine), **costs(sweep_dir)}
    reference = reference or REFERENCE
    judged = verdicts.judge(records, finished, target)
    board = rows(records, judged, info, target, CLAIMS_OF.get(dataset, dataset), reference)
    compared = pairs.pairs(board, records, target, judged, reference)
    return Leaderboard(board, records, target, dataset, reference, compared, data_files(sweeps),
                       seed_epochs(finished))
