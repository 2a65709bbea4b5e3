"""Synthetic backend: pseudo-random tokens at a fixed step time, no model compute.

It exists to measure the serving stack's own overhead: every iteration takes
`step_ms` for the whole batch, whatever its size, and each sequence's tokens are a
deterministic function of its seed. It needs neither torch nor a checkpoint.

Pacing: while the engine is busy (some sequence of this step also took part in the
previous one), a step ends `step_ms` after the previous step ended, so the scheduler's
own work between steps (building and queueing 256 responses takes milliseconds in
Python) falls inside the step, as a real engine's host work overlaps its GPU step;
timed from each step's start instead, that work made every iteration longer than
`step_ms` at high concurrency. A step after an idle engine takes `step_ms` from its own
start. When the work between steps exceeds a step, steps follow without sleeping.

Honoured: bad words (banned tokens are never drawn), min_tokens, end_id policy below,
and guided decoding: a guided sequence draws uniformly among the tokens its guide allows
next (so benchmarks can send guided requests too; needs `tokenizer_dir`), and its guide,
not the end_id policy, decides where end_id may come.
Sampling parameters and penalties have no meaning without logits and are not applied.
end_id (config synthetic_end_id, here `end_id_policy`): < 0 (default) the request's
end_id is never drawn, so every request runs its full request_output_len (stable
benchmark lengths); >= 0 draws are uniform over the whole vocabulary, so a draw equal
to the request's end_id ends the sequence (about once per `vocab_size` tokens).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from reference_engine.backends.base import GenerationBackend
from reference_engine.guided import (
    GuidedDecoder,
    GuideState,
    guide_ends_early,
    raise_no_token_left,
)
from reference_engine.types import LiveSequence, StepOutput
from reference_engine.words import banned_next_tokens

# Prompt + output limit when the config gives none: large, the backend has no cache.
SYNTHETIC_MAX_SEQ_LEN = 1 << 20


@dataclass
class _SequenceState:
    rng: random.Random
    guide: GuideState | None = None
    last_step: int | None = None  # the step this sequence last took part in


class SyntheticBackend(GenerationBackend):
    name = "synthetic"

    def __init__(
        self,
        *,
        step_ms: float = 20.0,
        vocab_size: int = 32000,
        end_id_policy: int = -1,
        tokenizer_dir: Path | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if vocab_size < 2:
            raise ValueError(f"synthetic_vocab_size must be at least 2, got {vocab_size}")
        if step_ms < 0:
            raise ValueError(f"synthetic_step_ms must be >= 0, got {step_ms}")
        self._step_s = step_ms / 1000.0
        self._vocab = vocab_size
        self._end_id_policy = end_id_policy
        self._sleep = sleep
        self._clock = clock
        self._uniform_log_prob = -math.log(vocab_size)
        self.guides = GuidedDecoder(tokenizer_dir, vocab_size)
        self._steps = 0  # steps taken so far
        self._last_step_end = 0.0

    @property
    def vocab_size(self) -> int:
        return self._vocab

    @property
    def default_max_seq_len(self) -> int:
        return SYNTHETIC_MAX_SEQ_LEN

    def admit(self, seq: LiveSequence) -> None:
        seq.backend_state = _SequenceState(random.Random(seq.seed), self.guides.start(seq.spec))

    def step(self, seqs: Sequence[LiveSequence]) -> list[StepOutput | Exception]:
        started = self._clock()
        this_step = self._steps
        self._steps += 1
        continuing = False  # whether the engine was busy right before this step
        results: list[StepOutput | Exception] = []
        for seq in seqs:
            state: _SequenceState = seq.backend_state
            continuing = continuing or state.last_step == this_step - 1
            state.last_step = this_step
            try:
                results.append(self._draw(seq))
            except Exception as exc:
                results.append(exc)
        # The whole batch takes one step time, like one engine iteration (see the
        # module docstring for when it is counted from).
        ends = (self._last_step_end if continuing else started) + self._step_s
        remaining = ends - self._clock()
        if remaining > 0:
            self._sleep(remaining)
            self._last_step_end = ends  # on the grid, whatever the sleep overshot
        else:
            self._last_step_end = self._clock()  # late: the grid starts again from here
        return results

    def _draw(self, seq: LiveSequence) -> StepOutput:
        state: _SequenceState = seq.backend_state
        excluded = banned_next_tokens(seq, seq.spec.bad_words)
        end_id = seq.spec.end_id
        if end_id is not None and len(seq.generated) < seq.sampling.min_length:
            excluded.add(end_id)
        if state.guide is not None:
            allowed = [t for t in state.guide.allowed_tokens() if t not in excluded]
            if not allowed:
                if not guide_ends_early(state.guide, end_id):
                    raise_no_token_left()
                allowed = [end_id]
            token = allowed[state.rng.randrange(len(allowed))]
            state.guide.accept(token)
            return self._output(seq, token)
        if end_id is not None and self._end_id_policy < 0:
            excluded.add(end_id)
        excluded = {t for t in excluded if 0 <= t < self._vocab}
        if len(excluded) >= self._vocab:
            raise RuntimeError("every token of the synthetic vocabulary is banned")
        # Rejection sampling keeps draws a pure function of the seed and the bans.
        while True:
            token = state.rng.randrange(self._vocab)
            if token not in excluded:
                break
        return self._output(seq, token)

    def _output(self, seq: LiveSequence, token: int) -> StepOutput:
        log_prob = self._uniform_log_prob if seq.spec.return_log_probs else None
        return StepOutput(token_id=token, log_prob=log_prob)
