"""Helpers for testing the engine without Triton: a recording response sink, and a
tiny random Llama checkpoint for when the offline fixtures are not at hand."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class SentResponse:
    """One thing a sink received."""

    tensors: dict[str, np.ndarray] | None  # None: flag-only
    final: bool
    error: tuple[str, str] | None = None  # (message, code)

    @property
    def tokens(self) -> list[int]:
        if not self.tensors or "output_ids" not in self.tensors:
            return []
        return [int(t) for t in self.tensors["output_ids"].reshape(-1)]


class RecordingSink:
    """ResponseSink that records responses; thread-safe; `cancelled` is settable."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.responses: list[SentResponse] = []
        self.cancelled = False
        self.fail_sends = False  # simulate a client that went away

    def send(self, tensors: Mapping[str, np.ndarray] | None, *, final: bool) -> None:
        if self.fail_sends:
            raise RuntimeError("client went away")
        with self._cond:
            copy = None if tensors is None else {k: np.array(v) for k, v in tensors.items()}
            self.responses.append(SentResponse(copy, final))
            self._cond.notify_all()

    def send_error(self, message: str, code: str) -> None:
        with self._cond:
            self.responses.append(SentResponse(None, True, (message, code)))
            self._cond.notify_all()

    def is_cancelled(self) -> bool:
        return self.cancelled

    # --- inspection --------------------------------------------------------------------

    @property
    def finals(self) -> int:
        with self._cond:
            return sum(1 for r in self.responses if r.final)

    @property
    def done(self) -> bool:
        return self.finals > 0

    @property
    def error(self) -> tuple[str, str] | None:
        with self._cond:
            errors = [r.error for r in self.responses if r.error is not None]
        return errors[0] if errors else None

    def wait_done(self, timeout_s: float = 30.0) -> bool:
        with self._cond:
            return self._cond.wait_for(
                lambda: any(r.final for r in self.responses), timeout=timeout_s
            )

    def wait_responses(self, count: int, timeout_s: float = 30.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.responses) >= count, timeout=timeout_s)

    def tokens(self, batch_index: int = 0, sequence_index: int = 0) -> list[int]:
        """All tokens sent for one (prompt, sample), concatenated in order."""
        out: list[int] = []
        with self._cond:
            responses = list(self.responses)
        for r in responses:
            if not r.tensors or "output_ids" not in r.tensors:
                continue
            if int(r.tensors["batch_index"].reshape(-1)[0]) != batch_index:
                continue
            if int(r.tensors["sequence_index"].reshape(-1)[0]) != sequence_index:
                continue
            out.extend(r.tokens)
        return out


def make_tiny_llama(directory: Path, *, vocab_size: int = 128, seed: int = 0) -> Path:
    """Save a tiny random LlamaForCausalLM (float32) into `directory`; returns it.

    A wide initializer keeps logits clearly apart, so argmax does not flip on noise.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        initializer_range=0.25,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory))
    return directory
