"""Incremental detokenization: token ids in, text deltas out, constant cost per token.

Contract (checked by tests/unit/test_detokenizer_properties.py):
- A character is returned as soon as its bytes are complete. What is held back is at
  most the bytes of ONE unfinished character (a run of byte-fallback pieces "<0xF0>"...
  or byte-level tokens is never held as a whole), plus ids that add no text yet (the
  space a sentencepiece decode strips from its first token).
- Invalid UTF-8 becomes U+FFFD exactly as `bytes.decode("utf-8", "replace")` does it:
  one U+FFFD for each maximal invalid subpart (a truncated sequence, a stray
  continuation byte, a byte that never starts a character), returned as soon as a
  later byte shows it is invalid. `finish()` shows an unfinished last character as
  one U+FFFD, the same way.
- Streaming and non-streaming follow the same rule: the concatenation of everything
  `push()` and `finish()` return is `decode_texts()` of all the ids.
- That text is `tokenizer.decode(ids, skip_special_tokens=...,
  spaces_between_special_tokens=..., clean_up_tokenization_spaces=False)` for every
  id sequence whose runs of byte-fallback pieces are valid UTF-8 (every sequence that
  comes from text), and for byte-level tokenizers for every id sequence.
  Where it differs: a run of byte-fallback pieces with invalid bytes in it. Hugging
  Face's ByteFallback decoder turns such a WHOLE run into one U+FFFD per byte, complete
  characters inside it included, so matching it would mean holding every run until the
  id after it (a family emoji of 25 byte pieces: 25 silent steps). Here only the
  invalid subparts become U+FFFD: the pieces <0x41> <0xE4> followed by "▁the" decode to
  two U+FFFD and " the" there, and to "A", one U+FFFD and " the" here.
- The work per token does not grow with the length of the sequence.

How, by the kind of tokenizer (TokenizerProfile finds out which):
- byte-level tokenizers (GPT-2, Llama-3, Qwen): `ByteLevelDecoder`, the incremental
  UTF-8 codec over each id's bytes, which is exactly their decode;
- all others (sentencepiece-style, slow tokenizers, classes with their own decode):
  `WindowDecoder`, the tokenizer's own decode over a short window of ids, with
  byte-fallback pieces put together into whole characters first.
Tokenizers of neither kind that still decode to U+FFFD for an unfinished character
(a slow byte-level tokenizer) are followed through their decode only: there text whose
decode ends in U+FFFD is held until a later id completes or ends it.

Skipped special tokens are dropped on arrival: the full decode removes them before its
decoder runs (they do not even end a byte-piece run), so they must not count as context.

Limits, by design: if the window holds MAX_PENDING_IDS - 4 ids whose text is not final
(ids that add no text, or, for tokenizers followed through their decode only, an
endless stretch of text ending in U+FFFD), it emits what the decode shows at that point
rather than let the window, and the cost per token, grow without bound; only then can
later ids still change text already emitted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from postprocessing.byte_level import ByteLevelDecoder
from postprocessing.state import DetokenizerState, StateError
from postprocessing.tokenizer_profile import DecodeOptions, TokenizerProfile, profile_for
from postprocessing.window import WindowDecoder


class _Engine(Protocol):
    """How one sequence's ids (skipped special tokens removed) become text."""

    def step(self, token_id: int) -> str: ...

    def finish(self) -> str: ...

    def context_ids(self) -> tuple[int, ...]: ...

    def pending_ids(self) -> tuple[int, ...]: ...


class IncrementalDetokenizer:
    """Turns a stream of token ids of ONE sequence into text deltas.

    Not thread-safe: one instance per sequence, used from one thread at a time.
    """

    def __init__(
        self,
        tokenizer: Any,
        skip_special_tokens: bool = True,
        spaces_between_special_tokens: bool = True,
    ) -> None:
        options = DecodeOptions(
            skip_special_tokens=bool(skip_special_tokens),
            spaces_between_special_tokens=bool(spaces_between_special_tokens),
        )
        self._setup(tokenizer, options, context=(), pending=(), finished=False)

    @classmethod
    def restore(
        cls,
        tokenizer: Any,
        state: DetokenizerState,
        *,
        skip_special_tokens: bool | None = None,
        spaces_between_special_tokens: bool | None = None,
    ) -> IncrementalDetokenizer:
        """A detokenizer that continues exactly where the one that made `state` stood.

        The options default to the state's own; passing different ones raises
        StateError (the held-back text would be decoded differently).
        """
        for name, wanted in (
            ("skip_special_tokens", skip_special_tokens),
            ("spaces_between_special_tokens", spaces_between_special_tokens),
        ):
            made_with = getattr(state, name)
            if wanted is not None and bool(wanted) != made_with:
                raise StateError(f"the state was made with {name}={made_with}, not {bool(wanted)}")
        profile = profile_for(tokenizer)
        if state.vocab_size != profile.vocab_size:
            raise StateError(
                f"the state was made with a tokenizer of {state.vocab_size} tokens; "
                f"this one has {profile.vocab_size}"
            )
        detokenizer = cls.__new__(cls)
        options = DecodeOptions(
            skip_special_tokens=state.skip_special_tokens,
            spaces_between_special_tokens=state.spaces_between_special_tokens,
        )
        detokenizer._setup(
            tokenizer,
            options,
            context=state.context_ids,
            pending=state.pending_ids,
            finished=state.finished,
        )
        return detokenizer

    def _setup(
        self,
        tokenizer: Any,
        options: DecodeOptions,
        *,
        context: Iterable[int],
        pending: Iterable[int],
        finished: bool,
    ) -> None:
        profile = profile_for(tokenizer)
        self._tokenizer = tokenizer  # held strongly: the profile only refers to it weakly
        self._profile = profile
        self._options = options
        self._skip_ids = profile.special_ids if options.skip_special_tokens else frozenset()
        self._engine = _engine_for(profile, options, context)
        # The text of the pending ids was returned up to the point the state describes,
        # and replaying them from the context stops at exactly that point (the engines
        # return all text that is final, and nothing else): so replay, and drop the text.
        for token_id in pending:
            self._engine.step(token_id)
        self._finished = finished

    # -- public API ---------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self._finished

    def decode_whole(self, token_ids: Sequence[int]) -> str:
        """What pushing `token_ids` and finishing would add up to, with this
        detokenizer's options (not incremental; the detokenizer is not changed)."""
        return decode_texts(self._tokenizer, [token_ids], self._options)[0]

    def push(self, token_ids: Iterable[int]) -> str:
        """Add ids; return the text they completed ("" while it is held back)."""
        if self._finished:
            raise RuntimeError("push() after finish(): this sequence is complete")
        pieces: list[str] = []
        skip_ids = self._skip_ids
        step = self._engine.step
        for token_id in _as_ints(token_ids):
            if token_id < 0:
                raise ValueError(f"token ids must be non-negative, got {token_id}")
            # Skipped special tokens vanish from the full decode before the decoder runs
            # (they do not even end a byte-piece run), so they never reach the engine.
            if token_id in skip_ids:
                continue
            piece = step(token_id)
            if piece:
                pieces.append(piece)
        return "".join(pieces)

    def finish(self) -> str:
        """Return everything still held back; an unfinished last character is one
        U+FFFD. Idempotent."""
        if self._finished:
            return ""
        self._finished = True
        return self._engine.finish()

    def state(self) -> DetokenizerState:
        """The bounded state a restored detokenizer continues from."""
        return DetokenizerState(
            context_ids=self._engine.context_ids(),
            pending_ids=self._engine.pending_ids(),
            skip_special_tokens=self._options.skip_special_tokens,
            spaces_between_special_tokens=self._options.spaces_between_special_tokens,
            vocab_size=self._profile.vocab_size,
            finished=self._finished,
        )


def decode_texts(
    tokenizer: Any, sequences: Sequence[Sequence[int]], options: DecodeOptions
) -> list[str]:
    """The whole text of each sequence: what streaming it through an
    IncrementalDetokenizer with `options` adds up to (the non-streaming path).

    The tokenizer's batch decode where it is that text (see the module docstring); the
    detokenizer itself for the rare sequence with invalid bytes in a byte-piece run.
    """
    profile = profile_for(tokenizer)
    skip_ids = profile.special_ids if options.skip_special_tokens else frozenset()
    texts = [""] * len(sequences)
    exact = [
        index
        for index, ids in enumerate(sequences)
        if _decode_follows_the_rule(profile, ids, skip_ids)
    ]
    decoded = profile.decode_many([list(sequences[index]) for index in exact], options)
    for index, text in zip(exact, decoded, strict=True):
        texts[index] = text
    for index in sorted(set(range(len(sequences))) - set(exact)):
        detokenizer = IncrementalDetokenizer(
            tokenizer,
            skip_special_tokens=options.skip_special_tokens,
            spaces_between_special_tokens=options.spaces_between_special_tokens,
        )
        texts[index] = detokenizer.push(sequences[index]) + detokenizer.finish()
    return texts


def _engine_for(
    profile: TokenizerProfile, options: DecodeOptions, context: Iterable[int]
) -> _Engine:
    if profile.byte_level is not None:
        return ByteLevelDecoder(profile.byte_level.bytes_of)
    return WindowDecoder(profile, options, context)


def _decode_follows_the_rule(
    profile: TokenizerProfile, ids: Sequence[int], skip_ids: frozenset[int]
) -> bool:
    """Whether the tokenizer's decode of `ids` is the detokenizer's text: unless every
    run of byte-fallback pieces is valid UTF-8, the ByteFallback decoder shows more
    U+FFFD than the rule does."""
    pieces = profile.byte_fallback
    if pieces is None:
        return True
    run = bytearray()
    for token_id in ids:
        if token_id in skip_ids:
            continue  # the decode drops it before the ByteFallback decoder runs
        value = pieces.value_of.get(token_id)
        if value is not None:
            run.append(value)
        elif run:
            if not _is_utf8(run):
                return False
            run.clear()
    return _is_utf8(run)


def _is_utf8(data: bytearray) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _as_ints(token_ids: Iterable[int]) -> list[int]:
    tolist = getattr(token_ids, "tolist", None)  # numpy arrays: one conversion, plain ints
    if tolist is not None:
        values = tolist()
        return values if isinstance(values, list) else [values]
    return [int(token_id) for token_id in token_ids]
