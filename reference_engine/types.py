"""Typed values that cross the engine's internal boundaries.

The contract adapter (`contract.py`) turns request tensors into these; the scheduler
(`scheduler.py`) keeps one `LiveSequence` per generated sequence; a generation backend
(`backends/`) sees only `LiveSequence`s and answers with `StepOutput`s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving_common.guided_decoding import Guide

# TensorRT-LLM's documented defaults (C++ runtime, SamplingConfig): top_k = 0 and
# top_p = 0.0 together mean greedy decoding; temperature 1.0 means "no modulation".
DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_K = 0
DEFAULT_TOP_P = 0.0
DEFAULT_TOP_P_DECAY = 1.0
DEFAULT_TOP_P_MIN = 1.0e-6
DEFAULT_TOP_P_RESET_ID = -1
MAX_TOP_K = 1024  # TensorRT-LLM's documented upper bound for runtime_top_k


@dataclass(frozen=True)
class SamplingParams:
    """How the next token is chosen for one sequence (TensorRT-LLM semantics)."""

    temperature: float = DEFAULT_TEMPERATURE
    top_k: int = DEFAULT_TOP_K
    top_p: float = DEFAULT_TOP_P
    top_p_decay: float = DEFAULT_TOP_P_DECAY
    top_p_min: float = DEFAULT_TOP_P_MIN
    top_p_reset_id: int = DEFAULT_TOP_P_RESET_ID
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    # Input min_tokens: generated tokens needed before end_id may be produced. Like
    # TensorRT-LLM, it only masks end_id: a stop word can still end generation earlier.
    min_length: int = 0
    # None: the request gave no seed; the scheduler assigns one (model random_seed + n).
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        """Greedy (argmax) decoding: TensorRT-LLM's top_k = 0 and top_p = 0, or a
        choice that can only ever pick the most likely token."""
        if self.temperature == 0.0 or self.top_k == 1:
            return True
        return self.top_k == 0 and self.top_p == 0.0

    @property
    def has_penalties(self) -> bool:
        return (
            self.repetition_penalty != 1.0
            or self.presence_penalty != 0.0
            or self.frequency_penalty != 0.0
        )


@dataclass(frozen=True)
class SequenceSpec:
    """One sequence to generate: one prompt of the request, one of its samples."""

    batch_index: int
    sequence_index: int
    prompt: tuple[int, ...]
    max_new_tokens: int
    end_id: int | None
    pad_id: int | None
    stop_words: tuple[tuple[int, ...], ...]
    bad_words: tuple[tuple[int, ...], ...]
    # float32 [vocab] added to the logits, or None.
    embedding_bias: np.ndarray | None = field(default=None, compare=False)
    sampling: SamplingParams = SamplingParams()
    return_log_probs: bool = False
    exclude_input_in_output: bool = True
    # Guided decoding: the output must follow this guide (a JSON schema, regex, ...).
    guide: Guide | None = None


@dataclass(frozen=True)
class GenerationRequest:
    """A parsed generation request: B prompts x num_return_sequences sequences."""

    request_id: str
    streaming: bool
    sequences: tuple[SequenceSpec, ...]


@dataclass(frozen=True)
class StopRequest:
    """`stop=true`: end the in-flight request(s) with the same request id."""

    request_id: str


@dataclass
class LiveSequence:
    """A sequence being generated: owned by the scheduler, read by the backend.

    `backend_state` is a slot for the backend's own per-sequence data (a KV cache,
    a random generator); the scheduler never looks inside it.
    """

    spec: SequenceSpec
    seed: int
    generated: list[int] = field(default_factory=list)
    log_probs: list[float] = field(default_factory=list)
    backend_state: Any = None

    @property
    def sampling(self) -> SamplingParams:
        return self.spec.sampling

    def tail(self, n: int) -> list[int]:
        """The last `n` tokens of prompt + generated (fewer if the sequence is shorter)."""
        if n <= 0:
            return []
        gen = self.generated
        if len(gen) >= n:
            return gen[len(gen) - n :]
        need = n - len(gen)
        prompt = self.spec.prompt
        return list(prompt[max(0, len(prompt) - need) :]) + gen

    @property
    def length(self) -> int:
        return len(self.spec.prompt) + len(self.generated)


@dataclass(frozen=True)
class StepOutput:
    """What a backend produced for one sequence in one iteration."""

    token_id: int
    # log-softmax of the processed logits at token_id; None when not asked for.
    log_prob: float | None = None
