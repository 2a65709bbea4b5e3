"""The window engine: text of new ids as the tokenizer's decode of a short window shows it.

Used for every tokenizer that is not byte-level (sentencepiece-style ones with byte
fallback, slow tokenizers, tokenizer classes with a decode of their own). The window
decode:
    new text = decode(context + held) minus decode(context),
emitted once it is final, after which the held ids become context. The window keeps the
tokenizer's leading-space rule right (a sentencepiece decode strips the leading space of
its FIRST token only): the first token of every window is a context token whose text was
emitted earlier, so the strip applies to both decodes and cancels out. The context is
the last 4 emitted ids, more while they decode to whitespace alone (slow sentencepiece
decodes strip ALL leading whitespace), and never starts inside a character made of byte
pieces.

Byte-fallback pieces ("<0xF0>" ...) never reach the decode one by one: Hugging Face's
ByteFallback decoder turns a WHOLE run of them into U+FFFD per byte when any byte of the
run is invalid, so a run's text would not be final until the run ended. A
CharacterAssembler groups them instead, and only whole characters go to the window; an
invalid subpart goes as the pieces of U+FFFD's own bytes (EF BF BD), which decode to
exactly the U+FFFD that `bytes.decode("utf-8", "replace")` puts there. Every run the
decoder sees is then valid UTF-8, so its text is final at once, a U+FFFD included.
Without byte fallback, text whose decode ends in U+FFFD is held (it may be the start of
a character the next id completes).

Fast tokenizers: the Rust `tokenizers.decoders.DecodeStream` does the same window
method in Rust, about twice as fast, for ids other than byte pieces. Beside it we keep,
in Python, which ids have been emitted (the last few, as context) and which are held
back; that is enough to (a) continue with the window decode when DecodeStream raises
("Invalid prefix encountered while decoding stream", seen on id sequences that are not
text), (b) emit text it holds although it is final (it holds anything ending in
U+FFFD), (c) export the state. Byte pieces go to the window decode (a stream stepping
through the pieces of one character sees invalid runs on the way and raises), and a
fresh stream, primed with the context, starts after them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from postprocessing.state import MAX_CONTEXT_IDS, MAX_PENDING_IDS
from postprocessing.tokenizer_profile import DecodeOptions, DecodeStream, TokenizerProfile
from postprocessing.utf8 import (
    MAX_CHARACTER_BYTES,
    REPLACEMENT_CHARACTER,
    ByteGroup,
    CharacterAssembler,
)

# Emitted ids kept as context for the next window decode. One is enough for the Rust
# decoders (Metaspace/Strip/ByteFallback only look at the window's first token); a few
# more is cheap insurance. Extended up to MAX_CONTEXT_IDS while the context decodes to
# whitespace alone (see _context).
_CONTEXT_IDS = 4
# Most ids the window holds before it emits what its decode shows. Room is left for the
# pieces of one unfinished character, which the state exports beside them.
_MAX_WINDOW_IDS = MAX_PENDING_IDS - MAX_CHARACTER_BYTES


class WindowDecoder:
    """Ids of one sequence to text by window decodes (see the module docstring)."""

    def __init__(
        self, profile: TokenizerProfile, options: DecodeOptions, context: Iterable[int]
    ) -> None:
        self._profile = profile
        self._rust = profile.rust
        self._options = options
        pieces = profile.byte_fallback
        # Byte-fallback piece id -> its byte (None without byte fallback).
        self._value_of = pieces.value_of if pieces is not None else None
        self._assembler = CharacterAssembler()
        # What an invalid subpart goes into the window as: U+FFFD's own pieces.
        self._replacement_ids = pieces.replacement_ids if pieces is not None else ()
        # With byte fallback handled here the decode never ends in an unfinished
        # character, so a U+FFFD at its end is final text.
        self._replacement_is_final = pieces is not None
        # Emitted ids, newest last; the context of the next window decode is its tail.
        self._history: deque[int] = deque(context, maxlen=MAX_CONTEXT_IDS)
        # Ids in the window whose text has not been returned yet.
        self._pending: list[int] = []
        # (context ids, their decode), worked out when first needed after a commit.
        self._context_cache: tuple[list[int], str] | None = None
        # The DecodeStream while in stream mode; it was started at an emission boundary,
        # so the ids it has not returned text for are exactly self._pending. Started on
        # the first ordinary id after one (not after each character of byte pieces).
        self._stream: Any = None

    def context_ids(self) -> tuple[int, ...]:
        return tuple(self._context()[0])

    def pending_ids(self) -> tuple[int, ...]:
        return (*self._pending, *self._assembler.held_ids)

    def step(self, token_id: int) -> str:
        value_of = self._value_of
        if value_of is not None:
            value = value_of.get(token_id)
            if value is not None:
                return self._take_groups(self._assembler.push(token_id, value))
            if self._assembler.held_ids:
                # Any other id ends a run of byte pieces (skipped special tokens never
                # get here: the full decode drops them before its decoder runs, so they
                # do not end a run). Then the id itself, with nothing held.
                held = self._take_groups(self._assembler.flush())
                return held + self.step(token_id)
        if self._stream is None and not self._pending:
            self._start_stream()
        self._pending.append(token_id)
        if len(self._pending) >= _MAX_WINDOW_IDS:
            self._stream = None
            return self._emit_window(force=True)
        stream = self._stream
        if stream is None:
            return self._emit_window(force=False)
        try:
            text = stream.step(self._rust, token_id)
        except Exception:
            # "Invalid prefix encountered while decoding stream": the stream's window no
            # longer decodes to an extension of what it returned. Redo this step with the
            # window decode (its context is what we returned, so it is unaffected); a
            # fresh stream starts after the next emission.
            self._stream = None
            return self._emit_window(force=False)
        if text is not None:
            # The stream returned everything up to this id: all pending ids are emitted.
            self._commit()
            return text
        if self._replacement_is_final:
            # The stream also holds text that ends in U+FFFD, which here is final; the
            # window decode says (and drops the stream if it emits).
            return self._emit_window(force=False)
        return ""

    def finish(self) -> str:
        held = self._take_groups(self._assembler.flush())
        self._stream = None
        return held + self._emit_window(force=True)

    def _take_groups(self, groups: list[ByteGroup]) -> str:
        """Put whole characters of byte pieces (and invalid subparts, as U+FFFD's pieces)
        into the window; return the text they add."""
        texts: list[str] = []
        for group in groups:
            self._stream = None  # a stream would see the character's invalid prefixes
            self._pending.extend(group.ids if group.valid else self._replacement_ids)
            texts.append(self._emit_window(force=len(self._pending) >= _MAX_WINDOW_IDS))
        return "".join(texts)

    def _emit_window(self, *, force: bool) -> str:
        """Window decode: emit the held ids' text if final (or if `force`)."""
        pending = self._pending
        if not pending:
            return ""
        context, prefix = self._context()
        full = self._profile.decode_window(context + pending, self._options)
        extends = full.startswith(prefix)
        if not force and (
            not extends
            or len(full) <= len(prefix)
            or (not self._replacement_is_final and full.endswith(REPLACEMENT_CHARACTER))
        ):
            return ""
        # A decoder whose output is not prefix-stable (not the case for the
        # Metaspace/ByteFallback pipelines of LLM tokenizers) can only be followed from
        # where the texts agree.
        start = len(prefix) if extends else _common_prefix_length(full, prefix)
        self._commit()
        self._stream = None  # it did not return this text; a fresh one starts next
        return full[start:]

    # -- bookkeeping ------------------------------------------------------------------------
    def _commit(self) -> None:
        """The pending ids are emitted: they become context."""
        self._history.extend(self._pending)
        self._pending.clear()
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
                start = self._character_start(history, len(history) - size)
                context = history[start:]
                text = self._profile.decode_window(context, self._options) if context else ""
                if size >= len(history) or text.strip():
                    break
                size = min(max(1, 2 * size), len(history))
            self._context_cache = (context, text)
        return self._context_cache

    def _character_start(self, history: list[int], start: int) -> int:
        """`start` moved back to the first piece of the character it falls inside (a
        context starting with a stray continuation byte would make the decoder turn the
        whole run into U+FFFD), or forward past it if that piece is no longer kept."""
        value_of = self._value_of
        if value_of is None:
            return start

        def continues(index: int) -> bool:
            value = value_of.get(history[index])
            return value is not None and value & 0xC0 == 0x80

        while start > 0 and start < len(history) and continues(start):
            start -= 1
        while start < len(history) and continues(start):
            start += 1
        return start

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


def _common_prefix_length(a: str, b: str) -> int:
    length = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        length += 1
    return length
