"""Every bad input to tensorrt_llm_bls gets one clear error: field, value, limit; status 400.

Read through HTTP generate (and generate_stream and gRPC for the transport-specific ones),
as a client sees them, on a real tritonserver.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from bls.client import GenerateError, stream_generate
from tests.integration.clients import http_generate, http_generate_stream

pytestmark = pytest.mark.integration

PROMPT = {"text_input": "The quick brown"}

# (request body, every substring the error must contain)
BAD_REQUESTS = {
    "max_tokens_zero": ({**PROMPT, "max_tokens": 0}, ["max_tokens", "4096", "got 0"]),
    "max_tokens_over_limit": ({**PROMPT, "max_tokens": 5000}, ["max_tokens", "4096", "5000"]),
    "negative_temperature": ({**PROMPT, "temperature": -0.5}, ["temperature", "-0.5"]),
    "top_p_over_one": ({**PROMPT, "top_p": 1.5}, ["top_p", "1.5"]),
    "negative_top_k": ({**PROMPT, "top_k": -1}, ["top_k", "-1"]),
    "min_tokens_over_max_tokens": (
        {**PROMPT, "max_tokens": 4, "min_tokens": 9},
        ["min_tokens", "9"],
    ),
    "alias_conflict": ({**PROMPT, "seed": 1, "random_seed": 2}, ["seed", "random_seed"]),
    "unknown_field": ({**PROMPT, "max_new_tokens": 5}, ["max_new_tokens", "accepted"]),
    "no_prompt": ({"max_tokens": 5}, ["text_input", "messages"]),
    "prompt_and_messages": (
        {**PROMPT, "messages": json.dumps([{"role": "user", "content": "hi"}])},
        ["text_input", "messages"],
    ),
    "empty_prompt": ({"text_input": ""}, ["text_input", "empty"]),
    "prompt_over_max_input_len": ({"text_input": "word " * 5000}, ["text_input", "4096"]),
    "too_many_stop_words": (
        {**PROMPT, "stop_words": [f"w{i}" for i in range(65)]},
        ["stop_words", "64"],
    ),
    # Under max_word_chars (256) but over max_word_tokens (32) tokens.
    "stop_word_too_long": ({**PROMPT, "stop_words": ["x " * 120]}, ["stop_words", "32"]),
    "too_many_bad_words": (
        {**PROMPT, "bad_words": [f"w{i}" for i in range(65)]},
        ["bad_words", "64"],
    ),
    "malformed_messages": ({"messages": "[{'role': 'user'"}, ["messages", "JSON"]),
    "message_without_content": (
        {"messages": json.dumps([{"role": "user"}])},
        ["messages", "content"],
    ),
    "bias_words_weights_mismatch": (
        {**PROMPT, "embedding_bias_words": ["fox", "dog"], "embedding_bias_weights": [1.0]},
        ["embedding_bias", "2", "1"],
    ),
    "too_many_return_sequences": (
        {**PROMPT, "num_return_sequences": 9},
        ["num_return_sequences", "8"],
    ),
    "beam_search": ({**PROMPT, "beam_width": 2}, ["beam_width", "not supported"]),
    "length_penalty_without_beams": ({**PROMPT, "length_penalty": 2.0}, ["length_penalty"]),
    # Passes our checks, refused by the engine: its message is passed on.
    "engine_max_seq_len": (
        {**PROMPT, "max_tokens": 3000},
        ["tensorrt_llm:", "max_seq_len", "2048"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_gets_a_clear_400(reciting_server, case):
    body, expected = BAD_REQUESTS[case]
    reply = http_generate(reciting_server.http_url, body)
    assert reply.status == 400, reply.body
    assert set(reply.body) == {"error"}
    for fragment in expected:
        assert fragment in reply.error, reply.error
    assert "Traceback" not in reply.error


def test_generate_stream_reports_the_error_as_an_event(reciting_server):
    events = http_generate_stream(reciting_server.http_url, {"text_input": "", "stream": True})
    assert len(events) == 1
    assert events[0]["status"] == 400
    assert "text_input" in events[0]["error"] and "empty" in events[0]["error"]


def test_invalid_utf8_over_grpc_names_the_field_and_offset(reciting_server):
    with pytest.raises(GenerateError) as error:
        list(
            stream_generate(
                reciting_server.grpc_url,
                {"text_input": np.array([[b"caf\xc3 au lait"]], dtype=object), "stream": True},
                timeout_s=30,
            )
        )
    message = str(error.value)
    assert "text_input" in message and "UTF-8" in message and "3" in message


def test_the_server_keeps_serving_after_errors(reciting_server):
    for body, _ in BAD_REQUESTS.values():
        http_generate(reciting_server.http_url, body)
    reply = http_generate(reciting_server.http_url, {**PROMPT, "max_tokens": 4})
    assert reply.status == 200 and reply.body["finish_reason"] == "length"


def test_without_its_engine_the_bls_answers_with_a_clear_error(fixture_paths):
    from local_triton.staging import StagingPlan, default_model_repository
    from local_triton.testing import staged_server

    plan = StagingPlan(
        source=default_model_repository(),
        tokenizer_dir=fixture_paths.tiny_llama,
        only=frozenset({"tensorrt_llm_bls"}),
    )
    with staged_server(plan) as server:
        reply = http_generate(server.http_url, {**PROMPT, "max_tokens": 3}, timeout_s=60)
    assert reply.status >= 400
    # Triton's own answer for a model it does not serve, passed on under the engine's name.
    assert reply.error == "tensorrt_llm: Request for unknown model: 'tensorrt_llm' is not found"
