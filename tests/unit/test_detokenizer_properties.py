"""IncrementalDetokenizer against its contract, on generated text, random ids and bytes.

The contract (postprocessing/detokenizer.py), computed here another way: the
tokenizer's own decode after every run of byte-fallback pieces has been made valid
UTF-8 the way `bytes.decode("utf-8", "replace")` does it (`rule_text` below). For text
that is the plain `tokenizer.decode`.

For every tokenizer below, and for text with CJK, emoji (ZWJ sequences, flags, skin
tones), combining accents, code and whitespace runs, for random id sequences that are
not text at all (byte-fallback pieces out of order, special tokens anywhere), and for
byte strings with invalid UTF-8 sent one byte per id, streamed one id at a time or in
random chunks:
- at every point, the text returned so far is a prefix of the final text (so it never
  ends in a partial character: a U+FFFD it returns is one the text keeps);
- at the end, the concatenation is `rule_text`, and `decode_texts` (the non-streaming
  path) gives the same text; for text it is exactly `tokenizer.decode`;
- text with no U+FFFD gets none in any delta;
- at every point everything but ONE unfinished character has been returned (what a
  detokenizer restored from the state would still return at finish() is at most one
  U+FFFD), so a byte run is never silent for more than 3 ids;
- a detokenizer restored from its JSON state mid-stream returns the same deltas.

Tokenizers: both fixture tokenizers (fast), the sentencepiece one also slow (pure
Python, from tokenizer.model) and as a bare `tokenizers.Tokenizer`, the sentencepiece
one with DecodeStream unavailable (as with tokenizers < 0.21: the window decode alone),
and the byte-level one followed through its decode instead of its bytes (with and
without DecodeStream: what a byte-level tokenizer gets when its byte table cannot be
trusted); plus, when the environment variable LLM_BLS_EXTRA_TOKENIZER_DIR names a
directory, the tokenizer there (and its tokenizer.json / tokenizer.model on their own).
"""

from __future__ import annotations

import functools
import os
from itertools import cycle
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from offline_fixtures import ensure_fixtures
from offline_fixtures.corpus import TRAINING_TEXTS
from postprocessing import (
    DecodeOptions,
    DetokenizerState,
    IncrementalDetokenizer,
    decode_texts,
    profile_for,
)
from postprocessing.tokenizer_profile import decode_stream_is_safe
from serving_common.tokenizer_loading import load_tokenizer
from tests.unit import detokenizer_oracle as oracle
from tests.unit.detokenizer_oracle import (
    REPLACEMENT,
    byte_pieces,
    full_decode,
    settled_text,
    skipped_ids,
)

EXTRA_DIR_ENV = "LLM_BLS_EXTRA_TOKENIZER_DIR"

TEXT_SETTINGS = settings(max_examples=100, derandomize=True, deadline=None)
IDS_SETTINGS = settings(max_examples=150, derandomize=True, deadline=None)
RESTORE_SETTINGS = settings(max_examples=80, derandomize=True, deadline=None)
HELD_SETTINGS = settings(max_examples=60, derandomize=True, deadline=None)
BYTES_SETTINGS = settings(max_examples=120, derandomize=True, deadline=None)

# --- tokenizers -----------------------------------------------------------------------


def _slow_sentencepiece(model_file: Path):
    """A pure-Python sentencepiece tokenizer (the window decode path)."""
    try:  # transformers 5
        from transformers.tokenization_utils_sentencepiece import SentencePieceBackend
    except ImportError:  # transformers 4: LlamaTokenizer is the slow one
        from transformers import LlamaTokenizer

        return LlamaTokenizer(vocab_file=str(model_file), legacy=False)
    return SentencePieceBackend(
        vocab_file=str(model_file), bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def _without_decode_stream(directory: Path):
    tokenizer = load_tokenizer(directory)  # a fresh object, so a profile of its own
    profile_for(tokenizer).supports_decode_stream = False
    return tokenizer


def _through_its_decode(directory: Path, *, decode_stream: bool):
    """A byte-level tokenizer followed through its decode, not its bytes."""
    tokenizer = load_tokenizer(directory)  # a fresh object, so a profile of its own
    profile = profile_for(tokenizer)
    assert profile.byte_level is not None
    profile.byte_level = None
    profile.supports_decode_stream = decode_stream
    return tokenizer


def _extra_dir() -> Path | None:
    value = os.environ.get(EXTRA_DIR_ENV)
    return Path(value) if value else None


LOADERS = {
    "sentencepiece": lambda: load_tokenizer(ensure_fixtures().sentencepiece_tokenizer),
    "bpe": lambda: load_tokenizer(ensure_fixtures().bpe_tokenizer),
    "sentencepiece-slow": lambda: _slow_sentencepiece(
        ensure_fixtures().sentencepiece_tokenizer / "tokenizer.model"
    ),
    "sentencepiece-rust": lambda: Tokenizer.from_file(
        str(ensure_fixtures().sentencepiece_tokenizer / "tokenizer.json")
    ),
    "sentencepiece-no-stream": lambda: _without_decode_stream(
        ensure_fixtures().sentencepiece_tokenizer
    ),
    "bpe-window": lambda: _through_its_decode(ensure_fixtures().bpe_tokenizer, decode_stream=True),
    "bpe-window-no-stream": lambda: _through_its_decode(
        ensure_fixtures().bpe_tokenizer, decode_stream=False
    ),
    "extra": lambda: load_tokenizer(_extra_dir()),
    "extra-tokenizer.json": lambda: Tokenizer.from_file(str(_extra_dir() / "tokenizer.json")),
    "extra-tokenizer.model": lambda: _slow_sentencepiece(_extra_dir() / "tokenizer.model"),
}
# The file each extra variant needs (None: whatever load_tokenizer accepts).
EXTRA_FILES = {
    "extra": None,
    "extra-tokenizer.json": "tokenizer.json",
    "extra-tokenizer.model": "tokenizer.model",
}


@functools.cache
def tokenizer_named(name: str):
    if name.startswith("extra"):
        directory = _extra_dir()
        if directory is None:
            pytest.skip(f"set {EXTRA_DIR_ENV} to a tokenizer directory to test it")
        needed = EXTRA_FILES[name]
        if needed is not None and not (directory / needed).is_file():
            pytest.skip(f"{directory} has no {needed}")
    if name == "bpe-window" and not decode_stream_is_safe():
        # The product never uses this tokenizers' DecodeStream (it panics); forcing it on
        # would test the library's bug, not the detokenizer.
        pytest.skip("the installed tokenizers' DecodeStream panics (< 0.21.1)")
    return LOADERS[name]()


NAMES = list(LOADERS)
# Followed through their decode alone: text whose decode ends in U+FFFD is held whole
# (complete characters before an unfinished one included), so only the final text is
# the contract's.
NOT_EAGER = {"bpe-window", "bpe-window-no-stream"}


def encode(tokenizer, text: str) -> list[int]:
    if isinstance(tokenizer, Tokenizer):
        return tokenizer.encode(text).ids
    return tokenizer.encode(text, add_special_tokens=True)


@functools.cache
def _pieces(name: str) -> dict[int, int]:
    return byte_pieces(tokenizer_named(name))


@functools.cache
def _skipped(name: str) -> frozenset[int]:
    tokenizer = tokenizer_named(name)
    return frozenset(skipped_ids(tokenizer, profile_for(tokenizer).vocab_size))


def rule_text(name: str, ids: list[int], skip: bool) -> str:
    tokenizer = tokenizer_named(name)
    return oracle.rule_text(tokenizer, ids, skip, pieces=_pieces(name), skipped=_skipped(name))


@functools.cache
def one_id_per_byte(name: str) -> dict[int, int] | None:
    return oracle.one_id_per_byte(tokenizer_named(name))


# --- input strategies -------------------------------------------------------------------

FRAGMENTS = (
    "今天天气很好",
    "吾輩は猫である。",
    "안녕하세요",
    "🤗",
    "👨‍👩‍👧‍👦",
    "🇫🇷🇯🇵",
    "👍🏽",
    "e\u0301",
    "a\u0300\u0301\u0302",
    "Ångström",
    "ꙮ𝔘𝔫𝔦",  # characters no fixture vocabulary has: byte fallback / byte pieces
    "\u00a0",
    "\u200d",
    "def f(x):\n    return x\n",
    "\tif (a) {\n\t\treturn 0;\n\t}\n",
    "    ",
    "\t\t",
    "\n\n\n",
    "  ",
    " ",
    "\r\n",
    "x = {'a': [1, 2]}",
    "Hello",
    " world",
    ".",
    "3.14159",
    "<s>",  # special-token text inside ordinary text
)
# Pieces of the fixture corpus, cut anywhere (also inside grapheme clusters).
SNIPPETS = tuple(text[i : i + 48] for text in TRAINING_TEXTS for i in range(0, len(text), 48))
CHARACTERS = "aZ ,.\n\t 天気한🙂\u0301ßꙮ𝔘\u200d€"

texts = st.lists(
    st.one_of(
        st.sampled_from(FRAGMENTS),
        st.sampled_from(SNIPPETS),
        st.text(alphabet=CHARACTERS, max_size=6),
    ),
    min_size=1,
    max_size=6,
).map("".join)
chunk_sizes = st.one_of(
    st.just([1]),  # one id at a time
    st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=12),
)


# Invalid UTF-8 of every kind: stray continuation bytes, bytes that never start a
# character, truncated sequences, surrogates and overlong forms (maximal subparts of
# one, two and three bytes).
BROKEN_BYTES = (
    b"\x80",
    b"\xbf",
    b"\xc0",
    b"\xc1\xbf",
    b"\xf5",
    b"\xff",
    b"\xe4\xb8",
    b"\xf0\x9f\x91",
    b"\xed\xa0\x80",
    b"\xe0\x80",
    b"\xf4\x90",
)
byte_strings = st.lists(
    st.one_of(
        st.text(alphabet=CHARACTERS + "👨\u200d👩", max_size=3).map(str.encode),
        st.sampled_from(FRAGMENTS).map(str.encode),
        st.sampled_from(BROKEN_BYTES),
        st.binary(min_size=1, max_size=3),
    ),
    min_size=1,
    max_size=12,
).map(b"".join)


def random_ids(name: str) -> st.SearchStrategy[list[int]]:
    profile = profile_for(tokenizer_named(name))
    anywhere = st.integers(min_value=0, max_value=profile.vocab_size - 1)
    # Byte pieces, one-byte tokens and special tokens are where decoders are fragile:
    # draw them often.
    fragile = sorted(
        profile.byte_piece_ids | profile.special_ids | set((one_id_per_byte(name) or {}).values())
    )
    ids = st.one_of(anywhere, st.sampled_from(fragile)) if fragile else anywhere
    return st.lists(ids, min_size=8, max_size=64)


def any_ids(name: str) -> st.SearchStrategy[list[int]]:
    """Text, random ids, or (where the tokenizer has one id per byte) broken bytes."""
    tokenizer = tokenizer_named(name)
    sources = [texts.map(lambda text: encode(tokenizer, text)), random_ids(name)]
    byte_ids = one_id_per_byte(name)
    if byte_ids is not None:
        sources.append(byte_strings.map(lambda data: [byte_ids[b] for b in data]))
    return st.one_of(sources)


# --- running a stream -------------------------------------------------------------------


def chunked(ids: list[int], sizes: list[int]) -> list[list[int]]:
    chunks, start = [], 0
    for size in cycle(sizes):
        if start >= len(ids):
            return chunks
        chunks.append(ids[start : start + size])
        start += size
    raise AssertionError("unreachable")


def restored(tokenizer, detokenizer: IncrementalDetokenizer) -> IncrementalDetokenizer:
    """A detokenizer restored from `detokenizer`'s state, through its JSON form."""
    state = DetokenizerState.from_json(detokenizer.state().to_json())
    return IncrementalDetokenizer.restore(tokenizer, state)


def stream(tokenizer, chunks, skip: bool, restore_after: frozenset[int] = frozenset()):
    """Deltas of pushing each chunk, then finish(); after chunk i in `restore_after`
    the detokenizer is replaced by one restored from its JSON state."""
    detokenizer = IncrementalDetokenizer(tokenizer, skip_special_tokens=skip)
    deltas = []
    for index, chunk in enumerate(chunks):
        deltas.append(detokenizer.push(chunk))
        if index in restore_after:
            detokenizer = restored(tokenizer, detokenizer)
    deltas.append(detokenizer.finish())
    return deltas


def assert_streams_to(expected: str, deltas: list[str]) -> None:
    so_far = ""
    for delta in deltas:
        so_far += delta
        assert expected.startswith(so_far), (deltas, expected)
    assert so_far == expected, (deltas, expected)
    if REPLACEMENT not in expected:
        assert not any(REPLACEMENT in delta for delta in deltas)


def whole(tokenizer, ids: list[int], skip: bool) -> str:
    """The non-streaming path's text."""
    return decode_texts(tokenizer, [ids], DecodeOptions(skip_special_tokens=skip))[0]


# --- properties ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_text_streams_to_exactly_its_full_decode(name):
    tokenizer = tokenizer_named(name)

    @TEXT_SETTINGS
    @given(text=texts, sizes=chunk_sizes, skip=st.booleans())
    def check(text, sizes, skip):
        ids = encode(tokenizer, text)
        expected = full_decode(tokenizer, ids, skip)
        assert_streams_to(expected, stream(tokenizer, chunked(ids, sizes), skip))
        assert whole(tokenizer, ids, skip) == expected

    check()


@pytest.mark.parametrize("name", NAMES)
def test_random_ids_stream_to_the_contract_text(name):
    tokenizer = tokenizer_named(name)

    @IDS_SETTINGS
    @given(ids=random_ids(name), sizes=chunk_sizes, skip=st.booleans())
    def check(ids, sizes, skip):
        expected = rule_text(name, ids, skip)
        assert_streams_to(expected, stream(tokenizer, chunked(ids, sizes), skip))
        assert whole(tokenizer, ids, skip) == expected

    check()


@pytest.mark.parametrize("name", [name for name in NAMES if name not in NOT_EAGER])
def test_only_one_unfinished_character_is_ever_held_back(name):
    """After every id, all text is returned but what finish() would still add, and that
    is at most one U+FFFD (the unfinished character)."""
    tokenizer = tokenizer_named(name)

    @HELD_SETTINGS
    @given(ids=any_ids(name), skip=st.booleans())
    def check(ids, skip):
        detokenizer = IncrementalDetokenizer(tokenizer, skip_special_tokens=skip)
        returned = ""
        for count, token_id in enumerate(ids, start=1):
            returned += detokenizer.push([token_id])
            rest = restored(tokenizer, detokenizer).finish()
            assert rest in ("", REPLACEMENT), (ids[:count], returned, rest)
            assert returned + rest == rule_text(name, ids[:count], skip)

    check()


@pytest.mark.parametrize("name", NAMES)
def test_byte_runs_stream_character_by_character(name):
    """Bytes, valid or not, one id each: every character comes out with its last byte,
    every invalid subpart as soon as a byte shows it, both as `bytes.decode("utf-8",
    "replace")` has them; so no more than 3 ids in a row are silent."""
    byte_ids = one_id_per_byte(name)
    if byte_ids is None:
        pytest.skip(f"{name} has no id for each byte (or does not decode them as bytes)")
    tokenizer = tokenizer_named(name)
    lead = encode(tokenizer, "Hi")

    @BYTES_SETTINGS
    @given(data=byte_strings)
    def check(data):
        detokenizer = IncrementalDetokenizer(tokenizer)
        head = detokenizer.push(lead)
        deltas = [detokenizer.push([byte_ids[b]]) for b in data]
        tail = detokenizer.finish()
        expected = full_decode(tokenizer, lead, True) + data.decode("utf-8", "replace")
        assert head + "".join(deltas) + tail == expected
        if name in NOT_EAGER:
            return
        assert head == "Hi"
        returned, silent = "", 0
        for count, delta in enumerate(deltas, start=1):
            returned += delta
            assert returned == settled_text(data[:count]), (data, count)
            silent = 0 if delta else silent + 1
            assert silent <= 3

    check()


@pytest.mark.parametrize("name", NAMES)
def test_a_restored_detokenizer_continues_exactly(name):
    tokenizer = tokenizer_named(name)

    @RESTORE_SETTINGS
    @given(
        source=any_ids(name),
        sizes=chunk_sizes,
        skip=st.booleans(),
        restore_after=st.frozensets(st.integers(min_value=0, max_value=40), max_size=8),
    )
    def check(source, sizes, skip, restore_after):
        chunks = chunked(source, sizes)
        uninterrupted = stream(tokenizer, chunks, skip)
        assert stream(tokenizer, chunks, skip, restore_after) == uninterrupted
        assert_streams_to(rule_text(name, source, skip), uninterrupted)

    check()
