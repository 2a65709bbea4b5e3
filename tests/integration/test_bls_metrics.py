"""The BLS's metrics on Triton's metrics port: exact counts for known requests."""

from __future__ import annotations

import pytest

from bls.client import stream_generate
from local_triton.testing import pipeline_plan, staged_server
from offline_fixtures.reciting_llama import RECITALS
from tests.integration.clients import (
    bls_open_requests,
    engine_is_idle,
    http_generate,
    metric,
    wait_for,
)

pytestmark = pytest.mark.integration

FOX = RECITALS[0]


@pytest.fixture(scope="module")
def server(fixture_paths):
    """A server of its own: the counters start at zero."""
    with staged_server(pipeline_plan(fixture_paths.reciting_llama)) as running:
        yield running


def bls_metric(server, name: str, **labels: str) -> float:
    return metric(server.metrics_url, name, model="tensorrt_llm_bls", **labels)


def test_known_requests_give_exact_counts(server, fixture_paths):
    from serving_common.tokenizer_loading import load_tokenizer

    tokenizer = load_tokenizer(fixture_paths.reciting_llama)
    prompt_tokens = len(tokenizer.encode(FOX.prompt))

    stopped = http_generate(
        server.http_url,
        {
            "text_input": FOX.prompt,
            "max_tokens": 64,
            "stop_words": ["lazy"],
            "return_num_output_tokens": True,
        },
    )
    assert stopped.status == 200 and stopped.body["finish_reason"] == "stop"
    cut = http_generate(server.http_url, {"text_input": FOX.prompt, "max_tokens": 4})
    assert cut.status == 200 and cut.body["finish_reason"] == "length"
    refused = http_generate(server.http_url, {"text_input": FOX.prompt, "max_tokens": 0})
    assert refused.status == 400
    # A client that leaves after its first token (min_tokens keeps the model from ending
    # the text itself before the cancellation lands).
    stream = stream_generate(
        server.grpc_url,
        {"text_input": FOX.prompt, "max_tokens": 1000, "min_tokens": 1000, "stream": True},
    )
    next(stream)
    stream.close()
    assert wait_for(lambda: engine_is_idle(server))

    def counted() -> bool:
        return bls_metric(server, "llm_bls_requests_total") == 4

    assert wait_for(counted, timeout_s=10)
    assert bls_metric(server, "llm_bls_requests_total", finish_reason="stop") == 1
    assert bls_metric(server, "llm_bls_requests_total", finish_reason="length") == 1
    assert bls_metric(server, "llm_bls_requests_total", finish_reason="cancelled") == 1
    assert bls_metric(server, "llm_bls_requests_total", finish_reason="error") == 1
    assert bls_metric(server, "llm_bls_errors_total", kind="invalid_request") == 1
    assert bls_metric(server, "llm_bls_errors_total") == 1
    # Three requests were served (the refused one never started).
    assert bls_metric(server, "llm_bls_input_tokens_total") == 3 * prompt_tokens
    # The cancelled one made at least one token before it was stopped.
    known = stopped.body["num_output_tokens"] + 4
    assert bls_metric(server, "llm_bls_output_tokens_total") > known
    for name, count in (
        ("llm_bls_time_to_first_token_seconds", 3),
        ("llm_bls_request_duration_seconds", 4),
        ("llm_bls_queue_time_seconds", 3),
        ("llm_bls_prompt_tokens", 3),
        ("llm_bls_output_tokens", 3),
    ):
        assert bls_metric(server, f"{name}_count") == count, name
        assert bls_metric(server, f"{name}_sum") > 0, name
    # The stopped and the cut request have several tokens; the cancelled one may have one.
    assert bls_metric(server, "llm_bls_inter_token_latency_seconds_count") in (2, 3)
    # Nothing is left active once everything is answered.
    assert wait_for(lambda: bls_open_requests(server) == (0, 0), timeout_s=5)
