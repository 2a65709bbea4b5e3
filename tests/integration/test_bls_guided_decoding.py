"""Guided decoding end to end on the demo (the tiny random Llama): HTTP generate,
generate_stream and gRPC streaming answer with text that follows the guide.

The model is random, so its JSON is gibberish but valid: strings are bounded (maxLength)
and enums small so that every output completes, sampling is seeded so each run is the
same, and finish_reason "stop" shows the engine ended on end_id (the guide complete)
rather than on max_tokens.
"""

from __future__ import annotations

import json
import re

import jsonschema
import numpy as np
import pytest

from bls.client import GenerateError
from tests.integration.clients import grpc_generate, grpc_text, http_generate, http_generate_stream

pytestmark = pytest.mark.integration

PROMPT = "Answer in JSON:"
MAX_TOKENS = 500
SEEDS = (1, 2)

SCHEMAS = {
    "scalars": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "active": {"type": "boolean"},
            "color": {"enum": ["red", "green", "blue"]},
            "name": {"type": "string", "maxLength": 10},
        },
        "required": ["id", "active", "color", "name"],
    },
    "arrays_and_nesting": {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"enum": ["x", "y", "z"]}, "maxItems": 4},
            "point": {
                "type": "object",
                "properties": {
                    "x": {"type": "integer", "minimum": -100, "maximum": 100},
                    "label": {"type": "string", "maxLength": 4},
                },
                "required": ["x", "label"],
            },
        },
        "required": ["tags", "point"],
    },
    "array_of_objects": {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "minItems": 1,
                "maxItems": 2,
                "items": {
                    "type": "object",
                    "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer"}},
                    "required": ["ok", "n"],
                },
            }
        },
        "required": ["items"],
    },
}


def body(guide_type: str, guide: str | None = None, **extra) -> dict:
    request = {
        "text_input": PROMPT,
        "max_tokens": MAX_TOKENS,
        "top_k": 50,
        "guided_decoding_guide_type": guide_type,
        **extra,
    }
    if guide is not None:
        request["guided_decoding_guide"] = guide
    return request


def for_grpc(request: dict) -> dict:
    """The same request as gRPC tensors: seed is UINT64 there (HTTP converts JSON itself)."""
    if "seed" not in request:
        return request
    return {**request, "seed": np.array([[request["seed"]]], dtype=np.uint64)}


def parse_json(text: str):
    # xgrammar's rule for a bounded string (maxLength) admits raw control characters
    # (U+0000-U+001F but \r and \n), which strict JSON parsers refuse; strict=False reads them.
    return json.loads(text, strict=False)


def stream_text(events: list[dict]) -> str:
    return "".join(event["text_output"] for event in events)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_every_output_validates_against_its_schema_on_every_transport(triton_server, name, seed):
    schema = SCHEMAS[name]
    request = body("json_schema", json.dumps(schema), seed=seed)

    whole = http_generate(triton_server.http_url, request)
    assert whole.status == 200, whole.body
    text = whole.body["text_output"]
    jsonschema.validate(parse_json(text), schema)
    assert whole.body["finish_reason"] == "stop", text

    events = http_generate_stream(triton_server.http_url, {**request, "stream": True})
    assert stream_text(events) == text
    assert events[-1]["finish_reason"] == "stop"

    responses = grpc_generate(triton_server.grpc_url, for_grpc({**request, "stream": True}))
    assert grpc_text(responses) == text
    assert responses[-1].scalar("finish_reason") == "stop"


def test_json_gives_a_parseable_value(triton_server):
    reply = http_generate(triton_server.http_url, body("json", seed=3))
    assert reply.status == 200, reply.body
    value = parse_json(reply.body["text_output"])
    # xgrammar's built-in JSON grammar, which the C++ backend compiles for json: an object
    # or an array.
    assert isinstance(value, (dict, list))
    assert reply.body["finish_reason"] == "stop"


def test_regex_and_grammar_outputs_match_them(triton_server):
    regex = r"[A-Z][a-z]{2,5} [0-9]{1,3}"
    reply = http_generate(triton_server.http_url, body("regex", regex, seed=1))
    assert reply.status == 200, reply.body
    assert re.fullmatch(regex, reply.body["text_output"]), reply.body["text_output"]

    grammar = 'root ::= answer " " answer\nanswer ::= "yes" | "no"'
    events = http_generate_stream(
        triton_server.http_url, body("ebnf_grammar", grammar, seed=1, stream=True)
    )
    assert re.fullmatch("(yes|no) (yes|no)", stream_text(events))


def test_every_sample_follows_the_guide(triton_server):
    schema = SCHEMAS["arrays_and_nesting"]
    request = body("json_schema", json.dumps(schema), seed=5, num_return_sequences=3)
    responses = grpc_generate(triton_server.grpc_url, for_grpc({**request, "stream": True}))
    texts: dict[int, str] = {}
    for response in responses:
        if "text_output" in response.outputs:
            index = response.scalar("sequence_index")
            texts[index] = texts.get(index, "") + response.text()
    assert sorted(texts) == [0, 1, 2]
    for text in texts.values():
        jsonschema.validate(parse_json(text), schema)
    assert len(set(texts.values())) == 3


def test_a_stop_string_still_cuts_guided_text(triton_server):
    regex = r"[a-c]{3}-[0-9]{2}"
    request = body("regex", regex, seed=1, stop_words=["-"])
    reply = http_generate(triton_server.http_url, request)
    assert reply.status == 200, reply.body
    assert re.fullmatch("[a-c]{3}", reply.body["text_output"])
    assert (reply.body["finish_reason"], reply.body["stop_reason"]) == ("stop", "-")


@pytest.mark.parametrize(
    ("request_fields", "field", "needle"),
    [
        (
            {"guided_decoding_guide_type": "json_schema", "guided_decoding_guide": '{"a": '},
            "guided_decoding_guide",
            "is not valid JSON",
        ),
        (
            {"guided_decoding_guide_type": "json_schema", "guided_decoding_guide": '{"type": 5}'},
            "guided_decoding_guide",
            "is not a valid JSON schema",
        ),
        (
            {"guided_decoding_guide_type": "regex", "guided_decoding_guide": "[0-9"},
            "guided_decoding_guide",
            "is not a valid regular expression",
        ),
        (
            {"guided_decoding_guide_type": "ebnf_grammar", "guided_decoding_guide": "root ::="},
            "guided_decoding_guide",
            "is not a valid EBNF grammar",
        ),
        (
            {"guided_decoding_guide": "[0-9]+"},
            "guided_decoding_guide_type",
            "is required with guided_decoding_guide",
        ),
        (
            {"guided_decoding_guide_type": "yaml"},
            "guided_decoding_guide_type",
            "must be one of json, json_schema, regex, ebnf_grammar",
        ),
    ],
)
def test_bad_guides_get_a_clear_error(triton_server, request_fields, field, needle):
    request = {"text_input": PROMPT, "max_tokens": 8, **request_fields}
    reply = http_generate(triton_server.http_url, request)
    assert reply.status == 400
    assert f"{field}: " in reply.error and needle in reply.error, reply.error
    events = http_generate_stream(triton_server.http_url, {**request, "stream": True})
    assert events[-1]["status"] == 400 and needle in events[-1]["error"]
    with pytest.raises(GenerateError, match=re.escape(field)):
        grpc_generate(triton_server.grpc_url, request)
