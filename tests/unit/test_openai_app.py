"""The gateway's app factory and command line (no server: the routes and settings)."""

from __future__ import annotations

import dataclasses
import json

from starlette.testclient import TestClient

from openai_gateway.app import (
    SETTINGS_ENVIRONMENT,
    GatewaySettings,
    app_from_environment,
    create_app,
)
from openai_gateway.cli import build_parser


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
