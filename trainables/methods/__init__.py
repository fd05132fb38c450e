"""Method registry: one file per method in this package; `METHODS.get(name)` is its `Method`
subclass. Every module here is imported on first use, so adding a method is adding a file."""
import importlib
import pkgutil

from trainables.methods.base import Method, NoHparams, TrainSettings
from trainables.registry import Registry

METHODS: Registry[type[Method]] = Registry("method")

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["METHODS", "Method", "NoHparams", "TrainSettings"]
