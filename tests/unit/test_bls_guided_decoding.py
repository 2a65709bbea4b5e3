"""Guided decoding in the BLS: the two inputs become the typed request's guide, are checked
before the engine sees them, and reach the engine under the C++ backend's names."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bls.engine_io import EncodedPrompts, engine_inputs
from bls.limits import BlsLimits
from bls.request_rules import read_client_request
from serving_common.errors import RequestError
from serving_common.guided_decoding import Guide, GuideType

SCHEMA = json.dumps(
    {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
)


def strings(*rows: str) -> np.ndarray:
    return np.array([[row.encode()] for row in rows], dtype=object)


def parse(prompts: int = 1, parameters: dict | None = None, **inputs: np.ndarray):
    arrays = {"text_input": strings(*["Hi"] * prompts), **inputs}
    return read_client_request(arrays, parameters or {}, BlsLimits())


def error_of(*args, **kwargs) -> RequestError:
    with pytest.raises(RequestError) as info:
        parse(*args, **kwargs)
    return info.value


def encoded(rows: int) -> EncodedPrompts:
    return EncodedPrompts(input_ids=((1, 5, 6),) * rows, end_id=2, pad_id=0)


def test_a_schema_becomes_the_guide_and_reaches_the_engine_for_every_prompt():
    request = parse(
        prompts=2,
        guided_decoding_guide_type=strings("json_schema", "json_schema"),
        guided_decoding_guide=strings(SCHEMA, SCHEMA),
        num_return_sequences=np.array([[3], [3]], dtype=np.int32),
        stop_words=np.array([[b"}"], [b"}"]], dtype=object),
        stream=np.array([[True], [True]]),
    )
    assert request.guide == Guide(GuideType.JSON_SCHEMA, SCHEMA)
    # It combines with samples, stop strings and streaming.
    assert request.sampling.num_return_sequences == 3
    assert request.stop_words == ("}",)
    inputs = engine_inputs(request, encoded(2))
    assert inputs["guided_decoding_guide_type"].tolist() == [[b"json_schema"]] * 2
    assert inputs["guided_decoding_guide"].tolist() == [[SCHEMA.encode()]] * 2
    assert inputs["guided_decoding_guide_type"].dtype == np.object_


def test_json_sends_only_the_type_and_no_guide_sends_neither():
    request = parse(guided_decoding_guide_type=strings("json"))
    assert request.guide == Guide(GuideType.JSON)
    inputs = engine_inputs(request, encoded(1))
    assert inputs["guided_decoding_guide_type"].tolist() == [[b"json"]]
    assert "guided_decoding_guide" not in inputs
    plain = engine_inputs(parse(), encoded(1))
    assert parse().guide is None
    assert not {"guided_decoding_guide_type", "guided_decoding_guide"} & set(plain)


@pytest.mark.parametrize(
    ("inputs", "field", "needle"),
    [
        ({"guided_decoding_guide": strings("[0-9]+")}, "guided_decoding_guide_type", "is required"),
        ({"guided_decoding_guide_type": strings("xml")}, "guided_decoding_guide_type", "'xml'"),
        (
            {
                "guided_decoding_guide_type": strings("json_schema"),
                "guided_decoding_guide": strings('{"type": "object",}'),
            },
            "guided_decoding_guide",
            "is not valid JSON",
        ),
        (
            {
                "guided_decoding_guide_type": strings("regex"),
                "guided_decoding_guide": strings("(a|b"),
            },
            "guided_decoding_guide",
            "is not a valid regular expression",
        ),
        (
            {
                "guided_decoding_guide_type": strings("ebnf_grammar"),
                "guided_decoding_guide": strings('root ::= "a" |'),
            },
            "guided_decoding_guide",
            "is not a valid EBNF grammar",
        ),
        (
            {"guided_decoding_guide_type": strings("regex")},
            "guided_decoding_guide",
            "is required with guided_decoding_guide_type regex",
        ),
    ],
)
def test_bad_guides_are_the_clients_error(inputs, field, needle):
    error = error_of(**inputs)
    assert error.field == field
    assert error.code == "INVALID_ARG"
    assert needle in error.message


def test_prompts_of_one_request_share_one_guide():
    error = error_of(
        prompts=2,
        guided_decoding_guide_type=strings("regex", "regex"),
        guided_decoding_guide=strings("[a-z]+", "[0-9]+"),
    )
    assert error.field == "guided_decoding_guide"
    assert error.code == "UNSUPPORTED"


def test_a_guide_is_an_input_not_a_request_parameter():
    error = error_of(parameters={"guided_decoding_guide_type": "json"})
    assert error.field == "guided_decoding_guide_type"
    assert "must be sent as an input tensor" in error.message


def test_a_guide_that_is_not_utf8_is_named():
    error = error_of(
        guided_decoding_guide_type=strings("regex"),
        guided_decoding_guide=np.array([[b"\xff["]], dtype=object),
    )
    assert error.field == "guided_decoding_guide"
    assert "not valid UTF-8" in error.message
