"""The control plane: the only package that imports ray, mlflow and optuna. It adapts
`trainables` (the data plane) to Ray Tune through `orchestrator.sweep.trainable`.

    cli.py, options.py   the commands, and the sweep's options defined once
    sweep/     Tune + Optuna: a checked request, the run, search space, searchers, resume
    tracking/  MLflow: the store, the resilient client, the logger callback, runs, re-evaluation
    records/   Parquet: schema, the recorder callback, what a trial's results mean, Tune storage
    cluster/   connecting to (or starting) Ray, cluster.yaml checks
    report/    reading sweeps, rankings, figures, reproduce tables, the one HTML writer

Imports go down this list, never up: cli → sweep → tracking → report, records, cluster, with
report reading records only (tests/test_imports.py holds the exact rules).
"""
