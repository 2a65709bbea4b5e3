"""What the detokenizer needs to know about a tokenizer, worked out once and cached.

A detokenizer is created per sequence (thousands per second on a busy server), so the
per-tokenizer facts (which ids are special; whether it is byte-level, decoding each id
as its bytes, or has byte-fallback pieces it decodes as bytes; whether the Rust
`DecodeStream` can be used) are computed once per tokenizer object and shared. The
byte facts are checked against the tokenizer's own decode, never assumed from names.

Supported tokenizers: transformers tokenizers (fast, backed by a Rust
`tokenizers.Tokenizer`, or slow, pure Python) and bare `tokenizers.Tokenizer` objects.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import tokenizers
from packaging.version import Version
from tokenizers import Tokenizer as RustTokenizer
from tokenizers import decoders

from postprocessing.byte_level import ByteLevelVocabulary
from postprocessing.utf8 import REPLACEMENT_CHARACTER

try:  # DecodeStream exists from tokenizers 0.21; older versions use the window decode only.
    from tokenizers.decoders import DecodeStream
except ImportError:  # pragma: no cover - depends on the installed tokenizers version
    DecodeStream = None

# Ids checked when deciding whether a byte-level tokenizer decodes each id as its bytes:
# every added token and about this many evenly spaced ids of the vocabulary.
_BYTE_LEVEL_SAMPLE = 512
# Byte-fallback decoding, checked on the tokenizer itself: pieces -> text.
_BYTE_FALLBACK_PROBES = {
    (0x41,): "A",
    (0xE4, 0xB8, 0xAD): "中",
    (0xEF, 0xBF, 0xBD): REPLACEMENT_CHARACTER,
}
# tokenizers 0.21.0's DecodeStream.step panics once it trims its buffer (it cut at
# read_index instead of prefix_index; huggingface/tokenizers PR #1699, first released in
# 0.21.1). A Rust panic reaches Python as pyo3's PanicException, a BaseException, so it
# cannot be caught like the "Invalid prefix" errors: such versions use the window decode,
# which gives the same text. 0.21.0 is what transformers 4.51 (the oldest containers)
# accepts at its lower end.
FIRST_SAFE_DECODE_STREAM = Version("0.21.1")


@dataclass(frozen=True)
class DecodeOptions:
    """How ids become text; the detokenizer's output equals `decode_full` with these."""

    skip_special_tokens: bool = True
    # Only slow transformers tokenizers of transformers 4.x use it (they join added
    # tokens with spaces); fast tokenizers and transformers 5 ignore it.
    spaces_between_special_tokens: bool = True


@dataclass(frozen=True)
class ByteFallbackPieces:
    """The byte pieces "<0x00>".."<0xFF>" of a tokenizer that decodes a run of them as
    the UTF-8 text of their bytes (sentencepiece byte fallback: Llama-2, Mistral)."""

    value_of: Mapping[int, int]  # piece id -> its byte
    # The pieces of U+FFFD's own bytes (EF BF BD): what an invalid subpart is decoded as.
    replacement_ids: tuple[int, ...]


class TokenizerProfile:
    """Per-tokenizer facts and the decode functions the detokenizer calls."""

    def __init__(self, tokenizer: Any) -> None:
        # A weak reference: the profile cache must not keep tokenizers alive (the cache
        # is keyed weakly by the tokenizer, and a value holding its key strongly would
        # pin it forever). Detokenizers hold the tokenizer strongly themselves.
        self._tokenizer_ref = _reference(tokenizer)
        self.is_transformers = not isinstance(tokenizer, RustTokenizer)
        self.has_rust = _rust_decode_is_exact(tokenizer)
        self.vocab_size = self._vocab_size()
        self.special_ids = frozenset(self._special_ids())
        pieces = self._byte_pieces()
        # Ids named "<0x00>".."<0xFF>", whatever the decoder makes of them.
        self.byte_piece_ids = frozenset(pieces.values())
        # How text is followed byte by byte: at most one of the two is set.
        self.byte_level = self._byte_level()
        self.byte_fallback = None if self.byte_level else self._byte_fallback(pieces)
        self.supports_decode_stream = self.has_rust and decode_stream_is_safe()
        self.supports_stream_priming = self.supports_decode_stream and _decode_stream_takes_ids()

    @property
    def tokenizer(self) -> Any:
        tokenizer = self._tokenizer_ref()
        if tokenizer is None:  # pragma: no cover - callers hold the tokenizer
            raise RuntimeError("the tokenizer of this profile no longer exists")
        return tokenizer

    @property
    def rust(self) -> RustTokenizer | None:
        """The Rust tokenizer whose decode IS this tokenizer's decode, else None."""
        if not self.has_rust:
            return None
        tokenizer = self.tokenizer
        return tokenizer if isinstance(tokenizer, RustTokenizer) else tokenizer._tokenizer

    # -- decoding ---------------------------------------------------------------------
    def decode_full(self, ids: Sequence[int], options: DecodeOptions) -> str:
        """The reference text of `ids`: what the concatenated deltas must equal.

        transformers tokenizers: `tokenizer.decode(ids, skip_special_tokens=...,
        spaces_between_special_tokens=..., clean_up_tokenization_spaces=False)`.
        We never apply `clean_up_tokenization_spaces`: it rewrites text across token
        boundaries (" ." -> "."), which no incremental decode can reproduce without
        holding text back indefinitely, and it changes what the model generated.
        transformers 5 defaults it to False (and ignores it for BPE models) too.
        """
        if not self.is_transformers:
            return self.tokenizer.decode(list(ids), skip_special_tokens=options.skip_special_tokens)
        return self.tokenizer.decode(
            list(ids),
            skip_special_tokens=options.skip_special_tokens,
            spaces_between_special_tokens=options.spaces_between_special_tokens,
            clean_up_tokenization_spaces=False,
        )

    def decode_window(self, ids: list[int], options: DecodeOptions) -> str:
        """`decode_full` of a short window, by the cheapest exact route."""
        rust = self.rust
        if rust is not None:
            # A fast transformers tokenizer's decode is exactly the Rust decode when no
            # clean-up is applied; calling Rust directly skips the Python layers.
            return rust.decode(ids, skip_special_tokens=options.skip_special_tokens)
        return self.decode_full(ids, options)

    def decode_many(self, sequences: list[list[int]], options: DecodeOptions) -> list[str]:
        """`decode_full` of each sequence (the non-streaming path)."""
        rust = self.rust
        if rust is not None:
            return rust.decode_batch(sequences, skip_special_tokens=options.skip_special_tokens)
        return [self.decode_full(ids, options) for ids in sequences]

    # -- facts ------------------------------------------------------------------------
    def _vocab_size(self) -> int:
        if not self.is_transformers:
            return self.tokenizer.get_vocab_size(with_added_tokens=True)
        return len(self.tokenizer)

    def _special_ids(self) -> set[int]:
        """Ids that decode(..., skip_special_tokens=True) drops."""
        rust = self.rust
        if rust is not None:
            # The Rust decode skips added tokens flagged special; transformers' notion
            # (all_special_ids) can be narrower (e.g. chat header tokens), so ask Rust.
            return {
                token_id
                for token_id, added in rust.get_added_tokens_decoder().items()
                if added.special
            }
        return {int(i) for i in self.tokenizer.all_special_ids}

    def _byte_pieces(self) -> dict[int, int]:
        """Byte -> id of the pieces "<0x00>".."<0xFF>" the vocabulary has."""
        found: dict[int, int] = {}
        pieces = [f"<0x{value:02X}>" for value in range(256)]
        rust = self.rust
        if rust is not None:
            for value, piece in enumerate(pieces):
                token_id = rust.token_to_id(piece)
                if token_id is not None:
                    found[value] = token_id
            return found
        ids = self.tokenizer.convert_tokens_to_ids(pieces)
        for value, (piece, token_id) in enumerate(zip(pieces, ids, strict=True)):
            # Unknown pieces map to the unk id; keep only ids that really are the piece.
            if token_id is not None and self.tokenizer.convert_ids_to_tokens(token_id) == piece:
                found[value] = int(token_id)
        return found

    def _byte_fallback(self, id_of: dict[int, int]) -> ByteFallbackPieces | None:
        """The byte pieces, if the tokenizer has all 256 and decodes them as bytes.

        The decode itself is asked (Hugging Face's ByteFallback decoder does; the slow
        sentencepiece tokenizer of transformers 5 shows the pieces' names instead), so a
        tokenizer without byte fallback is never treated as one.
        """
        if len(id_of) < 256:
            return None
        options = DecodeOptions(skip_special_tokens=False)
        for values, text in _BYTE_FALLBACK_PROBES.items():
            if self.decode_full([id_of[value] for value in values], options) != text:
                return None
        return ByteFallbackPieces(
            value_of={token_id: value for value, token_id in id_of.items()},
            replacement_ids=tuple(id_of[value] for value in REPLACEMENT_CHARACTER.encode()),
        )

    def _byte_level(self) -> ByteLevelVocabulary | None:
        """The byte table of a byte-level tokenizer whose decode is exactly its bytes
        decoded with U+FFFD replacement (checked on a sample of ids), else None."""
        rust = self.rust
        if rust is None or not isinstance(rust.decoder, decoders.ByteLevel):
            return None
        vocabulary = ByteLevelVocabulary(rust)
        stride = max(1, self.vocab_size // _BYTE_LEVEL_SAMPLE)
        sample = {*range(0, self.vocab_size, stride), *rust.get_added_tokens_decoder()}
        return vocabulary if vocabulary.agrees_with_decode(sorted(sample)) else None


# Where transformers itself defines decode() (base class) and the fast _decode() (5.x
# module, then 4.x module).
_TRANSFORMERS_DECODE_MODULES = frozenset(
    {
        "transformers.tokenization_utils_base",
        "transformers.tokenization_utils_tokenizers",
        "transformers.tokenization_utils_fast",
    }
)


def _rust_decode_is_exact(tokenizer: Any) -> bool:
    """Whether decoding through the Rust tokenizer gives exactly `tokenizer.decode`.

    True for bare Rust tokenizers and for fast transformers tokenizers whose class
    keeps transformers' own decode (with clean-up off, that decode is the Rust one). A
    class that overrides decode (a few models post-process the text) gets the generic
    path: the window decode through `tokenizer.decode` itself, and no DecodeStream.
    """
    if isinstance(tokenizer, RustTokenizer):
        return True
    backend = getattr(tokenizer, "_tokenizer", None)
    if not getattr(tokenizer, "is_fast", False) or not isinstance(backend, RustTokenizer):
        return False
    for method in ("decode", "_decode"):
        definer = next((cls for cls in type(tokenizer).__mro__ if method in cls.__dict__), None)
        if definer is None or definer.__module__ not in _TRANSFORMERS_DECODE_MODULES:
            return False
    return True


def _reference(tokenizer: Any) -> Any:
    """A weak reference if the object allows one, else a callable holding it strongly."""
    try:
        return weakref.ref(tokenizer)
    except TypeError:
        return lambda: tokenizer


def decode_stream_is_safe() -> bool:
    """Whether the installed tokenizers has a DecodeStream that does not panic."""
    if DecodeStream is None:
        return False
    return Version(tokenizers.__version__) >= FIRST_SAFE_DECODE_STREAM


def _decode_stream_takes_ids() -> bool:
    """Whether DecodeStream(ids=...) (a stream primed with context) exists (0.22+)."""
    try:
        DecodeStream(ids=[], skip_special_tokens=False)
    except TypeError:
        return False
    return True


_CACHE: weakref.WeakKeyDictionary[Any, TokenizerProfile] = weakref.WeakKeyDictionary()
# Tokenizers that cannot be weakly referenced are cached by identity for the process
# lifetime (a server loads a handful of tokenizers, never thousands).
_CACHE_BY_ID: dict[int, tuple[Any, TokenizerProfile]] = {}
_LOCK = threading.Lock()


def profile_for(tokenizer: Any) -> TokenizerProfile:
    """The cached profile of `tokenizer` (computed on first use; thread-safe)."""
    try:
        profile = _CACHE.get(tokenizer)
        weak = True
    except TypeError:
        held = _CACHE_BY_ID.get(id(tokenizer))
        profile = held[1] if held is not None and held[0] is tokenizer else None
        weak = False
    if profile is not None:
        return profile
    with _LOCK:
        profile = TokenizerProfile(tokenizer)
        if weak:
            _CACHE[tokenizer] = profile
        else:
            _CACHE_BY_ID[id(tokenizer)] = (tokenizer, profile)
    return profile
