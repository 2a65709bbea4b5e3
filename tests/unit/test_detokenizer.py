"""IncrementalDetokenizer on hand-picked cases: each one a way streaming decodes go wrong.

The reference for text is the tokenizer's own full decode (clean-up of tokenization
spaces off, the setting the detokenizer documents); for invalid UTF-8 it is
`bytes.decode("utf-8", "replace")`, character by character as the bytes arrive. The
property tests in test_detokenizer_properties.py cover the same contract on generated
input.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from tokenizers.decoders import DecodeStream

import postprocessing.window as window_module
from offline_fixtures import ensure_fixtures
from postprocessing import (
    DecodeOptions,
    DetokenizerState,
    IncrementalDetokenizer,
    StateError,
    decode_texts,
    profile_for,
)
from postprocessing.state import MAX_CONTEXT_IDS, MAX_PENDING_IDS
from postprocessing.tokenizer_profile import decode_stream_is_safe
from serving_common.tokenizer_loading import load_tokenizer
from tests.unit.detokenizer_oracle import REPLACEMENT, one_id_per_byte


@pytest.fixture(scope="module")
def sp():
    """Fixture (a): Llama-2 style sentencepiece BPE with byte fallback (fast)."""
    return load_tokenizer(ensure_fixtures().sentencepiece_tokenizer)


@pytest.fixture(scope="module")
def bpe_path():
    return ensure_fixtures().bpe_tokenizer


@pytest.fixture(scope="module")
def bpe(bpe_path):
    """Fixture (b): GPT-2 / Llama-3 style byte-level BPE (fast)."""
    return load_tokenizer(bpe_path)


R = REPLACEMENT


def full(tokenizer, ids, skip=True):
    return tokenizer.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=False)


def one_by_one(tokenizer, ids, skip=True):
    detokenizer = IncrementalDetokenizer(tokenizer, skip_special_tokens=skip)
    deltas = [detokenizer.push([token_id]) for token_id in ids]
    deltas.append(detokenizer.finish())
    return deltas


def byte_piece(tokenizer, value: int) -> int:
    token_id = tokenizer.convert_tokens_to_ids(f"<0x{value:02X}>")
    assert tokenizer.convert_ids_to_tokens(token_id) == f"<0x{value:02X}>"
    return token_id


def test_sentencepiece_leading_spaces_survive_token_by_token(sp):
    text = "The quick brown fox jumps over the lazy dog."
    ids = sp.encode(text, add_special_tokens=True)
    # What per-token decoding (the official streaming postprocessing) produces: every
    # token decoded alone loses its leading space to the sentencepiece strip rule.
    naive = "".join(sp.decode([i], skip_special_tokens=True) for i in ids)
    assert naive != text
    assert "".join(one_by_one(sp, ids)) == full(sp, ids) == text
    # The first word has no leading space, every later one keeps its own.
    deltas = [d for d in one_by_one(sp, ids) if d]
    assert deltas[0] == "The" and deltas[1] == " quick"


@pytest.mark.parametrize("fixture", ["sp", "bpe"])
def test_no_partial_character_is_ever_returned(fixture, request):
    tokenizer = request.getfixturevalue(fixture)
    text = "天气 🧑‍💻 ꙮ𝔘 e\u0301 👍🏽"
    ids = tokenizer.encode(text, add_special_tokens=False)
    deltas = one_by_one(tokenizer, ids)
    assert "".join(deltas) == full(tokenizer, ids) == text
    assert not any(REPLACEMENT in delta for delta in deltas)
    # Some characters span several tokens (byte pieces / partial byte-level tokens):
    # the tokens before the last one return nothing.
    assert deltas.count("") > 1


def test_finish_shows_an_unfinished_character_as_one_replacement_character(sp, bpe):
    for tokenizer in (sp, bpe):
        ids = tokenizer.encode("ok 𝔘", add_special_tokens=False)
        # Cut inside the last character: it is unfinished, shown at finish() as ONE
        # U+FFFD, like bytes.decode("utf-8", "replace") shows it.
        cuts = [cut for cut in range(1, len(ids)) if full(tokenizer, ids[:cut]).endswith(R)]
        assert len(cuts) >= 1 + (tokenizer is sp)  # 𝔘 is 4 byte pieces in sp
        for cut in cuts:
            prefix = ids[:cut]
            detokenizer = IncrementalDetokenizer(tokenizer)
            assert detokenizer.push(prefix) == "ok "
            assert detokenizer.finish() == REPLACEMENT
            assert decode_texts(tokenizer, [prefix], DecodeOptions())[0] == f"ok {REPLACEMENT}"
    # The byte-level decode agrees; Hugging Face's ByteFallback decoder shows one U+FFFD
    # per byte piece of the run (the documented difference).
    assert full(bpe, bpe.encode("ok 𝔘", add_special_tokens=False)[:-1]) == f"ok {REPLACEMENT}"
    pieces = sp.encode("ok 𝔘", add_special_tokens=False)[:-1]
    assert full(sp, pieces) == f"ok {REPLACEMENT * 3}"


def test_a_run_with_an_invalid_byte_keeps_its_complete_characters(sp):
    # Hugging Face's ByteFallback decodes a run of byte pieces as one unit: <0x41> alone
    # is "A", but followed by <0xE4> (which the next word leaves unfinished) the whole
    # run is U+FFFD. Here "A" is final as soon as it is complete, and only <0xE4> is.
    the = sp.convert_tokens_to_ids("▁the")
    ids = [the, byte_piece(sp, 0x41), byte_piece(sp, 0xE4), the]
    assert full(sp, ids[:2]) == "theA"
    assert full(sp, ids) == f"the{REPLACEMENT * 2} the"
    assert one_by_one(sp, ids) == ["the", "A", "", f"{REPLACEMENT} the", ""]
    # The non-streaming path follows the same rule.
    assert decode_texts(sp, [ids], DecodeOptions()) == [f"theA{REPLACEMENT} the"]
    # DecodeStream alone returns "A", then fails on the next word: a stream must not be
    # given byte pieces one by one.
    stream = DecodeStream(skip_special_tokens=True)
    returned = [stream.step(sp._tokenizer, i) for i in ids[:3]]
    assert returned == ["the", "A", None]
    with pytest.raises(Exception, match="Invalid prefix"):
        stream.step(sp._tokenizer, ids[3])


def test_decode_texts_keeps_the_order_of_a_batch_with_invalid_runs(sp):
    the = sp.convert_tokens_to_ids("▁the")
    sequences = [
        sp.encode("Hello 今天 ꙮ", add_special_tokens=True),
        [the, byte_piece(sp, 0x41), byte_piece(sp, 0xE4), the],  # the slow path
        [],
        sp.encode("ok 𝔘", add_special_tokens=False)[:-1],  # unfinished at the end
        sp.encode("done", add_special_tokens=False),
    ]
    for skip in (True, False):
        streamed = ["".join(one_by_one(sp, ids, skip)) for ids in sequences]
        options = DecodeOptions(skip_special_tokens=skip)
        assert decode_texts(sp, sequences, options) == streamed
    assert streamed[1:] == [f"theA{R} the", "", f"ok {R}", "done"]


@pytest.mark.parametrize("fixture", ["sp", "bpe"])
def test_a_family_emoji_of_25_bytes_streams_character_by_character(fixture, request):
    # One id per byte (byte-fallback pieces; byte-level one-byte tokens), the way a
    # Mistral-style tokenizer spells this emoji. Each of its 7 characters (4 people, 3
    # zero-width joiners) comes out with its last byte: never more than 3 silent ids.
    tokenizer = request.getfixturevalue(fixture)
    emoji = "👨\u200d👩\u200d👧\u200d👦"
    data = emoji.encode()
    assert len(data) == 25
    byte_ids = one_id_per_byte(tokenizer)
    deltas = one_by_one(tokenizer, [byte_ids[b] for b in data])
    expected = []
    for character in emoji:
        expected += [""] * (len(character.encode()) - 1) + [character]
    assert deltas == [*expected, ""]


@pytest.mark.parametrize("fixture", ["sp", "bpe"])
@pytest.mark.parametrize(
    ("data", "deltas"),
    [
        (b"\x80A", [R, "A"]),  # a stray continuation byte: invalid at once
        (b"\xc0\xaf", [R, R]),  # C0 never starts a character
        (b"\xe4\xb8A", ["", "", f"{R}A"]),  # truncated: one U+FFFD for both bytes
        (b"\xe4\xb8\xe4\xb8\xad", ["", "", R, "", "中"]),
        (b"\xed\xa0\x80", ["", R * 2, R]),  # a surrogate: ED is invalid before A0
        (b"\xf0\x9f\x91", ["", "", "", R]),  # unfinished at the end: one U+FFFD
    ],
)
def test_invalid_bytes_become_replacement_characters_as_soon_as_known(
    fixture, data, deltas, request
):
    tokenizer = request.getfixturevalue(fixture)
    byte_ids = one_id_per_byte(tokenizer)
    ids = [byte_ids[b] for b in data]
    assert one_by_one(tokenizer, ids) == [*deltas[: len(ids)], "".join(deltas[len(ids) :])]
    assert "".join(deltas) == data.decode("utf-8", "replace")
    assert decode_texts(tokenizer, [ids], DecodeOptions()) == [data.decode("utf-8", "replace")]


@pytest.mark.skipif(
    not decode_stream_is_safe(), reason="this tokenizers' DecodeStream is not used (it panics)"
)
def test_decode_stream_failure_is_caught_and_decoding_continues_exactly(sp, monkeypatch):
    """On real models DecodeStream raises "Invalid prefix encountered while decoding
    stream" on some id sequences (vLLM issue 17448). Inject that failure at every
    possible step: the output must still be the full decode."""
    ids = sp.encode("Hello 今天天气很好 world, ꙮ again.", add_special_tokens=True)
    expected = full(sp, ids)
    steps = {"count": 0, "fail_at": None, "raised": 0}

    class FailingStream:
        def __init__(self, **kwargs):
            self._stream = DecodeStream(**kwargs)

        def step(self, tokenizer, token_id):
            steps["count"] += 1
            result = self._stream.step(tokenizer, token_id)  # consumes the id first
            if steps["count"] == steps["fail_at"]:
                steps["raised"] += 1
                raise Exception("Invalid prefix encountered while decoding stream")
            return result

    monkeypatch.setattr(window_module, "DecodeStream", FailingStream)
    assert "".join(one_by_one(sp, ids)) == expected
    # Byte pieces and skipped special tokens bypass the stream: it sees fewer steps.
    stream_steps = steps["count"]
    assert stream_steps >= 8

    for fail_at in range(1, stream_steps + 1):
        steps.update(count=0, fail_at=fail_at, raised=0)
        deltas = one_by_one(sp, ids)
        assert steps["raised"] == 1
        assert "".join(deltas) == expected, fail_at
        assert not any(REPLACEMENT in delta for delta in deltas)


@pytest.mark.parametrize("skip", [True, False])
def test_special_tokens_in_the_middle(sp, bpe, skip):
    for tokenizer in (sp, bpe):
        words = tokenizer.encode("hello world", add_special_tokens=False)
        more = tokenizer.encode(" again 天", add_special_tokens=False)
        for special in sorted(profile_for(tokenizer).special_ids):
            ids = [special, *words, special, *more, special, special]
            assert "".join(one_by_one(tokenizer, ids, skip)) == full(tokenizer, ids, skip)
            shown = tokenizer.convert_ids_to_tokens(special)
            assert (shown in "".join(one_by_one(tokenizer, ids, skip))) is not skip


def test_a_long_run_of_skipped_special_tokens_keeps_the_next_space(sp):
    # Longer than the context window: were the special ids kept as context, the next
    # word would be the window's first visible token and lose its leading space.
    eos = sp.convert_tokens_to_ids("</s>")
    ids = [*sp.encode("hello", add_special_tokens=False), *[eos] * 100]
    ids += sp.encode("world", add_special_tokens=False)  # "▁world"
    assert full(sp, ids) == "hello world"
    assert "".join(one_by_one(sp, ids)) == "hello world"


def test_skipped_special_tokens_follow_the_rust_decode_not_all_special_ids(bpe):
    # Chat header tokens are special in tokenizer.json but not in all_special_ids.
    header = bpe.convert_tokens_to_ids("<|start_header_id|>")
    assert header not in bpe.all_special_ids
    ids = [header, *bpe.encode("user", add_special_tokens=False), header]
    assert full(bpe, ids) == "user"
    assert "".join(one_by_one(bpe, ids)) == "user"


def test_byte_pieces_split_by_a_skipped_special_token_still_form_one_character(sp):
    eos = sp.convert_tokens_to_ids("</s>")
    han = [byte_piece(sp, b) for b in "ꙮ".encode()]
    ids = [han[0], eos, han[1], han[2]]
    assert full(sp, ids, skip=True) == "ꙮ"
    assert "".join(one_by_one(sp, ids, skip=True)) == "ꙮ"
    assert "".join(one_by_one(sp, ids, skip=False)) == full(sp, ids, skip=False)


def test_a_tokenizer_class_that_overrides_decode_is_followed_not_bypassed(sp):
    class Shouting(type(sp)):
        """A model-specific tokenizer post-processing its decode (like a few do)."""

        def _decode(self, token_ids, **kwargs):
            return super()._decode(token_ids, **kwargs).upper()

    shouting = Shouting.from_pretrained(ensure_fixtures().sentencepiece_tokenizer)
    # Its decode is not the Rust decode any more: neither DecodeStream nor the Rust
    # tokenizer may be used behind its back.
    assert profile_for(sp).supports_decode_stream is decode_stream_is_safe()
    assert not profile_for(shouting).supports_decode_stream
    assert profile_for(shouting).rust is None
    ids = shouting.encode("Hello 今天 ꙮ wörld", add_special_tokens=True)
    assert full(shouting, ids) == "HELLO 今天 ꙮ WÖRLD"
    assert "".join(one_by_one(shouting, ids)) == "HELLO 今天 ꙮ WÖRLD"


def test_push_accepts_chunks_numpy_and_empty_input(sp):
    ids = sp.encode("Streaming in chunks, 🍕 included.", add_special_tokens=False)
    detokenizer = IncrementalDetokenizer(sp)
    text = detokenizer.push([])
    text += detokenizer.push(np.array(ids[:5], dtype=np.int32))
    text += detokenizer.push(tuple(ids[5:9]))
    text += detokenizer.push(i for i in ids[9:])
    text += detokenizer.finish()
    assert text == full(sp, ids)


def test_misuse_is_refused(sp):
    detokenizer = IncrementalDetokenizer(sp)
    with pytest.raises(ValueError, match="non-negative"):
        detokenizer.push([-1])
    detokenizer.push(sp.encode("done", add_special_tokens=False))
    assert detokenizer.finish() == ""
    assert detokenizer.finish() == ""  # idempotent
    assert detokenizer.finished
    with pytest.raises(RuntimeError, match="after finish"):
        detokenizer.push([5])


def test_an_endless_run_of_byte_pieces_is_never_held(sp, bpe):
    # A model stuck on byte pieces: the run never ends. Each character is returned with
    # its last byte all the same, and the state stays small.
    repeats = 5 * MAX_PENDING_IDS
    for tokenizer in (sp, bpe):
        byte_ids = one_id_per_byte(tokenizer)
        for data, deltas in (
            (b"A", ["A"] * repeats + [""]),
            ("中".encode(), ["", "", "中"] * repeats + [""]),
            # A lead byte alone: the next one shows it invalid; finish() the last.
            (b"\xe4", ["", *[R] * (repeats - 1), R]),
        ):
            detokenizer = IncrementalDetokenizer(tokenizer)
            returned = []
            for token_id in [byte_ids[b] for b in data] * repeats:
                returned.append(detokenizer.push([token_id]))
                assert len(detokenizer.state().pending_ids) <= 3  # one unfinished character
            assert [*returned, detokenizer.finish()] == deltas


def test_text_held_without_end_is_bounded_all_the_same(bpe_path):
    # A tokenizer followed through its decode alone (one whose bytes are not known)
    # holds text whose decode ends in U+FFFD; a model repeating a byte that starts a
    # character would make that forever. The detokenizer emits after a bound instead
    # of growing its window.
    tokenizer = load_tokenizer(bpe_path)  # a fresh object, so a profile of its own
    profile_for(tokenizer).byte_level = None
    lead = one_id_per_byte(tokenizer)[0xE4]
    detokenizer = IncrementalDetokenizer(tokenizer)
    deltas = []
    for _ in range(5 * MAX_PENDING_IDS):
        deltas.append(detokenizer.push([lead]))
        assert len(detokenizer.state().pending_ids) < MAX_PENDING_IDS
    deltas.append(detokenizer.finish())
    assert "".join(deltas) == R * (5 * MAX_PENDING_IDS)
    assert sum(1 for d in deltas if d) >= 5


def test_state_is_small_whatever_the_length(sp, bpe):
    for tokenizer in (sp, bpe):
        ids = tokenizer.encode(
            "def f(x):\n    return x  # 天气 🍕\n" * 300, add_special_tokens=False
        )
        detokenizer = IncrementalDetokenizer(tokenizer)
        for token_id in ids:
            detokenizer.push([token_id])
            state = detokenizer.state()
            assert len(state.context_ids) <= MAX_CONTEXT_IDS
            assert len(state.pending_ids) < MAX_PENDING_IDS
        assert len(ids) > 3000
        assert len(detokenizer.state().to_json()) < 1024


def test_restore_continues_exactly_at_every_point(sp, bpe):
    for tokenizer in (sp, bpe):
        ids = tokenizer.encode("Café 👨‍👩‍👧‍👦 ꙮ\n    x = 1  # 今天", add_special_tokens=True)
        original = one_by_one(tokenizer, ids)
        for cut in range(len(ids) + 1):
            first = IncrementalDetokenizer(tokenizer)
            before = [first.push([i]) for i in ids[:cut]]
            state = DetokenizerState.from_json(first.state().to_json())
            restored = IncrementalDetokenizer.restore(tokenizer, state)
            after = [restored.push([i]) for i in ids[cut:]]
            assert [*before, *after, restored.finish()] == original, cut


def test_state_json_round_trip_and_shape(sp):
    detokenizer = IncrementalDetokenizer(sp, skip_special_tokens=False)
    detokenizer.push(sp.encode("Hello ꙮ", add_special_tokens=True)[:-1])
    state = detokenizer.state()
    data = json.loads(state.to_json())
    assert data["skip_special_tokens"] is False
    assert data["vocab_size"] == len(sp)
    assert data["pending_ids"], "the unfinished character is held back"
    assert DetokenizerState.from_json(state.to_json()) == state
    assert DetokenizerState.from_json(state.to_json().encode()) == state


def test_restore_refuses_a_state_made_differently(sp, bpe):
    state = IncrementalDetokenizer(sp, skip_special_tokens=False).state()
    with pytest.raises(StateError, match="skip_special_tokens=False, not True"):
        IncrementalDetokenizer.restore(sp, state, skip_special_tokens=True)
    with pytest.raises(StateError, match=f"tokenizer of {len(sp)} tokens"):
        IncrementalDetokenizer.restore(bpe, state)
    restored = IncrementalDetokenizer.restore(sp, state)  # options default to the state's
    assert restored.state() == state


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"context_ids": []}', "missing keys"),
        ("x" * 10_000, "at most 8192"),
    ],
)
def test_malformed_state_json_is_refused(text, message):
    with pytest.raises(StateError, match=message):
        DetokenizerState.from_json(text)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"extra": 1}, "unknown keys"),
        ({"context_ids": [1, -2]}, "non-negative integer token ids"),
        ({"pending_ids": [True]}, "non-negative integer token ids"),
        ({"pending_ids": "12"}, "must be a list"),
        ({"context_ids": list(range(MAX_CONTEXT_IDS + 1))}, "at most 32"),
        ({"pending_ids": list(range(MAX_PENDING_IDS + 1))}, "at most 64"),
        ({"finished": "no"}, "finished must be true or false"),
        ({"vocab_size": -1}, "vocab_size"),
        ({"version": 99}, "version 99 is not supported"),
        # Version 1 pending ids returned none of their text: replaying them would lose it.
        ({"version": 1}, "version 1 is not supported"),
        ({"finished": True, "pending_ids": [5]}, "finished state holds no pending_ids"),
    ],
)
def test_invalid_state_fields_are_refused(change, message):
    data = json.loads(DetokenizerState(vocab_size=10).to_json())
    data.update(change)
    with pytest.raises(StateError, match=message):
        DetokenizerState.from_json(json.dumps(data))
