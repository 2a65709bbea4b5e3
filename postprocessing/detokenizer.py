"""Incremental detokenization: token ids in, exact text deltas out, constant cost per token.

Contract (checked by the property tests in tests/unit/test_detokenizer_properties.py):
- the concatenation of everything `push()` and `finish()` return equals
  `TokenizerProfile.decode_full(all_ids)`, i.e. `tokenizer.decode(all_ids,
  skip_special_tokens=..., spaces_between_special_tokens=...,
  clean_up_tokenization_spaces=False)`;
- a returned string never ends in a partial character: text is held back while the
  decode ends in U+FFFD (bytes of an unfinished character), and while a run of
  byte-fallback pieces ("<0xE4>") is open, because the ByteFallback decoder turns a whole
  run into U+FFFD when any byte of it is invalid, so earlier text of the run could
  still change;
- the work per token does not grow with the length of the sequence: every decode
  covers a bounded window (a few ids of context plus the held-back ids).

How. The window decode, used by slow tokenizers throughout:
    new text = decode(context + held) minus decode(context),
emitted only when it is final by the rules above, after which the held ids become
context. The window keeps the tokenizer's leading-space rule right (a sentencepiece
decode strips the leading space of its FIRST token only): the first token of every
window is a context token whose text was emitted earlier, so the strip applies to both
decodes and cancels out. The context is the last 4 emitted ids, more while they decode
to whitespace alone (slow sentencepiece decodes strip ALL leading whitespace).

Fast tokenizers: the Rust `tokenizers.decoders.DecodeStream` does the work (the same
window method in Rust, about twice as fast). Beside it we keep, in Python, which ids
have been emitted (the last few, as context) and which are held back; that is enough to
(a) continue with the window decode when DecodeStream raises ("Invalid prefix
encountered while decoding stream", seen on id sequences that are not text), (b) give
at `finish()` what the full decode shows for an unfinished trailing character
(DecodeStream has no flush), (c) export the state. Byte-fallback pieces never go to
DecodeStream: it returns a run's text before the run has ended, and does not always
notice when a later byte turns the run into U+FFFD; the window decode holds the run and
a fresh stream, primed with the context, starts after it.

Skipped special tokens are dropped on arrival: the full decode removes them before its
decoder runs (they do not even end a byte-piece run), so they must not count as context.

Limits, by design: if more than MAX_PENDING_IDS ids in a row cannot be emitted (a model
producing an endless run of byte pieces or of unfinished characters), the detokenizer
emits what the decode shows at that point rather than let the window, and the cost per
token, grow without bound; only then can later ids still change text already emitted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from postprocessing.state import (
    MAX_CONTEXT_IDS,
    MAX_PENDING_IDS,
    DetokenizerState,
    StateError,
)
from postprocessing.tokenizer_profile import DecodeOptions, DecodeStream, profile_for

REPLACEMENT_CHARACTER = "\ufffd"
# Emitted ids kept as context for the next window decode. One is enough for the Rust
# decoders (Metaspace/Strip/ByteLevel/ByteFallback only look at the window's first
# token); a few more is cheap insurance. Extended up to MAX_CONTEXT_IDS while the
# context decodes to whitespace alone (see _context).
_CONTEXT_IDS = 4


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
        self._rust = profile.rust
        self._options = options
        self._skip_ids = profile.special_ids if options.skip_special_tokens else frozenset()
        self._byte_ids = profile.byte_piece_ids
        # Emitted ids, newest last; the context of the next window decode is its tail.
        self._history: deque[int] = deque(context, maxlen=MAX_CONTEXT_IDS)
        # Ids pushed but whose text has not been returned yet.
        self._pending: list[int] = list(pending)
        # (context ids, their decode), worked out when first needed after a commit.
        self._context_cache: tuple[list[int], str] | None = None
        # The DecodeStream while in stream mode; it was started at an emission boundary,
        # so the ids it has not returned text for are exactly self._pending.
        self._stream: Any = None
        self._finished = finished
        if not finished and not self._pending:
            self._start_stream()

    # -- public API ---------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self._finished

    def decode_whole(self, token_ids: Sequence[int]) -> str:
        """The full decode of `token_ids` with this detokenizer's options: what pushing
        them all and finishing would add up to (not incremental; for reference)."""
        return self._profile.decode_full(list(token_ids), self._options)

    def push(self, token_ids: Iterable[int]) -> str:
        """Add ids; return the text they completed ("" while it is held back)."""
        if self._finished:
            raise RuntimeError("push() after finish(): this sequence is complete")
        pieces: list[str] = []
        skip_ids = self._skip_ids
        for token_id in _as_ints(token_ids):
            if token_id < 0:
                raise ValueError(f"token ids must be non-negative, got {token_id}")
            # Skipped special tokens vanish from the full decode before the decoder runs
            # (they do not even end a byte-piece run), so they never enter the window.
            if token_id in skip_ids:
                continue
            piece = self._step(token_id)
            if piece:
                pieces.append(piece)
        return "".join(pieces)

    def finish(self) -> str:
        """Return everything still held back, as the full decode shows it (an unfinished
        trailing character appears as U+FFFD, like in the full decode). Idempotent."""
        if self._finished:
            return ""
        self._drop_stream()
        self._finished = True  # first: the final emission must not start a new stream
        return self._emit_window(force=True) if self._pending else ""

    def state(self) -> DetokenizerState:
        """The bounded state a restored detokenizer continues from."""
        context, _ = self._context()
        return DetokenizerState(
            context_ids=tuple(context),
            pending_ids=tuple(self._pending),
            skip_special_tokens=self._options.skip_special_tokens,
            spaces_between_special_tokens=self._options.spaces_between_special_tokens,
            vocab_size=self._profile.vocab_size,
            finished=self._finished,
        )

    # -- one id ---------------------------------------------------------------------------
    def _step(self, token_id: int) -> str:
        self._pending.append(token_id)
        stream = self._stream
        force = len(self._pending) >= MAX_PENDING_IDS
        if stream is not None and token_id in self._byte_ids:
            # Byte-fallback pieces go to the window decode: DecodeStream would return the
            # text of a run before the run is complete, and its one-token context (whose
            # decode the leading-space strip may empty) does not always notice when a
            # later byte turns the run into U+FFFD. The window holds the run until it ends.
            self._drop_stream()
            stream = None
        if stream is None or force:
            self._drop_stream()
            return self._emit_window(force=force)
        try:
            text = stream.step(self._rust, token_id)
        except Exception:
            # "Invalid prefix encountered while decoding stream": the stream's window no
            # longer decodes to an extension of what it returned. Redo this step with the
            # window decode (its context is what we returned, so it is unaffected) and
            # start a fresh stream after the next emission.
            self._drop_stream()
            return self._emit_window(force=False)
        if text is None:
            return ""
        # The stream returned everything up to this id: all pending ids are emitted.
        self._commit(len(self._pending))
        return text

    def _emit_window(self, *, force: bool) -> str:
        """Window decode: emit the held ids' text if final (or if `force`)."""
        pending = self._pending
        if not pending or (not force and pending[-1] in self._byte_ids):
            return ""
        context, prefix = self._context()
        full = self._profile.decode_window(context + pending, self._options)
        extends = full.startswith(prefix)
        if not force and (
            not extends or len(full) <= len(prefix) or full.endswith(REPLACEMENT_CHARACTER)
        ):
            return ""
        # A decoder whose output is not prefix-stable (not the case for the
        # Metaspace/ByteLevel/ByteFallback pipelines of LLM tokenizers) can only be
        # followed from where the texts agree.
        start = len(prefix) if extends else _common_prefix_length(full, prefix)
        self._commit(len(pending))
        if not self._finished:
            self._start_stream()
        return full[start:]

    # -- bookkeeping ------------------------------------------------------------------------
    def _commit(self, count: int) -> None:
        """The first `count` pending ids are emitted: they become context."""
        self._history.extend(self._pending[:count])
        del self._pending[:count]
        self._context_cache = None

    def _context(self) -> tuple[list[int], str]:
        """The context ids and their decode: the last _CONTEXT_IDS emitted ids, more
        (up to MAX_CONTEXT_IDS) while they decode to whitespace alone, because a decode
        that strips leading whitespace (slow sentencepiece tokenizers strip it all)
        would otherwise strip the new text's leading spaces too."""
        if self._context_cache is None:
            history = list(self._history)
            size = min(_CONTEXT_IDS, len(history))
            while True:
                context = history[len(history) - size :]
                text = self._profile.decode_window(context, self._options) if context else ""
                if size >= len(history) or text.strip():
                    break
                size = min(max(1, 2 * size), len(history))
            self._context_cache = (context, text)
        return self._context_cache

    def _start_stream(self) -> None:
        """Use DecodeStream from here (only at an emission boundary: no pending ids)."""
        if not self._profile.supports_decode_stream or self._pending:
            return
        skip = self._options.skip_special_tokens
        if not self._history:
            self._stream = DecodeStream(skip_special_tokens=skip)
            return
        if not self._profile.supports_stream_priming:
            return  # older tokenizers: continue with the window decode, equally exact
        context, text = self._context()
        # A primed stream takes decode(context) as the text already returned; if that
        # decode ends in U+FFFD it would not, and would return the context's text again.
        if text.endswith(REPLACEMENT_CHARACTER):
            return
        self._stream = DecodeStream(ids=context, skip_special_tokens=skip)

    def _drop_stream(self) -> None:
        self._stream = None


def _as_ints(token_ids: Iterable[int]) -> list[int]:
    tolist = getattr(token_ids, "tolist", None)  # numpy arrays: one conversion, plain ints
    if tolist is not None:
        values = tolist()
        return values if isinstance(values, list) else [values]
    return [int(token_id) for token_id in token_ids]


def _common_prefix_length(a: str, b: str) -> int:
    length = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        length += 1
    return length
