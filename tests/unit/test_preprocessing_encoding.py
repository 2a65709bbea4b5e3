"""PromptEncoder on the two fixture tokenizers: prompts, chat, word lists, limits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from offline_fixtures import ensure_fixtures
from offline_fixtures.corpus import TRAINING_TEXTS
from preprocessing import PreprocessingLimits, PromptEncoder
from preprocessing.encoding import embedding_bias_pairs
from serving_common.errors import RequestError
from serving_common.tokenizer_loading import load_tokenizer
from serving_common.word_lists import decode_word_list, encode_word_list

LIMITS = PreprocessingLimits(max_input_len=64, max_words=4, max_word_tokens=8)


@pytest.fixture(scope="module")
def fixture_dirs():
    return ensure_fixtures()


@pytest.fixture(scope="module")
def sp(fixture_dirs) -> PromptEncoder:
    return PromptEncoder(load_tokenizer(fixture_dirs.sentencepiece_tokenizer), LIMITS)


@pytest.fixture(scope="module")
def bpe(fixture_dirs) -> PromptEncoder:
    return PromptEncoder(load_tokenizer(fixture_dirs.bpe_tokenizer), LIMITS)


@pytest.fixture(params=["sp", "bpe"])
def encoder(request) -> PromptEncoder:
    return request.getfixturevalue(request.param)


def tokens(encoder: PromptEncoder, ids: list[int]) -> list[str]:
    return encoder.tokenizer.convert_ids_to_tokens(ids)


def contains(haystack: list[int], needle: list[int]) -> bool:
    return any(haystack[i : i + len(needle)] == needle for i in range(len(haystack)))


# ---- prompts ------------------------------------------------------------------------------


def test_encode_text_adds_one_bos_like_hugging_face(encoder):
    bos = encoder.tokenizer.bos_token_id
    ids = encoder.encode_text("Hello world")
    assert ids == encoder.tokenizer("Hello world").input_ids
    assert ids[0] == bos and ids.count(bos) == 1


def test_bos_is_never_doubled(encoder):
    tok = encoder.tokenizer
    text = tok.bos_token + "Hello world"
    # Plain Hugging Face encoding doubles it; the encoder must not.
    assert tok(text).input_ids[:2] == [tok.bos_token_id] * 2
    ids = encoder.encode_text(text)
    assert ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id
    assert ids == tok(text, add_special_tokens=False).input_ids


def test_bytes_prompts_are_utf8(encoder):
    text = "Café 日本 👨‍👩‍👧"
    assert encoder.encode_text(text.encode("utf-8")) == encoder.encode_text(text)


def test_add_special_tokens_off(fixture_dirs):
    tok = load_tokenizer(fixture_dirs.sentencepiece_tokenizer)
    encoder = PromptEncoder(tok, LIMITS, add_special_tokens=False)
    ids = encoder.encode_text("Hello world")
    assert tok.bos_token_id not in ids
    assert ids == tok("Hello world", add_special_tokens=False).input_ids


def test_multilingual_prompts_round_trip(encoder):
    limits = PreprocessingLimits(max_input_len=4096)
    big = PromptEncoder(encoder.tokenizer, limits)
    for text in TRAINING_TEXTS:
        if text[0].isspace():
            continue  # the SentencePiece decoder strips one leading space
        ids = big.encode_text(text)
        assert encoder.tokenizer.decode(ids, skip_special_tokens=True) == text


# ---- chat -----------------------------------------------------------------------------------


def test_messages_use_the_chat_template_with_one_bos(encoder):
    tok = encoder.tokenizer
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello there"},
    ]
    ids = encoder.encode_messages(json.dumps(messages))
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert ids == tok(rendered, add_special_tokens=False).input_ids
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
    text = tok.decode(ids)
    assert "Hello there" in text and "Be brief." in text
    # The generation prompt (assistant turn) is at the end.
    assert text.rstrip().endswith(("<|assistant|>", "assistant<|end_header_id|>"))


def test_messages_as_bytes_and_parsed(sp):
    messages = [{"role": "user", "content": "Hi"}]
    from_json = sp.encode_messages(json.dumps(messages).encode("utf-8"))
    assert sp.encode_conversation(messages) == from_json


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("[{'role': 'user'}]", "is not valid JSON"),
        ('{"role": "user", "content": "x"}', "must be a JSON array of messages, got a JSON object"),
        ("[]", "the conversation is empty"),
        ('["hi"]', "message 0 must be a JSON object"),
        ('[{"role": "", "content": "x"}]', "message 0 needs a non-empty string 'role'"),
        ('[{"role": "user", "content": 3}]', "has 'content' of JSON type number"),
        (
            '[{"role": "user", "content": "x", "tool_calls": []}]',
            r"keys \['tool_calls'\] that are not",
        ),
    ],
)
def test_malformed_messages_are_request_errors(sp, payload, message):
    with pytest.raises(RequestError, match=message) as caught:
        sp.encode_messages(payload)
    assert caught.value.field == "messages"


def test_tokenizer_without_chat_template_is_a_clear_error(fixture_dirs):
    tok = load_tokenizer(fixture_dirs.bpe_tokenizer)
    tok.chat_template = None
    encoder = PromptEncoder(tok, LIMITS)
    with pytest.raises(RequestError, match="has no chat template") as caught:
        encoder.encode_messages('[{"role": "user", "content": "Hi"}]')
    assert caught.value.field == "messages"


def test_chat_template_errors_become_request_errors(fixture_dirs):
    tok = load_tokenizer(fixture_dirs.bpe_tokenizer)
    tok.chat_template = "{{ raise_exception('roles must alternate') }}"
    encoder = PromptEncoder(tok, LIMITS)
    with pytest.raises(RequestError, match="roles must alternate"):
        encoder.encode_messages('[{"role": "user", "content": "Hi"}]')


# ---- word lists -----------------------------------------------------------------------------


def test_sentencepiece_words_with_and_without_leading_space(sp):
    variants = [tokens(sp, v) for v in sp.word_lists(["hello"], "stop_words")]
    assert ["▁hello"] in variants and ["hello"] in variants
    assert len(variants) == 2


def test_byte_level_words_with_and_without_leading_space(bpe):
    variants = [tokens(bpe, v) for v in bpe.word_lists(["hello"], "stop_words")]
    assert ["Ġhello"] in variants and ["hello"] in variants
    assert len(variants) == 2


@pytest.mark.parametrize("word", ["hello", "world", "stop", "日本", "Café", "😀", "return"])
def test_every_variant_occurs_in_running_text_and_covers_it(encoder, word):
    variants = encoder.word_lists([word], "stop_words")
    contexts = [f"Say {word} now", f"Say\n{word} now", f"({word})", f"{word} first"]
    seen = set()
    for context in contexts:
        ids = encoder.tokenizer(context, add_special_tokens=False).input_ids
        found = [tuple(v) for v in variants if contains(ids, v)]
        # Each running text holds the word as one of its variants...
        assert found, (context, tokens(encoder, ids), [tokens(encoder, v) for v in variants])
        seen.update(found)
    # ...and each variant is one that running text produces.
    assert seen == {tuple(v) for v in variants}


def test_word_that_starts_with_whitespace_is_taken_as_written(encoder):
    variants = encoder.word_lists(["\nUser:"], "stop_words")
    assert len(variants) == 1
    newline_ids = encoder.tokenizer("a\nUser:", add_special_tokens=False).input_ids
    assert contains(newline_ids, variants[0])


def test_special_token_word_has_one_form(encoder):
    eos = encoder.tokenizer.eos_token
    assert encoder.word_lists([eos], "stop_words") == [[encoder.tokenizer.eos_token_id]]


def test_duplicates_and_empty_words_are_dropped(encoder):
    once = encoder.word_lists(["hello"], "stop_words")
    twice = encoder.word_lists(["hello", "", " hello", "hello"], "stop_words")
    assert twice == once
    assert decode_word_list(encode_word_list(twice)) == once


def test_too_many_words(encoder):
    with pytest.raises(RequestError) as caught:
        encoder.word_lists(["a", "b", "c", "d", "e"], "bad_words")
    assert caught.value.field == "bad_words"
    assert "has 5 words, over the limit of 4 words (max_words)" in str(caught.value)


def test_word_too_long(encoder):
    word = "floccinaucinihilipilification antidisestablishmentarianism"
    with pytest.raises(RequestError) as caught:
        encoder.word_lists([word], "stop_words")
    assert caught.value.field == "stop_words"
    assert "over the limit of 8 tokens per word (max_word_tokens)" in caught.value.message
    assert "floccinaucinihilipilification" in caught.value.message


def test_invalid_utf8_word_names_field_and_offset(encoder):
    with pytest.raises(RequestError) as caught:
        encoder.word_lists([b"ok", b"ab\xffcd"], "stop_words")
    assert caught.value.field == "stop_words[1]"
    assert "byte offset 2" in caught.value.message


# ---- embedding bias -------------------------------------------------------------------------


def test_embedding_bias_weights_every_form_of_every_word(encoder):
    bias = encoder.embedding_bias([("hello", 2.5), ("world", -1.0)])
    assert bias.shape == (encoder.vocab_size,) and bias.dtype == np.float32
    hello = {t for v in encoder.word_lists(["hello"], "w") for t in v}
    world = {t for v in encoder.word_lists(["world"], "w") for t in v}
    expected = np.zeros(encoder.vocab_size, dtype=np.float32)
    for t in hello:
        expected[t] += 2.5
    for t in world:
        expected[t] += -1.0
    np.testing.assert_array_equal(bias, expected)
    assert len(hello) >= 2 and np.all(bias[sorted(hello - world)] == np.float32(2.5))
    assert encoder.tokenizer.bos_token_id not in np.flatnonzero(bias)


def test_embedding_bias_length_mismatch_names_both_fields():
    with pytest.raises(RequestError) as caught:
        embedding_bias_pairs(["a", "b", "c"], [1.0, 2.0])
    assert caught.value.field == "embedding_bias_words"
    assert "has 3 words but embedding_bias_weights has 2 weights" in caught.value.message


def test_embedding_bias_refuses_non_finite():
    with pytest.raises(RequestError, match="finite") as caught:
        embedding_bias_pairs(["a"], [float("nan")])
    assert caught.value.field == "embedding_bias_weights"


# ---- ids and limits -------------------------------------------------------------------------


def test_end_and_pad_ids(sp, bpe):
    assert (sp.end_id, sp.pad_id) == (2, 2)  # Llama: no pad token, pad with EOS
    assert bpe.end_id == bpe.tokenizer.convert_tokens_to_ids("<|end_of_text|>")
    assert bpe.pad_id == bpe.end_id
    assert sp.vocab_size == len(sp.tokenizer)


def test_empty_prompt(encoder):
    with pytest.raises(RequestError) as caught:
        encoder.encode_text("")
    assert caught.value.field == "text_input"
    assert "is empty" in caught.value.message


def test_prompt_over_max_input_len(encoder):
    text = "hello " * 100
    count = len(encoder.tokenizer(text).input_ids)
    with pytest.raises(RequestError) as caught:
        encoder.encode_text(text, field="QUERY")
    assert caught.value.field == "QUERY"
    assert f"is {count} tokens, over the limit of 64 tokens (max_input_len)" in str(caught.value)


def test_prompt_at_the_limit_is_accepted(encoder):
    tok = encoder.tokenizer
    words = ["hello"] * 200
    # Find the longest prompt that fits and check it is accepted whole.
    while len(tok(" ".join(words)).input_ids) > 64:
        words.pop()
    ids = encoder.encode_text(" ".join(words))
    assert len(ids) <= 64 and len(ids) == len(tok(" ".join(words)).input_ids)


def test_chat_prompt_over_max_input_len(encoder):
    messages = json.dumps([{"role": "user", "content": "hello " * 100}])
    with pytest.raises(RequestError, match=r"over the limit of 64 tokens \(max_input_len\)"):
        encoder.encode_messages(messages)


def test_invalid_utf8_prompt(encoder):
    with pytest.raises(RequestError) as caught:
        encoder.encode_text(b"Hello \xe6\x97 world")
    assert caught.value.field == "text_input"
    assert "not valid UTF-8" in caught.value.message
    assert "byte offset 6" in caught.value.message


def test_word_over_max_word_chars_is_refused_before_it_is_tokenized(fixture_dirs):
    limits = PreprocessingLimits(max_word_chars=10, max_word_tokens=100)
    encoder = PromptEncoder(load_tokenizer(fixture_dirs.sentencepiece_tokenizer), limits)
    assert encoder.word_lists(["0123456789"], "stop_words")  # 10 characters: fine
    with pytest.raises(RequestError) as caught:
        encoder.word_lists(["ok", "0123456789a"], "stop_words")
    assert caught.value.field == "stop_words"
    assert caught.value.message == (
        "the word '0123456789a' is 11 characters, over the limit of 10 characters per word "
        "(max_word_chars)"
    )
    assert "0123456789a" not in encoder._word_cache  # never tokenized, never cached


def test_a_huge_prompt_is_refused_by_its_head_without_tokenizing_it_whole(fixture_dirs):
    tokenizer = load_tokenizer(fixture_dirs.sentencepiece_tokenizer)
    encoder = PromptEncoder(tokenizer, PreprocessingLimits(max_input_len=4096))
    calls = []
    original = tokenizer.encode

    def recording_encode(text, **kwargs):
        calls.append(len(text))
        return original(text, **kwargs)

    tokenizer.encode = recording_encode
    try:
        with pytest.raises(RequestError) as caught:
            encoder.encode_text("The quick brown fox jumps. " * 40_000)  # ~1 MB
    finally:
        del tokenizer.encode
    assert calls == [4096 * 8]  # only the head was tokenized
    assert caught.value.field == "text_input"
    assert caught.value.message.startswith("the prompt is over 4096 tokens (its first 32768 ")
    assert caught.value.message.endswith("over the limit of 4096 tokens (max_input_len)")


def test_a_long_prompt_of_long_tokens_is_judged_whole(fixture_dirs):
    # Over 8 characters a token on average: the head alone says nothing; the whole is
    # tokenized and accepted when it fits.
    tokenizer = load_tokenizer(fixture_dirs.bpe_tokenizer)
    encoder = PromptEncoder(tokenizer, PreprocessingLimits(max_input_len=16))
    text = "単語が生成されるとすぐに表示されます" * 8  # 18 characters, one token
    count = len(tokenizer.encode(text, add_special_tokens=True))
    assert len(text) > 16 * 8 and count <= 16
    assert len(encoder.encode_text(text)) == count
