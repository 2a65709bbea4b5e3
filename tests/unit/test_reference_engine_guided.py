"""Guided decoding in the reference engine, on the tiny random Llama through the scheduler:
every output follows its guide, end_id comes exactly where the guide is complete, guided
and unguided sequences share iterations without touching each other, a guide is compiled
once, and the synthetic backend follows guides too."""

from __future__ import annotations

import json
import re

import jsonschema
import numpy as np
import pytest

from reference_engine.backends.reference import ReferenceBackend
from reference_engine.backends.synthetic import SyntheticBackend
from reference_engine.contract import EngineLimits, parse_request
from reference_engine.scheduler import Scheduler
from reference_engine.testing import RecordingSink
from serving_common.word_lists import encode_word_list

pytest.importorskip("xgrammar")

PROMPT = [1, 15, 27, 300, 41]
MAX_TOKENS = 400
SCHEMAS = [
    {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "ok": {"type": "boolean"},
            "color": {"enum": ["red", "green", "blue"]},
            "name": {"type": "string", "maxLength": 8},
        },
        "required": ["id", "ok", "color", "name"],
    },
    {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
            "inner": {
                "type": "object",
                "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 99}},
                "required": ["n"],
            },
        },
        "required": ["tags", "inner"],
    },
]


@pytest.fixture(scope="module")
def fixtures():
    from offline_fixtures import ensure_fixtures

    return ensure_fixtures()


@pytest.fixture(scope="module")
def backend(fixtures):
    return ReferenceBackend(fixtures.tiny_llama, device="cpu")


@pytest.fixture(scope="module")
def tokenizer(fixtures):
    from serving_common.tokenizer_loading import load_tokenizer

    return load_tokenizer(fixtures.tiny_llama)


def guide(guide_type: str, text: str | None = None) -> dict[str, np.ndarray]:
    inputs = {"guided_decoding_guide_type": np.array([[guide_type.encode()]], dtype=object)}
    if text is not None:
        inputs["guided_decoding_guide"] = np.array([[text.encode()]], dtype=object)
    return inputs


def run(backend, requests: list[dict], end_id: int = 2) -> list[RecordingSink]:
    """Submit every request to one scheduler at once and drive it until all are done."""
    scheduler = Scheduler(backend, random_seed=0)
    sinks = []
    for extra in requests:
        inputs = {
            "input_ids": np.array([PROMPT], np.int32),
            "request_output_len": np.array([[MAX_TOKENS]], np.int32),
            "end_id": np.array([[end_id]], np.int32),
            **extra,
        }
        sink = RecordingSink()
        scheduler.submit(parse_request(inputs, "r", EngineLimits(2048, backend.vocab_size)), sink)
        sinks.append(sink)
    for _ in range(MAX_TOKENS + 10):
        if all(sink.done for sink in sinks):
            break
        scheduler.run_once()
    assert all(sink.finals == 1 for sink in sinks)
    return sinks


def sampled(seed: int) -> dict[str, np.ndarray]:
    return {
        "runtime_top_k": np.array([[50]], np.int32),
        "seed": np.array([[seed]], np.uint64),
    }


def parse_json(text: str):
    # xgrammar's rule for a bounded string (maxLength) admits raw control characters
    # (U+0000-U+001F but \r and \n), which strict JSON parsers refuse; strict=False reads them.
    return json.loads(text, strict=False)


def test_every_output_follows_its_schema_and_ends_on_end_id(backend, tokenizer):
    requests = [
        {**guide("json_schema", json.dumps(schema)), **sampled(seed)}
        for schema in SCHEMAS
        for seed in range(4)
    ]
    sinks = run(backend, requests)
    for request, sink in zip(requests, sinks, strict=True):
        assert sink.error is None, sink.error
        tokens = sink.tokens()
        assert len(tokens) < MAX_TOKENS  # ended on end_id: the guide was complete
        schema = json.loads(request["guided_decoding_guide"][0, 0])
        jsonschema.validate(parse_json(tokenizer.decode(tokens)), schema)
    # The samples differ: the guide constrains, the seed still decides.
    assert len({tuple(sink.tokens()) for sink in sinks}) == len(sinks)


def test_greedy_regex_and_grammar_and_sampled_any_json(backend, tokenizer):
    regex, grammar = r"[a-c]{3}-[0-9]{2}", 'root ::= "yes" | "no" | "maybe"'
    # Any JSON has unbounded strings, which greedy decoding of a random model never
    # closes; seed 1 samples a value that completes (about 100 tokens).
    sinks = run(
        backend,
        [guide("regex", regex), guide("ebnf_grammar", grammar), {**guide("json"), **sampled(1)}],
    )
    texts = [tokenizer.decode(sink.tokens()) for sink in sinks]
    assert re.fullmatch(regex, texts[0]), texts[0]
    assert texts[1] in ("yes", "no", "maybe")
    # json is xgrammar's built-in JSON grammar, as the C++ backend compiles it: an object
    # or an array.
    value = parse_json(texts[2])
    assert isinstance(value, (dict, list)) and value
    assert all(len(sink.tokens()) < MAX_TOKENS for sink in sinks)


def test_unguided_sequences_in_the_same_iterations_are_unchanged(backend):
    alone = run(backend, [{}])[0].tokens()
    together = run(backend, [guide("regex", "[0-9]+"), {}, guide("json")])
    assert together[1].tokens() == alone
    assert len(alone) == MAX_TOKENS  # the random model never says end_id by itself


def test_samples_of_one_request_each_follow_the_guide(backend, tokenizer):
    request = {
        **guide("regex", r"(cat|dog)s?"),
        **sampled(7),
        "num_return_sequences": np.array([[4]], np.int32),
        "streaming": np.array([[True]]),
    }
    (sink,) = run(backend, [request])
    for index in range(4):
        assert re.fullmatch(r"(cat|dog)s?", tokenizer.decode(sink.tokens(0, index)))


def test_a_guide_is_compiled_once(fixtures):
    backend = ReferenceBackend(fixtures.tiny_llama, device="cpu")
    schema = json.dumps(SCHEMAS[1])
    run(backend, [guide("json_schema", schema), guide("json_schema", schema)])
    run(backend, [guide("json_schema", schema), guide("regex", "[a-z]+")])
    assert backend.guides.compilations == 2


def test_a_complete_guide_ends_the_sequence_before_min_tokens(backend, tokenizer):
    (sink,) = run(backend, [{**guide("regex", "xy"), "min_tokens": np.array([[6]], np.int32)}])
    assert sink.error is None
    assert tokenizer.decode(sink.tokens()) == "xy"  # ended on end_id, under min_tokens


def test_a_guide_that_bad_words_leave_no_token_is_the_requests_error(backend, tokenizer):
    import xgrammar

    decoded = xgrammar.TokenizerInfo.from_huggingface(tokenizer).decoded_vocab
    x_tokens = [[token_id] for token_id, text in enumerate(decoded) if text == b"x"]
    assert x_tokens  # "x" and its byte-fallback form <0x78>
    bad = encode_word_list(x_tokens)[None]
    (sink,) = run(backend, [{**guide("regex", "x+"), "bad_words_list": bad}])
    message, code = sink.error
    assert code == "INVALID_ARG"
    assert "guided_decoding_guide: the guide allows no token that the request's bad_words" in (
        message
    )


def test_the_synthetic_backend_draws_among_what_the_guide_allows(fixtures, tokenizer):
    backend = SyntheticBackend(
        step_ms=0, vocab_size=tokenizer.vocab_size, tokenizer_dir=fixtures.tiny_llama
    )
    min_tokens = {"min_tokens": np.array([[3]], np.int32)}
    sinks = run(
        backend, [guide("regex", r"[0-9]{1,4}")] * 3 + [{}, {**guide("regex", "7"), **min_tokens}]
    )
    for sink in sinks[:3]:
        assert re.fullmatch(r"[0-9]{1,4}", tokenizer.decode(sink.tokens()))
    assert len(sinks[3].tokens()) == MAX_TOKENS  # unguided: end_id is never drawn (policy -1)
    assert tokenizer.decode(sinks[4].tokens()) == "7"  # the complete guide beats min_tokens


def test_without_a_tokenizer_guided_requests_are_unsupported():
    backend = SyntheticBackend(step_ms=0, vocab_size=2000)
    (sink,) = run(backend, [guide("json")])
    message, code = sink.error
    assert code == "UNSUPPORTED"
    assert "tokenizer_dir" in message
