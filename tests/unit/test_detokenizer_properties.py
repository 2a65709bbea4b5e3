"""IncrementalDetokenizer against the full decode, on generated text and random ids.

For every tokenizer below, and for text with CJK, emoji (ZWJ sequences, flags, skin
tones), combining accents, code and whitespace runs, as well as for random id
sequences that are not text at all (byte-fallback pieces out of order, special tokens
anywhere), streamed one id at a time or in random chunks:
- at every point, the text returned so far is a prefix of the final full decode (so it
  never ends in a partial character: a U+FFFD it returns is one the decode keeps);
- at the end, the concatenation equals the full decode;
- text with no U+FFFD in its decode gets none in any delta;
- a detokenizer restored from its JSON state mid-stream returns the same deltas.

Tokenizers: both fixture tokenizers (fast), the sentencepiece one also slow (pure
Python, from tokenizer.model) and as a bare `tokenizers.Tokenizer`, and both fast with
DecodeStream unavailable (as with tokenizers < 0.21: the window decode alone); plus, when the environment
variable LLM_BLS_EXTRA_TOKENIZER_DIR names a directory, the tokenizer there (and its
tokenizer.json / tokenizer.model on their own).
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
from postprocessing import DetokenizerState, IncrementalDetokenizer, profile_for
from preprocessing.tokenizer_loading import load_tokenizer

EXTRA_DIR_ENV = "LLM_BLS_EXTRA_TOKENIZER_DIR"
REPLACEMENT = "\ufffd"

TEXT_SETTINGS = settings(max_examples=100, derandomize=True, deadline=None)
IDS_SETTINGS = settings(max_examples=150, derandomize=True, deadline=None)
RESTORE_SETTINGS = settings(max_examples=80, derandomize=True, deadline=None)

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
    "bpe-no-stream": lambda: _without_decode_stream(ensure_fixtures().bpe_tokenizer),
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
    return LOADERS[name]()


NAMES = list(LOADERS)


def encode(tokenizer, text: str) -> list[int]:
    if isinstance(tokenizer, Tokenizer):
        return tokenizer.encode(text).ids
    return tokenizer.encode(text, add_special_tokens=True)


def full_decode(tokenizer, ids: list[int], skip: bool) -> str:
    """The reference: the tokenizer's own decode, clean-up of spaces off."""
    if isinstance(tokenizer, Tokenizer):
        return tokenizer.decode(ids, skip_special_tokens=skip)
    return tokenizer.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=False)


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


def random_ids(tokenizer) -> st.SearchStrategy[list[int]]:
    profile = profile_for(tokenizer)
    anywhere = st.integers(min_value=0, max_value=profile.vocab_size - 1)
    # Byte pieces and special tokens are where decoders are fragile: draw them often.
    fragile = sorted(profile.byte_piece_ids | profile.special_ids)
    ids = st.one_of(anywhere, st.sampled_from(fragile)) if fragile else anywhere
    return st.lists(ids, min_size=8, max_size=64)


# --- running a stream -------------------------------------------------------------------


def chunked(ids: list[int], sizes: list[int]) -> list[list[int]]:
    chunks, start = [], 0
    for size in cycle(sizes):
        if start >= len(ids):
            return chunks
        chunks.append(ids[start : start + size])
        start += size
    raise AssertionError("unreachable")


def stream(tokenizer, chunks, skip: bool, restore_after: frozenset[int] = frozenset()):
    """Deltas of pushing each chunk, then finish(); after chunk i in `restore_after`
    the detokenizer is replaced by one restored from its JSON state."""
    detokenizer = IncrementalDetokenizer(tokenizer, skip_special_tokens=skip)
    deltas = []
    for index, chunk in enumerate(chunks):
        deltas.append(detokenizer.push(chunk))
        if index in restore_after:
            state = DetokenizerState.from_json(detokenizer.state().to_json())
            detokenizer = IncrementalDetokenizer.restore(tokenizer, state)
    deltas.append(detokenizer.finish())
    return deltas


def assert_exact(tokenizer, ids: list[int], deltas: list[str], skip: bool) -> None:
    expected = full_decode(tokenizer, ids, skip)
    so_far = ""
    for delta in deltas:
        so_far += delta
        assert expected.startswith(so_far), (ids, deltas, expected)
    assert so_far == expected, (ids, deltas, expected)
    if REPLACEMENT not in expected:
        assert not any(REPLACEMENT in delta for delta in deltas)


# --- properties ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_text_streams_to_exactly_its_full_decode(name):
    tokenizer = tokenizer_named(name)

    @TEXT_SETTINGS
    @given(text=texts, sizes=chunk_sizes, skip=st.booleans())
    def check(text, sizes, skip):
        ids = encode(tokenizer, text)
        assert_exact(tokenizer, ids, stream(tokenizer, chunked(ids, sizes), skip), skip)

    check()


@pytest.mark.parametrize("name", NAMES)
def test_random_ids_stream_to_exactly_their_full_decode(name):
    tokenizer = tokenizer_named(name)

    @IDS_SETTINGS
    @given(ids=random_ids(tokenizer), sizes=chunk_sizes, skip=st.booleans())
    def check(ids, sizes, skip):
        assert_exact(tokenizer, ids, stream(tokenizer, chunked(ids, sizes), skip), skip)

    check()


@pytest.mark.parametrize("name", NAMES)
def test_a_restored_detokenizer_continues_exactly(name):
    tokenizer = tokenizer_named(name)

    @RESTORE_SETTINGS
    @given(
        source=st.one_of(texts.map(lambda text: encode(tokenizer, text)), random_ids(tokenizer)),
        sizes=chunk_sizes,
        skip=st.booleans(),
        restore_after=st.frozensets(st.integers(min_value=0, max_value=40), max_size=8),
    )
    def check(source, sizes, skip, restore_after):
        chunks = chunked(source, sizes)
        uninterrupted = stream(tokenizer, chunks, skip)
        assert stream(tokenizer, chunks, skip, restore_after) == uninterrupted
        assert_exact(tokenizer, source, uninterrupted, skip)

    check()
