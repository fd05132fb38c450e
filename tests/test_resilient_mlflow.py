"""BufferedMlflow against a tracking server that is not there: writes are kept (artifacts copied,
since the caller's files may be gone by the time the server is back), nothing raises, and what
could not be logged is returned. That the buffer is flushed when the server comes back is tested
with a real server in test_cluster.py."""
import socket

from mlflow.entities import Metric

from orchestrator.tracking.client import PLACEHOLDER_PREFIX, BufferedMlflow


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_writes_to_an_unreachable_server_are_buffered_and_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow = BufferedMlflow(f"http://127.0.0.1:{_closed_port()}", retry_every_s=0.05)

    run = mlflow.create_run("0", run_name="sweep/trial")
    run_id = run.info.run_id
    assert run_id.startswith(PLACEHOLDER_PREFIX) and mlflow.resolved(run_id) is None
    mlflow.log_batch(run_id, metrics=[Metric("loss", 1.0, 0, 1)])
    artifact = tmp_path / "curve.json"
    artifact.write_text("[]")
    mlflow.log_artifact(run_id, str(artifact))
    artifact.unlink()  # as a TemporaryDirectory would
    mlflow.set_terminated(run_id, "FINISHED")
    assert mlflow.pending == 4

    [spooled] = [call for call in mlflow._queue if call.method == "log_artifact"]
    assert spooled.args[1] != str(artifact) and open(spooled.args[1]).read() == "[]"

    unlogged = mlflow.close(deadline_s=0.3)
    assert [line.split("(")[0] for line in unlogged] == ["create_run", "log_batch", "log_artifact", "set_terminated"]
    assert "1 metrics" in unlogged[1] and "FINISHED" in unlogged[3]
    # Buffered runs keep the time things happened.
    [create] = [call for call in mlflow._queue if call.method == "create_run"]
    assert create.kwargs["start_time"] > 0
