"""The postprocessing model's request handling on numpy arrays (what model.py passes in)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from offline_fixtures import ensure_fixtures
from postprocessing.handler import Postprocessor
from serving_common.errors import RequestError
from serving_common.tokenizer_loading import load_tokenizer


@pytest.fixture(scope="module")
def sp():
    return load_tokenizer(ensure_fixtures().sentencepiece_tokenizer)


@pytest.fixture(scope="module")
def bpe():
    return load_tokenizer(ensure_fixtures().bpe_tokenizer)


@pytest.fixture(scope="module")
def post(sp):
    return Postprocessor(sp)


def batch(rows: list[list[list[int]]], pad: int = 2) -> dict[str, np.ndarray]:
    """TOKENS_BATCH [B, beams, T] padded with `pad`, and SEQUENCE_LENGTH [B, beams]."""
    width = max((len(seq) for row in rows for seq in row), default=0)
    tokens = np.full((len(rows), len(rows[0]), width), pad, dtype=np.int32)
    lengths = np.zeros((len(rows), len(rows[0])), dtype=np.int32)
    for b, row in enumerate(rows):
        for k, seq in enumerate(row):
            tokens[b, k, : len(seq)] = seq
            lengths[b, k] = len(seq)
    return {"TOKENS_BATCH": tokens, "SEQUENCE_LENGTH": lengths}


def texts(array: np.ndarray) -> list[list[str]]:
    return [[value.decode("utf-8") for value in row] for row in array]


def decode(tokenizer, ids, skip=True):
    return tokenizer.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=False)


SAMPLES = ["Hello, world!", "今天天气很好 🍕", "def f(x):\n    return x", "Café ꙮ 👨‍👩‍👧‍👦"]


def test_whole_sequences_with_beams_and_lengths(sp, post):
    ids = [sp.encode(text, add_special_tokens=True) for text in SAMPLES]
    rows = [[ids[0], ids[1]], [ids[2], ids[3]]]
    inputs = batch(rows)
    # Ids past SEQUENCE_LENGTH are ignored, whatever they are.
    inputs["TOKENS_BATCH"][0, 0, len(ids[0]) :] = 7
    outputs = post.postprocess(inputs)
    assert set(outputs) == {"OUTPUT"}
    assert outputs["OUTPUT"].shape == (2, 2)
    assert outputs["OUTPUT"].dtype == object
    assert texts(outputs["OUTPUT"]) == [[SAMPLES[0], SAMPLES[1]], [SAMPLES[2], SAMPLES[3]]]


def test_zero_length_sequences_decode_to_empty_text(post):
    inputs = batch([[[]], [[]]])
    assert texts(post.postprocess(inputs)["OUTPUT"]) == [[""], [""]]


def test_skip_special_tokens_setting(sp):
    ids = [*sp.encode("Hi there", add_special_tokens=True), sp.eos_token_id]
    keep = Postprocessor(sp, skip_special_tokens=False)
    assert texts(keep.postprocess(batch([[ids]]))["OUTPUT"]) == [[decode(sp, ids, skip=False)]]
    assert decode(sp, ids, skip=False) == "<s> Hi there</s>"


def stream_calls(post, sequences, sizes, finish_last=True):
    """Call the model like a streaming client: each call carries the next chunk of every
    sequence (beams of one row) and the states of the previous call."""
    beams = len(sequences)
    states = np.array([[b"" for _ in range(beams)]], dtype=object)
    collected = ["" for _ in range(beams)]
    position = 0
    for call, size in enumerate(sizes):
        chunk = [seq[position : position + size] for seq in sequences]
        position += size
        inputs = batch([chunk])
        inputs["DETOKENIZER_STATE"] = states
        finishing = finish_last and call == len(sizes) - 1
        if finishing:
            inputs["FINISH"] = np.array([[True]])
        outputs = post.postprocess(inputs)
        assert set(outputs) == {"OUTPUT", "DETOKENIZER_STATE"}
        for k, text in enumerate(texts(outputs["OUTPUT"])[0]):
            # Only the final flush may end in an unfinished character's U+FFFD.
            assert finishing or not text.endswith("\ufffd")
            collected[k] += text
        states = outputs["DETOKENIZER_STATE"]
        for raw in states[0]:
            assert len(raw) < 1024  # bounded, whatever the length so far
    return collected, states


@pytest.mark.parametrize("fixture", ["sp", "bpe"])
def test_stateless_streaming_gives_exactly_the_full_decode(fixture, request):
    tokenizer = request.getfixturevalue(fixture)
    post = Postprocessor(tokenizer)
    first = tokenizer.encode(SAMPLES[1] + SAMPLES[3], add_special_tokens=True)
    second = tokenizer.encode(SAMPLES[2] + SAMPLES[0], add_special_tokens=True)
    length = max(len(first), len(second))
    sizes = [1, 2, 3, 1] * length
    collected, states = stream_calls(post, [first, second], [*sizes[: length // 2], length])
    assert collected == [decode(tokenizer, first), decode(tokenizer, second)]
    assert all(json.loads(raw)["finished"] for raw in states[0])


def test_finish_returns_the_held_back_unfinished_character(sp, post):
    ids = sp.encode("ok ꙮ", add_special_tokens=False)[:-1]  # cut inside the last character
    # Two of the character's three byte pieces: one unfinished character, so one U+FFFD
    # as bytes.decode("utf-8", "replace") has it (the tokenizer's decode shows one per
    # byte: the documented difference).
    assert decode(sp, ids) == "ok \ufffd\ufffd"
    collected, _ = stream_calls(post, [ids], [len(ids), 0], finish_last=False)
    assert collected == ["ok "]
    collected, _ = stream_calls(post, [ids], [len(ids), 0], finish_last=True)
    assert collected == ["ok \ufffd"]
    # The whole decode (no state) follows the same rule.
    assert texts(post.postprocess(batch([[ids]]))["OUTPUT"]) == [["ok \ufffd"]]


def test_finish_per_beam(sp, post):
    ids = sp.encode("ok ꙮ", add_special_tokens=False)[:-1]
    inputs = batch([[ids, ids]])
    inputs["DETOKENIZER_STATE"] = np.array([[b"", ""]], dtype=object)
    inputs["FINISH"] = np.array([[False, True]])
    outputs = post.postprocess(inputs)
    assert texts(outputs["OUTPUT"]) == [["ok ", "ok \ufffd"]]
    finished = [json.loads(raw)["finished"] for raw in outputs["DETOKENIZER_STATE"][0]]
    assert finished == [False, True]


def error_of(post, inputs) -> RequestError:
    with pytest.raises(RequestError) as caught:
        post.postprocess(inputs)
    return caught.value


def streaming_inputs(post, ids, state):
    inputs = batch([[ids]])
    inputs["DETOKENIZER_STATE"] = np.array([[state]], dtype=object)
    return inputs


def test_client_errors_name_the_input(sp, post):
    ids = sp.encode("hello world", add_special_tokens=False)
    assert len(ids) == 2
    good = batch([[ids]])
    two_beams = batch([[ids, ids]])
    two_beams["DETOKENIZER_STATE"] = np.array([[b"", b""]], dtype=object)
    cases = [
        ({"SEQUENCE_LENGTH": good["SEQUENCE_LENGTH"]}, "TOKENS_BATCH", "is required"),
        ({"TOKENS_BATCH": good["TOKENS_BATCH"]}, "SEQUENCE_LENGTH", "is required"),
        ({**good, "CUM_LOG_PROBS": np.zeros((1, 1))}, "CUM_LOG_PROBS", "not an input"),
        (
            {**good, "TOKENS_BATCH": good["TOKENS_BATCH"][0]},
            "TOKENS_BATCH",
            r"expected shape \[batch, beams, tokens\], got \[1, 2\]",
        ),
        (
            {**good, "TOKENS_BATCH": good["TOKENS_BATCH"].astype(np.float32)},
            "TOKENS_BATCH",
            "must hold integers",
        ),
        (
            {**good, "SEQUENCE_LENGTH": np.array([[1, 1]], dtype=np.int32)},
            "SEQUENCE_LENGTH",
            r"expected shape \[1, 1\]",
        ),
        (
            {**good, "SEQUENCE_LENGTH": np.array([[9]], dtype=np.int32)},
            "SEQUENCE_LENGTH",
            "row 0, beam 0: 9 is not between 0 and 2",
        ),
        (
            {**good, "SEQUENCE_LENGTH": np.array([[-1]], dtype=np.int32)},
            "SEQUENCE_LENGTH",
            "-1 is not between 0 and 2",
        ),
        (
            {**good, "TOKENS_BATCH": np.array([[[ids[0], len(sp)]]], dtype=np.int32)},
            "TOKENS_BATCH",
            rf"position 1: token id {len(sp)} is outside the tokenizer's vocabulary "
            rf"\[0, {len(sp)}\)",
        ),
        (
            {**good, "TOKENS_BATCH": np.array([[[-5, ids[0]]]], dtype=np.int32)},
            "TOKENS_BATCH",
            "position 0: token id -5",
        ),
        ({**good, "FINISH": np.array([[True]])}, "FINISH", "only meaningful with"),
        (
            {**good, "DETOKENIZER_STATE": np.array([[b""], [b""]], dtype=object)},
            "DETOKENIZER_STATE",
            r"expected shape \[1, 1\]",
        ),
        (
            {**two_beams, "FINISH": np.ones((1, 3), bool)},
            "FINISH",
            r"expected shape \[1, 1\] or \[1, 2\], got \[1, 3\]",
        ),
        ({**two_beams, "FINISH": np.ones((1, 1), np.int32)}, "FINISH", "must be BOOL"),
        (
            streaming_inputs(post, ids, b"\xff"),
            "DETOKENIZER_STATE",
            "row 0, beam 0 is not valid UTF-8",
        ),
        (streaming_inputs(post, ids, "{"), "DETOKENIZER_STATE", "row 0, beam 0: not valid JSON"),
        (streaming_inputs(post, ids, 5), "DETOKENIZER_STATE", "must be a string, got int"),
    ]
    for inputs, field, message in cases:
        error = error_of(post, inputs)
        assert error.field == field, (field, str(error))
        assert error.code == "INVALID_ARG"
        assert re.search(message, error.message), (message, error.message)


def first_state(post, ids, **extra) -> bytes:
    inputs = streaming_inputs(post, ids, b"")
    inputs.update(extra)
    return post.postprocess(inputs)["DETOKENIZER_STATE"][0, 0]


def test_states_from_elsewhere_are_refused(sp, bpe, post):
    ids = sp.encode("hello", add_special_tokens=False)
    # Made by a model that keeps special tokens.
    other_options = first_state(Postprocessor(sp, skip_special_tokens=False), ids)
    error = error_of(post, streaming_inputs(post, ids, other_options))
    assert error.field == "DETOKENIZER_STATE"
    assert "skip_special_tokens=False, not True" in error.message
    # Made with another tokenizer.
    foreign = first_state(Postprocessor(bpe), bpe.encode("hello", add_special_tokens=False))
    error = error_of(post, streaming_inputs(post, ids, foreign))
    assert f"tokenizer of {len(bpe)} tokens" in error.message
    # A stream that has ended.
    ended = first_state(post, ids, FINISH=np.array([[True]]))
    error = error_of(post, streaming_inputs(post, ids, ended))
    assert "has ended" in error.message
