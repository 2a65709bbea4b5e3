"""Concurrent requests against a local server, timed: for tests and benchmarks.

All requests share ONE gRPC stream (Triton tells their responses apart by request id), so
the client's own cost stays small next to the server's on a machine with few cores.
Bounded by construction: a fixed number of requests, a timeout, loopback only.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from bls.client import grpc_inputs

DEFAULT_MODEL = "tensorrt_llm_bls"


@dataclass(frozen=True)
class StreamTiming:
    """One request, in seconds since all requests were sent."""

    first_response_s: float
    finished_s: float
    responses: int
    text: str
    finish_reason: str | None


@dataclass(frozen=True)
class BatchTiming:
    streams: tuple[StreamTiming, ...]
    wall_s: float

    @property
    def earliest_finish_s(self) -> float:
        return min(s.finished_s for s in self.streams)

    @property
    def latest_first_response_s(self) -> float:
        return max(s.first_response_s for s in self.streams)


@dataclass
class _Progress:
    first_s: float | None = None
    pieces: list[str] = field(default_factory=list)
    responses: int = 0
    finish_reason: str | None = None


def timed_streams(
    grpc_url: str,
    inputs: Mapping[str, object],
    count: int,
    *,
    model: str = DEFAULT_MODEL,
    timeout_s: float = 120.0,
) -> BatchTiming:
    """Send `count` identical requests at once; time each one's first response and end."""
    import tritonclient.grpc as grpcclient

    events: queue.Queue = queue.Queue()
    finished: dict[str, float] = {}
    client = grpcclient.InferenceServerClient(grpc_url)
    client.start_stream(
        callback=lambda result, error: events.put((time.monotonic(), result, error))
    )
    try:
        tensors = grpc_inputs(inputs)
        progress = {str(index): _Progress() for index in range(count)}
        start = time.monotonic()
        for request_id in progress:
            client.async_stream_infer(
                model, tensors, request_id=request_id, enable_empty_final_response=True
            )
        deadline = start + timeout_s
        while len(finished) < count:
            try:
                when, result, error = events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(
                    f"{count - len(finished)} of {count} requests unfinished after {timeout_s:.0f} s"
                ) from None
            if error is not None:
                raise RuntimeError(f"a request failed: {error}")
            response = result.get_response()
            state = progress[response.id]
            if response.outputs:
                state.responses += 1
                if state.first_s is None:
                    state.first_s = when - start
                text = result.as_numpy("text_output")
                if text is not None:
                    state.pieces.append(text.reshape(-1)[0].decode("utf-8"))
                reason = result.as_numpy("finish_reason")
                if reason is not None and reason.reshape(-1)[0]:
                    state.finish_reason = reason.reshape(-1)[0].decode("utf-8")
            if response.parameters["triton_final_response"].bool_param:
                finished[response.id] = when - start
        wall = max(finished.values())
    finally:
        client.stop_stream(cancel_requests=len(finished) < count)
        client.close()
    return BatchTiming(
        streams=tuple(
            StreamTiming(
                first_response_s=state.first_s if state.first_s is not None else finished[rid],
                finished_s=finished[rid],
                responses=state.responses,
                text="".join(state.pieces),
                finish_reason=state.finish_reason,
            )
            for rid, state in progress.items()
        ),
        wall_s=wall,
    )
