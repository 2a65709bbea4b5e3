"""`llm-bls-build --backend pytorch`: no engine build, the LLM-API `tensorrt_llm` model.

TensorRT-LLM's PyTorch backend loads the Hugging Face checkpoint (or a ModelOpt export of
it) when the server starts, so this build only checks the checkpoint and tokenizer (the
same checks as the engine path) and writes a repository whose `tensorrt_llm` model is
`llm_api_engine`'s Python model with its parameters filled. Tensor/pipeline parallelism
needs no launcher: one tritonserver, and the LLM API starts one worker per GPU itself.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from engine_build.options import (
    BuildError,
    BuildOptions,
    KvCacheQuantization,
    Quantization,
)

# Quantization algorithms of ModelOpt exports that TensorRT-LLM's PyTorch backend loads
# (hf_quant_config.json "quant_algo"); others are reported as found.
MODELOPT_QUANT_ALGOS = ("FP8", "FP8_BLOCK_SCALES", "NVFP4", "W4A16_AWQ", "W4A8_AWQ")


def llm_api_model_dir() -> Path:
    """The LLM-API model's directory (config.pbtxt, 1/model.py) in llm_api_engine."""
    spec = importlib.util.find_spec("llm_api_engine")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("the llm_api_engine package is not importable here")
    return Path(next(iter(spec.submodule_search_locations))) / "triton_model"


def validate_pytorch_options(options: BuildOptions) -> None:
    """What the engine path can do and this one cannot; raises BuildError."""
    if (
        options.quantization is not Quantization.NONE
        or options.kv_cache_quantization is not KvCacheQuantization.NONE
    ):
        raise BuildError(
            "--backend pytorch builds nothing, so it quantizes nothing: quantize with NVIDIA "
            "ModelOpt (FP8, NVFP4, INT4-AWQ) and pass the export as --checkpoint; its "
            "hf_quant_config.json is read at server start"
        )
    if options.lora is not None:
        raise BuildError("--backend pytorch: LoRA is not supported by the LLM-API model")
    if options.max_beam_width != 1:
        raise BuildError(
            f"--backend pytorch: max-beam-width must be 1 (got {options.max_beam_width}); "
            "the LLM-API model does greedy decoding and sampling"
        )


def checkpoint_quantization(checkpoint: Path) -> str:
    """The checkpoint's quantization as found on disk, for the plan ("none" if none)."""
    modelopt = Path(checkpoint) / "hf_quant_config.json"
    if modelopt.is_file():
        try:
            quantization = json.loads(modelopt.read_text(encoding="utf-8")).get("quantization", {})
        except json.JSONDecodeError as error:
            raise BuildError(f"{modelopt} is not valid JSON: {error}") from None
        algo = str(quantization.get("quant_algo") or "none")
        kv = quantization.get("kv_cache_quant_algo")
        note = "" if algo in MODELOPT_QUANT_ALGOS or algo == "none" else " (not a known algo)"
        kv_note = f", KV cache {kv}" if kv else ""
        return f"{algo}{kv_note} (ModelOpt export, hf_quant_config.json){note}"
    config_file = Path(checkpoint) / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return "none"
    method = (config.get("quantization_config") or {}).get("quant_method")
    return f"{method} (config.json quantization_config)" if method else "none"


def llm_api_parameters(options: BuildOptions) -> dict[str, str]:
    """The LLM-API model's config.pbtxt parameters for this build."""
    parameters = {
        "model_dir": str(Path(options.checkpoint).resolve()),
        "tensor_parallel_size": str(options.tp_size),
        "pipeline_parallel_size": str(options.pp_size),
        "dtype": options.dtype.value,
        "kv_cache_free_gpu_mem_fraction": str(options.kv_cache_free_gpu_mem_fraction),
        "enable_kv_cache_reuse": "true" if options.enable_kv_cache_reuse else "false",
        "enable_chunked_prefill": "true" if options.enable_chunked_context else "false",
        "max_batch_size": str(options.max_batch_size),
        "max_num_tokens": str(options.max_num_tokens),
        "max_seq_len": str(options.seq_len),
        "trust_remote_code": "true" if options.trust_remote_code else "false",
        # The BLS detokenizes only what was generated, so the prompt never comes back.
        "exclude_input_in_output": "true",
    }
    if options.guided_decoding:
        # The LLM API builds xgrammar's tokenizer information from the checkpoint's
        # tokenizer itself: no tokenizer-info file, unlike the C++ backend.
        parameters["guided_decoding_backend"] = "xgrammar"
    return parameters


def start_command(repository: Path, world_size: int) -> str:
    """How to start the server; the same for any tp x pp."""
    command = f"tritonserver --model-repository={repository} --disable-auto-complete-config"
    if world_size > 1:
        command += f"   (one process; the LLM API starts {world_size} GPU workers itself)"
    return command
