"""The TensorRT-LLM release this model is written against, and the API names it uses.

Target: TensorRT-LLM 1.2.1, the newest `tensorrt-llm` on the package index (its LLM API
runs the PyTorch backend by default). The package cannot be installed on the machines
this project is developed on (the index serves a stub that downloads the real wheel from
NVIDIA's own index at install time), so every name below was read from TensorRT-LLM's
published source and API reference instead of from an import:

- `tensorrt_llm/sampling_params.py` (class `SamplingParams`: the keyword arguments in
  `SAMPLING_PARAMS_FIELDS`; `LogitsProcessor.__call__(req_id, logits, token_ids,
  stream_ptr, client_id)`; `GuidedDecodingParams(json, regex, grammar, json_object,
  structural_tag)`), read at 1.0.0rc4 and in the 1.1/1.2 line (the version with
  `params_imply_greedy_decoding`), and in the 1.3/1.4 API reference: every name used
  here is present, with the same meaning, in all of them.
- `tensorrt_llm/executor/result.py` (`CompletionOutput.index/token_ids/logprobs/
  cumulative_logprob/finish_reason`, `Logprob.logprob`, `GenerationResult.finished`,
  `.abort()`, `async for` over the result of `LLM.generate_async(..., streaming=True)`).
- `tensorrt_llm/llmapi/llm_args.py` (`tensor_parallel_size`, `pipeline_parallel_size`,
  `max_batch_size`, `max_num_tokens`, `max_seq_len`, `kv_cache_config`,
  `enable_chunked_prefill`, `guided_decoding_backend`, `trust_remote_code`, `dtype`;
  `KvCacheConfig(free_gpu_memory_fraction, enable_block_reuse)`).
- Upstream's own Triton model over the LLM API (`triton_backend/all_models/llmapi/
  tensorrt_llm/1/model.py`): one asyncio loop drives every request; `abort()` on a stop
  request or a client cancellation polled every `cancellation_check_period_ms` (100 ms);
  `tensorrt_llm` imported only in `initialize()`; logits processors are pickled to the
  executor worker with each request.

The unit tests check our mapping against these names; where `tensorrt_llm` imports they
also build the real objects from them.
"""

from __future__ import annotations

TENSORRT_LLM_RELEASE = "1.2.1"

# Keyword arguments of tensorrt_llm.SamplingParams that the mapping may pass.
SAMPLING_PARAMS_FIELDS: frozenset[str] = frozenset(
    {
        "max_tokens",
        "end_id",
        "pad_id",
        "ignore_eos",
        "stop_token_ids",
        "include_stop_str_in_output",
        "logits_processor",
        "top_k",
        "top_p",
        "top_p_min",
        "top_p_decay",
        "top_p_reset_ids",
        "temperature",
        "seed",
        "min_tokens",
        "repetition_penalty",
        "presence_penalty",
        "frequency_penalty",
        "logprobs",
        "exclude_input_from_output",
        "detokenize",
        "guided_decoding",
    }
)

# Fields of tensorrt_llm.llmapi.GuidedDecodingParams (one of them per request).
GUIDED_DECODING_FIELDS: frozenset[str] = frozenset(
    {"json", "regex", "grammar", "json_object", "structural_tag"}
)

# Keyword arguments of tensorrt_llm.LLM that the model passes.
LLM_ARGS: frozenset[str] = frozenset(
    {
        "model",
        "backend",
        "tensor_parallel_size",
        "pipeline_parallel_size",
        "dtype",
        "trust_remote_code",
        "max_batch_size",
        "max_num_tokens",
        "max_seq_len",
        "kv_cache_config",
        "enable_chunked_prefill",
        "guided_decoding_backend",
    }
)

# Fields of tensorrt_llm.llmapi.KvCacheConfig that the model passes.
KV_CACHE_CONFIG_FIELDS: frozenset[str] = frozenset(
    {"free_gpu_memory_fraction", "enable_block_reuse"}
)

# CompletionOutput.finish_reason values (executor/result.py).
FINISH_REASONS: frozenset[str] = frozenset({"stop", "length", "timeout", "cancelled"})


def tensorrt_llm_importable() -> tuple[bool, str]:
    """Whether `import tensorrt_llm` works here, and if not, why (for skip reasons)."""
    try:
        import tensorrt_llm  # noqa: F401
    except Exception as exc:  # ImportError, or a CUDA/MPI library failing to load
        return False, f"tensorrt_llm does not import here: {type(exc).__name__}: {exc}"
    return True, ""
