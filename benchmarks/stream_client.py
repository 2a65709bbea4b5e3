"""The client side of one concurrent user: a raw grpc.aio `ModelStreamInfer` stream.

Why raw grpc.aio and not tritonclient: the client shares a 2-core machine with the
server it measures, so its cost per streamed response is part of the measurement.
`tritonclient.grpc.aio` costs well over 100 us of CPU per response (it converts every
response into an InferResult and every output to numpy); this costs a fraction of that:
the request message is built once and reused (only its id changes), and each response
is read for three things only: its error, its final flag and one int32 output.

One stream per concurrent user, one request at a time on it, as real clients do: Triton
writes the responses of one stream one at a time, so multiplexing many requests on one
stream would measure that queue instead of the model.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
from tritonclient.grpc import service_pb2_grpc

from benchmarks.stats import Meter, RequestRecord
from benchmarks.targets import FINAL, Target
from benchmarks.workload import WorkItem

# Responses carry a few tensors; no limit so that a long output is never refused here.
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
]


def open_channel(url: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(url, options=CHANNEL_OPTIONS)


def open_stream(channel: grpc.aio.Channel) -> grpc.aio.StreamStreamCall:
    """A new bidirectional `ModelStreamInfer` call: `write` requests, `read` responses."""
    return service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelStreamInfer()


class StreamSession:
    """One bidirectional stream; `run` sends one request and reads it to its end."""

    def __init__(
        self,
        call: grpc.aio.StreamStreamCall,
        target: Target,
        meter: Meter,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._call = call
        self._target = target
        self._meter = meter
        self._clock = clock
        # A stream that failed at the gRPC level (not a model error) cannot be reused.
        self.broken = False

    async def run(self, item: WorkItem, request_id: str) -> RequestRecord:
        message = self._target.message(item)
        message.id = request_id  # write() serialises at once, so reuse is safe
        count_tokens = self._target.count_tokens
        on_response = self._meter.on_response
        clock = self._clock
        call = self._call
        tokens = responses = 0
        first = last = None
        max_gap = 0.0
        error: str | None = None
        start = clock()
        try:
            await call.write(message)
            while True:
                reply = await call.read()
                now = clock()
                if reply is grpc.aio.EOF:
                    self.broken = True
                    error = error or "the server closed the stream"
                    break
                responses += 1
                response = reply.infer_response
                added = count_tokens(response) if response.outputs else 0
                on_response(now, added)
                if added:
                    if last is None:
                        first = now
                    elif now - last > max_gap:
                        max_gap = now - last
                    last = now
                    tokens += added
                parameters = response.parameters
                if reply.error_message:
                    error = error or reply.error_message
                    # An error from the model carries the final flag; one from the server
                    # before the model (e.g. an unknown model) carries none and ends it.
                    if FINAL not in parameters or parameters[FINAL].bool_param:
                        break
                elif parameters[FINAL].bool_param:
                    break
        except grpc.aio.AioRpcError as failure:
            self.broken = True
            now = clock()
            error = f"gRPC {failure.code().name}: {failure.details()}"
        return RequestRecord(
            start_s=start,
            end_s=now,
            tokens=tokens,
            responses=responses,
            first_token_s=first,
            last_token_s=last,
            max_gap_s=max_gap,
            error=error,
        )

    def close(self) -> None:
        """Cancel the stream: Triton cancels the request in flight on it, if any."""
        self._call.cancel()
