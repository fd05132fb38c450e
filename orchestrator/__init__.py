"""The control plane: CLI, Tune wiring, MLflow and Parquet. The only package that imports ray,
mlflow and optuna; it adapts `trainables` to Tune through `orchestrator.tune_adapter`."""
