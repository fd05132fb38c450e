"""MLflow writes that survive a tracking server going away in the middle of a sweep.

`BufferedMlflow` stands in for `MlflowClient` in the driver's callbacks. A write that fails
because the server is unreachable (connection refused, timeout, HTTP 5xx) is kept, in order, and
retried every `retry_every_s`; the sweep and its trials go on. A run created while the server is
away gets a placeholder id, replaced by the real one when the buffer is flushed. Reads are not
buffered. `close()` flushes what it can and returns what it could not log, for the caller to
report. Writes the server refuses (HTTP 4xx) are never retried; they are reported the same way.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import click
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

PLACEHOLDER_PREFIX = "pending-run-"

# Bounds on the MLflow HTTP client's own retries: with its defaults (7 retries, exponential
# backoff, 120 s timeout) one call to a dead server would stall Tune's event loop for minutes.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


def bound_http_retries() -> None:
    """Apply HTTP_DEFAULTS unless the user set them."""
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)


def is_transient(error: Exception) -> bool:
    """Worth retrying later: the server is away or failing, not refusing this request."""
    if isinstance(error, MlflowException):
        return error.get_http_status_code() >= 500
    return isinstance(error, OSError)  # requests' ConnectionError and Timeout are OSErrors


@dataclass
class _Info:
    run_id: str


@dataclass
class PendingRun:
    """What `create_run` returns while the server is away: `.info.run_id` is a placeholder."""

    info: _Info


@dataclass
class _Call:
    method: str
    args: tuple
    kwargs: dict
    placeholder: str | None = None  # create_run only
    spooled: list[str] = field(default_factory=list)  # artifact copies owned by this call

    def describe(self) -> str:
        run = self.kwargs.get("run_id") or next((a for a in self.args if isinstance(a, str)), "")
        detail = {
            "log_batch": lambda: f"{len(self.kwargs.get('metrics') or [])} metrics, "
                                 f"{len(self.kwargs.get('params') or [])} params, "
                                 f"{len(self.kwargs.get('tags') or [])} tags",
            "set_terminated": lambda: str(self.kwargs.get("status") or (self.args[1:2] or ("FINISHED",))[0]),
            "create_run": lambda: str(self.kwargs.get("run_name", "")),
        }.get(self.method, lambda: "")()
        return f"{self.method}({run}{', ' + detail if detail else ''})"


class BufferedMlflow:
    """An `MlflowClient` whose writes are buffered while the tracking server is unreachable."""

    WRITES = ("create_run", "log_batch", "log_metric", "log_param", "set_tag", "set_terminated",
              "update_run", "delete_run", "log_artifact", "log_artifacts", "log_dict", "log_text",
              "log_inputs")

    def __init__(self, tracking_uri: str, retry_every_s: float = 10.0):
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri)
        self.retry_every_s = retry_every_s
        self._queue: deque[_Call] = deque()
        self._ids: dict[str, str] = {}  # placeholder -> real run id
        self._next_try = 0.0
        self.refused: list[str] = []  # writes the server rejected (HTTP 4xx): never retried

    def __getattr__(self, name: str) -> Any:
        # Only called for names not found normally: writes get buffered, reads go straight through.
        if name.startswith("__") or name in ("client", "_queue", "_ids"):
            raise AttributeError(name)
        if name in self.WRITES:
            return lambda *args, **kwargs: self._submit(_Call(name, args, kwargs))
        return getattr(self.client, name)

    @property
    def pending(self) -> int:
        return len(self._queue)

    def resolved(self, run_id: str | None) -> str | None:
        """The real id of a run, or None while it exists only as a placeholder."""
        if run_id is None or not run_id.startswith(PLACEHOLDER_PREFIX):
            return run_id
        return self._ids.get(run_id)

    def _submit(self, call: _Call) -> Any:
        _stamp_time(call)
        if call.method == "create_run":
            call.placeholder = f"{PLACEHOLDER_PREFIX}{uuid.uuid4().hex[:12]}"
        if self._queue:  # nothing may overtake a buffered write
            self._enqueue(call)
            self.flush()
            return self._placeholder_result(call)
        try:
            return self._execute(call)
        except Exception as error:  # noqa: BLE001 - classified right here
            if not is_transient(error):
                self._refuse(call, error)
                return self._placeholder_result(call)
            self._enqueue(call)
            self._next_try = time.monotonic() + self.retry_every_s
            click.echo(f"[orch] MLflow at {self.tracking_uri} is unreachable ({_first_line(error)}); "
                       f"buffering its writes and retrying every {self.retry_every_s:g} s. "
                       "Trials go on.", err=True)
            return self._placeholder_result(call)

    def _placeholder_result(self, call: _Call) -> Any:
        return PendingRun(_Info(call.placeholder)) if call.method == "create_run" else None

    def _execute(self, call: _Call) -> Any:
        args = tuple(self._real(a) for a in call.args)
        kwargs = {k: self._real(v) for k, v in call.kwargs.items()}
        result = getattr(self.client, call.method)(*args, **kwargs)
        if call.method == "create_run":
            self._ids[call.placeholder] = result.info.run_id
        return result

    def _real(self, value: Any) -> Any:
        if isinstance(value, str) and value.startswith(PLACEHOLDER_PREFIX):
            return self._ids[value]
        return value

    def _enqueue(self, call: _Call) -> None:
        _spool_artifacts(call)
        self._queue.append(call)

    def _refuse(self, call: _Call, error: Exception) -> None:
        self.refused.append(f"{call.describe()}: {_first_line(error)}")

    def flush(self, force: bool = False) -> None:
        """Retry buffered writes in order (at most every retry_every_s unless forced)."""
        if not self._queue or (not force and time.monotonic() < self._next_try):
            return
        while self._queue:
            call = self._queue[0]
            try:
                self._execute(call)
            except Exception as error:  # noqa: BLE001
                if is_transient(error):
                    self._next_try = time.monotonic() + self.retry_every_s
                    return
                self._refuse(call, error)
            self._queue.popleft()
            for path in call.spooled:
                shutil.rmtree(path, ignore_errors=True)
        click.echo(f"[orch] MLflow at {self.tracking_uri} is reachable again; buffered writes logged.",
                   err=True)

    def close(self, deadline_s: float = 30.0) -> list[str]:
        """Flush until the buffer is empty or the deadline passes; returns what was not logged."""
        end = time.monotonic() + deadline_s
        while self._queue and time.monotonic() < end:
            self.flush(force=True)
            if self._queue:
                time.sleep(min(2.0, max(0.0, end - time.monotonic())))
        return [call.describe() for call in self._queue] + self.refused


def report_unlogged(unlogged: list[str], shown: int = 20) -> None:
    """What the sweep could not log to MLflow, on stderr (its records are in Parquet either way)."""
    if not unlogged:
        return
    click.echo(f"[orch] MLflow: {len(unlogged)} write(s) could not be logged:", err=True)
    for line in unlogged[:shown]:
        click.echo(f"  {line}", err=True)
    if len(unlogged) > shown:
        click.echo(f"  ... and {len(unlogged) - shown} more", err=True)


def _stamp_time(call: _Call) -> None:
    """Buffered runs keep the time things happened, not the time the server came back."""
    now = int(time.time() * 1000)
    if call.method == "create_run" and len(call.args) < 2:
        call.kwargs.setdefault("start_time", now)
    elif call.method == "set_terminated" and len(call.args) < 3:
        call.kwargs.setdefault("end_time", now)


def _spool_artifacts(call: _Call) -> None:
    """A buffered artifact upload gets its own copy of the files: the caller's (a temporary
    folder, a checkpoint that Tune may prune) can be gone by the time the server is back."""
    if call.method not in ("log_artifact", "log_artifacts"):
        return
    args = list(call.args)
    source = args[1] if len(args) > 1 else call.kwargs.get("local_path", call.kwargs.get("local_dir"))
    folder = tempfile.mkdtemp(prefix="orch-mlflow-spool-")
    copy = os.path.join(folder, os.path.basename(os.path.normpath(source)))
    (shutil.copytree if os.path.isdir(source) else shutil.copy2)(source, copy)
    call.spooled.append(folder)
    if len(args) > 1:
        args[1] = copy
        call.args = tuple(args)
    else:
        call.kwargs["local_path" if "local_path" in call.kwargs else "local_dir"] = copy


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]
