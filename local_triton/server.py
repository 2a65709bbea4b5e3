"""Run a real tritonserver on a model repository: start, wait until ready, stop by pid.

`TritonServer` is a context manager; the CLI (`llm-bls-serve`) and the test fixtures use
the same class, so what the tests start is what users start.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from local_triton.distribution import (
    TritonDistribution,
    assemble_backend_directory,
    find_distribution,
)


class ServerStartError(RuntimeError):
    """tritonserver exited or did not become ready; the message carries its error lines."""


def port_in_use(port: int) -> bool:
    """Whether something holds `port` on any address (tritonserver binds 0.0.0.0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


# Health checks and metrics go straight to loopback, whatever http_proxy says.
DIRECT_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


_METRIC_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eE]+|NaN|[+-]Inf)$")


def read_metric(metrics_url: str, name: str, **labels: str) -> float:
    """Sum of a Prometheus metric's samples whose labels include `labels` (0 if none)."""
    with DIRECT_HTTP.open(metrics_url, timeout=10) as reply:
        text = reply.read().decode()
    total = 0.0
    for line in text.splitlines():
        match = _METRIC_SAMPLE.match(line.strip())
        if not match or match.group(1) != name:
            continue
        label_text = match.group(2) or ""
        if all(f'{key}="{value}"' in label_text for key, value in labels.items()):
            total += float(match.group(3))
    return total


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class ServerOptions:
    model_repository: Path
    http_port: int | None = None  # None: pick a free port
    grpc_port: int | None = None
    metrics_port: int | None = None
    ready_timeout_s: float = 180.0
    log_verbose: int = 0
    # Short, so a restarted server can take the same ports soon after a stop.
    exit_timeout_s: int = 5
    extra_args: tuple[str, ...] = ()


# Triton's own log lines start with a severity letter and a date: "E1121 23:30:01.123 ...".
_ERROR_LINE = re.compile(r"^E\d{4} |UNAVAILABLE|failed to load|error:", re.IGNORECASE)
# Printed by every server on a machine without a GPU; never the reason for a failure.
_HARMLESS_ON_CPU = re.compile(r"CudaDriverHelper|NVML|DCGM")


def error_lines(log: str, limit: int = 40) -> list[str]:
    """The lines of a server log that explain a failure, in order."""
    lines = [
        line
        for line in log.splitlines()
        if _ERROR_LINE.search(line) and not _HARMLESS_ON_CPU.search(line)
    ]
    return lines[-limit:]


@dataclass
class TritonServer:
    """One tritonserver process; use as `with TritonServer(options) as server: ...`."""

    options: ServerOptions
    # Called with each line the server prints (e.g. print, for the CLI); always logged too.
    echo: Callable[[str], None] | None = None
    distribution: TritonDistribution = field(default_factory=find_distribution)

    def __post_init__(self) -> None:
        self.http_port = self.options.http_port or free_port()
        self.grpc_port = self.options.grpc_port or free_port()
        self.metrics_port = self.options.metrics_port or free_port()
        self._process: subprocess.Popen[str] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._log_lines: list[str] = []
        self._log_lock = threading.Lock()
        self._reader: threading.Thread | None = None

    # -- addresses ---------------------------------------------------------------------
    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def log_text(self) -> str:
        with self._log_lock:
            return "\n".join(self._log_lines)

    # -- lifecycle ---------------------------------------------------------------------
    def command(self, backend_directory: Path) -> list[str]:
        options = self.options
        return [
            str(self.distribution.server_binary),
            f"--model-repository={options.model_repository}",
            f"--backend-directory={backend_directory}",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            f"--exit-timeout-secs={options.exit_timeout_s}",
            f"--log-verbose={options.log_verbose}",
            *options.extra_args,
        ]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        libraries = str(self.distribution.libraries)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            filter(None, [libraries, env.get("LD_LIBRARY_PATH")])
        )
        # The stub ignores PYTHONPATH and imports through the `python3` first on PATH:
        # put this interpreter's environment first so models see its site-packages.
        env["PATH"] = os.pathsep.join(
            filter(None, [str(Path(sys.executable).parent), env.get("PATH")])
        )
        return env

    def start(self) -> TritonServer:
        repository = Path(self.options.model_repository)
        if not repository.is_dir():
            raise ServerStartError(f"model repository {repository} does not exist")
        self._check_ports()
        self._workdir = tempfile.TemporaryDirectory(prefix="llm-bls-triton-")
        try:
            self._launch()
            self._wait_until_ready()
        except BaseException:
            self.stop()  # also removes the backend directory and any half-started server
            raise
        return self

    def _check_ports(self) -> None:
        for label, port in (
            ("HTTP", self.http_port),
            ("gRPC", self.grpc_port),
            ("metrics", self.metrics_port),
        ):
            if port_in_use(port):
                raise ServerStartError(
                    f"the {label} port {port} is in use (another tritonserver still running? "
                    f"`ss -ltnp | grep :{port}` shows who holds it); pick another port"
                )

    def _launch(self) -> None:
        assert self._workdir is not None
        backend_directory = assemble_backend_directory(
            self.distribution, Path(self._workdir.name) / "backends"
        )
        self._process = subprocess.Popen(
            self.command(backend_directory),
            env=self.environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            # A session of its own: a terminal's Ctrl-C reaches us, and we stop the
            # server (and its Python stubs) deliberately.
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()

    def _read_output(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for raw_line in self._process.stdout:
            line = raw_line.rstrip("\n")
            with self._log_lock:
                self._log_lines.append(line)
            if self.echo is not None:
                self.echo(line)

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.options.ready_timeout_s
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                if self._reader is not None:
                    self._reader.join(timeout=5)
                raise ServerStartError(
                    self._failure_message(f"tritonserver exited with code {code}")
                )
            if self.is_ready():
                return
            time.sleep(0.25)
        raise ServerStartError(
            self._failure_message(
                f"tritonserver was not ready after {self.options.ready_timeout_s:.0f} s"
            )
        )

    def _failure_message(self, headline: str) -> str:
        log = self.log_text()
        explanation = error_lines(log) or log.splitlines()[-30:]
        return headline + ":\n" + "\n".join("  " + line for line in explanation)

    def is_ready(self) -> bool:
        # Only once our own server says it listens: a 200 from a stranger on the port
        # must not count as ours being ready.
        if f"Started HTTPService at 0.0.0.0:{self.http_port}" not in self.log_text():
            return False
        try:
            with DIRECT_HTTP.open(f"{self.http_url}/v2/health/ready", timeout=2) as reply:
                return reply.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def exit_code(self) -> int | None:
        """The server's exit code once it has exited; None while it runs."""
        return None if self._process is None else self._process.poll()

    def wait(self) -> int:
        """Block until the server exits; its exit code."""
        assert self._process is not None
        return self._process.wait()

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM by process id, then SIGKILL to the whole process group if it lingers.

        Returns the server's exit code (None if it was not running).
        """
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if process is not None:
            # Python stubs left behind by a killed server would hold shared memory.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        if self._reader is not None:
            self._reader.join(timeout=5)
            self._reader = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
        return None if process is None else process.returncode

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve(options: ServerOptions, echo: Callable[[str], None] | None = None) -> TritonServer:
    """Start a server and return it once ready (the caller stops it)."""
    return TritonServer(options, echo=echo).start()
