"""Which checkpoints the TensorRT-LLM conversion is known to handle, and how.

`engine_build.convert` calls `MODEL_MAP[architecture].from_hugging_face(hf_dir, dtype,
mapping=..., quant_config=..., trust_remote_code=...)` and `.quantize(hf_dir, output_dir,
dtype=..., mapping=..., quant_config=..., calib_dataset=..., calib_batches=...,
calib_max_seq_length=..., trust_remote_code=...)`. Not every `MODEL_MAP` class takes
those arguments (DeepseekV2ForCausalLM's `from_hugging_face` has no `quant_config` and
takes `hf_model`, `use_preloading`, ... instead), so the conversion is offered only for
the architectures below, whose classes' signatures were read in TensorRT-LLM's 0.2x
sources (tensorrt_llm/models/llama/model.py, qwen/model.py, phi3/model.py and
modeling_utils.py; see docs/production.md). Any other architecture is refused before
anything runs, with the list, instead of failing with a TypeError mid-build.

Everything here is checked with no GPU and no tensorrt_llm: `validate_conversion` runs
in `engine_build.executor.prepare` (and again in `engine_build.convert`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from engine_build.options import (
    BuildError,
    ConversionRoute,
    KvCacheQuantization,
    Quantization,
    conversion_route,
)


@dataclass(frozen=True)
class ModelClass:
    """A TensorRT-LLM model class whose conversion API was checked against its source."""

    name: str  # the class in tensorrt_llm.models
    source: str  # where its from_hugging_face / quantize are defined
    # Whether the class overrides `quantize` with its own (non-ModelOpt) calibration,
    # the only way TensorRT-LLM builds an int8 KV cache without AWQ/FP8 weights.
    own_int8_kv_calibration: bool


_LLAMA = ModelClass(
    "LLaMAForCausalLM", "tensorrt_llm/models/llama/model.py", own_int8_kv_calibration=True
)
_QWEN = ModelClass(
    "QWenForCausalLM", "tensorrt_llm/models/qwen/model.py", own_int8_kv_calibration=True
)
# Phi3ForCausalLM inherits PretrainedModel.quantize (ModelOpt only).
_PHI3 = ModelClass(
    "Phi3ForCausalLM", "tensorrt_llm/models/phi3/model.py", own_int8_kv_calibration=False
)

# config.json "architectures"[0] -> the class MODEL_MAP gives it (tensorrt_llm/models/
# __init__.py). Other names that MODEL_MAP sends to these classes (LLaVA, VILA, InternLM,
# Qwen2-VL, ...) take other loading paths inside the class and were not checked.
SUPPORTED_ARCHITECTURES: Mapping[str, ModelClass] = {
    "LlamaForCausalLM": _LLAMA,
    "MistralForCausalLM": _LLAMA,
    "MixtralForCausalLM": _LLAMA,
    "Qwen2ForCausalLM": _QWEN,
    "Qwen2MoeForCausalLM": _QWEN,
    "Phi3ForCausalLM": _PHI3,
}


def model_class_for(architecture: str) -> ModelClass:
    """The checked model class of `architecture`; BuildError for any other."""
    try:
        return SUPPORTED_ARCHITECTURES[architecture]
    except KeyError:
        raise BuildError(
            f"architecture {architecture!r} (the checkpoint's config.json) is not supported "
            "by the TensorRT-LLM conversion of llm-bls-build: its model class was not "
            "checked to take from_hugging_face(dir, dtype, mapping=, quant_config=); "
            f"supported: {', '.join(sorted(SUPPORTED_ARCHITECTURES))}. "
            "--engine reference serves any causal LM without conversion"
        ) from None


def validate_conversion(
    architecture: str,
    quantization: Quantization,
    kv_cache: KvCacheQuantization,
    *,
    trust_remote_code: bool,
    has_custom_code: bool,
) -> ModelClass:
    """Refuse a conversion TensorRT-LLM would fail (or run unsafely) part way through."""
    model_class = model_class_for(architecture)
    route = conversion_route(quantization, kv_cache)
    if route is ConversionRoute.CLASS_CALIBRATION and not model_class.own_int8_kv_calibration:
        raise BuildError(
            f"--kv-cache-quantization {kv_cache.value} with "
            f"--quantization {quantization.value}: TensorRT-LLM builds an int8 KV "
            "cache without ModelOpt only through a model class's own calibration, and "
            f"{model_class.name} ({architecture}) has none (PretrainedModel.quantize refuses "
            "it). Use --kv-cache-quantization fp8, or int8 with --quantization fp8 or "
            "int4_awq (ModelOpt calibrates those)"
        )
    if route.calibrates and has_custom_code and not trust_remote_code:
        # ModelOpt's loaders (get_model/get_tokenizer in tensorrt_llm/quantization/
        # quantize_by_modelopt.py) and the classes' own calibration load the checkpoint
        # with trust_remote_code=True whatever is passed: its Python code would run.
        raise BuildError(
            f"the checkpoint ships its own Python code (config.json auto_map) and "
            f"--quantization {quantization.value} / --kv-cache-quantization "
            f"{kv_cache.value} calibrates the model, which TensorRT-LLM "
            "does with trust_remote_code=True: pass --trust-remote-code if you trust that "
            "code, or build without calibration"
        )
    return model_class
