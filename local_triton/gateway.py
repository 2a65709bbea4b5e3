"""Run `llm-bls-openai` next to a local tritonserver: start, wait until healthy, stop by pid.

`llm-bls-serve --openai` and the test fixtures use this same class, so the gateway the
tests drive is the one users start.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
from dataclasses import dataclass

from local_triton.server import DIRECT_HTTP, ServerStartError, free_port, port_in_use


@dataclass
class GatewayProcess:
    """One `llm-bls-openai` process in front of Triton's gRPC address `triton_grpc_url`."""

    triton_grpc_url: str
    port: int | None = None  # None: a free port
    model: str = "tensorrt_llm_bls"
    ready_timeout_s: float = 60.0
    # True: the gateway's own output goes to this terminal (the CLI); False: kept for
    # the error message if it fails to start (the tests).
    inherit_output: bool = False
    # False: started once it answers /health at all, even while Triton is unreachable.
    wait_for_triton: bool = True

    def __post_init__(self) -> None:
        self.port = self.port or free_port()
        self._process: subprocess.Popen[bytes] | None = None
        # Lives as long as this object: the process writes to it, stop() reads it last.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What the openai SDK takes as `base_url`."""
        return f"{self.url}/v1"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "openai_gateway.cli",
            "--triton-url",
            self.triton_grpc_url,
            "--model",
            self.model,
            "--port",
            str(self.port),
        ]

    def check_port(self) -> None:
        if port_in_use(self.port):
            raise ServerStartError(
                f"the gateway port {self.port} is in use (`ss -ltnp | grep :{self.port}` shows "
                "who holds it); pick another port"
            )

    def start(self) -> GatewayProcess:
        self.check_port()
        output = None if self.inherit_output else self._log
        self._process = subprocess.Popen(
            self.command(),
            stdout=output,
            stderr=None if self.inherit_output else subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # A session of its own, as tritonserver: we stop it deliberately, after a
            # terminal's Ctrl-C has reached us.
            start_new_session=True,
        )
        try:
            self._wait_until_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_healthy(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                raise ServerStartError(
                    f"llm-bls-openai exited with code {code}:\n{self.log_text()[-3000:]}"
                )
            if self._started():
                return
            time.sleep(0.2)
        raise ServerStartError(
            f"llm-bls-openai was not healthy after {self.ready_timeout_s:.0f} s:\n"
            f"{self.log_text()[-3000:]}"
        )

    def health(self) -> str | None:
        """ "ok", "unavailable" (Triton is not ready), or None (the gateway does not answer)."""
        try:
            with DIRECT_HTTP.open(f"{self.url}/health", timeout=2) as reply:
                return json.loads(reply.read())["status"]
        except urllib.error.HTTPError as error:  # 503: the gateway is up, Triton is not
            return json.loads(error.read())["status"] if error.code == 503 else None
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError, ValueError):
            return None

    def _started(self) -> bool:
        return self.health() in (("ok",) if self.wait_for_triton else ("ok", "unavailable"))

    def log_text(self) -> str:
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM by process id (uvicorn drains open requests), then SIGKILL."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait(timeout=10)

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        self._log.close()
