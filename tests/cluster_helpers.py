"""Real processes for the cluster tests: a two-node Ray cluster started with `ray start` (token
authentication on), an `mlflow server`, a TCP proxy that can make that server go away, and
`orch` run as a subprocess. Everything started here is stopped by process group, never by name.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Callable

BIN = Path(sys.executable).parent
CAN_UNSHARE = sys.platform.startswith("linux") and shutil.which("unshare") is not None and (
    subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode == 0
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(process: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM to the process's own group (it was started in a new session), then SIGKILL."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # daemons of the group that outlived their parent
    except ProcessLookupError:
        pass
    process.wait()


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.5)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


class RayCluster:
    """A head node and (unless worker=False) a worker node, each a `ray start --block` process with its own logical
    GPUs. With `private_dir`, the worker node runs in its own mount namespace where that folder
    is an empty tmpfs: the head machine's local disk, which a real worker node cannot see."""

    def __init__(self, base: Path, gpus_per_node: int = 2, cpus_per_node: int = 2,
                 private_dir: Path | None = None, worker: bool = True):
        self.temp_dir = tempfile.mkdtemp(prefix="orch-ray-", dir="/tmp")  # socket paths stay short
        self.token_path = base / "ray-token"
        self.token_path.write_text(secrets.token_hex(32))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.processes: list[subprocess.Popen] = []
        self.logs = base / "ray-logs"
        self.logs.mkdir()
        common = ["--num-cpus", str(cpus_per_node), "--num-gpus", str(gpus_per_node),
                  "--object-store-memory", str(100 * 1024 * 1024), "--disable-usage-stats", "--block"]
        self._start("head", ["--head", "--node-ip-address", "127.0.0.1", "--port", str(self.port),
                             "--temp-dir", self.temp_dir, "--include-dashboard=false",
                             "--dashboard-port", str(free_port()), *self._agent_ports(), *common])
        wait_for(lambda: self._joined(1), 90, "the Ray head node")
        if worker:
            args = ["--address", self.address, "--node-ip-address", "127.0.0.1", *self._agent_ports(), *common]
            self._start("worker", args, private_dir)
            wait_for(lambda: self._joined(2), 90, "the Ray worker node")

    @staticmethod
    def _agent_ports() -> list[str]:
        # Fixed defaults (52365, ...) would collide between two nodes on one machine.
        return ["--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port",
                str(free_port()), "--runtime-env-agent-port", str(free_port()),
                "--metrics-export-port", str(free_port())]

    @property
    def env(self) -> dict[str, str]:
        """The cluster's token, and token mode on, as `ray start` on every node needs."""
        return {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path)}

    def _start(self, name: str, args: list[str], private_dir: Path | None = None) -> None:
        command = [str(BIN / "ray"), "start", *args]
        if private_dir is not None:
            command = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                       f'mount -t tmpfs orch-node-local "{private_dir}" && exec "$@"', "sh", *command]
        log = open(self.logs / f"{name}.log", "w")
        self.processes.append(subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                               start_new_session=True))

    def _joined(self, nodes: int) -> bool:
        for process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(f"a ray start process exited: see {self.logs}")
        result = subprocess.run([str(BIN / "ray"), "status", "--address", self.address],
                                env=self.env, capture_output=True, text=True)
        return result.returncode == 0 and result.stdout.count("node_") >= nodes

    def stop(self) -> None:
        for process in reversed(self.processes):
            stop_group(process)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


class MlflowServer:
    """`mlflow server` on 127.0.0.1 with a SQLite store and proxied artifacts."""

    def __init__(self, base: Path):
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        log = open(base / "mlflow-server.log", "w")
        self.process = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1", "--backend-store-uri", f"sqlite:///{base / 'mlflow-server.db'}",
             "--artifacts-destination", str(base / "mlflow-artifacts")],
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self) -> None:
        wait_for(self._healthy, 180, "the MLflow server")

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError("mlflow server exited")
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        stop_group(self.process)


class TcpProxy:
    """Forwards a port to a server; `down()` makes the server unreachable (connections reset,
    new ones refused) and `up()` brings it back, as a network outage would."""

    def __init__(self, target_port: int):
        self.port = free_port()
        self.target_port = target_port
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            if self._listener is not None:
                # shutdown() first: close() alone leaves a socket that a thread blocks on in
                # accept() listening (and accepting) on Linux.
                try:
                    self._listener.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self._listener.close()
                self._listener = None
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by down()
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class Orch:
    """`orch ARGS` as its own process (the driver), with its output read line by line."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path):
        self.lines: list[str] = []
        self.process = subprocess.Popen([str(BIN / "orch"), *args], env=env, cwd=cwd, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def lines_until(self, predicate: Callable[[str], bool], timeout_s: float = 300) -> str:
        """Read lines until one satisfies `predicate` (returned), failing on exit or timeout."""
        end = time.monotonic() + timeout_s
        for line in self.process.stdout:
            self.lines.append(line)
            if predicate(line):
                return line
            if time.monotonic() > end:
                break
        raise AssertionError("orch ended or timed out before the expected line:\n" + "".join(self.lines[-60:]))

    def finish(self, timeout_s: float = 600) -> int:
        remaining, _ = self.process.communicate(timeout=timeout_s)
        self.lines.append(remaining)
        return self.process.returncode

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def kill(self) -> None:
        """SIGKILL the driver alone: its trials' actors die with its job, not by our hand."""
        self.process.kill()
        self.process.wait()
