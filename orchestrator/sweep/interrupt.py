"""Ctrl+C (SIGINT) and SIGTERM stop a sweep as a normal event, to be continued with --resume.

The first signal asks Tune to stop at its next step: Tune snapshots its experiment state (every
trial with its last checkpoint), stops the trial actors and returns from `fit()`. Nothing is
deleted: the runs of trials that were in flight end KILLED (tag orch.status=INTERRUPTED) and the
parent run stays unfinished (KILLED) until `--resume` continues those trials from their
checkpoints. The command then exits 128 + the signal's number (130 for SIGINT, 143 for SIGTERM).
A second signal stops at once, without the snapshot.

Tune's own SIGINT handler is turned off (TUNE_DISABLE_SIGINT_HANDLER): it ignores SIGTERM and
would let the sweep end as if complete. Ours records the signal; `StopForwarder`, a Tune
callback, hands it to Tune from inside Tune's loop as SIGUSR1, Tune's documented stop signal
(raised there because Tune installs that handler only once `fit()` has started).
"""
from __future__ import annotations

import os
import shlex
import signal
import threading
from types import FrameType
from typing import Any, Callable

from ray import tune

SIGNALS = (signal.SIGINT, signal.SIGTERM)

# The first stop signal of this process (None: none yet). Module state, so that a StopForwarder
# unpickled by Tune.restore sees the same signal as the handler.
_received: int | None = None
_forwarded = False


class SweepInterrupted(Exception):
    """The sweep stopped on a signal; `resumable` says whether Tune saved a state to continue."""

    def __init__(self, signum: int, resumable: bool):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.resumable = resumable

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # what a shell reports for a process killed by the signal


def received() -> int | None:
    return _received


def _on_signal(signum: int, frame: FrameType | None) -> None:
    global _received
    if _received is not None:
        raise KeyboardInterrupt  # a second signal: stop now
    _received = signum


class StopWatch:
    """Installs the handlers for SIGINT and SIGTERM while a sweep runs; restores the previous
    ones on exit."""

    def __init__(self) -> None:
        self._previous: dict[int, Callable | int | None] = {}

    def __enter__(self) -> StopWatch:
        global _received, _forwarded
        _received, _forwarded = None, False
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        self._previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
        self.install()
        return self

    def install(self) -> None:
        """(Again) after `ray.init`, which sets its own SIGTERM handler."""
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may set handlers (a sweep run from a thread keeps Ray's)
        for signum in SIGNALS:
            signal.signal(signum, _on_signal)

    def __exit__(self, *exc: Any) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


class StopForwarder(tune.Callback):
    """Asks Tune to stop (SIGUSR1) at its first step after a stop signal arrived."""

    def on_step_begin(self, iteration, trials, **info):
        global _forwarded
        if _received is not None and not _forwarded:
            _forwarded = True
            signal.raise_signal(signal.SIGUSR1)


def resume_command(method: str, name: str, results_dir: str) -> str:
    """The command that continues the sweep (its other settings are saved in sweep.json)."""
    return shlex.join(["orch", "sweep", method, "--name", name, "--results-dir", results_dir, "--resume"])
