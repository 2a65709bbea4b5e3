"""`llm-bls-build` / `build_engines.py`: a Hugging Face checkpoint to a served repository.

llm-bls-build --checkpoint HF_DIR --output-dir OUT                  # build, fill, check
llm-bls-build --checkpoint HF_DIR --output-dir OUT --dry-run        # plan + repository
llm-bls-build --checkpoint HF_DIR --output-dir OUT --engine reference   # no GPU
llm-bls-build --checkpoint HF_DIR --output-dir OUT --tp-size 2 --quantization fp8
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine_build.executor import run_build
from engine_build.options import (
    DEFAULT_LORA_MODULES,
    LORA_MODULES,
    BuildError,
    BuildOptions,
    DType,
    EngineKind,
    KvCacheQuantization,
    LoraOptions,
    Quantization,
    SchedulerPolicy,
    ServerPorts,
)
from engine_build.versions import CONTAINER_IMAGE

_DEFAULTS = BuildOptions(checkpoint=Path("."), output_dir=Path("."))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llm-bls-build",
        description=(
            "From a Hugging Face checkpoint to a TensorRT-LLM engine and a finished, checked "
            f"Triton model repository. Real builds run inside {CONTAINER_IMAGE}."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    where = parser.add_argument_group("input and output")
    where.add_argument("--checkpoint", type=Path, required=True, help="Hugging Face model dir")
    where.add_argument("--output-dir", type=Path, required=True, help="where everything goes")
    where.add_argument("--tokenizer-dir", type=Path, help="default: the checkpoint")
    where.add_argument(
        "--backend",
        choices=["tensorrt", "pytorch"],
        default="tensorrt",
        help="TensorRT-LLM's backend: tensorrt builds an engine for the C++ Triton backend "
        "(TensorRT-LLM up to 1.x); pytorch builds nothing and serves the checkpoint with "
        "the LLM API (PyTorch backend) under this project's tensorrt_llm Python model",
    )
    where.add_argument(
        "--engine",
        choices=[EngineKind.TENSORRT_LLM.value, EngineKind.REFERENCE.value],
        default=EngineKind.TENSORRT_LLM.value,
        help="tensorrt_llm: build an engine for the C++ backend; reference: serve the "
        "checkpoint with this project's Python engine (no GPU, no build)",
    )
    where.add_argument(
        "--dry-run",
        action="store_true",
        help="print every step with its arguments and write the repository, without "
        "converting or building (runs without a GPU or tensorrt_llm)",
    )
    where.add_argument(
        "--deploy-root",
        type=Path,
        help="the path at which the server will see --output-dir (e.g. a container mount); "
        "paths in the configs start there (default: --output-dir's absolute path)",
    )
    where.add_argument(
        "--template-repository",
        type=Path,
        help="the model_repository/ to start from (default: this checkout's)",
    )
    where.add_argument("--overwrite", action="store_true", help="replace earlier outputs in OUT")

    model = parser.add_argument_group("engine")
    model.add_argument("--dtype", choices=[d.value for d in DType], default=_DEFAULTS.dtype.value)
    model.add_argument(
        "--quantization",
        choices=[q.value for q in Quantization],
        default=Quantization.NONE.value,
        help="int8_wo: int8 weight-only; int4_awq and fp8 calibrate with NVIDIA ModelOpt",
    )
    model.add_argument(
        "--kv-cache-quantization",
        choices=[q.value for q in KvCacheQuantization],
        default=KvCacheQuantization.NONE.value,
        help="calibrated: fp8 by ModelOpt; int8 by ModelOpt with int4_awq/fp8 weights, "
        "else by the model class's own quantize (see docs/production.md)",
    )
    model.add_argument(
        "--calib-dataset",
        default=_DEFAULTS.calib_dataset,
        help="calibration data: a dataset name (downloaded) or a local path",
    )
    model.add_argument("--calib-size", type=int, default=_DEFAULTS.calib_size)
    model.add_argument("--awq-block-size", type=int, default=_DEFAULTS.awq_block_size)
    model.add_argument("--tp-size", type=int, default=1, help="tensor parallelism")
    model.add_argument("--pp-size", type=int, default=1, help="pipeline parallelism")
    model.add_argument("--moe-tp-size", type=int, help="expert tensor parallelism (MoE)")
    model.add_argument("--moe-ep-size", type=int, help="expert parallelism (MoE)")
    model.add_argument(
        "--gpus",
        type=int,
        help="GPUs of the serving machine (default: counted here; tp*pp with --dry-run)",
    )
    model.add_argument("--max-batch-size", type=int, default=_DEFAULTS.max_batch_size)
    model.add_argument(
        "--max-input-len",
        type=int,
        help="longest prompt (default: 2048, or half of max-seq-len when that is shorter)",
    )
    model.add_argument(
        "--max-seq-len",
        type=int,
        help="prompt + generated tokens of one request (default: the checkpoint's "
        "max_position_embeddings, else 4096)",
    )
    model.add_argument("--max-num-tokens", type=int, default=_DEFAULTS.max_num_tokens)
    model.add_argument("--max-beam-width", type=int, default=_DEFAULTS.max_beam_width)
    model.add_argument("--build-workers", type=int, default=1, help="trtllm-build --workers")
    model.add_argument("--trust-remote-code", action="store_true")

    lora = parser.add_argument_group("LoRA")
    lora.add_argument("--lora", action="store_true", help="build a LoRA-enabled engine")
    lora.add_argument("--max-lora-rank", type=int, default=64)
    lora.add_argument(
        "--lora-target-modules",
        nargs="+",
        choices=LORA_MODULES,
        default=list(DEFAULT_LORA_MODULES),
        metavar="MODULE",
    )
    lora.add_argument("--lora-dir", type=Path, nargs="+", default=[], help="adapters to read")
    lora.add_argument("--lora-cache-gpu-memory-fraction", type=float, default=0.05)
    lora.add_argument("--lora-cache-host-memory-bytes", type=int, default=1 << 30)

    serving = parser.add_argument_group("serving")
    serving.add_argument(
        "--kv-cache-free-gpu-mem-fraction",
        type=float,
        default=_DEFAULTS.kv_cache_free_gpu_mem_fraction,
    )
    serving.add_argument(
        "--guided-decoding",
        action="store_true",
        help="structured output: switch the engine's guided decoding on "
        "(guided_decoding_guide_type / guided_decoding_guide inputs); the C++ backend also "
        "gets xgrammar_tokenizer_info.json",
    )
    serving.add_argument("--enable-kv-cache-reuse", action="store_true")
    serving.add_argument("--enable-chunked-context", action="store_true")
    serving.add_argument(
        "--batch-scheduler-policy",
        choices=[p.value for p in SchedulerPolicy],
        default=SchedulerPolicy.GUARANTEED_NO_EVICT.value,
    )
    serving.add_argument("--preprocessing-instances", type=int, help="default: as shipped")
    serving.add_argument("--postprocessing-instances", type=int, help="default: as shipped")
    serving.add_argument("--bls-instances", type=int, help="default: as shipped")
    serving.add_argument("--http-port", type=int, default=8000)
    serving.add_argument("--grpc-port", type=int, default=8001)
    serving.add_argument("--metrics-port", type=int, default=8002)
    return parser


def options_from_args(args: argparse.Namespace) -> BuildOptions:
    lora = None
    if args.lora:
        lora = LoraOptions(
            max_rank=args.max_lora_rank,
            target_modules=tuple(args.lora_target_modules),
            adapter_dirs=tuple(args.lora_dir),
            cache_gpu_memory_fraction=args.lora_cache_gpu_memory_fraction,
            cache_host_memory_bytes=args.lora_cache_host_memory_bytes,
        )
    elif args.lora_dir:
        raise BuildError("--lora-dir needs --lora (a LoRA-enabled engine)")
    engine = EngineKind(args.engine)
    if args.backend == "pytorch":
        if engine is EngineKind.REFERENCE:
            raise BuildError("--backend pytorch and --engine reference exclude each other")
        engine = EngineKind.PYTORCH
    return BuildOptions(
        checkpoint=args.checkpoint,
        output_dir=args.output_dir,
        tokenizer_dir=args.tokenizer_dir,
        engine=engine,
        dry_run=args.dry_run,
        dtype=DType(args.dtype),
        quantization=Quantization(args.quantization),
        kv_cache_quantization=KvCacheQuantization(args.kv_cache_quantization),
        calib_dataset=args.calib_dataset,
        calib_size=args.calib_size,
        awq_block_size=args.awq_block_size,
        tp_size=args.tp_size,
        pp_size=args.pp_size,
        moe_tp_size=args.moe_tp_size,
        moe_ep_size=args.moe_ep_size,
        gpus=args.gpus,
        max_batch_size=args.max_batch_size,
        max_input_len=args.max_input_len,
        max_seq_len=args.max_seq_len,
        max_num_tokens=args.max_num_tokens,
        max_beam_width=args.max_beam_width,
        lora=lora,
        kv_cache_free_gpu_mem_fraction=args.kv_cache_free_gpu_mem_fraction,
        enable_kv_cache_reuse=args.enable_kv_cache_reuse,
        enable_chunked_context=args.enable_chunked_context,
        batch_scheduler_policy=SchedulerPolicy(args.batch_scheduler_policy),
        guided_decoding=args.guided_decoding,
        preprocessing_instances=args.preprocessing_instances,
        postprocessing_instances=args.postprocessing_instances,
        bls_instances=args.bls_instances,
        deploy_root=args.deploy_root,
        ports=ServerPorts(http=args.http_port, grpc=args.grpc_port, metrics=args.metrics_port),
        build_workers=args.build_workers,
        trust_remote_code=args.trust_remote_code,
        overwrite=args.overwrite,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        options = options_from_args(args)
        run_build(options, templates=args.template_repository)
    except BuildError as error:
        print(f"llm-bls-build: error: {error}", file=sys.stderr)
        return 2
    return 0
