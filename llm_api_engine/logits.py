"""Bad words and embedding bias as one per-request LLM-API logits processor.

The LLM API's own `bad_token_ids` and `embedding_bias` fields cover single-token bad
words only, and whether the PyTorch sampler honours them has changed between releases.
A logits processor (`SamplingParams.logits_processor`, applied by the PyTorch backend to
each request's logits before sampling) gives the contract's exact semantics instead:
- embedding_bias is added to the raw logits (before temperature and penalties, as the
  C++ backend does);
- a bad word's last token is banned when prompt + generated tokens end with the rest of
  the word; a single-token bad word is always banned (`reference_engine.words`).

The processor is pickled to the executor worker with each request (upstream's Triton
model checks the same), so it holds plain tuples and a numpy array; torch is imported
when it is called, inside TensorRT-LLM's process, where torch always exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from reference_engine.words import Words, banned_after, max_word_len


class ContractLogitsProcessor:
    """Callable with the signature of tensorrt_llm.sampling_params.LogitsProcessor."""

    def __init__(self, bad_words: Words = (), embedding_bias: np.ndarray | None = None) -> None:
        self.bad_words = bad_words
        self.embedding_bias = (
            None if embedding_bias is None else np.asarray(embedding_bias, np.float32)
        )
        self._tail = max(0, max_word_len(bad_words) - 1)
        self._bias_by_device: dict[Any, Any] = {}  # torch tensors, rebuilt after unpickling

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_bias_by_device"] = {}
        return state

    def __call__(
        self,
        req_id: int,
        logits: Any,
        token_ids: Sequence[Sequence[int]],
        stream_ptr: int | None,
        client_id: int | None,
    ) -> None:
        """Edit `logits` in place: [..., beams, vocab] (or [vocab] for one beam)."""
        import torch

        if stream_ptr is None:
            self._apply(logits, token_ids)
            return
        # The TensorRT backend hands the stream the logits live on; PyTorch passes None.
        with torch.cuda.stream(torch.cuda.ExternalStream(stream_ptr)):
            self._apply(logits, token_ids)

    def banned(self, tokens: Sequence[int]) -> list[int]:
        """Tokens one beam whose prompt + generated tokens are `tokens` must not produce."""
        if not self.bad_words:
            return []
        tail = tokens[len(tokens) - self._tail :] if self._tail else ()
        return sorted(banned_after(tail, self.bad_words))

    def _apply(self, logits: Any, token_ids: Sequence[Sequence[int]]) -> None:
        if self.embedding_bias is not None:
            logits += self._bias_on(logits)
        if not self.bad_words:
            return
        vocab = logits.shape[-1]
        for beam, tokens in enumerate(token_ids):
            banned = [t for t in self.banned(list(tokens)) if 0 <= t < vocab]
            if not banned:
                continue
            if logits.dim() == 1:
                logits[banned] = float("-inf")
            else:
                logits[..., beam, banned] = float("-inf")

    def _bias_on(self, logits: Any) -> Any:
        import torch

        key = (logits.device, logits.dtype)
        bias = self._bias_by_device.get(key)
        if bias is None:
            bias = torch.as_tensor(self.embedding_bias).to(device=logits.device, dtype=logits.dtype)
            self._bias_by_device[key] = bias
        return bias
