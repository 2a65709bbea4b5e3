"""The launcher as pytest fixtures: a staged repository served by a real tritonserver.

Register with `pytest_plugins = ["local_triton.testing"]` in a conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from local_triton.gateway import GatewayProcess
from local_triton.server import TritonServer
from local_triton.staging import (
    EngineKind,
    StagingPlan,
    default_model_repository,
    staged_server,
    synthetic_plan,
)

# staged_server and synthetic_plan live in local_triton.staging, where the benchmarks
# use them without pytest; the tests import them from here or from there.


def pipeline_plan(checkpoint: Path) -> StagingPlan:
    """The whole pipeline with the reference engine on `checkpoint` (and its tokenizer)."""
    return StagingPlan(
        source=default_model_repository(),
        engine=EngineKind.REFERENCE,
        model_dir=checkpoint,
        tokenizer_dir=checkpoint,
    )


@pytest.fixture(scope="session")
def fixture_paths():
    from offline_fixtures import ensure_fixtures

    return ensure_fixtures()


@pytest.fixture(scope="session")
def engine_server(fixture_paths) -> Iterator[TritonServer]:
    """Only `tensorrt_llm`: the reference engine on the tiny Llama."""
    plan = StagingPlan(
        source=default_model_repository(),
        engine=EngineKind.REFERENCE,
        model_dir=fixture_paths.tiny_llama,
        only=frozenset({"tensorrt_llm"}),
    )
    with staged_server(plan) as server:
        yield server


@pytest.fixture(scope="session")
def triton_server(fixture_paths) -> Iterator[TritonServer]:
    """The whole pipeline (model_repository/) with the reference engine on the tiny Llama."""
    with staged_server(pipeline_plan(fixture_paths.tiny_llama)) as server:
        yield server


@pytest.fixture(scope="session")
def reciting_server(fixture_paths) -> Iterator[TritonServer]:
    """The whole pipeline with the reference engine on the Llama that recites real text."""
    with staged_server(pipeline_plan(fixture_paths.reciting_llama)) as server:
        yield server


@pytest.fixture(scope="session")
def synthetic_server(fixture_paths) -> Iterator[TritonServer]:
    """The whole pipeline with the synthetic engine.

    30 ms a step is a realistic decode step for a batch of 64 on a GPU, and keeps 64
    streams (about 2 100 tokens a second in all) within what a 2-core machine can serve.
    """
    with staged_server(synthetic_plan(fixture_paths, step_ms=30)) as server:
        yield server


@pytest.fixture(scope="session")
def openai_gateway(triton_server) -> Iterator[GatewayProcess]:
    """`llm-bls-openai` in front of the demo pipeline (`triton_server`)."""
    with GatewayProcess(triton_server.grpc_url) as gateway:
        yield gateway


@pytest.fixture(scope="session")
def synthetic_openai_gateway(synthetic_server) -> Iterator[GatewayProcess]:
    """`llm-bls-openai` in front of the synthetic engine: long, paced streams."""
    with GatewayProcess(synthetic_server.grpc_url) as gateway:
        yield gateway
