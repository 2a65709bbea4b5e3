"""Generation backends: what computes the next token of each active sequence."""

from __future__ import annotations

from reference_engine.backends.base import GenerationBackend
from reference_engine.config import EngineConfig


def create_backend(config: EngineConfig) -> GenerationBackend:
    """The backend `config.generation_backend` names, ready to use."""
    if config.generation_backend == "synthetic":
        from reference_engine.backends.synthetic import SyntheticBackend

        return SyntheticBackend(
            step_ms=config.synthetic_step_ms,
            vocab_size=config.synthetic_vocab_size,
            end_id_policy=config.synthetic_end_id,
            tokenizer_dir=config.tokenizer_dir,
        )
    if config.generation_backend == "reference":
        from reference_engine.backends.reference import ReferenceBackend

        if config.model_dir is None:
            raise ValueError("model_dir: required when generation_backend is 'reference'")
        return ReferenceBackend(
            config.model_dir, device=config.device, tokenizer_dir=config.tokenizer_dir
        )
    raise ValueError(f"generation_backend: unknown backend {config.generation_backend!r}")


__all__ = ["GenerationBackend", "create_backend"]
