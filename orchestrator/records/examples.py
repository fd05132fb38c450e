"""Per-example records (`examples.parquet`): for every finished trial, every test point, every
attack and ε, whether the model was still right. A benchmark's leaderboard is computed from these
rows alone, so two runs' records can be merged and every number re-derived.

A trial reports them as `examples_json`: the test points' indices in the test split and, per
(attack, path, ε), a string of '1' (still correct) and '0' (broken), one character per point.
Written by the driver only, atomically; a trial's rows replace any earlier rows of that trial.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

EXAMPLES_FILE = "examples.parquet"
SCHEMA = pa.schema([
    ("sweep", pa.string()), ("method", pa.string()), ("trial_id", pa.string()),
    ("config_id", pa.string()), ("seed", pa.int64()),
    ("attack", pa.string()), ("path", pa.string()), ("eps", pa.float64()),
    ("index", pa.int64()),  # the test point's index in the dataset's test split
    ("correct", pa.bool_()),
], metadata={"orch.schema_version": "1"})


def table_of(identity: dict[str, Any], examples: dict[str, Any]) -> pa.Table:
    """The rows of one trial: `identity` (sweep, method, trial_id, config_id, seed) and its
    reported `examples` ({"indices": [...], "series": [{"attack", "path", "eps", "correct"}]})."""
    indices = examples["indices"]
    columns: dict[str, list] = {name: [] for name in SCHEMA.names}
    for series in examples["series"]:
        if len(series["correct"]) != len(indices):
            raise ValueError(f"{series['attack']} at ε {series['eps']}: {len(series['correct'])} "
                             f"outcomes for {len(indices)} points")
        n = len(indices)
        for key in ("sweep", "method", "trial_id", "config_id", "seed"):
            columns[key] += [identity[key]] * n
        columns["attack"] += [series["attack"]] * n
        columns["path"] += [series.get("path", "predict")] * n
        columns["eps"] += [float(series["eps"])] * n
        columns["index"] += list(indices)
        columns["correct"] += [c == "1" for c in series["correct"]]
    return pa.Table.from_pydict(columns, schema=SCHEMA)


def examples_of(result: dict[str, Any]) -> dict[str, Any] | None:
    return json.loads(result["examples_json"]) if "examples_json" in result else None


def upsert(path: Path, table: pa.Table) -> None:
    """Replace the rows of the trials in `table`, keep every other row, write atomically."""
    if path.exists():
        old = pq.read_table(path)
        kept = old.filter(pc.invert(pc.is_in(old["trial_id"], value_set=pc.unique(table["trial_id"]))))
        table = pa.concat_tables([kept.cast(SCHEMA), table])
    tmp = path.with_suffix(path.suffix + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def read(paths: Iterable[Path]) -> pa.Table:
    """The records of several sweeps (or benchmarks) as one table."""
    tables = [pq.read_table(path).cast(SCHEMA) for path in paths]
    return pa.concat_tables(tables) if tables else SCHEMA.empty_table()
