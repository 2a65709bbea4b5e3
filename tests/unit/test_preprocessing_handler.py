"""The preprocessing model's tensors, without a server: names, shapes, padding, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from offline_fixtures import ensure_fixtures
from preprocessing import PreprocessingLimits, PromptEncoder
from preprocessing.handler import OUTPUT_NAMES, preprocess
from serving_common.errors import RequestError
from serving_common.tokenizer_loading import load_tokenizer
from serving_common.word_lists import decode_word_list


@pytest.fixture(scope="module")
def encoder() -> PromptEncoder:
    tok = load_tokenizer(ensure_fixtures().sentencepiece_tokenizer)
    return PromptEncoder(tok, PreprocessingLimits(max_input_len=32, max_words=3))


def strings(rows: list[list[str]]) -> np.ndarray:
    """A BYTES tensor as Triton hands it to a Python model: object array of bytes."""
    return np.array([[s.encode("utf-8") for s in row] for row in rows], dtype=object)


def test_single_prompt_outputs(encoder):
    out = preprocess(
        encoder,
        {"QUERY": strings([["Hello world"]]), "REQUEST_OUTPUT_LEN": np.array([[16]], np.int32)},
    )
    assert set(out) == set(OUTPUT_NAMES)
    ids = encoder.encode_text("Hello world")
    assert out["INPUT_ID"].dtype == np.int32 and out["INPUT_ID"].tolist() == [ids]
    assert out["REQUEST_INPUT_LEN"].tolist() == [[len(ids)]]
    assert out["REQUEST_OUTPUT_LEN"].tolist() == [[16]]
    assert out["OUT_END_ID"].tolist() == [[2]] and out["OUT_PAD_ID"].tolist() == [[2]]
    # Absent word inputs: [B, 2, 0]; absent bias: [B, 0] (as TensorRT-LLM's own model).
    assert out["STOP_WORDS_IDS"].shape == (1, 2, 0)
    assert out["BAD_WORDS_IDS"].shape == (1, 2, 0)
    assert out["EMBEDDING_BIAS"].shape == (1, 0) and out["EMBEDDING_BIAS"].dtype == np.float32


def test_ragged_batch_is_padded_with_each_rows_pad_id(encoder):
    out = preprocess(
        encoder,
        {
            "QUERY": strings([["Hi"], ["A much longer prompt than the first one"]]),
            "PAD_ID": np.array([[7], [9]], np.int32),
            "END_ID": np.array([[2], [5]], np.int32),
        },
    )
    short = encoder.encode_text("Hi")
    long = encoder.encode_text("A much longer prompt than the first one")
    assert out["REQUEST_INPUT_LEN"].tolist() == [[len(short)], [len(long)]]
    assert out["INPUT_ID"].shape == (2, len(long))
    assert out["INPUT_ID"][0].tolist() == short + [7] * (len(long) - len(short))
    assert out["INPUT_ID"][1].tolist() == long
    assert out["OUT_PAD_ID"].tolist() == [[7], [9]]
    assert out["OUT_END_ID"].tolist() == [[2], [5]]
    assert "REQUEST_OUTPUT_LEN" not in out


def test_word_lists_per_row_with_empty_string_padding(encoder):
    out = preprocess(
        encoder,
        {
            "QUERY": strings([["a"], ["b"]]),
            "STOP_WORDS_DICT": strings([["hello", "world"], ["hello", ""]]),
            "BAD_WORDS_DICT": strings([["", ""], ["stop", ""]]),
        },
    )
    stop = out["STOP_WORDS_IDS"]
    assert stop.shape[:2] == (2, 2) and stop.dtype == np.int32
    assert decode_word_list(stop[0]) == encoder.word_lists(["hello", "world"], "s")
    assert decode_word_list(stop[1]) == encoder.word_lists(["hello"], "s")
    bad = out["BAD_WORDS_IDS"]
    assert decode_word_list(bad[0]) == []
    assert decode_word_list(bad[1]) == encoder.word_lists(["stop"], "b")


def test_embedding_bias_rows(encoder):
    out = preprocess(
        encoder,
        {
            "QUERY": strings([["a"], ["b"]]),
            "EMBEDDING_BIAS_WORDS": strings([["hello", ""], ["world", "stop"]]),
            "EMBEDDING_BIAS_WEIGHTS": np.array([[1.5, 0.0], [-2.0, 3.0]], np.float32),
        },
    )
    bias = out["EMBEDDING_BIAS"]
    assert bias.shape == (2, encoder.vocab_size) and bias.dtype == np.float32
    np.testing.assert_array_equal(bias[0], encoder.embedding_bias([("hello", 1.5)]))
    np.testing.assert_array_equal(bias[1], encoder.embedding_bias([("world", -2.0), ("stop", 3.0)]))


def test_messages_instead_of_query(encoder):
    conversation = json.dumps([{"role": "user", "content": "Hi"}])
    out = preprocess(encoder, {"MESSAGES": strings([[conversation]])})
    assert out["INPUT_ID"][0].tolist() == encoder.encode_messages(conversation)


@pytest.mark.parametrize(
    ("inputs", "field", "message"),
    [
        ({}, "QUERY", "is required: send QUERY"),
        (
            {"QUERY": [["x"]], "MESSAGES": [['[{"role":"user","content":"x"}]']]},
            "MESSAGES",
            "not both",
        ),
        ({"QUERY": [[""]]}, "QUERY", "is empty"),
        ({"QUERY": [["a", "b"]]}, "QUERY", "exactly one string per row, got 2"),
        ({"QUERY": [["ok"], [""]]}, "QUERY[1]", "is empty"),
        ({"MESSAGES": [["not json"]]}, "MESSAGES", "is not valid JSON"),
        ({"QUERY": [["hello " * 50]]}, "QUERY", r"over the limit of 32 tokens \(max_input_len\)"),
        (
            {"QUERY": [["x"]], "STOP_WORDS_DICT": [["a", "b", "c", "d"]]},
            "STOP_WORDS_DICT",
            r"has 4 words, over the limit of 3 words \(max_words\)",
        ),
        (
            {"QUERY": [["x"]], "BAD_WORDS_DICT": [["antidisestablishmentarianism " * 8]]},
            "BAD_WORDS_DICT",
            r"max_word_tokens",
        ),
        (
            {"QUERY": [["x"]], "EMBEDDING_BIAS_WORDS": [["a"]]},
            "EMBEDDING_BIAS_WEIGHTS",
            "is required when EMBEDDING_BIAS_WORDS is given",
        ),
        ({"QUERY": [["x"]], "FOO": [["x"]]}, "FOO", "is not an input of this model"),
    ],
)
def test_request_errors_name_the_input(encoder, inputs, field, message):
    tensors = {k: strings(v) if isinstance(v, list) else v for k, v in inputs.items()}
    with pytest.raises(RequestError, match=message) as caught:
        preprocess(encoder, tensors)
    assert caught.value.field == field


def test_numeric_input_errors(encoder):
    query = strings([["x"]])
    with pytest.raises(RequestError, match="at least 1, got 0") as caught:
        preprocess(encoder, {"QUERY": query, "REQUEST_OUTPUT_LEN": np.array([[0]], np.int32)})
    assert caught.value.field == "REQUEST_OUTPUT_LEN"
    with pytest.raises(RequestError, match="token id >= 0, got -1"):
        preprocess(encoder, {"QUERY": query, "END_ID": np.array([[-1]], np.int32)})
    with pytest.raises(RequestError, match="has 2 rows but QUERY has 1"):
        preprocess(encoder, {"QUERY": query, "PAD_ID": np.array([[1], [2]], np.int32)})
    with pytest.raises(RequestError) as caught:
        preprocess(
            encoder,
            {
                "QUERY": query,
                "EMBEDDING_BIAS_WORDS": strings([["a", "b"]]),
                "EMBEDDING_BIAS_WEIGHTS": np.array([[1.0]], np.float32),
            },
        )
    assert "has 2 words but EMBEDDING_BIAS_WEIGHTS has 1 weights" in str(caught.value)


def test_invalid_utf8_query(encoder):
    with pytest.raises(RequestError) as caught:
        preprocess(encoder, {"QUERY": np.array([[b"ok \xc3("]], dtype=object)})
    assert caught.value.field == "QUERY"
    assert "byte offset 3" in caught.value.message


def test_request_parameters_are_refused_except_tritons_own(encoder):
    query = {"QUERY": strings([["x"]])}
    out = preprocess(encoder, query, {"triton_enable_empty_final_response": True, "id": "7"})
    assert out["REQUEST_INPUT_LEN"].tolist() == [[len(encoder.encode_text("x"))]]
    with pytest.raises(RequestError, match="arrived as a request parameter") as caught:
        preprocess(encoder, query, {"max_tokens": 5})
    assert caught.value.field == "max_tokens"
