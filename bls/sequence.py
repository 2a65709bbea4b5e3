"""One generated sequence inside a BLS request: tokens in, exact text deltas out.

Each sequence (prompt row x sample) has its own detokenizer and stop-string state, so
several prompts or num_return_sequences never mix their text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bls.engine_io import EngineRow
from bls.stop_strings import StopStringMatcher
from postprocessing.detokenizer import IncrementalDetokenizer

FINISH_STOP = "stop"
FINISH_LENGTH = "length"
FINISH_CANCELLED = "cancelled"


@dataclass
class SequenceDelta:
    """What one response says about one sequence: what it adds since the previous one."""

    batch_index: int
    sequence_index: int
    text: str
    # Tokens this delta adds (not a running total): clients such as Triton's OpenAI
    # frontend add up the counts of a stream's responses.
    num_output_tokens: int
    log_probs: list[float]
    cum_log_prob: float
    finish_reason: str = ""  # empty until the sequence's last response
    stop_reason: str = ""

    def merge(self, later: SequenceDelta) -> None:
        """Fold a later delta of the same sequence into this one (one response for two)."""
        self.text += later.text
        self.num_output_tokens += later.num_output_tokens
        self.log_probs.extend(later.log_probs)
        self.cum_log_prob = later.cum_log_prob
        self.finish_reason = later.finish_reason or self.finish_reason
        self.stop_reason = later.stop_reason or self.stop_reason


@dataclass
class SequenceState:
    batch_index: int
    sequence_index: int
    max_tokens: int
    detokenizer: IncrementalDetokenizer
    stops: StopStringMatcher | None
    # Stop words that are one special token, by id (see EncodedPrompts).
    special_stops: Mapping[int, str] = field(default_factory=dict)
    include_stop_str_in_output: bool = False
    num_tokens: int = 0
    # num_tokens when the last delta was taken.
    _tokens_reported: int = 0
    cum_log_prob: float = 0.0
    finish_reason: str = ""
    stop_reason: str = ""
    # Characters of an echoed prompt the detokenizer still holds back.
    _prompt_chars_held: int = 0
    # Text and log probs produced since the last delta was taken.
    _pending_text: list[str] = field(default_factory=list)
    _pending_log_probs: list[float] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return bool(self.finish_reason)

    def echo_prompt(self, prompt_ids: Sequence[int]) -> None:
        """Put the prompt before the generated text (exclude_input_in_output=false).

        Through this sequence's detokenizer, so prompt + output decode exactly as one
        text. The detokenizer may hold back the prompt's tail (a byte-fallback run such as
        a final newline); those characters come out with the first generated token and
        must still bypass the stop strings: the prompt is never searched.
        """
        released = self.detokenizer.push(list(prompt_ids))
        self._pending_text.append(released)
        whole = self.detokenizer.decode_whole(prompt_ids)
        self._prompt_chars_held = max(0, len(whole) - len(released))

    def consume(self, row: EngineRow) -> None:
        """Take one engine response's tokens for this sequence, one token at a time.

        Token by token, so a stop string is attributed to the token that completed it and
        the token count stops there; tokens after a stop string (in flight before the
        engine saw the cancel) are ignored.
        """
        for position, token in enumerate(row.token_ids):
            if self.finished:
                return
            self.num_tokens += 1
            if row.log_probs is not None and position < len(row.log_probs):
                self._pending_log_probs.append(row.log_probs[position])
                self.cum_log_prob += row.log_probs[position]
            if token in self.special_stops:
                self._stop_on_special_token(self.special_stops[token])
                return
            self._take_text(self.detokenizer.push([token]))

    def _stop_on_special_token(self, word: str) -> None:
        # The text before the token may itself complete a stop string: that one is first.
        self._take_text(self.detokenizer.finish())
        if self.finished:
            return
        if self.stops is not None:
            self._pending_text.append(self.stops.flush())
        if self.include_stop_str_in_output:
            self._pending_text.append(word)
        self.finish_reason = FINISH_STOP
        self.stop_reason = word

    def _take_text(self, text: str) -> None:
        if self._prompt_chars_held:
            prompt_tail = text[: self._prompt_chars_held]
            self._prompt_chars_held -= len(prompt_tail)
            self._pending_text.append(prompt_tail)
            text = text[len(prompt_tail) :]
        if self.stops is None:
            self._pending_text.append(text)
            return
        check = self.stops.feed(text)
        self._pending_text.append(check.text)
        if check.matched is not None:
            self.finish_reason = FINISH_STOP
            self.stop_reason = check.matched

    def end_of_generation(self) -> None:
        """The engine is done with this sequence: release held-back text, decide why."""
        if self.finished:
            return
        self._take_text(self.detokenizer.finish())
        if self.finished:  # the flushed text completed a stop string
            return
        if self.stops is not None:
            self._pending_text.append(self.stops.flush())
        # end_id is never in the output and a stop word ends early, so fewer tokens
        # than max_tokens means the model stopped by itself.
        self.finish_reason = FINISH_LENGTH if self.num_tokens >= self.max_tokens else FINISH_STOP

    def cancel(self) -> None:
        if not self.finished:
            self.finish_reason = FINISH_CANCELLED

    def has_news(self) -> bool:
        # Tokens that add no text yet (held back) are not news: their count rides on the
        # next delta, so a stream's counts still add up to the total.
        return any(self._pending_text) or bool(self._pending_log_probs)

    def take_delta(self) -> SequenceDelta:
        delta = SequenceDelta(
            batch_index=self.batch_index,
            sequence_index=self.sequence_index,
            text="".join(self._pending_text),
            num_output_tokens=self.num_tokens - self._tokens_reported,
            log_probs=list(self._pending_log_probs),
            cum_log_prob=self.cum_log_prob,
            finish_reason=self.finish_reason,
            stop_reason=self.stop_reason,
        )
        self._tokens_reported = self.num_tokens
        self._pending_text.clear()
        self._pending_log_probs.clear()
        return delta
