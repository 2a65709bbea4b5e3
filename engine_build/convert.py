"""Hugging Face checkpoint -> TensorRT-LLM checkpoint, with the wheel's documented API.

Run as a step of the build (`python -m engine_build.convert ...`, see
`engine_build.steps.convert_step`), in its own process so the GPU memory the conversion
takes is returned before `trtllm-build` starts.

Two calls, as TensorRT-LLM documents them (docs/source/architecture/workflow.md), picked
by `engine_build.options.conversion_route`:
- no quantization or int8 weight-only (W8A16): for every rank,
  `cls.from_hugging_face(hf_dir, dtype, mapping=Mapping(...), quant_config=...)` then
  `.save_checkpoint(output_dir, save_config=(rank == 0))`;
- AWQ, FP8 or a quantized KV cache: `cls.quantize(hf_dir, output_dir, dtype, mapping,
  quant_config, calib_dataset=...)`, which calibrates and writes every rank itself:
  with NVIDIA ModelOpt (AWQ, FP8, fp8 KV cache), or, for an int8 KV cache without
  AWQ/FP8 weights, with the model class's own calibration.
`cls` is `tensorrt_llm.models.MODEL_MAP[architecture]`, the architecture being the first
entry of the checkpoint's config.json "architectures", and only for the architectures
in `engine_build.model_support`.

Both calls get `trust_remote_code` explicitly: TensorRT-LLM's config loaders default it
to True (`LLaMAConfig.from_hugging_face` pops it with default True), so leaving it out
would run a checkpoint's own code without the user's --trust-remote-code.

Not run on these machines (no GPU, no tensorrt_llm wheel): see docs/production.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from engine_build.model_support import validate_conversion
from engine_build.options import (
    BuildError,
    ConversionRoute,
    KvCacheQuantization,
    Quantization,
    conversion_route,
)
from engine_build.versions import TENSORRT_LLM_MISSING


class ConversionError(RuntimeError):
    pass


def require_tensorrt_llm():
    """Import tensorrt_llm or fail with the one message users need."""
    try:
        import tensorrt_llm
    except ImportError as error:
        raise ConversionError(f"{TENSORRT_LLM_MISSING} ({error})") from None
    return tensorrt_llm


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m engine_build.convert")
    parser.add_argument("--hf-dir", type=Path, required=True)
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--dtype", choices=("float16", "bfloat16"), required=True)
    parser.add_argument("--tp-size", type=int, default=1)
    parser.add_argument("--pp-size", type=int, default=1)
    parser.add_argument("--moe-tp-size", type=int, default=None)
    parser.add_argument("--moe-ep-size", type=int, default=None)
    parser.add_argument("--quant-algo", choices=("W8A16", "W4A16_AWQ", "FP8"), default=None)
    parser.add_argument("--kv-cache-quant-algo", choices=("FP8", "INT8"), default=None)
    parser.add_argument("--awq-block-size", type=int, default=128)
    parser.add_argument("--calib-dataset", default="cnn_dailymail")
    parser.add_argument("--calib-size", type=int, default=512)
    parser.add_argument("--calib-max-seq-length", type=int, default=512)
    parser.add_argument("--trust-remote-code", action="store_true")
    return parser.parse_args(argv)


def read_config(hf_dir: Path) -> dict:
    return json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))


def architecture_of(config: dict, hf_dir: Path) -> str:
    architectures = config.get("architectures") or []
    if not architectures:
        raise ConversionError(f"{hf_dir}/config.json names no architecture")
    return str(architectures[0])


def quantization_of(args: argparse.Namespace) -> tuple[Quantization, KvCacheQuantization]:
    """The build's quantization back from TensorRT-LLM's algorithm names."""
    weights = next(q for q in Quantization if q.quant_algo == args.quant_algo)
    kv_cache = next(q for q in KvCacheQuantization if q.quant_algo == args.kv_cache_quant_algo)
    return weights, kv_cache


def model_class(architecture: str):
    from tensorrt_llm.models import MODEL_MAP

    try:
        return MODEL_MAP[architecture]
    except KeyError:
        raise ConversionError(
            f"this tensorrt_llm has no model class for architecture {architecture!r} "
            "(tensorrt_llm.models.MODEL_MAP)"
        ) from None


def quant_config(args: argparse.Namespace):
    from tensorrt_llm.models.modeling_utils import QuantConfig
    from tensorrt_llm.quantization import QuantAlgo

    config = QuantConfig()
    if args.quant_algo is not None:
        config.quant_algo = QuantAlgo[args.quant_algo]
    if args.kv_cache_quant_algo is not None:
        config.kv_cache_quant_algo = QuantAlgo[args.kv_cache_quant_algo]
    if args.quant_algo == "W4A16_AWQ":
        config.group_size = args.awq_block_size
    return config


def mapping_for(args: argparse.Namespace, rank: int):
    from tensorrt_llm import Mapping

    world_size = args.tp_size * args.pp_size
    return Mapping(
        world_size=world_size,
        rank=rank,
        tp_size=args.tp_size,
        pp_size=args.pp_size,
        moe_tp_size=args.moe_tp_size if args.moe_tp_size is not None else args.tp_size,
        moe_ep_size=args.moe_ep_size if args.moe_ep_size is not None else 1,
    )


_CALIBRATION = {
    ConversionRoute.MODELOPT: "NVIDIA ModelOpt",
    ConversionRoute.CLASS_CALIBRATION: "the model class's own calibration",
}


def convert(args: argparse.Namespace) -> None:
    require_tensorrt_llm()
    config = read_config(args.hf_dir)
    architecture = architecture_of(config, args.hf_dir)
    weights, kv_cache = quantization_of(args)
    try:
        validate_conversion(
            architecture,
            weights,
            kv_cache,
            trust_remote_code=args.trust_remote_code,
            has_custom_code=bool(config.get("auto_map")),
        )
    except BuildError as error:
        raise ConversionError(str(error)) from None
    cls = model_class(architecture)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    world_size = args.tp_size * args.pp_size
    started = time.monotonic()
    route = conversion_route(weights, kv_cache)
    if route.calibrates:
        print(
            f"quantizing {architecture} with {_CALIBRATION[route]} "
            f"({args.quant_algo or 'no weight quant'}, kv cache "
            f"{args.kv_cache_quant_algo or 'unquantized'}) on "
            f"{args.calib_size} samples of {args.calib_dataset}",
            flush=True,
        )
        cls.quantize(
            str(args.hf_dir),
            str(args.output_dir),
            dtype=args.dtype,
            mapping=mapping_for(args, 0),
            quant_config=quant_config(args),
            calib_dataset=args.calib_dataset,
            calib_batches=args.calib_size,
            calib_max_seq_length=args.calib_max_seq_length,
            trust_remote_code=args.trust_remote_code,
        )
    else:
        for rank in range(world_size):
            print(f"converting rank {rank + 1}/{world_size} of {architecture}", flush=True)
            model = cls.from_hugging_face(
                str(args.hf_dir),
                args.dtype,
                mapping=mapping_for(args, rank),
                quant_config=quant_config(args),
                trust_remote_code=args.trust_remote_code,
            )
            model.save_checkpoint(str(args.output_dir), save_config=(rank == 0))
            del model
            print(
                f"rank {rank + 1}/{world_size} written ({time.monotonic() - started:.0f} s)",
                flush=True,
            )
    if not (args.output_dir / "config.json").is_file():
        raise ConversionError(f"conversion wrote no {args.output_dir}/config.json")


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    try:
        convert(args)
    except ConversionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
