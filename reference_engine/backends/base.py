"""The small interface between the scheduler and whatever computes tokens.

The scheduler calls `step` once per iteration with every active sequence; a backend
answers one `StepOutput` per sequence (or the exception that sequence hit, so that one
failing sequence does not take the others down). Stop conditions (end_id, stop words,
length), responses and cancellation are the scheduler's business, not the backend's:
that keeps a future TensorRT-LLM LLM-API backend equally small.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from reference_engine.types import LiveSequence, StepOutput


class GenerationBackend(ABC):
    """One token per active sequence per iteration."""

    #: short name for logs and metrics ("reference", "synthetic", ...)
    name: str = "backend"

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Size of the logits / token id space."""

    @property
    @abstractmethod
    def default_max_seq_len(self) -> int:
        """Longest prompt + output the backend can handle when config gives none."""

    def admit(self, seq: LiveSequence) -> None:  # noqa: B027 - optional hook
        """Prepare per-sequence state before its first step (raise RequestError to refuse)."""

    @abstractmethod
    def step(self, seqs: Sequence[LiveSequence]) -> list[StepOutput | Exception]:
        """Advance every sequence by one token; same order and length as `seqs`."""

    def release(self, seq: LiveSequence) -> None:
        """Free per-sequence state (the sequence finished, failed or was cancelled)."""
        seq.backend_state = None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free everything (model unload)."""
