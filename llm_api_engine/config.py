"""The model's config.pbtxt parameters, and the `tensorrt_llm.LLM` arguments made from them.

A bad value is a deployment mistake: `ConfigError` at model load, naming the parameter.
See `triton_model/config.pbtxt` for each parameter's meaning and default.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serving_common.config import (
    ConfigError,
    check_known_parameters,
    parameter_values,
    parse_bool,
    parse_positive_int,
)

GUIDED_DECODING_BACKENDS = ("xgrammar", "llguidance")

LLM_API_PARAMETERS = (
    "model_dir",
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "dtype",
    "kv_cache_free_gpu_mem_fraction",
    "enable_kv_cache_reuse",
    "enable_chunked_prefill",
    "max_batch_size",
    "max_num_tokens",
    "max_seq_len",
    "trust_remote_code",
    "guided_decoding_backend",
    "exclude_input_in_output",
    "random_seed",
    "cancellation_check_period_ms",
)


@dataclass(frozen=True)
class LlmApiConfig:
    model_dir: Path
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    dtype: str = "auto"
    kv_cache_free_gpu_mem_fraction: float = 0.9
    enable_kv_cache_reuse: bool = True
    enable_chunked_prefill: bool = False
    max_batch_size: int | None = None  # None: the LLM API's default
    max_num_tokens: int | None = None
    max_seq_len: int | None = None  # None: the checkpoint's max_position_embeddings
    trust_remote_code: bool = False
    guided_decoding_backend: str | None = None
    exclude_input_in_output: bool = True
    random_seed: int = 0
    cancellation_check_period_ms: float = 100.0

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, object]) -> LlmApiConfig:
        """From config.pbtxt parameters (Triton's JSON form or plain strings)."""
        check_known_parameters(parameters, LLM_API_PARAMETERS, "tensorrt_llm (LLM API)")
        values = {k: v for k, v in parameter_values(parameters).items() if v != ""}
        if "model_dir" not in values:
            raise ConfigError("model_dir is required: the Hugging Face or ModelOpt checkpoint")

        def positive(name: str) -> int | None:
            return parse_positive_int(name, values[name]) if name in values else None

        def flag(name: str, default: bool) -> bool:
            return parse_bool(name, values[name]) if name in values else default

        backend = values.get("guided_decoding_backend")
        if backend is not None and backend not in GUIDED_DECODING_BACKENDS:
            raise ConfigError(
                f"guided_decoding_backend must be one of {list(GUIDED_DECODING_BACKENDS)} "
                f"or empty, got {backend!r}"
            )
        fraction = _number(values, "kv_cache_free_gpu_mem_fraction", 0.9)
        if not 0.0 < fraction <= 1.0:
            raise ConfigError(f"kv_cache_free_gpu_mem_fraction must be in (0, 1], got {fraction}")
        seed = int(_number(values, "random_seed", 0))
        if seed < 0:
            raise ConfigError(f"random_seed must be >= 0, got {seed}")
        period = _number(values, "cancellation_check_period_ms", 100.0)
        if period <= 0:
            raise ConfigError(f"cancellation_check_period_ms must be > 0, got {period}")
        return cls(
            model_dir=Path(values["model_dir"]),
            tensor_parallel_size=positive("tensor_parallel_size") or 1,
            pipeline_parallel_size=positive("pipeline_parallel_size") or 1,
            dtype=values.get("dtype", "auto"),
            kv_cache_free_gpu_mem_fraction=fraction,
            enable_kv_cache_reuse=flag("enable_kv_cache_reuse", True),
            enable_chunked_prefill=flag("enable_chunked_prefill", False),
            max_batch_size=positive("max_batch_size"),
            max_num_tokens=positive("max_num_tokens"),
            max_seq_len=positive("max_seq_len"),
            trust_remote_code=flag("trust_remote_code", False),
            guided_decoding_backend=backend,
            exclude_input_in_output=flag("exclude_input_in_output", True),
            random_seed=seed,
            cancellation_check_period_ms=period,
        )

    def llm_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of tensorrt_llm.LLM; `kv_cache_config` as the keyword
        arguments of tensorrt_llm.llmapi.KvCacheConfig (the engine builds the object)."""
        kwargs: dict[str, Any] = {
            "model": str(self.model_dir),
            "backend": "pytorch",
            "tensor_parallel_size": self.tensor_parallel_size,
            "pipeline_parallel_size": self.pipeline_parallel_size,
            "dtype": self.dtype,
            "trust_remote_code": self.trust_remote_code,
            "enable_chunked_prefill": self.enable_chunked_prefill,
            "kv_cache_config": {
                "free_gpu_memory_fraction": self.kv_cache_free_gpu_mem_fraction,
                "enable_block_reuse": self.enable_kv_cache_reuse,
            },
        }
        for name in ("max_batch_size", "max_num_tokens", "max_seq_len", "guided_decoding_backend"):
            value = getattr(self, name)
            if value is not None:
                kwargs[name] = value
        return kwargs


@dataclass(frozen=True)
class CheckpointShape:
    """What request validation needs from the checkpoint's config.json."""

    vocab_size: int | None
    max_position_embeddings: int | None


def read_checkpoint_shape(model_dir: Path) -> CheckpointShape:
    """vocab_size and max_position_embeddings from config.json (or its text_config)."""
    config_file = Path(model_dir) / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"model_dir: cannot read {config_file}: {exc}") from None
    text_config = config.get("text_config") or {}

    def field_value(name: str) -> int | None:
        value = config.get(name, text_config.get(name))
        return int(value) if isinstance(value, int) else None

    return CheckpointShape(
        vocab_size=field_value("vocab_size"),
        max_position_embeddings=field_value("max_position_embeddings"),
    )


def _number(values: Mapping[str, str], name: str, default: float) -> float:
    if name not in values:
        return default
    try:
        return float(values[name])
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {values[name]!r}") from None
