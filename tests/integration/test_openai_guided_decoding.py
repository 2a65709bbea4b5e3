"""`response_format` through `llm-bls-openai` with the official `openai` SDK, end to end:
gateway -> tensorrt_llm_bls -> the demo's reference engine, which masks every step with
xgrammar.

The model is random, so its JSON is gibberish but valid: strings are bounded (maxLength),
numbers ranged and the enum small so that every output completes within MAX_TOKENS,
sampling is seeded so each run is the same, and finish_reason "stop" shows the engine
ended because the guide was complete, not because max_tokens cut it.
"""

from __future__ import annotations

import jsonschema
import openai
import pytest

from tests.integration.test_bls_guided_decoding import parse_json

pytestmark = pytest.mark.integration

MODEL = "tensorrt_llm_bls"
CHAT = [{"role": "user", "content": "Describe a city as JSON."}]
MAX_TOKENS = 500
SAMPLING = {"temperature": 1.0, "top_p": 0.95}  # the engine decodes greedily without top_p
SEEDS = (1, 2)

SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 12},
        "population": {"type": "integer", "minimum": 0, "maximum": 100_000_000},
        "capital": {"type": "boolean"},
        "continent": {"enum": ["Africa", "America", "Asia", "Europe", "Oceania"]},
    },
    "required": ["city", "population", "capital", "continent"],
}
JSON_SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA}}


@pytest.fixture(scope="module")
def client(openai_gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=openai_gateway.base_url, api_key="none", max_retries=0)


@pytest.mark.parametrize("seed", SEEDS)
def test_chat_json_schema_output_validates_whole_and_streamed(client, seed):
    request = dict(
        model=MODEL,
        messages=CHAT,
        max_tokens=MAX_TOKENS,
        seed=seed,
        response_format=JSON_SCHEMA_FORMAT,
        **SAMPLING,
    )
    reply = client.chat.completions.create(**request)
    (choice,) = reply.choices
    jsonschema.validate(parse_json(choice.message.content), SCHEMA)
    assert choice.finish_reason == "stop", choice.message.content
    assert reply.usage.completion_tokens < MAX_TOKENS

    chunks = list(client.chat.completions.create(**request, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == choice.message.content
    assert chunks[-1].choices[0].finish_reason == "stop"


@pytest.mark.parametrize("seed", SEEDS)
def test_completions_json_schema_guides_every_prompt(client, seed):
    # response_format on /v1/completions is an extension (vLLM's and TensorRT-LLM's
    # servers take it too), so the SDK sends it as extra_body.
    reply = client.completions.create(
        model=MODEL,
        prompt=["A city as JSON:", "Another city:"],
        max_tokens=MAX_TOKENS,
        seed=seed,
        extra_body={"response_format": JSON_SCHEMA_FORMAT},
        **SAMPLING,
    )
    assert [c.index for c in reply.choices] == [0, 1]
    for choice in reply.choices:
        jsonschema.validate(parse_json(choice.text), SCHEMA)
        assert choice.finish_reason == "stop", choice.text
    assert reply.choices[0].text != reply.choices[1].text


# Any JSON has unbounded strings, which a random model may not close within MAX_TOKENS:
# seeds whose outputs complete on both endpoints (a short and a long one).
JSON_OBJECT_SEEDS = (4, 5)


@pytest.mark.parametrize("seed", JSON_OBJECT_SEEDS)
def test_json_object_gives_a_parseable_value_on_both_endpoints(client, seed):
    chat = client.chat.completions.create(
        model=MODEL,
        messages=CHAT,
        max_tokens=MAX_TOKENS,
        seed=seed,
        response_format={"type": "json_object"},
        **SAMPLING,
    )
    completion = client.completions.create(
        model=MODEL,
        prompt="Any JSON:",
        max_tokens=MAX_TOKENS,
        seed=seed,
        extra_body={"response_format": {"type": "json_object"}},
        **SAMPLING,
    )
    for text, finish_reason in (
        (chat.choices[0].message.content, chat.choices[0].finish_reason),
        (completion.choices[0].text, completion.choices[0].finish_reason),
    ):
        assert finish_reason == "stop", text
        # Guide type json: xgrammar's built-in JSON grammar, an object or an array.
        assert isinstance(parse_json(text), (dict, list)), text


@pytest.mark.parametrize("stream", [False, True])
def test_a_bad_schema_is_a_400_naming_response_format(client, stream):
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=MODEL, messages=CHAT, max_tokens=8, response_format=bad, stream=stream
        )
    assert caught.value.body["param"] == "response_format"
    assert "is not a valid JSON schema" in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(
            model=MODEL, prompt="x", max_tokens=8, extra_body={"response_format": bad}
        )
    assert caught.value.body["param"] == "response_format"
