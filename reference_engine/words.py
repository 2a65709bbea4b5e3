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
    if not bad_words:
        return set()
    return banned_after(seq.tail(max_word_len(bad_words) - 1), bad_words)


def banned_after(tokens: Sequence[int], bad_words: Words) -> set[int]:
    """Tokens that must not follow `tokens` (the end of prompt + generated so far)."""
    banned: set[int] = set()
    for word in bad_words:
        prefix_len = len(word) - 1
        if prefix_len == 0:
            banned.add(word[0])
        elif len(tokens) >= prefix_len and tuple(tokens[len(tokens) - prefix_len :]) == word[:-1]:
            banned.add(word[-1])
    return banned


def matched_stop_word(seq: LiveSequence, stop_words: Words) -> tuple[int, ...] | None:
    """The stop word the sequence now ends with, or None."""
    if not stop_words:
        return None
    return stop_word_ending(seq.tail(max_word_len(stop_words)), stop_words)


def stop_word_ending(tokens: Sequence[int], stop_words: Words) -> tuple[int, ...] | None:
    """The stop word `tokens` (the end of prompt + generated so far) end with, or None."""
    for word in stop_words:
        if len(tokens) >= len(word) and tuple(tokens[len(tokens) - len(word) :]) == word:
            return word
    return None
