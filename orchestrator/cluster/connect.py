"""Where a sweep runs: this machine (a local Ray started by the driver) or a running Ray cluster,
what it has, and whether a storage path is one that every node can see.

Everything here runs before any trial, so a bad `--address`, `--gpus` or `--storage` is a clear
error while nothing has been written.

Token authentication (on by default in the installed Ray) stays on. How Ray treats the token
(ray/_private/authentication/authentication_token_setup.py, ray/_private/worker.py):
- `ray.init()` starting a local cluster turns token mode on and creates ~/.ray/auth_token if
  missing; `ray start --head` turns it on only if RAY_AUTH_MODE=token or a token already exists.
- `ray start --address` and `ray.init(address="host:port")` turn it on only if RAY_AUTH_MODE=token;
  only `address="auto"` looks for an existing token. A driver without the token is refused
  ("InvalidAuthToken") after ~20 s of retries.
`connect` therefore does for any address what Ray does for "auto": if RAY_AUTH_MODE is unset and a
token is available (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token), it uses token mode.
A client in token mode can still join a cluster without authentication.
"""
from __future__ import annotations

import logging
import math
import os
import socket
import sys
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import ray
import torch
from ray._private.authentication import authentication_token_setup as setup
from ray._private.state import state
from ray.exceptions import AuthenticationError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from orchestrator.records.storage import is_uri

# What this process's Ray connection is: "local" (started by start_local), an address, or None.
_connected: str | None = None

STORAGE_HINT = ("on a cluster with more than one node, use --storage s3://BUCKET/PATH, "
                "gs://BUCKET/PATH or a shared filesystem path mounted on every node (e.g. NFS)")


class ClusterError(ValueError):
    """A cluster-related bad input: the CLI shows it as one line and exits with code 2."""


@dataclass(frozen=True)
class Node:
    node_id: str
    ip: str
    cpus: float
    gpus: float


@dataclass(frozen=True)
class Cluster:
    address: str | None  # None: this machine, with a local Ray the driver starts itself
    nodes: tuple[Node, ...]
    max_gpus: float  # what it has, or can scale up to
    largest_node_gpus: float
    largest_node_cpus: float

    @property
    def where(self) -> str:
        if self.address is None:
            return "this machine"
        return f"the Ray cluster at {self.address} ({len(self.nodes)} node{'s' * (len(self.nodes) != 1)})"


def resolve_address(flag: str | None) -> str | None:
    """--address, else the address `ray job submit` gives its entrypoint, else None (local).
    A dashboard URL in RAY_ADDRESS (http://...:8265, for `ray job submit`) is not a cluster."""
    if flag:
        return flag
    env = os.environ.get("RAY_ADDRESS", "")
    return env if env and not env.startswith(("http://", "https://")) else None


def local_cluster() -> Cluster:
    """This machine, as the local Ray that `run_sweep` starts will see it."""
    cpus = float(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    gpus = float(torch.cuda.device_count())
    return Cluster(None, (Node("local", "127.0.0.1", cpus, gpus),), gpus, gpus, cpus)


def connect(address: str, timeout_s: float = 5.0) -> Cluster:
    """Connect this driver to a running cluster and describe it; ClusterError if that fails."""
    global _connected
    disconnect()  # e.g. a local Ray left by an earlier sweep in this process
    _check_reachable(address, timeout_s)
    _use_token_if_available()
    with _captured_stderr() as captured:
        try:
            # Workers log at WARNING: one "checkpoint created" line per epoch would drown progress.
            ray.init(address=address, logging_config=ray.LoggingConfig(log_level="WARNING"))
        except (ConnectionError, RuntimeError, ValueError, AuthenticationError) as error:
            raise ClusterError(_connection_message(address, error, captured())) from None
    _connected = address
    return describe(address)


def start_local(gpus: float, private: bool = False) -> None:
    """A Ray on this machine only ("local": never one that another process started), reused by
    later sweeps in the same process. `private`: its temporary folder (sessions, logs, and the
    staging copy of a restored Tune state) is a new folder only this user can open; Ray's default
    /tmp/ray is writable by everyone (ray._common.utils.try_to_create_directory), so another user
    could swap the state a resumed sweep unpickles there."""
    global _connected
    if ray.is_initialized() and _connected == "local":
        return
    disconnect()
    _quiet_token_notice()
    # Ray makes its temp folder writable by all, wherever it is: inside a 0700 folder nobody else
    # can reach it.
    temp_dir = {"_temp_dir": os.path.join(tempfile.mkdtemp(prefix="orch-ray-"), "ray")} if private else {}
    ray.init(address="local", num_gpus=math.ceil(gpus) or None, include_dashboard=False,
             logging_config=ray.LoggingConfig(log_level="WARNING"), **temp_dir)
    _connected = "local"


def disconnect() -> None:
    global _connected
    if ray.is_initialized():
        ray.shutdown()
    _connected = None


def describe(address: str) -> Cluster:
    """The connected cluster's alive nodes; with an autoscaler, also what it can scale to."""
    nodes = tuple(
        Node(n["NodeID"], n["NodeManagerAddress"], n["Resources"].get("CPU", 0.0),
             n["Resources"].get("GPU", 0.0))
        for n in ray.nodes() if n["Alive"]
    )
    scaled_gpus, group_gpus, group_cpus = _autoscaler_limits()
    return Cluster(
        address=address,
        nodes=nodes,
        max_gpus=max(sum(n.gpus for n in nodes), scaled_gpus),
        largest_node_gpus=max([n.gpus for n in nodes] + [group_gpus]),
        largest_node_cpus=max([n.cpus for n in nodes] + [group_cpus]),
    )


def _autoscaler_limits() -> tuple[float, float, float]:
    """(GPUs the autoscaler can reach, GPUs and CPUs of its largest node type); zeros without
    an autoscaler. Ray Train reads the same cluster config (ray._private.state) for its checks."""
    try:
        config = state.get_cluster_config()
        maximum = state.get_max_resources_from_cluster_config() or {}
    except Exception:  # noqa: BLE001 - a private API: without it we judge by the nodes alone
        return 0.0, 0.0, 0.0
    groups = list(config.node_group_configs) if config is not None else []
    gpus = [float(g.resources.get("GPU", 0)) for g in groups] or [0.0]
    cpus = [float(g.resources.get("CPU", 0)) for g in groups] or [0.0]
    return float(maximum.get("GPU", 0)), max(gpus), max(cpus)


def plan_gpus(cluster: Cluster, gpus: float | None, gpus_per_trial: float, cpus_per_trial: int) -> float:
    """The GPUs the sweep may use (default: all the cluster has); ClusterError if the cluster
    cannot give what was asked for."""
    gpus = cluster.max_gpus if gpus is None else gpus
    if gpus < 0 or gpus_per_trial <= 0:
        raise ClusterError("--gpus must be >= 0 and --gpus-per-trial > 0")
    if gpus_per_trial > 1 and not float(gpus_per_trial).is_integer():
        raise ClusterError(f"--gpus-per-trial {gpus_per_trial:g}: above 1 it must be a whole number "
                           "(fractions such as 0.5 or 0.25 share one GPU)")
    if gpus > cluster.max_gpus + 1e-9:
        raise ClusterError(f"--gpus {gpus:g} exceeds the {cluster.max_gpus:g} GPUs of {cluster.where}")
    if gpus and gpus_per_trial > gpus:
        raise ClusterError(f"--gpus-per-trial {gpus_per_trial:g} exceeds --gpus {gpus:g}")
    if gpus and gpus_per_trial > cluster.largest_node_gpus:
        raise ClusterError(f"--gpus-per-trial {gpus_per_trial:g}: a trial runs on one node, and the "
                           f"largest node of {cluster.where} has {cluster.largest_node_gpus:g} GPUs")
    if cpus_per_trial > cluster.largest_node_cpus:
        raise ClusterError(f"--cpus-per-trial {cpus_per_trial}: a trial runs on one node, and the "
                           f"largest node of {cluster.where} has {cluster.largest_node_cpus:g} CPUs")
    return gpus


def concurrency(gpus: float, gpus_per_trial: float) -> int | None:
    """Trials at once: --gpus / --gpus-per-trial; on CPU, as many as Ray's CPUs allow (None)."""
    return math.floor(gpus / gpus_per_trial + 1e-9) if gpus else None


def check_storage(storage: str, cluster: Cluster) -> None:
    """On a running cluster a local --storage must be visible, with the same files, from every
    node: trials write checkpoints there and the driver reads them back. Checked by writing a
    marker file from the driver and reading it on each node; the marker is removed again."""
    if is_uri(storage) or cluster.address is None:
        return
    probe_dir = _nearest_existing(Path(storage.removeprefix("file://")))
    blind = _nodes_not_seeing(probe_dir, cluster.nodes)
    if blind:
        names = ", ".join(f"{n.node_id[:8]} ({n.ip})" for n in blind)
        raise ClusterError(f"--storage {storage} is a local path that {len(blind)} of "
                           f"{len(cluster.nodes)} nodes cannot see ({names}); {STORAGE_HINT}")


def _nearest_existing(path: Path) -> Path:
    path = path.resolve()
    while not path.exists():
        path = path.parent
    return path


def _nodes_not_seeing(folder: Path, nodes: tuple[Node, ...], timeout_s: float = 120.0) -> list[Node]:

    token = uuid.uuid4().hex
    marker = folder / f".orch-storage-check-{token}"
    try:
        marker.write_text(token)
    except OSError as error:
        raise ClusterError(f"cannot write to {folder} (for --storage): {error.strerror}") from None
    read = ray.remote(num_cpus=0)(_read_marker)
    try:
        seen = ray.get([
            read.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n.node_id, soft=False))
            .remote(str(marker)) for n in nodes
        ], timeout=timeout_s)
    finally:
        marker.unlink(missing_ok=True)
    return [n for n, text in zip(nodes, seen) if text != token]


def _read_marker(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _check_reachable(address: str, timeout_s: float) -> None:
    """A dead host:port would keep ray.init retrying for over a minute; a socket says it at once."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto" and other forms: Ray resolves them
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as error:
        raise ClusterError(f"cannot reach a Ray cluster at {address}: {error.strerror or error}") from None


def _use_token_if_available() -> None:
    """What Ray does for address="auto", for every address (see the module docstring)."""
    _quiet_token_notice()
    setup.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _quiet_token_notice() -> None:
    """Ray warns on every start that token mode is on: for orch that is the expected case."""
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)


@contextmanager
def _captured_stderr() -> Iterator[Callable[[], str]]:
    """Ray's C++ core writes connection retries straight to file descriptor 2 (~20 lines on a
    refused token). Keep them out of the terminal while connecting; replay them if it worked."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)

        def text() -> str:
            capture.seek(0)
            return capture.read().decode(errors="replace")

        ok = False
        try:
            yield text
            ok = True
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if ok:
                sys.stderr.write(text())


def _connection_message(address: str, error: Exception, log: str) -> str:

    if isinstance(error, AuthenticationError) or "InvalidAuthToken" in log or "Unauthenticated" in log:
        return (f"the Ray cluster at {address} did not accept this driver's authentication token "
                "(missing or wrong): give it the cluster's token with RAY_AUTH_TOKEN_PATH=FILE or "
                "RAY_AUTH_TOKEN=... (`ray get-auth-token` on the head node prints it)")
    return f"cannot connect to a Ray cluster at {address}: {str(error).strip().splitlines()[0]}"
