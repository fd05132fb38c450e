"""The data plane: everything one trial runs, in plain PyTorch (no Ray, MLflow or Optuna)."""
from trainables.config import ConfigError, TrialConfig
from trainables.trial import Reporter, TrialResult, run_trial

__all__ = ["ConfigError", "Reporter", "TrialConfig", "TrialResult", "run_trial"]
