"""Stop-word and bad-word semantics of TensorRT-LLM, on plain token lists.

Both are matched against the whole sequence (prompt + generated tokens), the way
TensorRT-LLM's kernels read `output_ids` (which hold the prompt first):
- stop word: after a token is generated, the sequence ends with the word's tokens ->
  generation ends and the word's tokens stay in the output;
- bad word: a single-token word is always banned; for a longer word, when the
  sequence ends with all but its last token, that last token is banned for the next step.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from reference_engine.types import LiveSequence

Words = tuple[tuple[int, ...], ...]


def normalize_words(words: Iterable[Sequence[int]]) -> Words:
    """Words as tuples of ints; empty words are dropped (they can never match)."""
    return tuple(tuple(int(t) for t in w) for w in words if len(w) > 0)


def max_word_len(words: Words) -> int:
    return max((len(w) for w in words), default=0)


def banned_next_tokens(seq: LiveSequence, bad_words: Words) -> set[int]:
    """Tokens the next step of `seq` must not produce."""
    banned: set[int] = set()
    if not bad_words:
        return banned
    tail = seq.tail(max_word_len(bad_words) - 1)
    for word in bad_words:
        prefix_len = len(word) - 1
        if prefix_len == 0:
            banned.add(word[0])
        elif len(tail) >= prefix_len and tuple(tail[len(tail) - prefix_len :]) == word[:-1]:
            banned.add(word[-1])
    return banned


def matched_stop_word(seq: LiveSequence, stop_words: Words) -> tuple[int, ...] | None:
    """The stop word the sequence now ends with, or None."""
    if not stop_words:
        return None
    tail = seq.tail(max_word_len(stop_words))
    for word in stop_words:
        if len(tail) >= len(word) and tuple(tail[len(tail) - len(word) :]) == word:
            return word
    return None
