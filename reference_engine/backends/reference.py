"""Reference backend: a Hugging Face causal LM run with PyTorch, one KV cache per sequence.

Each iteration runs one forward pass per active sequence (the prompt on its first
step, then the last token against its own cache). Separate passes keep greedy
output bit-identical to `model.generate(do_sample=False)`; batching them would change
floating-point reduction order. This engine is for correctness, not speed.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reference_engine.backends.base import GenerationBackend
from reference_engine.guided import (
    GuidedDecoder,
    GuideState,
    guide_ends_early,
    raise_no_token_left,
)
from reference_engine.types import LiveSequence, StepOutput
from serving_common.errors import RequestError

logger = logging.getLogger(__name__)

# Used when the checkpoint's config names no position limit.
FALLBACK_MAX_SEQ_LEN = 2048


def resolve_device(device: str) -> str:
    """ "auto" -> "cuda" when a GPU is visible, else "cpu"; anything else as given."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_float32_model(model_dir: Path | str) -> Any:
    """`AutoModelForCausalLM.from_pretrained(model_dir)` in float32, on the CPU.

    transformers 4.56 renamed the argument `torch_dtype` to `dtype`; older releases (4.51
    in the oldest supported containers) hand an unknown `dtype` on to the model's
    constructor, which fails with a TypeError.
    """
    import torch
    import transformers
    from packaging.version import Version

    name = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
    # Never the checkpoint's own Python code (modeling_*.py): only transformers' classes.
    return transformers.AutoModelForCausalLM.from_pretrained(
        str(model_dir), trust_remote_code=False, **{name: torch.float32}
    )


@dataclass
class _SequenceState:
    cache: Any  # the model's past_key_values, None before the first (prompt) pass
    sampling: Any  # sampling.SamplingState
    guide: GuideState | None = None  # guided decoding: masks the logits every step


class ReferenceBackend(GenerationBackend):
    name = "reference"

    def __init__(
        self, model_dir: Path | str, device: str = "auto", tokenizer_dir: Path | None = None
    ) -> None:
        # OpenMP threads that spin while waiting make small per-sequence forward passes
        # up to 100x slower on a busy CPU (measured: 3 s instead of 40 ms per iteration
        # of 32 sequences on 2 shared cores). Passive waiting costs little elsewhere.
        # Only effective before torch is first imported, as in the Triton stub process.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        # Imported here so that the synthetic backend (and the contract code) never
        # needs torch or transformers.
        import torch

        self._torch = torch
        self.device = torch.device(resolve_device(device))
        model = load_float32_model(model_dir)
        self.model = model.to(self.device).eval()
        config = self.model.config
        output_embeddings = self.model.get_output_embeddings()
        self._vocab_size = int(
            getattr(output_embeddings, "out_features", None) or config.vocab_size
        )
        self._max_positions = int(
            getattr(config, "max_position_embeddings", None)
            or getattr(config, "n_positions", None)
            or FALLBACK_MAX_SEQ_LEN
        )
        self.guides = GuidedDecoder(
            Path(tokenizer_dir) if tokenizer_dir is not None else Path(model_dir),
            self._vocab_size,
        )
        # Compute logits for the last position only, as generate() does (same numbers).
        params = inspect.signature(self.model.forward).parameters
        self._logits_kwargs = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
        logger.info(
            "reference backend: %s on %s, vocab %d, max positions %d",
            model_dir,
            self.device,
            self._vocab_size,
            self._max_positions,
        )

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def default_max_seq_len(self) -> int:
        return self._max_positions

    def admit(self, seq: LiveSequence) -> None:
        from reference_engine.sampling import new_sampling_state

        guide = self.guides.start(seq.spec)  # first: a bad guide refuses the sequence
        seq.backend_state = _SequenceState(
            cache=None,
            sampling=new_sampling_state(seq, self._vocab_size, self.device),
            guide=guide,
        )

    def step(self, seqs: Sequence[LiveSequence]) -> list[StepOutput | Exception]:
        results: list[StepOutput | Exception] = []
        with self._torch.inference_mode():
            for seq in seqs:
                try:
                    results.append(self._step_one(seq))
                except RequestError as exc:  # the request's own doing: no traceback
                    results.append(exc)
                except Exception as exc:  # one bad sequence must not stop the others
                    logger.exception("reference backend: sequence failed")
                    results.append(exc)
        return results

    def _step_one(self, seq: LiveSequence) -> StepOutput:
        from reference_engine.sampling import after_token, choose_token, log_prob_of, process_logits

        torch = self._torch
        state: _SequenceState = seq.backend_state
        if state is None:
            raise RuntimeError("sequence was not admitted to the reference backend")
        # First step: the whole prompt (prefill); then the last token on the cache.
        ids = list(seq.spec.prompt) if state.cache is None else [seq.generated[-1]]
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.device)
        out = self.model(
            input_ids=input_ids,
            past_key_values=state.cache,
            use_cache=True,
            **self._logits_kwargs,
        )
        state.cache = out.past_key_values
        logits = out.logits[0, -1, :].to(torch.float32)
        processed = process_logits(logits, seq, state.sampling)
        if state.guide is not None:
            # After the other processing; the order does not matter, as a masked (-inf)
            # logit stays -inf through bias, temperature and penalties.
            state.guide.mask_logits(processed)
            if not bool(torch.isfinite(processed).any()):
                if not guide_ends_early(state.guide, seq.spec.end_id):
                    raise_no_token_left()
                processed[seq.spec.end_id] = 0.0
        token = choose_token(processed, seq, state.sampling)
        log_prob = log_prob_of(processed, token) if seq.spec.return_log_probs else None
        after_token(seq, state.sampling, token)
        if state.guide is not None:
            state.guide.accept(token)
        return StepOutput(token_id=token, log_prob=log_prob)

    def close(self) -> None:
        self.model = None
