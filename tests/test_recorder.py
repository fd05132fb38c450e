"""The progress count of a resumed sweep: trials that ended for good count once; failed ones,
which --resume runs again, count when they end again (a resumed benchmark printed "(5/3)")."""
from __future__ import annotations

import shutil
from pathlib import Path

from orchestrator.records import parquet
from orchestrator.records.recorder import ParquetRecorder

RECORDS = Path(__file__).resolve().parents[1] / "docs" / "benchmark" / "mnist-cpu" / "records" / "madry-seeds"


def test_a_resumed_sweep_counts_failed_trials_once_they_end_again(tmp_path):
    shutil.copy(RECORDS / parquet.TRIALS_FILE, tmp_path)  # three finished seeds
    rows = parquet.read_rows(tmp_path / parquet.TRIALS_FILE)
    parquet.upsert(tmp_path / parquet.TRIALS_FILE, [{**rows[0], "status": "FAILED"},
                                                    {**rows[1], "status": "STOPPED"}], "trials")
    recorder = ParquetRecorder(tmp_path, info=None, run_id_of=lambda trial_id: None)
    recorder.setup()
    assert recorder.ended == 2 and recorder.finished == {rows[2]["trial_id"]}
