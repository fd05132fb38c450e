"""The sweep's Parquet files: long-format curves and one row per trial.

Written by the driver only, atomically (write a temporary file, then rename) and idempotently
(a trial's rows replace any earlier rows of that trial, so a resumed sweep never duplicates).
Numbers stay numbers; the schema version is stored in the file's metadata.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from trainables.sanity import CHECKS, MEASURE_OF

# 2: AutoAttack alone, its own checks as sanity_autoattack_*, CPU-seconds; 3: measured_* values;
# 4: data_digest
SCHEMA_VERSION = "4"
CURVES_FILE = "curves.parquet"
TRIALS_FILE = "trials.parquet"

# Columns every file has, in this order; `hp_<name>` columns follow the identity columns.
IDENTITY = [
    ("sweep", pa.string()),
    ("method", pa.string()),
    ("trial_id", pa.string()),
    ("mlflow_run_id", pa.string()),
    ("dataset", pa.string()),
    ("model", pa.string()),
    ("seed", pa.int64()),
]
CURVE_POINT = [
    ("attack", pa.string()),
    ("norm", pa.string()),
    ("eps", pa.float64()),
    ("steps", pa.int64()),
    ("restarts", pa.int64()),
    ("n_examples", pa.int64()),
    ("accuracy", pa.float64()),
    ("path", pa.string()),  # the inference path attacked: "predict" (full) or "base" (model only)
]
TRIAL_OUTCOME = [
    ("status", pa.string()),  # FINISHED | FAILED | STOPPED
    ("clean_acc", pa.float64()),  # test split
    ("robust_acc", pa.float64()),  # test split, worst case at target_eps
    ("val_robust_acc", pa.float64()),  # validation, the last epoch's per-epoch PGD (ASHA's rungs)
    ("val_strong_robust_acc", pa.float64()),  # validation, PGD-CE + APGD-DLR: what the search optimised
    ("target_eps", pa.float64()),
    ("data_digest", pa.string()),  # trainables.provenance: sha256 of every split (16 hex digits)
    ("epochs_completed", pa.int64()),
    ("duration_s", pa.float64()),  # wall-seconds of the trial, all its runs (a resumed trial's too)
    ("checkpoint_uri", pa.string()),
    ("error", pa.string()),
    ("autoattack_acc", pa.float64()),  # test split at target_eps; null unless --eval standard|full
    ("eval_profile", pa.string()),  # the final evaluation's profile: quick | standard | full; none: test split unread
    ("robust_is_upper_bound", pa.bool_()),  # quick: no AutoAttack, robust_acc is an upper bound
    ("train_cpu_s", pa.float64()),  # CPU-seconds of the trial's process: training (+ validation)
    ("eval_cpu_s", pa.float64()),  # ... and the final test evaluation
    # trainables.sanity: True/False, null where a check did not run; sanity_trusted = all that ran.
    *[(f"sanity_{check}", pa.bool_()) for check in (*CHECKS, "trusted")],
    # The value each of three checks judged (trainables.sanity.MEASURE_OF), null where not measured.
    *[(f"measured_{name}", pa.float64()) for name in MEASURE_OF.values()],
]


def hp_columns(hparams: dict[str, Any]) -> dict[str, Any]:
    return {f"hp_{name}": value for name, value in sorted(hparams.items())}


def _schema(fixed: Sequence[tuple[str, pa.DataType]], rows: list[dict[str, Any]]) -> pa.Schema:
    """Fixed columns with declared types; hp_* (and any extra) columns typed from the values."""
    fixed_names = {name for name, _ in fixed}
    extra: dict[str, pa.DataType] = {}
    for row in rows:
        for name, value in row.items():
            if name not in fixed_names and value is not None and name not in extra:
                extra[name] = _arrow_type(value)
    hp = sorted(n for n in extra if n.startswith("hp_"))
    rest = sorted(n for n in extra if not n.startswith("hp_"))
    ordered = [*fixed[: len(IDENTITY)], *((n, extra[n]) for n in hp), *fixed[len(IDENTITY):],
               *((n, extra[n]) for n in rest)]
    return pa.schema(ordered, metadata={"orch.schema_version": SCHEMA_VERSION})


def _arrow_type(value: Any) -> pa.DataType:
    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, int):
        return pa.int64()
    if isinstance(value, float):
        return pa.float64()
    return pa.string()


def _normalise(row: dict[str, Any], schema: pa.Schema) -> dict[str, Any]:
    out = {}
    for field in schema:
        value = row.get(field.name)
        if value is not None and field.type == pa.string() and not isinstance(value, str):
            value = str(value)
        if value is not None and field.type == pa.float64():
            value = float(value)
        out[field.name] = value
    return out


def to_table(rows: list[dict[str, Any]], kind: str) -> pa.Table:
    fixed = IDENTITY + (CURVE_POINT if kind == "curves" else TRIAL_OUTCOME)
    schema = _schema(fixed, rows)
    return pa.Table.from_pylist([_normalise(r, schema) for r in rows], schema=schema)


def upsert(path: Path, rows: list[dict[str, Any]], kind: str) -> None:
    """Replace the rows of the trials in `rows`, keep everything else, write atomically."""
    trial_ids = {r["trial_id"] for r in rows}
    old = read_rows(path) if path.exists() else []
    kept = [r for r in old if r["trial_id"] not in trial_ids]
    table = to_table(kept + rows, kind)
    tmp = path.with_suffix(path.suffix + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def read_rows(path: Path) -> list[dict[str, Any]]:
    return pq.read_table(path).to_pylist()


def collate(sweep_dirs: Iterable[Path], out: Path, filename: str = CURVES_FILE) -> pa.Table:
    """Concatenate one file kind of several sweeps (hp columns unioned; missing ones are null)."""
    tables = []
    for folder in sweep_dirs:
        path = Path(folder) / filename
        if not path.is_file():
            raise FileNotFoundError(f"{folder} has no {filename}: is it a sweep directory?")
        tables.append(pq.read_table(path))
    table = pa.concat_tables(tables, promote_options="permissive")
    table = table.replace_schema_metadata({"orch.schema_version": SCHEMA_VERSION})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, out)
    return table
