"""One generated sequence inside a BLS request: tokens in, exact text deltas out.

Each sequence (prompt row x sample) has its own detokenizer and stop-string state, so
several prompts or num_return_sequences never mix their text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bls.engine_io import EngineRow
from bls.stop_strings import StopStringMatcher
from postprocessing.detokenizer import IncrementalDetokenizer

FINISH_STOP = "stop"
FINISH_LENGTH = "length"
FINISH_CANCELLED = "cancelled"


@dataclass
class SequenceDelta:
    """What one response says about one sequence."""

    batch_index: int
    sequence_index: int
    text: str
    num_output_tokens: int
    log_probs: list[float]
    cum_log_prob: float
    finish_reason: str = ""  # empty until the sequence's last response
    stop_reason: str = ""


@dataclass
class SequenceState:
    batch_index: int
    sequence_index: int
    max_tokens: int
    detokenizer: IncrementalDetokenizer
    stops: StopStringMatcher | None
    num_tokens: int = 0
    cum_log_prob: float = 0.0
    finish_reason: str = ""
    stop_reason: str = ""
    # Text and log probs produced since the last delta was taken.
    _pending_text: list[str] = field(default_factory=list)
    _pending_log_probs: list[float] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return bool(self.finish_reason)

    def emit_prefix(self, text: str) -> None:
        """Text that goes out as it is, before any generated text (an echoed prompt)."""
        self._pending_text.append(text)

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
            self._take_text(self.detokenizer.push([token]))

    def _take_text(self, text: str) -> None:
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
        return any(self._pending_text) or bool(self._pending_log_probs)

    def take_delta(self) -> SequenceDelta:
        delta = SequenceDelta(
            batch_index=self.batch_index,
            sequence_index=self.sequence_index,
            text="".join(self._pending_text),
            num_output_tokens=self.num_tokens,
            log_probs=list(self._pending_log_probs),
            cum_log_prob=self.cum_log_prob,
            finish_reason=self.finish_reason,
            stop_reason=self.stop_reason,
        )
        self._pending_text.clear()
        self._pending_log_probs.clear()
        return delta
