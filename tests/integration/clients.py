"""Small clients for the integration tests: HTTP generate, SSE streams, gRPC, metrics."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from bls.client import StreamedResponse, stream_generate
from local_triton.server import read_metric

BLS = "tensorrt_llm_bls"


@dataclass(frozen=True)
class HttpReply:
    status: int
    body: dict

    @property
    def error(self) -> str:
        return self.body.get("error", "")


def http_generate(base_url: str, body: dict, model: str = BLS, timeout_s: float = 120) -> HttpReply:
    request = urllib.request.Request(
        f"{base_url}/v2/models/{model}/generate",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:
            return HttpReply(reply.status, json.loads(reply.read()))
    except urllib.error.HTTPError as error:
        return HttpReply(error.code, json.loads(error.read() or b"{}"))


def http_generate_stream(
    base_url: str, body: dict, model: str = BLS, timeout_s: float = 120
) -> list[dict]:
    """Every server-sent event of /generate_stream, decoded; an error event gets "status"."""
    request = urllib.request.Request(
        f"{base_url}/v2/models/{model}/generate_stream",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:
            return _events(reply.read().decode("utf-8"))
    except urllib.error.HTTPError as error:
        # Errors come as an event too, with the HTTP status of the error.
        return [{"status": error.code, **event} for event in _events(error.read().decode("utf-8"))]


def _events(raw: str) -> list[dict]:
    return [
        json.loads(line[len("data: ") :]) for line in raw.splitlines() if line.startswith("data: ")
    ]


def grpc_generate(grpc_url: str, inputs: dict, timeout_s: float = 120) -> list[StreamedResponse]:
    return list(stream_generate(grpc_url, inputs, timeout_s=timeout_s))


def grpc_text(responses: list[StreamedResponse]) -> str:
    return "".join(r.text() for r in responses if "text_output" in r.outputs)


# Sum of a Prometheus metric's samples whose labels include the given ones.
metric = read_metric


def wait_for(condition, timeout_s: float = 10.0) -> bool:
    """Poll `condition` every 50 ms until it is true (True) or the time is up (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def engine_is_idle(server) -> bool:
    """No sequence is active in the reference or synthetic engine of `server`."""
    return metric(server.metrics_url, "reference_engine_active_sequences") == 0


def bls_open_requests(server) -> tuple[float, float]:
    """`tensorrt_llm_bls`'s (active, waiting) requests: active ones have their engine call
    running, waiting ones wait for a slot. Idle is (0, 0).

    The BLS exports these gauges from its metrics thread after each finished request (and
    at least once a second), so they trail the engine's own count by a moment: wait for
    them rather than reading them once the engine is idle.
    """
    return (
        metric(server.metrics_url, "llm_bls_active_requests"),
        metric(server.metrics_url, "llm_bls_waiting_requests"),
    )
