"""An engine that fails, answers garbage or stalls mid-generation, behind the real BLS.

One server per fault (the reference engine's fault knobs, on the synthetic backend),
each knob set to strike at generation step 5. For each: the client gets an error naming
what happened, and FINAL; the engine request ends (stopped or cancelled by the BLS, or
ended by the engine itself) so the engine is idle again; requests shorter than 5 tokens,
sent while the faulted one is in trouble, are served normally.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass

import pytest

from bls.client import GenerateError, stream_generate
from local_triton.load import timed_streams
from local_triton.testing import staged_server, synthetic_plan
from tests.integration.clients import engine_is_idle, http_generate, metric, wait_for

pytestmark = pytest.mark.integration

STEP = 5  # every knob strikes at a sequence's 5th generated token
STALL_TIMEOUT_S = 1.0  # the BLS's engine_stall_timeout_s on these servers


@dataclass(frozen=True)
class FaultCase:
    knob: str
    message: str  # the client's whole error message
    # Of HTTP /generate: Triton 2.51 answers every error a model sends there with 400,
    # whatever its code (INTERNAL, UNAVAILABLE, ...).
    http_status: int
    # How the engine request ends: the reason it is counted under in
    # reference_engine_cancelled_total, or None when the engine ends it itself.
    cancelled_as: str | None


CASES = {
    "error": FaultCase(
        knob="fault_error_at_step",
        message=f"tensorrt_llm: injected fault: generation failed at step {STEP} "
        "(fault_error_at_step)",
        http_status=400,
        cancelled_as=None,
    ),
    "malformed": FaultCase(
        knob="fault_malformed_at_step",
        message="tensorrt_llm: model 'tensorrt_llm' sent a response that cannot be read: "
        "output_ids must be integer token ids shaped [batch, beams, tokens], got float32 [1]",
        http_status=400,
        cancelled_as="stop_request",  # the BLS stops it, then reads its stream to the end
    ),
    "stall": FaultCase(
        knob="fault_stall_at_step",
        message=f"tensorrt_llm: the engine sent nothing for {STALL_TIMEOUT_S:g} s "
        "(engine_stall_timeout_s); the request was cancelled",
        http_status=400,
        cancelled_as="client",  # the BLS cancels its gRPC call: Triton cancels the request
    ),
}


@dataclass
class FaultyServer:
    server: object
    case: FaultCase


@pytest.fixture(scope="module", params=sorted(CASES))
def faulty(request, fixture_paths):
    """Only the engine and the BLS; one server at a time (pytest groups by param)."""
    case = CASES[request.param]
    plan = synthetic_plan(
        fixture_paths, step_ms=10, only=frozenset({"tensorrt_llm", "tensorrt_llm_bls"})
    )
    overrides = {
        "tensorrt_llm": {**plan.overrides["tensorrt_llm"], case.knob: str(STEP)},
        "tensorrt_llm_bls": {"engine_stall_timeout_s": str(STALL_TIMEOUT_S)},
    }
    with staged_server(dataclasses.replace(plan, overrides=overrides)) as server:
        yield FaultyServer(server, case)


@dataclass
class Outcome:
    texts: list[str]
    error: str | None
    seconds: float


def faulted_stream(grpc_url: str, outcome: list[Outcome]) -> None:
    texts, error = [], None
    started = time.monotonic()
    try:
        for response in stream_generate(
            grpc_url, {"text_input": "Hi", "max_tokens": 50, "stream": True}, timeout_s=30
        ):
            texts.append(response.text())
    except GenerateError as failure:
        error = str(failure)
    outcome.append(Outcome(texts, error, time.monotonic() - started))


def counts(server) -> dict[str, float]:
    return {
        "requests": metric(server.metrics_url, "reference_engine_requests_total"),
        **{
            reason: metric(server.metrics_url, "reference_engine_cancelled_total", reason=reason)
            for reason in ("stop_request", "client")
        },
    }


def test_the_client_gets_the_error_and_final_and_the_engine_request_ends(faulty):
    server, case = faulty.server, faulty.case
    assert wait_for(lambda: engine_is_idle(server))
    before = counts(server)
    outcome: list[Outcome] = []
    faulted = threading.Thread(target=faulted_stream, args=(server.grpc_url, outcome))
    faulted.start()
    # Meanwhile, requests that end before the fault strikes are served as usual.
    short = timed_streams(
        server.grpc_url, {"text_input": "Hi", "max_tokens": STEP - 1, "stream": True}, 8
    )
    faulted.join(30)
    assert all(s.finish_reason == "length" for s in short.streams)
    assert short.wall_s < 5
    (result,) = outcome
    assert result.error == case.message
    assert len("".join(result.texts)) > 0  # the text before the fault came first
    if case.knob == "fault_stall_at_step":
        assert STALL_TIMEOUT_S <= result.seconds < STALL_TIMEOUT_S + 3
    # The engine request is over: the engine is idle within 2 s of the client's answer.
    assert wait_for(lambda: engine_is_idle(server), timeout_s=2.0)
    after = counts(server)
    assert after["requests"] == before["requests"] + 1 + 8
    for reason in ("stop_request", "client"):
        ended_this_way = 1 if case.cancelled_as == reason else 0
        assert after[reason] == before[reason] + ended_this_way, (reason, before, after)


def test_http_generate_answers_with_the_status_of_the_fault(faulty):
    server, case = faulty.server, faulty.case
    reply = http_generate(server.http_url, {"text_input": "Hi", "max_tokens": 50}, timeout_s=30)
    assert (reply.status, reply.body) == (case.http_status, {"error": case.message})
    assert wait_for(lambda: engine_is_idle(server), timeout_s=2.0)
    # And the server still serves a request that ends before the fault.
    reply = http_generate(server.http_url, {"text_input": "Hi", "max_tokens": STEP - 1})
    assert reply.status == 200 and reply.body["finish_reason"] == "length"
