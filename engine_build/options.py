"""What a build is asked to do: typed options and the checks that refuse impossible ones.

`BuildOptions` is the single input of the planner (`engine_build.steps.plan_build`), so a
test can state a build as plain values and look at the steps it turns into. Every check
that needs no file system and no GPU lives here and raises `BuildError` with a message
that names the option and the limit.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from pathlib import Path


class BuildError(ValueError):
    """A build that cannot be done as asked; the message says which option and why."""


class EngineKind(str, enum.Enum):
    # The C++ `tensorrtllm` backend on an engine built here with TensorRT-LLM.
    TENSORRT_LLM = "tensorrt_llm"
    # This project's Python stand-in on the Hugging Face checkpoint (no GPU needed).
    REFERENCE = "reference"
    # No build: TensorRT-LLM's LLM API (PyTorch backend) under llm_api_engine's Python
    # model loads the checkpoint at server start (`--backend pytorch`).
    PYTORCH = "pytorch"


class DType(str, enum.Enum):
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"


class Quantization(str, enum.Enum):
    """Weight quantization, by the names users know; `quant_algo` is TensorRT-LLM's name."""

    NONE = "none"
    INT8_WEIGHT_ONLY = "int8_wo"
    INT4_AWQ = "int4_awq"
    FP8 = "fp8"

    @property
    def quant_algo(self) -> str | None:
        return _QUANT_ALGO[self]

    @property
    def needs_calibration(self) -> bool:
        # AWQ and FP8 come from NVIDIA ModelOpt, which runs the model on calibration
        # data; int8 weight-only is computed from the weights alone.
        return self in (Quantization.INT4_AWQ, Quantization.FP8)


_QUANT_ALGO: dict[Quantization, str | None] = {
    Quantization.NONE: None,
    Quantization.INT8_WEIGHT_ONLY: "W8A16",
    Quantization.INT4_AWQ: "W4A16_AWQ",
    Quantization.FP8: "FP8",
}


class KvCacheQuantization(str, enum.Enum):
    NONE = "none"
    FP8 = "fp8"
    INT8 = "int8"

    @property
    def quant_algo(self) -> str | None:
        return None if self is KvCacheQuantization.NONE else self.value.upper()


class ConversionRoute(str, enum.Enum):
    """How TensorRT-LLM turns the Hugging Face checkpoint into its own, by quantization.

    Decided as TensorRT-LLM's `QuantConfig` decides it (`_requires_modelopt_quantization`
    and `_requires_calibration` in tensorrt_llm/models/modeling_utils.py, 0.2x sources).
    """

    # `from_hugging_face(...)` then `save_checkpoint(...)` for each rank: no calibration.
    PER_RANK = "per_rank"
    # `PretrainedModel.quantize(...)`: NVIDIA ModelOpt calibrates and writes every rank.
    MODELOPT = "modelopt"
    # An int8 KV cache without ModelOpt weight quantization: the base `quantize` refuses it
    # ("should not call modelopt quantization"); only model classes that override
    # `quantize` with their own calibration (SmoothQuant-style activation ranges) do it.
    CLASS_CALIBRATION = "class_calibration"

    @property
    def calibrates(self) -> bool:
        return self is not ConversionRoute.PER_RANK


def conversion_route(quantization: Quantization, kv_cache: KvCacheQuantization) -> ConversionRoute:
    if quantization.needs_calibration:
        # ModelOpt quantizes AWQ/FP8 weights and any KV cache (fp8 or int8) together.
        return ConversionRoute.MODELOPT
    if kv_cache is KvCacheQuantization.FP8 and quantization is Quantization.NONE:
        return ConversionRoute.MODELOPT
    if kv_cache is not KvCacheQuantization.NONE:
        # int8 KV (none or int8_wo weights); fp8 KV with int8_wo is refused in validation.
        return ConversionRoute.CLASS_CALIBRATION
    return ConversionRoute.PER_RANK


class SchedulerPolicy(str, enum.Enum):
    GUARANTEED_NO_EVICT = "guaranteed_no_evict"
    MAX_UTILIZATION = "max_utilization"


# LoRA target modules as TensorRT-LLM names them (trtllm-build --lora_target_modules).
LORA_MODULES: tuple[str, ...] = (
    "attn_qkv",
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_dense",
    "mlp_h_to_4h",
    "mlp_4h_to_h",
    "mlp_gate",
    "cross_attn_qkv",
    "cross_attn_q",
    "cross_attn_k",
    "cross_attn_v",
    "cross_attn_dense",
    "moe_h_to_4h",
    "moe_4h_to_h",
    "moe_gate",
    "moe_router",
    "mlp_router",
)
DEFAULT_LORA_MODULES: tuple[str, ...] = (
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_dense",
    "mlp_h_to_4h",
    "mlp_4h_to_h",
    "mlp_gate",
)


@dataclass(frozen=True)
class LoraOptions:
    """A LoRA-enabled engine: the lora plugin, its rank limit and the modules it adapts."""

    max_rank: int = 64
    target_modules: tuple[str, ...] = DEFAULT_LORA_MODULES
    # Adapters whose config.json trtllm-build reads (optional; adapters can come per request).
    adapter_dirs: tuple[Path, ...] = ()
    # Backend LoRA cache (the C++ backend's lora_cache_* parameters).
    cache_gpu_memory_fraction: float = 0.05
    cache_host_memory_bytes: int = 1 << 30
    cache_optimal_adapter_size: int = 8


@dataclass(frozen=True)
class ServerPorts:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002


@dataclass(frozen=True)
class BuildOptions:
    checkpoint: Path
    output_dir: Path
    tokenizer_dir: Path | None = None  # default: the checkpoint
    engine: EngineKind = EngineKind.TENSORRT_LLM
    dry_run: bool = False
    dtype: DType = DType.FLOAT16
    quantization: Quantization = Quantization.NONE
    kv_cache_quantization: KvCacheQuantization = KvCacheQuantization.NONE
    calib_dataset: str = "cnn_dailymail"
    calib_size: int = 512
    awq_block_size: int = 128
    tp_size: int = 1
    pp_size: int = 1
    moe_tp_size: int | None = None  # default: tp_size (no expert parallelism)
    moe_ep_size: int | None = None  # default: tp_size // moe_tp_size
    gpus: int | None = None  # GPUs of the serving machine; None: count them (or tp*pp dry)
    max_batch_size: int = 64
    # None: from the checkpoint (see resolve_lengths).
    max_input_len: int | None = None
    max_seq_len: int | None = None
    max_num_tokens: int = 8192
    max_beam_width: int = 1
    lora: LoraOptions | None = None
    kv_cache_free_gpu_mem_fraction: float = 0.9
    enable_kv_cache_reuse: bool = False
    enable_chunked_context: bool = False
    batch_scheduler_policy: SchedulerPolicy = SchedulerPolicy.GUARANTEED_NO_EVICT
    # Structured output: write xgrammar's tokenizer info and switch the C++ backend's
    # guided decoding on (guided_decoding_backend, xgrammar_tokenizer_info_path); with
    # --backend pytorch, only the LLM-API model's guided_decoding_backend.
    guided_decoding: bool = False
    preprocessing_instances: int | None = None  # None: keep the shipped count
    postprocessing_instances: int | None = None
    bls_instances: int | None = None
    # Where the server will see --output-dir (e.g. a container mount); paths written
    # into the configs start here. None: the output directory's absolute path.
    deploy_root: Path | None = None
    ports: ServerPorts = field(default_factory=ServerPorts)
    build_workers: int = 1
    trust_remote_code: bool = False
    overwrite: bool = False

    @property
    def world_size(self) -> int:
        return self.tp_size * self.pp_size

    @property
    def conversion_route(self) -> ConversionRoute:
        return conversion_route(self.quantization, self.kv_cache_quantization)

    @property
    def resolved_moe_tp_size(self) -> int:
        if self.moe_tp_size is not None:
            return self.moe_tp_size
        if self.moe_ep_size is not None:
            return self.tp_size // self.moe_ep_size
        return self.tp_size

    @property
    def resolved_moe_ep_size(self) -> int:
        if self.moe_ep_size is not None:
            return self.moe_ep_size
        return self.tp_size // self.resolved_moe_tp_size

    @property
    def resolved_tokenizer_dir(self) -> Path:
        return self.tokenizer_dir if self.tokenizer_dir is not None else self.checkpoint

    @property
    def resolved_deploy_root(self) -> Path:
        if self.deploy_root is not None:
            return self.deploy_root
        return self.output_dir.resolve()

    @property
    def input_len(self) -> int:
        if self.max_input_len is None:
            raise BuildError("max_input_len is not resolved yet (call resolve_lengths)")
        return self.max_input_len

    @property
    def seq_len(self) -> int:
        if self.max_seq_len is None:
            raise BuildError("max_seq_len is not resolved yet (call resolve_lengths)")
        return self.max_seq_len

    @property
    def max_output_len(self) -> int:
        # The BLS knows the prompt limit and an output cap, not max_seq_len; with this
        # cap every request it admits fits in the engine's max_seq_len.
        return self.seq_len - self.input_len


DEFAULT_MAX_SEQ_LEN = 4096
DEFAULT_MAX_INPUT_LEN = 2048


def resolve_lengths(options: BuildOptions, max_position_embeddings: int | None) -> BuildOptions:
    """Fill unset lengths as trtllm-build does: max_seq_len from the checkpoint's
    max_position_embeddings (else 4096); max_input_len 2048, or half of max_seq_len when
    that is shorter, so room is left to generate."""
    seq_len = options.max_seq_len
    if seq_len is None:
        seq_len = max_position_embeddings or DEFAULT_MAX_SEQ_LEN
    input_len = options.max_input_len
    if input_len is None:
        input_len = min(DEFAULT_MAX_INPUT_LEN, max(1, seq_len // 2))
    return dataclasses.replace(options, max_seq_len=seq_len, max_input_len=input_len)


def _positive(name: str, value: int) -> None:
    if value < 1:
        raise BuildError(f"{name} must be at least 1, got {value}")


def validate_options(options: BuildOptions, max_position_embeddings: int | None = None) -> None:
    """Refuse option combinations no engine or server could honour (lengths resolved)."""
    if options.max_input_len is None or options.max_seq_len is None:
        raise BuildError("max_input_len/max_seq_len are not resolved (call resolve_lengths)")
    for name in (
        "tp_size",
        "pp_size",
        "max_batch_size",
        "max_input_len",
        "max_seq_len",
        "max_num_tokens",
        "max_beam_width",
        "calib_size",
        "build_workers",
    ):
        _positive(name.replace("_", "-"), getattr(options, name))
    if options.max_input_len >= options.max_seq_len:
        raise BuildError(
            f"max-input-len ({options.max_input_len}) must be below max-seq-len "
            f"({options.max_seq_len}): max-seq-len counts the prompt plus the generated "
            "tokens, so no room would be left to generate"
        )
    if options.max_num_tokens < options.max_input_len and not options.enable_chunked_context:
        raise BuildError(
            f"max-num-tokens ({options.max_num_tokens}) is below max-input-len "
            f"({options.max_input_len}): a full-length prompt would not fit in one engine "
            "step; raise --max-num-tokens or pass --enable-chunked-context"
        )
    if not 0.0 < options.kv_cache_free_gpu_mem_fraction <= 1.0:
        raise BuildError(
            "kv-cache-free-gpu-mem-fraction must be in (0, 1], got "
            f"{options.kv_cache_free_gpu_mem_fraction}"
        )
    _validate_moe(options)
    _validate_quantization(options)
    if options.lora is not None:
        _validate_lora(options.lora)
    for name in ("preprocessing_instances", "postprocessing_instances", "bls_instances"):
        value = getattr(options, name)
        if value is not None:
            _positive(name.replace("_", "-"), value)
    if options.engine is EngineKind.REFERENCE:
        _validate_reference(options, max_position_embeddings)
    else:
        _validate_gpus(options)


def _validate_moe(options: BuildOptions) -> None:
    if options.moe_tp_size is not None:
        _positive("moe-tp-size", options.moe_tp_size)
    if options.moe_ep_size is not None:
        _positive("moe-ep-size", options.moe_ep_size)
    moe_tp, moe_ep = options.resolved_moe_tp_size, options.resolved_moe_ep_size
    # TensorRT-LLM splits the tensor-parallel ranks between expert-tensor and expert
    # parallelism: their product must be tp_size.
    if moe_tp < 1 or moe_ep < 1 or moe_tp * moe_ep != options.tp_size:
        raise BuildError(
            f"moe-tp-size × moe-ep-size must equal tp-size ({options.tp_size}); got "
            f"moe-tp-size {options.moe_tp_size or moe_tp} and moe-ep-size "
            f"{options.moe_ep_size or moe_ep}"
        )


def _validate_quantization(options: BuildOptions) -> None:
    if options.quantization is Quantization.INT4_AWQ and options.awq_block_size not in (
        64,
        128,
    ):
        raise BuildError(f"awq-block-size must be 64 or 128, got {options.awq_block_size}")
    if (
        options.kv_cache_quantization is KvCacheQuantization.FP8
        and options.quantization is Quantization.INT8_WEIGHT_ONLY
    ):
        raise BuildError(
            "kv-cache-quantization fp8 needs ModelOpt calibration, which int8_wo does not "
            "run; use --quantization fp8 or int4_awq with it"
        )
    # PretrainedModel.quantize raises "Quantization for expert parallelism is not
    # supported" for moe_ep_size > 1, whatever is quantized: AWQ/FP8 weights or only the
    # KV cache (tensorrt_llm/models/modeling_utils.py, 0.2x sources).
    if options.conversion_route is ConversionRoute.MODELOPT and options.resolved_moe_ep_size > 1:
        raise BuildError(
            f"--quantization {options.quantization.value} / --kv-cache-quantization "
            f"{options.kv_cache_quantization.value} is calibrated by NVIDIA ModelOpt, which "
            "TensorRT-LLM cannot run under expert parallelism (moe-ep-size "
            f"{options.resolved_moe_ep_size}); use moe-tp-size = tp-size (moe-ep-size 1)"
        )


def _validate_lora(lora: LoraOptions) -> None:
    _positive("max-lora-rank", lora.max_rank)
    if not lora.target_modules:
        raise BuildError("lora-target-modules is empty: name at least one module")
    unknown = sorted(set(lora.target_modules) - set(LORA_MODULES))
    if unknown:
        raise BuildError(
            f"lora-target-modules: unknown module(s) {unknown}; known: {list(LORA_MODULES)}"
        )
    if not 0.0 < lora.cache_gpu_memory_fraction < 1.0:
        raise BuildError(
            "lora-cache-gpu-memory-fraction must be in (0, 1), got "
            f"{lora.cache_gpu_memory_fraction}"
        )


def _validate_reference(options: BuildOptions, max_position_embeddings: int | None) -> None:
    # The reference engine is one Python process on one device: nothing to split.
    if options.world_size != 1:
        raise BuildError(
            f"--engine reference runs on one device; tp-size × pp-size must be 1, got "
            f"{options.tp_size} × {options.pp_size}"
        )
    if options.quantization is not Quantization.NONE or options.lora is not None:
        raise BuildError(
            "--engine reference serves the checkpoint as it is: --quantization and LoRA "
            "apply to TensorRT-LLM engines only"
        )
    # The Hugging Face model has position embeddings for this many tokens and no more.
    if max_position_embeddings is not None and options.seq_len > max_position_embeddings:
        raise BuildError(
            f"max-seq-len ({options.seq_len}) exceeds the checkpoint's "
            f"max_position_embeddings ({max_position_embeddings}), the longest sequence "
            "the reference engine can run"
        )


def _validate_gpus(options: BuildOptions) -> None:
    if options.gpus is None:
        return
    if options.gpus < options.world_size:
        raise BuildError(
            f"tp-size × pp-size = {options.tp_size} × {options.pp_size} = "
            f"{options.world_size} ranks need {options.world_size} GPUs (one per rank), "
            f"but {options.gpus} GPU(s) are available (--gpus or the GPUs counted here)"
        )
