"""Stop strings over streamed text: cut the output at the first stop string, exactly.

The detokenizer hands over text a piece at a time (append-only deltas). A stop string may
be split across pieces, so text that could still turn out to be the start of one is held
back until it either completes a stop string or can no longer do so.

Semantics (tested in tests/unit/test_stop_strings*.py):

- Which match wins: the one that ends first in the text; among matches ending at the same
  character, the longest (the one that starts first). The order of the list does not
  matter. "Ends first" is what a streaming reader can decide without waiting: at the
  moment a stop string completes, no later text can produce an earlier match.
- Output: everything before the stop string, or up to and including it with
  `include_stop_str_in_output`.
- Hold-back: after each feed, exactly the longest suffix of the not-yet-emitted text that
  is a proper prefix of some stop string is held back; everything before it is emitted.
  So at most max(len(stop)) - 1 characters are held, and text is released as soon as it
  cannot start a stop string.
- Feeding any split of a text gives the same output and match as feeding it whole.
- After a match, `feed` ignores further text and returns an empty `StopCheck` (the engine
  may still deliver tokens that were in flight before it was cancelled); `matched` keeps
  the stop string. After `flush`, `feed` raises: the caller said generation had ended.

Cost: linear in the fed text. Matching runs an Aho-Corasick automaton whose state carries
over between feeds, so no text is scanned twice, and its state's depth is the hold-back.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class StopCheck:
    """The result of one `feed`.

    text: text safe to emit now (possibly empty).
    matched: the stop string that completed in this feed, else None.
    match_end: when matched, the offset in the fed chunk just past the stop string's last
        character (so `len(chunk) - match_end` characters of the chunk came after it and
        were dropped). It lets a caller that fed several tokens' text at once find the
        token that completed the match; feeding one token's text at a time, the match
        always completed on the token just fed.
    """

    text: str
    matched: str | None = None
    match_end: int | None = None


class _Automaton:
    """Aho-Corasick over the stop strings. Node 0 is the root (the empty string)."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.goto: list[dict[str, int]] = [{}]
        self.fail: list[int] = [0]
        self.depth: list[int] = [0]
        # Length of the longest pattern that ends at this node (the node's own string, or
        # one of its suffixes reached through failure links); 0 if none.
        self.match_len: list[int] = [0]
        for pattern in patterns:
            node = 0
            for char in pattern:
                nxt = self.goto[node].get(char)
                if nxt is None:
                    nxt = len(self.goto)
                    self.goto.append({})
                    self.fail.append(0)
                    self.depth.append(self.depth[node] + 1)
                    self.match_len.append(0)
                    self.goto[node][char] = nxt
                node = nxt
            self.match_len[node] = len(pattern)
        # Breadth-first, so a node's failure target (shallower) is complete before it.
        queue = deque(self.goto[0].values())
        while queue:
            node = queue.popleft()
            for char, child in self.goto[node].items():
                queue.append(child)
                self.fail[child] = self.step(self.fail[node], char) if node else 0
                if self.match_len[child] == 0:
                    self.match_len[child] = self.match_len[self.fail[child]]

    def step(self, node: int, char: str) -> int:
        goto, fail = self.goto, self.fail
        while True:
            nxt = goto[node].get(char)
            if nxt is not None:
                return nxt
            if node == 0:
                return 0
            node = fail[node]


class StopStringMatcher:
    """Finds the first stop string in streamed text; see the module docstring."""

    def __init__(self, stop_strings: Sequence[str], include_stop_str_in_output: bool = False):
        if isinstance(stop_strings, str):
            raise TypeError("stop_strings must be a sequence of strings, not one string")
        for stop in stop_strings:
            if not isinstance(stop, str) or not stop:
                # Request validation drops empty words before they get here.
                raise ValueError(f"stop strings must be non-empty strings, got {stop!r}")
        self._stops = tuple(dict.fromkeys(stop_strings))  # unique, in the given order
        self._include = include_stop_str_in_output
        self._automaton = _Automaton(self._stops) if self._stops else None
        self._state = 0
        self._held = ""  # text not yet emitted: exactly the automaton state's string
        self._matched: str | None = None
        self._flushed = False

    @property
    def stop_strings(self) -> tuple[str, ...]:
        return self._stops

    @property
    def matched(self) -> str | None:
        """The stop string that ended the text, once one has."""
        return self._matched

    @property
    def held_back(self) -> str:
        """Text fed but not yet emitted, because it could still start a stop string."""
        return self._held

    def feed(self, text: str) -> StopCheck:
        if self._flushed:
            raise RuntimeError("feed() after flush(): the text has already ended")
        if self._matched is not None:
            return StopCheck("")
        automaton = self._automaton
        if automaton is None:
            return StopCheck(text)
        state = self._state
        step, match_len = automaton.step, automaton.match_len
        for index, char in enumerate(text):
            state = step(state, char)
            length = match_len[state]
            if length:
                return self._on_match(text, index + 1, length)
        self._state = state
        pending = self._held + text
        keep = automaton.depth[state]
        cut = len(pending) - keep
        self._held = pending[cut:]
        return StopCheck(pending[:cut])

    def flush(self) -> str:
        """End of text without a match: release whatever is still held back."""
        self._flushed = True
        held, self._held = self._held, ""
        return held

    def _on_match(self, text: str, end: int, length: int) -> StopCheck:
        pending = self._held + text[:end]
        stop = pending[len(pending) - length :]
        self._matched = stop
        self._held = ""
        emitted = pending if self._include else pending[: len(pending) - length]
        return StopCheck(emitted, matched=stop, match_end=end)
