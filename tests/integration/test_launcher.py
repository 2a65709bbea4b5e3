"""`llm-bls-serve` as users run it: a subprocess, real tritonserver, signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from local_triton.server import free_port

pytestmark = pytest.mark.integration

ECHO_CONFIG = """\
name: "{name}"
backend: "python"
max_batch_size: 4
input [ {{ name: "IN" data_type: TYPE_STRING dims: [ 1 ] }} ]
output [ {{ name: "OUT" data_type: TYPE_STRING dims: [ 1 ] }} ]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
"""

ECHO_MODEL = """\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())])
            for r in requests
        ]
"""


def write_model(repository: Path, name: str, source: str) -> None:
    (repository / name / "1").mkdir(parents=True)
    (repository / name / "config.pbtxt").write_text(ECHO_CONFIG.format(name=name))
    (repository / name / "1" / "model.py").write_text(source)


def serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "local_triton.cli", *args]


def test_broken_model_exits_nonzero_and_shows_the_models_error(tmp_path: Path):
    write_model(tmp_path, "echo", ECHO_MODEL)
    write_model(tmp_path, "broken", 'raise RuntimeError("this model is deliberately broken")\n')
    done = subprocess.run(
        serve_command("--model-repository", str(tmp_path), "--quiet", "--ready-timeout", "120"),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode != 0
    assert "this model is deliberately broken" in done.stderr
    assert "failed to load" in done.stderr


def wait_ready(url: str, process: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise AssertionError("server not ready in time")


def nothing_listens_on(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_serves_a_repository_and_stops_cleanly_on_a_signal(tmp_path: Path, stop_signal):
    write_model(tmp_path, "echo", ECHO_MODEL)
    http_port = free_port()
    process = subprocess.Popen(
        serve_command(
            "--model-repository", str(tmp_path), "--http-port", str(http_port), "--quiet"
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{http_port}"
        wait_ready(url, process)
        body = json.dumps(
            {
                "inputs": [
                    {"name": "IN", "shape": [1, 1], "datatype": "BYTES", "data": ["héllo 世界"]}
                ]
            }
        ).encode()
        with urllib.request.urlopen(
            urllib.request.Request(f"{url}/v2/models/echo/infer", data=body)
        ) as r:
            assert json.loads(r.read())["outputs"][0]["data"] == ["héllo 世界"]
        process.send_signal(stop_signal)  # SIGHUP: the terminal was closed
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    # Stopped by pid: the port is released, no tritonserver left holding it.
    assert nothing_listens_on(http_port)


def test_a_port_in_use_is_a_clear_error_not_someone_elses_ready(tmp_path: Path):
    import socket

    write_model(tmp_path, "echo", ECHO_MODEL)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        done = subprocess.run(
            serve_command("--model-repository", str(tmp_path), "--http-port", str(port), "--quiet"),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode != 0
    assert f"the HTTP port {port} is in use" in done.stderr
