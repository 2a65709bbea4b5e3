"""One BLS instance, many requests at once; clients that leave stop the engine.

On the synthetic engine: a token per step at a fixed pace and no model compute, so what
is measured is the serving path itself.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from bls.client import stream_generate
from local_triton.load import timed_streams
from tests.integration.clients import engine_is_idle, metric, wait_for

pytestmark = pytest.mark.integration

TOKENS = 50  # at 30 ms a step: one stream takes about 1.5 s


def test_64_concurrent_streams_take_under_3x_one_stream(synthetic_server):
    inputs = {"text_input": "Hello 世界", "max_tokens": TOKENS, "stream": True}
    timed_streams(synthetic_server.grpc_url, {**inputs, "max_tokens": 2}, 1)  # warm up
    one = timed_streams(synthetic_server.grpc_url, inputs, 1)
    many = timed_streams(synthetic_server.grpc_url, inputs, 64)
    assert all(s.finish_reason == "length" for s in many.streams)
    assert many.wall_s < 3 * one.wall_s, (many.wall_s, one.wall_s)
    # They progressed together: none waited for another to finish before starting.
    assert many.latest_first_response_s < many.earliest_finish_s


def test_a_long_stream_does_not_hold_up_short_ones(synthetic_server):
    url = synthetic_server.grpc_url
    long_stream = stream_generate(url, {"text_input": "long", "max_tokens": 400, "stream": True})
    next(long_stream)  # the long one is under way (8 s of tokens)
    try:
        started = time.monotonic()
        short = timed_streams(url, {"text_input": "short", "max_tokens": 10, "stream": True}, 4)
        assert time.monotonic() - started < 3.0
        assert all(s.finish_reason == "length" for s in short.streams)
    finally:
        long_stream.close()  # leaving early cancels it


def test_grpc_client_that_leaves_mid_stream_ends_the_engine_request(synthetic_server):
    server = synthetic_server
    assert wait_for(lambda: engine_is_idle(server))
    tokens_before = metric(server.metrics_url, "reference_engine_generated_tokens_total")
    stops_before = metric(
        server.metrics_url, "reference_engine_cancelled_total", reason="stop_request"
    )
    stream = stream_generate(
        server.grpc_url, {"text_input": "Hi", "max_tokens": 1000, "stream": True}
    )
    for _ in range(3):
        next(stream)
    stream.close()  # the client goes away: the request is cancelled on the server
    assert wait_for(lambda: engine_is_idle(server))
    stops = metric(server.metrics_url, "reference_engine_cancelled_total", reason="stop_request")
    assert stops == stops_before + 1
    generated = (
        metric(server.metrics_url, "reference_engine_generated_tokens_total") - tokens_before
    )
    assert generated < 100  # of the 1000 asked for


def test_http_client_that_disconnects_mid_stream_ends_the_engine_request(synthetic_server):
    server = synthetic_server
    assert wait_for(lambda: engine_is_idle(server))
    tokens_before = metric(server.metrics_url, "reference_engine_generated_tokens_total")
    body = json.dumps({"text_input": "Hi", "max_tokens": 1000, "stream": True}).encode()
    port = int(server.http_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(
            b"POST /v2/models/tensorrt_llm_bls/generate_stream HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
        assert connection.recv(4096).startswith(b"HTTP/1.1 200")
        assert wait_for(lambda: not engine_is_idle(server))
    assert wait_for(lambda: engine_is_idle(server))
    generated = (
        metric(server.metrics_url, "reference_engine_generated_tokens_total") - tokens_before
    )
    assert generated < 200  # of the 1000 asked for
