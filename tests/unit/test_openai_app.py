"""The gateway's app factory, command line and event stream (no server, no Triton)."""

from __future__ import annotations

import asyncio
import dataclasses
import json

from starlette.testclient import TestClient

from openai_gateway.app import (
    SETTINGS_ENVIRONMENT,
    GatewaySettings,
    app_from_environment,
    create_app,
    event_stream,
)
from openai_gateway.cli import build_parser
from openai_gateway.mapping import BlsCall
from openai_gateway.responses import Answer
from openai_gateway.triton_client import BackendError, BlsResponse, BlsRow


def routes(app) -> set[tuple[str, str]]:
    return {(method, route.path) for route in app.routes for method in route.methods or ()}


def test_the_openai_routes_are_served():
    served = routes(create_app(GatewaySettings()))
    assert {
        ("GET", "/health"),
        ("GET", "/v1/models"),
        ("POST", "/v1/completions"),
        ("POST", "/v1/chat/completions"),
    } <= served


def test_each_worker_process_rebuilds_the_settings_from_the_environment(monkeypatch):
    settings = GatewaySettings(("a:1", "b:2"), "my_bls", "llama")
    monkeypatch.setenv(SETTINGS_ENVIRONMENT, json.dumps(dataclasses.asdict(settings)))
    with TestClient(app_from_environment()) as client:
        assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["llama"]
        assert client.get("/v1/models/llama").json()["id"] == "llama"
        # Wrong model: refused before any call to Triton.
        reply = client.post("/v1/completions", json={"model": "my_bls", "prompt": "Hi"})
        assert reply.status_code == 404
        assert reply.json()["error"]["code"] == "model_not_found"


def test_the_served_name_defaults_to_the_triton_model():
    assert GatewaySettings(triton_model="x").model_name == "x"
    assert GatewaySettings(triton_model="x", served_model_name="y").model_name == "y"


def test_replicas_are_repeated_triton_urls():
    args = build_parser().parse_args(["--triton-url", "a:1", "--triton-url", "b:2"])
    assert args.triton_url == ["a:1", "b:2"]


class FailingStream:
    """A BLS stream whose engine fails after one response."""

    def __init__(self) -> None:
        self.cancelled = False

    def __aiter__(self):
        return self

    async def __anext__(self):
        raise BackendError("INTERNAL", "tensorrt_llm: the engine failed")

    def cancel(self) -> None:
        self.cancelled = True


def test_an_error_after_the_stream_began_is_one_error_event():
    bls_call = BlsCall(
        {}, 1, 1, stream=True, include_usage=False, logprobs=False, max_tokens_param="max_tokens"
    )
    answer = Answer(bls_call, chat=False, request_id="r", created=1, model="m")
    first = BlsResponse((BlsRow(0, 0, "Hel", "", 3, 1, None),), final=False)
    stream = FailingStream()

    async def collect():
        return [event async for event in event_stream(answer, first, stream)]

    events = asyncio.run(collect())
    assert json.loads(events[0][6:])["choices"][0]["text"] == "Hel"
    error = json.loads(events[1][6:])["error"]
    assert error["type"] == "server_error" and "the engine failed" in error["message"]
    assert len(events) == 2  # no [DONE] after an error
    assert stream.cancelled  # a no-op on a finished stream, and always called
