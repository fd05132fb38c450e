"""The leaderboard is computed from per-example records: planted records give the numbers and
verdicts they must."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from orchestrator.report.leaderboard import RecordsMismatch, leaderboard, outcome_matrices, per_seed

TARGET = 0.1


def records(method: str, outcomes: dict[tuple[str, float], np.ndarray], seeds=(10, 11), points=None) -> pd.DataFrame:
    """Rows for `method`: outcomes[(attack, eps)] is a [seed, point] bool matrix."""
    rows = []
    for (attack, eps), matrix in outcomes.items():
        for i, seed in enumerate(seeds):
            for j, correct in enumerate(matrix[i]):
                rows.append({"method": method, "seed": seed, "attack": attack, "path": "predict", "eps": eps,
                             "index": (points[j] if points is not None else j), "correct": bool(correct)})
    return pd.DataFrame(rows)


def shown_flags(trials: pd.DataFrame) -> list[str]:
    """The flags the leaderboard shows for these trials, with no black-box check re-judged."""
    from orchestrator.report.verdicts import described, failed
    return described(trials, failed(trials, {}), {})


def model(rng: np.random.Generator, clean: float, robust: float, n: int = 400) -> dict:
    clean_ok = rng.random((2, n)) < clean
    robust_ok = clean_ok & (rng.random((2, n)) < robust / clean)
    return {("clean", 0.0): clean_ok, ("pgd", TARGET): robust_ok, ("autoattack", TARGET): robust_ok}


def test_two_identical_models_differ_by_zero_and_are_not_distinguishable():
    outcomes = model(np.random.default_rng(0), 0.9, 0.6)
    board = leaderboard(pd.concat([records("madry", outcomes), records("twin", outcomes)]), TARGET)
    twin = board[board["method"] == "twin"].iloc[0]
    assert twin["comparison"].difference.mean == 0.0
    assert twin["comparison"].verdict == "not distinguishable"


def test_a_planted_better_model_is_better_and_a_worse_one_worse():
    rng = np.random.default_rng(1)
    base = model(rng, 0.9, 0.5)
    better = {key: value.copy() for key, value in base.items()}
    # The same points, plus 80 of the broken-but-clean ones now robust: a paired gain.
    broken = np.flatnonzero(base[("clean", 0.0)][0] & ~base[("pgd", TARGET)][0])[:80]
    for key in (("pgd", TARGET), ("autoattack", TARGET)):
        better[key][:, broken] = True
    board = leaderboard(pd.concat([records("madry", base), records("better", better)]), TARGET)
    verdicts = dict(zip(board["method"], [c.verdict for c in board["comparison"]]))
    assert verdicts == {"madry": "reference", "better": "better"}
    reverse = leaderboard(pd.concat([records("madry", better), records("worse", base)]), TARGET)
    assert dict(zip(reverse["method"], [c.verdict for c in reverse["comparison"]]))["worse"] == "worse"


def test_worst_case_counts_a_break_at_a_smaller_eps_and_any_attack():
    """Point 0 survives PGD at the target but Square broke it at a smaller ε: not robust."""
    ok = np.ones((2, 3), dtype=bool)
    square_small = ok.copy()
    square_small[:, 0] = False
    outcomes = {("clean", 0.0): ok, ("pgd", TARGET): ok, ("square", TARGET / 2): square_small,
                ("autoattack", TARGET): ok, ("pgd", 0.3): np.zeros((2, 3), dtype=bool)}
    matrices = outcome_matrices(records("m", outcomes), TARGET)
    assert matrices["m"]["worst"].tolist() == [[False, True, True]] * 2
    assert matrices["m"]["autoattack"].all()  # AutoAttack alone is what it measured


def test_intervals_contain_the_mean_and_shrink_with_more_points():
    wide = leaderboard(records("madry", model(np.random.default_rng(2), 0.9, 0.6, n=100)), TARGET)
    narrow = leaderboard(records("madry", model(np.random.default_rng(2), 0.9, 0.6, n=1600)), TARGET)
    for board in (wide, narrow):
        worst = board.iloc[0]["worst"]
        assert worst.low <= worst.mean <= worst.high
    assert narrow.iloc[0]["worst"].high - narrow.iloc[0]["worst"].low < \
        wide.iloc[0]["worst"].high - wide.iloc[0]["worst"].low


def test_records_on_different_test_points_are_refused():
    outcomes = model(np.random.default_rng(3), 0.9, 0.6, n=5)
    merged = pd.concat([records("madry", outcomes), records("other", outcomes, points=[0, 1, 2, 3, 9])])
    with pytest.raises(RecordsMismatch, match="different test points"):
        leaderboard(merged, TARGET)


def test_a_flag_says_how_many_seeds_it_hit():
    """One collapsed seed in three reads as one in three, a check failed on every seed as all."""
    trials = pd.DataFrame({"seed": [1, 2, 3], "collapsed": [False, False, True],
                           "sanity_autoattack_static_defense": [False, False, False],
                           "sanity_monotone_in_eps": [True, True, True], "sanity_trusted": [False, False, False]})
    assert shown_flags(trials) == ["autoattack_static_defense (3/3 seeds)", "collapsed (1/3 seeds)"]
    assert shown_flags(trials.assign(collapsed=False, sanity_autoattack_static_defense=True)) == []


def square_stage(broken: int, n: int = 500) -> dict:
    """A sound model's records but for AutoAttack's Square stage, which broke `broken` points on
    the first seed that the gradient attacks (and its earlier stages) had left."""
    ok = np.ones((2, n), dtype=bool)
    square = ok.copy()
    square[0, :broken] = False
    return {("clean", 0.0): ok, ("pgd", TARGET): ok, ("apgd-ce/autoattack", TARGET): ok,
            ("square/autoattack", TARGET): square, ("autoattack", TARGET): square}


def test_the_blackbox_checks_are_judged_from_the_records_not_the_stored_flags():
    """Stored before the rule changed, a trial's square flag failed on one point of 500 (the
    package's comparison) and its whitebox flag on a gap past the target ε: the leaderboard judges
    both again from the records, and flags a Square stage that broke 10 points of 500."""
    from orchestrator.report.benchmark import rows
    from orchestrator.report.verdicts import judge
    stored = pd.DataFrame({"method": ["m", "m"], "seed": [10, 11], "sanity_autoattack_square_no_gain": [False, True],
                           "sanity_whitebox_le_blackbox": [False, True]})

    def flags(broken: int, beyond_target_gap: bool = False) -> list[str]:
        outcomes = square_stage(broken)
        if beyond_target_gap:  # transfer breaks half of the points at 3x the target ε
            transfer = np.ones((2, 500), dtype=bool)
            transfer[:, ::2] = False
            outcomes.update({("pgd", 3 * TARGET): np.ones((2, 500), dtype=bool), ("transfer", 3 * TARGET): transfer})
        merged = records("m", outcomes)
        return rows(merged, judge(merged, stored, TARGET), {}, TARGET, "mnist")[0]["flags"]

    assert flags(1) == [] and flags(1, beyond_target_gap=True) == []
    assert flags(10) == ["autoattack_square_gain_small (1/2 seeds)"]
    transfer_at_target = square_stage(0)
    transfer_at_target[("transfer", TARGET)] = np.tile(np.arange(500) % 2 == 1, (2, 1))
    merged = records("m", transfer_at_target)
    assert rows(merged, judge(merged, stored, TARGET), {}, TARGET, "mnist")[0]["flags"] == [
        "whitebox_le_blackbox (2/2 seeds)"]


def test_a_methods_intervals_do_not_depend_on_which_others_are_merged():
    rng = np.random.default_rng(3)
    madry, tla, afd = model(rng, 0.9, 0.6), model(rng, 0.9, 0.62), model(rng, 0.9, 0.5)
    pair = leaderboard(pd.concat([records("madry", madry), records("tla", tla)]), TARGET)
    three = leaderboard(pd.concat([records("afd", afd), records("madry", madry), records("tla", tla)]), TARGET)
    row = lambda board: board[board["method"] == "tla"].iloc[0]  # noqa: E731
    assert row(pair)["worst"] == row(three)["worst"]
    assert row(pair)["comparison"].difference == row(three)["comparison"].difference


def test_a_p_value_too_small_for_a_float_is_shown_as_a_bound_not_zero():
    """An undefended model against madry: ~1,500 discordant pairs all one way, whose exact p
    (about 1e-450) underflows to 0.0; the table says p<1e-300, never p=0."""
    from orchestrator.report.leaderboard import p_text
    robust = {("clean", 0.0): np.ones((2, 750), bool), ("pgd", TARGET): np.ones((2, 750), bool),
              ("autoattack", TARGET): np.ones((2, 750), bool)}
    broken = {**robust, ("pgd", TARGET): np.zeros((2, 750), bool), ("autoattack", TARGET): np.zeros((2, 750), bool)}
    board = leaderboard(pd.concat([records("madry", robust), records("standard", broken)]), TARGET)
    p_value = board[board["method"] == "standard"].iloc[0]["comparison"].p_value
    assert p_text(p_value) == "<1e-300"
    assert p_text(7.9e-26) == "=7.9e-26"


def test_each_seed_is_shown_with_its_own_numbers_and_the_spread():
    """Seed 11's model (the records' first rows) lost 3 of 4 points, seed 10's none: each keeps its
    own numbers, in seed order, and the spread is the gap between them; seed 11 was evaluated at
    its epoch 4 of 10, seed 10's trial (older records) does not say."""
    from orchestrator.report.benchmark import seed_cells, seed_epochs
    ok = np.ones((2, 4), dtype=bool)
    pgd = ok.copy()
    pgd[0, :3] = False
    table = per_seed(records("m", {("clean", 0.0): ok, ("pgd", TARGET): pgd, ("autoattack", TARGET): ok},
                             seeds=(11, 10)), TARGET)
    assert table[["seed", "clean", "autoattack", "worst"]].values.tolist() == [[10, 1.0, 1.0, 1.0],
                                                                              [11, 1.0, 1.0, 0.25]]
    trials = pd.DataFrame([{"method": "m", "seed": 11, "evaluated_epoch": 4, "epochs_completed": 10},
                           {"method": "m", "seed": 10, "evaluated_epoch": None, "epochs_completed": 10}])
    table = table.merge(seed_epochs(trials), on=["method", "seed"], how="left")
    assert seed_cells([{"method": "m"}], table) == [["m", "10, 11", "100.0 / 100.0", "100.0 / 100.0",
                                                     "100.0 / 25.0", "75.0", "— / 4 of 10"]]


def test_a_failed_flag_says_the_value_it_judged_on_the_seeds_it_failed():
    """Zero-gradient pixels on 36%, 41% and 2% of the input: failed on two seeds, and the flag says
    by how much there; records without the values say the count alone."""
    trials = pd.DataFrame({"seed": [1, 2, 3], "sanity_no_zero_gradients": [False, False, True],
                           "measured_zero_grad_fraction": [0.36, 0.41, 0.02]})
    assert shown_flags(trials) == ["no_zero_gradients (2/3 seeds; zero_grad_fraction 0.36-0.41)"]
    assert shown_flags(trials.drop(columns="measured_zero_grad_fraction")) == ["no_zero_gradients (2/3 seeds)"]


def test_pgd_doing_worse_than_fgsm_is_said_where():
    """trades on mnist-cpu: PGD beat FGSM's accuracy by 10 points at ε 0.35 on one seed, past the
    target 0.3, not at it: the flag names 0.35 alone (a gap within the tolerance is no failure)."""
    from orchestrator.report.verdicts import pgd_above_fgsm
    n = 100

    def share(*per_seed):  # [seed, point]: the first k points of each seed correct
        return np.array([[j < k for j in range(n)] for k in per_seed])
    outcomes = {("fgsm", 0.3): share(90, 90), ("pgd", 0.3): share(87, 92),
                ("fgsm", 0.35): share(16, 44), ("pgd", 0.35): share(26, 3)}
    assert pgd_above_fgsm(records("trades", outcomes)) == {"trades": [0.35]}
    assert pgd_above_fgsm(records("madry", {("fgsm", 0.3): share(90, 90), ("pgd", 0.3): share(80, 80)})) == {}


def test_a_cost_count_that_was_lost_is_unknown_not_small(tmp_path):
    """A run resumed from a checkpoint that did not carry its counts left NaN: the per-seed mean
    is over the seeds that counted, the search's sum is unknown, and the table says —."""
    import json

    from orchestrator.report.benchmark import _seconds, costs

    for sweep, rows in (("m-search", [{"status": "FINISHED", "duration_s": 100.0},
                                      {"status": "STOPPED", "duration_s": float("nan")}]),
                        ("m-seeds", [{"status": "FINISHED", "train_cpu_s": 10.0, "eval_cpu_s": float("nan")},
                                     {"status": "FINISHED", "train_cpu_s": 20.0, "eval_cpu_s": float("nan")},
                                     {"status": "FINISHED", "train_cpu_s": float("nan"), "eval_cpu_s": float("nan")}])):
        (tmp_path / sweep).mkdir()
        pd.DataFrame(rows).to_parquet(tmp_path / sweep / "trials.parquet")
        (tmp_path / sweep / "sweep.json").write_text(json.dumps({"cpus_per_trial": 2, "settings": {}}))
    found = costs(tmp_path / "m-seeds")
    assert found["train_cpu_s"] == 15.0
    assert [_seconds(found[key]) for key in ("search_core_s", "eval_cpu_s")] == ["—", "—"]


def test_a_flag_withholds_only_the_verdicts_it_could_change():
    """A flag that says the attacks may have missed points makes a worst case an upper bound: a
    flagged method already worse than a sound madry is worse; flagged and better, it is not
    ranked; a flag that can also lower the number (adv_in_ball, a randomised model) withholds
    every verdict. Against a
    flagged reference, a sound method can be better, never worse."""
    from orchestrator.report.benchmark import rows
    from orchestrator.report.verdicts import judge
    rng = np.random.default_rng(4)
    strong, weak = model(rng, 0.95, 0.8), model(rng, 0.95, 0.4)
    merged = pd.concat([records("madry", strong), records("weak", weak)])

    def verdicts(failed: dict[str, str], reference: str = "madry") -> dict[str, str]:
        trials = pd.DataFrame([{"method": m, "seed": s, **{f"sanity_{c}": m != failed.get(c) for c in failed}}
                               for m in ("madry", "weak") for s in (10, 11)])
        return {r["method"]: r["verdict"] for r in rows(merged, judge(merged, trials, TARGET), {}, TARGET, "mnist", reference)}

    assert verdicts({})["weak"] == "worse"
    assert verdicts({"more_steps_no_gain": "weak"})["weak"].startswith("worse (flagged")
    assert verdicts({"adv_in_ball": "weak"})["weak"] == "not ranked (flagged)"
    assert verdicts({"deterministic_logits": "weak"})["weak"] == "not ranked (flagged)"
    assert verdicts({"no_zero_gradients": "madry"})["weak"] == "not ranked (the reference is flagged)"
    assert verdicts({"no_zero_gradients": "weak"}, reference="weak")["madry"].startswith("better (the reference")
    assert verdicts({"no_zero_gradients": "madry"}, reference="weak")["madry"] == "not ranked (flagged)"


def test_every_pair_is_compared_and_judged_by_both_flags():
    """Not only each method against the reference: every pair, in the leaderboard's order, with
    the paired difference and a verdict that a flag on either side withholds as the reference
    column's would, naming the method that is flagged."""
    from orchestrator.report.pairs import pairs
    from orchestrator.report.verdicts import EXACT, UNREADABLE, UPPER_BOUND, Judged
    rng = np.random.default_rng(5)
    strong, middle = model(rng, 0.95, 0.8), model(rng, 0.95, 0.6)
    merged = pd.concat([records("strong", strong), records("middle", middle), records("twin", middle)])
    sound = {m: Judged([], EXACT) for m in ("strong", "middle", "twin")}
    board = leaderboard(merged, TARGET, reference="middle").to_dict("records")
    found = {(p["method"], p["minus"]): p for p in pairs(board, merged, TARGET, sound, "middle")}
    assert set(found) == {("strong", "middle"), ("strong", "twin"), ("middle", "twin")}
    assert found[("strong", "middle")]["verdict"] == "better"
    assert found[("strong", "middle")]["comparison"].difference.mean == pytest.approx(
        strong[("autoattack", TARGET)].mean() - middle[("autoattack", TARGET)].mean())
    # A pair with the reference is the leaderboard's own comparison, not a second bootstrap.
    row = next(r for r in board if r["method"] == "strong")
    assert found[("strong", "middle")]["comparison"] == row["comparison"]
    assert found[("strong", "twin")]["comparison"].difference.mean > 0
    # With strong as the reference, its pair with middle is middle's row reversed: same p, negated interval.
    by_strong = leaderboard(merged, TARGET, reference="strong").to_dict("records")
    middle_row = next(r for r in by_strong if r["method"] == "middle")["comparison"]
    reversed_pair = next(p for p in pairs(by_strong, merged, TARGET, sound, "strong")
                         if (p["method"], p["minus"]) == ("strong", "middle"))
    assert reversed_pair["comparison"].difference.low == -middle_row.difference.high
    assert reversed_pair["comparison"].p_value == middle_row.p_value
    assert (reversed_pair["verdict"], middle_row.verdict) == ("better", "worse")
    assert found[("middle", "twin")]["comparison"].difference.mean == 0.0
    assert found[("middle", "twin")]["verdict"] == "not distinguishable"

    def verdicts(middle: Judged) -> dict[tuple[str, str], str]:
        return {(p["method"], p["minus"]): p["verdict"]
                for p in pairs(board, merged, TARGET, {**sound, "middle": middle}, "middle")}

    upper_bound = verdicts(Judged(["no_zero_gradients (2/2 seeds)"], UPPER_BOUND))
    assert upper_bound[("strong", "middle")] == "better (middle is flagged: its worst case is an upper bound)"
    assert upper_bound[("middle", "twin")] == "not ranked (flagged)"
    collapsed = verdicts(Judged(["collapsed (1/2 seeds)"], UNREADABLE))
    assert collapsed[("strong", "middle")] == "not ranked (middle is flagged)"


@pytest.mark.parametrize("autoattack_eps, says_only_here", [((TARGET,), True), ((TARGET / 2, TARGET), False)])
def test_the_worst_case_figure_says_where_autoattack_ran(autoattack_eps, says_only_here, tmp_path):
    """Below the target the worst case lacks AutoAttack when it ran at the target only, so part of
    the curve's drop there is the stronger attack, not the ε: the figure's legend and caption say
    so, and only when the records show it."""
    from orchestrator.report.benchmark import _figures
    from orchestrator.report.leaderboard import Estimate

    rng = np.random.default_rng(0)
    outcomes = model(rng, 0.95, 0.6)
    outcomes.update({("pgd", TARGET / 2): outcomes[("clean", 0.0)]})
    outcomes.update({("autoattack", eps): outcomes[("autoattack", TARGET)] for eps in autoattack_eps})
    if TARGET not in autoattack_eps:
        del outcomes[("autoattack", TARGET)]
    row = {"method": "madry", "clean": Estimate(0.95, 0.93, 0.97), "worst": Estimate(0.6, 0.55, 0.65), "flags": ""}
    (curve, caption), _ = _figures(tmp_path, [row], records("madry", outcomes), TARGET)
    assert curve.is_file()
    assert ("the only ε AutoAttack runs at" in caption) is says_only_here


def test_the_leaderboard_names_the_data_file_not_its_path(tmp_path):
    """The dataset "npz" names no file: the title says which (the same file lies at different
    paths on the machines whose records merge); a torchvision folder is named by its dataset."""
    import json

    from orchestrator.report.benchmark import data_files

    def sweep(name: str, data_dir: str | None) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "sweep.json").write_text(json.dumps({"settings": {"data_dir": data_dir}}))
        return folder

    machines = [sweep("madry-seeds", "/work/shared/data/mnist-10k.npz"), sweep("afd-seeds", "/home/u/mnist-10k.npz")]
    assert data_files(machines) == ("mnist-10k.npz",)
    assert data_files([sweep("tla-seeds", "/data/mnist"), sweep("adr-seeds", None), tmp_path / "no-sweep-json"]) == ()
