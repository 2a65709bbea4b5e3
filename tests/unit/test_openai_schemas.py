"""Request bodies the gateway cannot read exactly: a 400 naming the field, never a 500."""

from __future__ import annotations

import pytest

from openai_gateway.errors import OpenAIError
from openai_gateway.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    field_path,
    parse_request,
)

CHAT = '{"model": "m", "messages": [{"role": "user", "content": "Hi"}]%s}'
COMPLETION = '{"model": "m", "prompt": "Hi"%s}'


def error_of(model, body: str) -> OpenAIError:
    with pytest.raises(OpenAIError) as caught:
        parse_request(model, body.encode())
    assert caught.value.status == 400
    assert caught.value.body()["error"]["type"] == "invalid_request_error"
    return caught.value


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        (COMPLETION % ', "max_tokens": "5"', "max_tokens", "valid integer"),
        (COMPLETION % ', "max_tokens": 1.5', "max_tokens", "valid integer"),
        (COMPLETION % ', "max_tokens": 0', "max_tokens", "greater than or equal to 1"),
        (COMPLETION % ', "max_tokens": 3000000000', "max_tokens", "less than or equal"),
        (COMPLETION % ', "stream": "true"', "stream", "valid boolean"),
        (COMPLETION % ', "stream": 1', "stream", "valid boolean"),
        (COMPLETION % ', "temperature": "hot"', "temperature", "valid number"),
        (COMPLETION % ', "temperature": 2.5', "temperature", "less than or equal to 2"),
        (COMPLETION % ', "seed": -1', "seed", "greater than or equal to 0"),
        (COMPLETION % ', "n": 0', "n", "greater than or equal to 1"),
        (COMPLETION % ', "stop": 5', "stop", "valid string"),
        (COMPLETION % ', "stop": ["a", 5]', "stop[1]", "valid string"),
        (COMPLETION % ', "max_token": 5', "max_token", "unrecognized request argument"),
        ('{"model": "m"}', "prompt", "is required"),
        ('{"prompt": "Hi"}', "model", "is required"),
    ],
)
def test_completion_body_errors_name_the_field(body, param, words):
    error = error_of(CompletionRequest, body)
    assert error.param == param
    assert words in error.message


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (CHAT % ', "logprobs": 1', "logprobs"),
        (CHAT % ', "top_logprobs": 21', "top_logprobs"),
        (CHAT % ', "response_format": {"type": "yaml"}', "response_format.type"),
        (CHAT % ', "stream_options": {"include_usage": "yes"}', "stream_options.include_usage"),
        ('{"model": "m", "messages": []}', "messages"),
        ('{"model": "m", "messages": [{"content": "Hi"}]}', "messages[0].role"),
        ('{"model": "m", "messages": [{"role": "user", "content": 5}]}', "messages[0].content"),
        (
            '{"model": "m", "messages": [{"role": "user", "content": "x", "colour": "red"}]}',
            "messages[0].colour",
        ),
        (
            '{"model": "m", "messages": [{"role": "user", "content": [{"type": 3}]}]}',
            "messages[0].content[0].type",
        ),
    ],
)
def test_chat_body_errors_name_the_field(body, param):
    assert error_of(ChatCompletionRequest, body).param == param


@pytest.mark.parametrize("body", ["{bad", "", '{"model": "m", ', "\xff"])
def test_malformed_json_is_a_400(body):
    error = error_of(CompletionRequest, body)
    assert error.code == "invalid_json"
    assert error.param is None


@pytest.mark.parametrize("body", ["[1, 2]", '"text"', "null", "3"])
def test_a_body_that_is_not_an_object_is_a_400(body):
    assert "JSON object" in error_of(ChatCompletionRequest, body).message


def test_ints_are_accepted_for_floats_and_big_seeds_fit():
    request = parse_request(
        CompletionRequest,
        (COMPLETION % ', "temperature": 1, "seed": 18446744073709551615').encode(),
    )
    assert request.temperature == 1.0
    assert request.seed == 2**64 - 1


def test_field_path_drops_union_branch_names():
    assert field_path(("messages", 0, "content", "list[ContentPart]", 1, "type")) == (
        "messages[0].content[1].type"
    )
    assert field_path(("stop", "list[str]", 2)) == "stop[2]"
    assert field_path(("model",)) == "model"
