"""run_trial as Tune sees it: per-epoch reports, resume from a report's state, ER-Detector."""
import pytest

from trainables import TrialConfig, run_trial

SMALL = {"epochs": 2, "eval_examples": 60, "val_examples": 60, "eval_steps": 3, "val_steps": 3,
         "train_steps": 3, "val_strong_steps": 3, "val_strong_restarts": 1, "eval_profile": "quick"}


class Crash(Exception):
    pass


class Recorder:
    def __init__(self, crash_after: int | None = None):
        self.reports, self.crash_after = [], crash_after

    def report(self, metrics, state):
        self.reports.append((metrics, state))
        if self.crash_after is not None and len(self.reports) == self.crash_after:
            raise Crash


@pytest.mark.parametrize("method", ["madry", "er-classifier"])
def test_resuming_from_a_reported_state_continues_exactly(method):
    config = TrialConfig.from_flat({"method": method, **SMALL})
    whole = Recorder()
    run_trial(config, whole)
    crashed = Recorder(crash_after=1)
    with pytest.raises(Crash):
        run_trial(config, crashed)
    resumed = Recorder()
    run_trial(config, resumed, resume=crashed.reports[0][1])
    assert [m["epoch"] for m, _ in resumed.reports] == [2]  # epoch 1 is not trained again
    assert resumed.reports[-1][0]["loss"] == pytest.approx(whole.reports[-1][0]["loss"], rel=1e-5)
    assert resumed.reports[-1][0]["test_clean_acc"] == pytest.approx(whole.reports[-1][0]["test_clean_acc"])
    assert crashed.reports[0][1]["train_cpu_s"] > 0


def test_a_resumed_trial_counts_the_cpu_and_wall_time_of_its_earlier_runs():
    """train_cpu_s and trial_wall_s (the search's cost) are the whole trial's, not the last
    run's: a checkpoint carries them (here planted large, so the resumed run's own seconds
    cannot pass for them)."""
    config = TrialConfig.from_flat({"method": "madry", **SMALL})
    crashed = Recorder(crash_after=1)
    with pytest.raises(Crash):
        run_trial(config, crashed)
    first_run_wall = crashed.reports[0][0]["trial_wall_s"]
    assert first_run_wall > 0 and crashed.reports[0][1]["trial_wall_s"] == first_run_wall
    resumed = Recorder()
    run_trial(config, resumed, resume={**crashed.reports[0][1], "train_cpu_s": 1e6, "trial_wall_s": 2e6})
    assert 1e6 < resumed.reports[-1][0]["train_cpu_s"] < 1e6 + 600
    assert 2e6 < resumed.reports[-1][0]["trial_wall_s"] < 2e6 + 600


def test_er_detector_reports_table_4_metrics_when_enabled():
    recorder = Recorder()
    run_trial(TrialConfig.from_flat({"method": "er-classifier", "detector": True, **SMALL}), recorder)
    final = recorder.reports[-1][0]
    for name in ("acc_nadv", "acc_com", "acc_adv"):
        assert 0.0 <= final[f"test_detector_{name}"] <= 1.0
    plain = Recorder()
    run_trial(TrialConfig.from_flat({"method": "er-classifier", **SMALL}), plain)
    assert not any(k.startswith("test_detector_") for k in plain.reports[-1][0])
