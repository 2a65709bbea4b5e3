"""LLM-API step outputs -> the contract's tokens, log probs and end of sequence.

`snapshot_of` reads the documented fields of the `RequestOutput` that each step of
`generate_async(..., streaming=True)` yields (cumulative: every token so far) into a
plain `CompletionSnapshot`. `SequenceProgress` turns successive snapshots of one sequence
into what the contract sends, enforcing its rules itself rather than trusting each
release's defaults:
- end_id ends the sequence and is never output (dropped if the engine reports it);
- a stop word ends it and is output, matched over prompt + generated tokens, so
  multi-token words work (the LLM API takes single-token stop ids only);
- request_output_len caps it;
- log probs are those of the output tokens, and cum_log_probs their sum.
When the contract's rules end a sequence the engine has not finished, the driver
aborts the engine request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reference_engine.types import LiveSequence, SequenceSpec
from reference_engine.words import matched_stop_word


@dataclass(frozen=True)
class CompletionSnapshot:
    """One LLM-API sequence as reported so far (all tokens generated up to now)."""

    token_ids: tuple[int, ...]
    # When log probs were asked: those of the last len(log_probs) tokens (all of them,
    # or only the newest where a release reports them per step).
    log_probs: tuple[float, ...] | None = None
    finished: bool = False
    finish_reason: str | None = None  # 'stop', 'length', 'timeout', 'cancelled'


def snapshot_of(request_output: Any) -> CompletionSnapshot:
    """The first (only: n = 1) CompletionOutput of a tensorrt_llm RequestOutput."""
    completion = request_output.outputs[0]
    tokens = tuple(int(t) for t in completion.token_ids)
    return CompletionSnapshot(
        token_ids=tokens,
        log_probs=sampled_log_probs(completion.logprobs, tokens),
        finished=bool(request_output.finished),
        finish_reason=completion.finish_reason,
    )


def sampled_log_probs(logprobs: Any, tokens: Sequence[int]) -> tuple[float, ...] | None:
    """Each sampled token's log probability.

    CompletionOutput.logprobs is, per token, either a float (TensorRT engine path) or a
    dict {token_id: Logprob(logprob, rank)} of the top-k that always holds the sampled
    token (PyTorch path); None or empty when log probs were not asked for.
    """
    if not logprobs:
        return None
    logprobs = list(logprobs)[-len(tokens) :] if tokens else []
    values = []
    # Aligned from the end: a release may report only the newest tokens' entries.
    for token, entry in zip(tokens[len(tokens) - len(logprobs) :], logprobs, strict=True):
        if isinstance(entry, dict):
            entry = entry[token]
        values.append(float(getattr(entry, "logprob", entry)))
    return tuple(values)


@dataclass(frozen=True)
class Advance:
    """What one snapshot adds to a sequence's output."""

    tokens: tuple[int, ...] = ()
    log_probs: tuple[float, ...] = ()
    ended: bool = False
    # The engine is still generating this sequence although the contract ended it.
    needs_abort: bool = False


class SequenceProgress:
    """One contract sequence's output so far, fed with successive snapshots."""

    def __init__(self, spec: SequenceSpec, seed: int) -> None:
        # The reference engine's per-sequence record: stop words are matched on it.
        self.live = LiveSequence(spec=spec, seed=seed)
        self.ended = False
        self._seen = 0  # snapshot tokens already looked at

    @property
    def spec(self) -> SequenceSpec:
        return self.live.spec

    @property
    def cum_log_prob(self) -> float:
        return float(sum(self.live.log_probs))

    def advance(self, snapshot: CompletionSnapshot) -> Advance:
        if self.ended:
            return Advance(ended=True)
        spec = self.spec
        first_new = self._seen
        new_tokens = snapshot.token_ids[first_new:]
        self._seen = len(snapshot.token_ids)
        log_probs = snapshot.log_probs or ()
        log_probs_start = len(snapshot.token_ids) - len(log_probs)  # token index of [0]
        taken: list[int] = []
        taken_log_probs: list[float] = []
        for i, token in enumerate(new_tokens):
            if spec.end_id is not None and token == spec.end_id:
                self.ended = True
                break
            taken.append(token)
            self.live.generated.append(token)
            at = first_new + i - log_probs_start
            if spec.return_log_probs and 0 <= at < len(log_probs):
                taken_log_probs.append(log_probs[at])
                self.live.log_probs.append(log_probs[at])
            if (
                len(self.live.generated) >= spec.max_new_tokens
                or matched_stop_word(self.live, spec.stop_words) is not None
            ):
                self.ended = True
                break
        if snapshot.finished:
            self.ended = True
        return Advance(
            tokens=tuple(taken),
            log_probs=tuple(taken_log_probs),
            ended=self.ended,
            needs_abort=self.ended and not snapshot.finished,
        )

    def output_tokens(self) -> list[int]:
        """The whole output of a non-streaming response (prompt first unless excluded)."""
        if self.spec.exclude_input_in_output:
            return list(self.live.generated)
        return list(self.spec.prompt) + self.live.generated
