"""The values a build writes into each model's config.pbtxt, computed from the options.

Pure: the same options give the same edits, so tests (and --dry-run's printout) see
exactly what the repository will hold. Parameter names of our own models are the
project's fixed names (tokenizer_dir, max_input_len, ...); those of the C++ `tensorrt_llm`
model are the backend's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine_build.layout import OutputLayout
from engine_build.options import BuildOptions, EngineKind
from engine_build.pytorch_backend import llm_api_parameters


@dataclass(frozen=True)
class ModelEdits:
    """Edits to one config.pbtxt."""

    # Parameters the config must declare (a missing one is an error: a typo or a config
    # that drifted from the names this tool knows).
    parameters: dict[str, str] = field(default_factory=dict)
    # Parameters set only where the config declares them.
    optional_parameters: dict[str, str] = field(default_factory=dict)
    # Parameters appended (with their comment) when the config does not declare them:
    # the LoRA cache settings, which the shipped engine config leaves at their defaults.
    added_parameters: dict[str, tuple[str, str]] = field(default_factory=dict)
    max_batch_size: int | None = None
    instance_count: int | None = None
    # Cap an existing parameter at a value (default_max_tokens at max_output_len).
    caps: dict[str, int] = field(default_factory=dict)


def _flag(value: bool) -> str:
    return "true" if value else "false"


def repository_edits(options: BuildOptions, layout: OutputLayout) -> dict[str, ModelEdits]:
    """Edits for each of the four models, keyed by model name."""
    tokenizer = str(layout.deployed_tokenizer)
    trust = _flag(options.trust_remote_code)
    edits = {
        "preprocessing": ModelEdits(
            parameters={
                "tokenizer_dir": tokenizer,
                "max_input_len": str(options.input_len),
            },
            optional_parameters={"trust_remote_code": trust},
            max_batch_size=options.max_batch_size,
            instance_count=options.preprocessing_instances,
        ),
        "postprocessing": ModelEdits(
            parameters={"tokenizer_dir": tokenizer},
            optional_parameters={"trust_remote_code": trust},
            max_batch_size=options.max_batch_size,
            instance_count=options.postprocessing_instances,
        ),
        "tensorrt_llm_bls": ModelEdits(
            parameters={
                "tokenizer_dir": tokenizer,
                "tensorrt_llm_model_name": "tensorrt_llm",
                "max_input_len": str(options.input_len),
                "max_output_len": str(options.max_output_len),
                "max_seq_len": str(options.seq_len),
            },
            optional_parameters={"trust_remote_code": trust},
            max_batch_size=options.max_batch_size,
            instance_count=options.bls_instances,
            caps={"default_max_tokens": options.max_output_len},
        ),
    }
    if options.engine is EngineKind.REFERENCE:
        edits["tensorrt_llm"] = _reference_engine_edits(options, layout)
    elif options.engine is EngineKind.PYTORCH:
        edits["tensorrt_llm"] = ModelEdits(
            parameters=llm_api_parameters(options), max_batch_size=options.max_batch_size
        )
    else:
        edits["tensorrt_llm"] = _tensorrt_llm_edits(options, layout)
    return edits


def _tensorrt_llm_edits(options: BuildOptions, layout: OutputLayout) -> ModelEdits:
    parameters = {
        "gpt_model_type": "inflight_fused_batching",
        "gpt_model_path": str(layout.deployed_engine),
        "max_beam_width": str(options.max_beam_width),
        "batch_scheduler_policy": options.batch_scheduler_policy.value,
        "kv_cache_free_gpu_mem_fraction": str(options.kv_cache_free_gpu_mem_fraction),
        "enable_kv_cache_reuse": _flag(options.enable_kv_cache_reuse),
        "enable_chunked_context": _flag(options.enable_chunked_context),
        # The BLS detokenizes only what was generated, so the prompt never comes back.
        "exclude_input_in_output": "true",
        # top_k_top_p serves every sampling request when beams are 1; beam search needs
        # its own decoding mode.
        "decoding_mode": "beam_search" if options.max_beam_width > 1 else "top_k_top_p",
    }
    if options.guided_decoding:
        parameters["guided_decoding_backend"] = "xgrammar"
        parameters["xgrammar_tokenizer_info_path"] = str(layout.deployed_xgrammar_tokenizer_info)
    added: dict[str, tuple[str, str]] = {}
    if options.lora is not None:
        lora = options.lora
        added = {
            "lora_cache_max_adapter_size": (
                str(lora.max_rank),
                "Largest LoRA rank (adapter size) a cache page must hold; set to the "
                "engine's max_lora_rank. Backend default: 64.",
            ),
            "lora_cache_optimal_adapter_size": (
                str(lora.cache_optimal_adapter_size),
                "Adapter rank the cache pages are sized for. Backend default: 8.",
            ),
            "lora_cache_gpu_memory_fraction": (
                str(lora.cache_gpu_memory_fraction),
                "Fraction of the GPU memory left after the engine and the KV cache that "
                "holds LoRA weights. Backend default: 0.05.",
            ),
            "lora_cache_host_memory_bytes": (
                str(lora.cache_host_memory_bytes),
                "Host memory for LoRA weights evicted from the GPU cache, in bytes. "
                "Backend default: 1 GiB.",
            ),
        }
    return ModelEdits(
        parameters=parameters,
        added_parameters=added,
        max_batch_size=options.max_batch_size,
    )


def _reference_engine_edits(options: BuildOptions, layout: OutputLayout) -> ModelEdits:
    return ModelEdits(
        parameters={
            "generation_backend": "reference",
            "model_dir": str(Path(options.checkpoint).resolve()),
            "exclude_input_in_output": "true",
        },
        optional_parameters={
            # Guided decoding compiles guides against the served tokenizer.
            "tokenizer_dir": str(layout.deployed_tokenizer),
            "max_seq_len": str(options.seq_len),
            "max_active_sequences": str(options.max_batch_size),
        },
        max_batch_size=options.max_batch_size,
    )


def flatten_edits(edits: dict[str, ModelEdits]) -> dict[str, str]:
    """`model.parameter -> value` for printing a plan."""
    flat: dict[str, str] = {}
    for model, edit in edits.items():
        if edit.max_batch_size is not None:
            flat[f"{model}.max_batch_size"] = str(edit.max_batch_size)
        if edit.instance_count is not None:
            flat[f"{model}.instance_count"] = str(edit.instance_count)
        for key, value in {**edit.parameters, **edit.optional_parameters}.items():
            flat[f"{model}.{key}"] = value
        for key, (value, _comment) in edit.added_parameters.items():
            flat[f"{model}.{key}"] = value
        for key, cap in edit.caps.items():
            flat[f"{model}.{key}"] = f"<= {cap}"
    return flat
