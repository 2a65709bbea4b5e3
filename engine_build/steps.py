"""The build as a list of steps, planned from the options alone.

`plan_build` is pure: it decides every command line and every value before anything
runs, which is what --dry-run prints and what the unit tests check. The executor
(`engine_build.executor`) then runs the steps in order.

The TensorRT-LLM side uses only what the `tensorrt_llm` wheel itself provides:
- checkpoint conversion through its Python API (run as `python -m engine_build.convert`,
  see that module), and
- the engine build through the wheel's `trtllm-build` command.
"""

from __future__ import annotations

import enum
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from engine_build.checkpoint import CheckpointInfo
from engine_build.layout import OutputLayout
from engine_build.options import BuildOptions, ConversionRoute, EngineKind, resolve_lengths
from engine_build.pytorch_backend import checkpoint_quantization
from engine_build.values import flatten_edits, repository_edits


class StepKind(str, enum.Enum):
    # A command of the TensorRT-LLM toolchain: needs the wheel and a GPU; --dry-run
    # prints it and does not run it.
    EXTERNAL = "external"
    # File work done by this tool itself; runs in --dry-run too.
    LOCAL = "local"


@dataclass(frozen=True)
class BuildStep:
    name: str
    summary: str  # one line for people
    kind: StepKind
    command: tuple[str, ...] = ()  # EXTERNAL: the argv to run
    arguments: Mapping[str, str] = field(default_factory=dict)  # what the step uses

    def render(self) -> str:
        """The step as --dry-run prints it."""
        lines = [f"{self.name}: {self.summary}"]
        if self.command:
            lines.append("  $ " + shlex.join(self.command))
        for key, value in self.arguments.items():
            lines.append(f"  {key} = {value}")
        return "\n".join(lines)


# Steps, by name.
CONVERT_CHECKPOINT = "convert_checkpoint"
BUILD_ENGINE = "build_engine"
COPY_TOKENIZER = "copy_tokenizer"
WRITE_TOKENIZER_INFO = "write_xgrammar_tokenizer_info"
WRITE_REPOSITORY = "write_repository"
COPY_PACKAGES = "copy_packages"
WRITE_LAUNCH_SCRIPTS = "write_launch_scripts"
VERIFY = "verify"


def layout_for(options: BuildOptions) -> OutputLayout:
    return OutputLayout(root=options.output_dir.resolve(), deploy_root=options.resolved_deploy_root)


def plan_build(options: BuildOptions, checkpoint: CheckpointInfo) -> list[BuildStep]:
    options = resolve_lengths(options, checkpoint.max_position_embeddings)
    layout = layout_for(options)
    steps: list[BuildStep] = []
    if options.engine is EngineKind.TENSORRT_LLM:
        steps.append(convert_step(options, checkpoint, layout))
        steps.append(build_engine_step(options, layout))
    steps.append(
        BuildStep(
            COPY_TOKENIZER,
            "copy the tokenizer files next to the repository",
            StepKind.LOCAL,
            arguments={
                "from": str(options.resolved_tokenizer_dir.resolve()),
                "to": str(layout.tokenizer),
            },
        )
    )
    # Only the C++ backend reads this file: the LLM API and the reference engine build
    # xgrammar's tokenizer information from the tokenizer themselves.
    if options.guided_decoding and options.engine is EngineKind.TENSORRT_LLM:
        steps.append(
            BuildStep(
                WRITE_TOKENIZER_INFO,
                "write the tokenizer info the C++ backend's guided decoding (xgrammar) reads",
                StepKind.LOCAL,
                arguments={"to": str(layout.xgrammar_tokenizer_info)},
            )
        )
    steps.append(
        BuildStep(
            WRITE_REPOSITORY,
            "write the four models with filled, checked configs",
            StepKind.LOCAL,
            arguments={
                "to": str(layout.repository),
                "tensorrt_llm": _engine_model_summary(options, checkpoint),
                **flatten_edits(repository_edits(options, layout)),
            },
        )
    )
    packages = engine_packages(options.engine)
    steps.append(
        BuildStep(
            COPY_PACKAGES,
            "copy the Python packages the models import, so no pip install is needed",
            StepKind.LOCAL,
            arguments={"packages": " ".join(packages), "to": str(layout.root)},
        )
    )
    if options.world_size > 1 and options.engine is EngineKind.TENSORRT_LLM:
        steps.append(
            BuildStep(
                WRITE_LAUNCH_SCRIPTS,
                f"write the launch command for {options.world_size} ranks (mpirun, one "
                "tritonserver per GPU) and an example Slurm script",
                StepKind.LOCAL,
                arguments={
                    "world_size": str(options.world_size),
                    "launch": str(layout.launch_script),
                    "slurm": str(layout.slurm_script),
                },
            )
        )
    checks = ["every config.pbtxt parses as Triton's ModelConfig", "the tokenizer loads"]
    if options.engine is EngineKind.TENSORRT_LLM:
        checks.append("the engine's config.json agrees with the repository (skipped by --dry-run)")
    steps.append(
        BuildStep(
            VERIFY,
            "check the result",
            StepKind.LOCAL,
            arguments={f"check {i + 1}": text for i, text in enumerate(checks)},
        )
    )
    return steps


def engine_packages(engine: EngineKind) -> list[str]:
    """The packages the repository's models import (their own imports are added too)."""
    packages = ["bls", "serving_common", "preprocessing", "postprocessing"]
    if engine is EngineKind.REFERENCE:
        packages.append("reference_engine")
    elif engine is EngineKind.PYTORCH:
        packages.append("llm_api_engine")
    return packages


def _engine_model_summary(options: BuildOptions, checkpoint: CheckpointInfo) -> str:
    if options.engine is EngineKind.REFERENCE:
        return "reference engine (Python backend) on the checkpoint"
    if options.engine is EngineKind.PYTORCH:
        return (
            "LLM-API model (Python backend over TensorRT-LLM's PyTorch backend, no engine "
            f"build) on the checkpoint; quantization: {checkpoint_quantization(checkpoint.path)}"
        )
    return "C++ tensorrtllm backend, decoupled, inflight_fused_batching"


def convert_step(
    options: BuildOptions, checkpoint: CheckpointInfo, layout: OutputLayout
) -> BuildStep:
    quant_algo = options.quantization.quant_algo
    kv_algo = options.kv_cache_quantization.quant_algo
    # A calibrating route (ModelOpt, or the model class's own int8 KV cache calibration)
    # runs the model on data and writes every rank itself; the rest is a per-rank
    # conversion of the weights.
    route = options.conversion_route
    calibrate = route.calibrates
    command = [
        sys.executable,
        "-m",
        "engine_build.convert",
        "--hf-dir",
        str(checkpoint.path),
        "--output-dir",
        str(layout.trtllm_checkpoint),
        "--dtype",
        options.dtype.value,
        "--tp-size",
        str(options.tp_size),
        "--pp-size",
        str(options.pp_size),
        "--moe-tp-size",
        str(options.resolved_moe_tp_size),
        "--moe-ep-size",
        str(options.resolved_moe_ep_size),
    ]
    if quant_algo is not None:
        command += ["--quant-algo", quant_algo]
    if kv_algo is not None:
        command += ["--kv-cache-quant-algo", kv_algo]
    if options.quantization.quant_algo == "W4A16_AWQ":
        command += ["--awq-block-size", str(options.awq_block_size)]
    if calibrate:
        command += [
            "--calib-dataset",
            options.calib_dataset,
            "--calib-size",
            str(options.calib_size),
            "--calib-max-seq-length",
            str(min(options.input_len, 512)),
        ]
    if options.trust_remote_code:
        command.append("--trust-remote-code")
    api = (
        "MODEL_MAP[architecture].quantize(hf_dir, output_dir, dtype, mapping, quant_config)"
        if calibrate
        else "MODEL_MAP[architecture].from_hugging_face(hf_dir, dtype, mapping, "
        "quant_config).save_checkpoint(output_dir) for each rank"
    )
    return BuildStep(
        CONVERT_CHECKPOINT,
        "convert the Hugging Face checkpoint to a TensorRT-LLM checkpoint"
        + _CALIBRATION_NOTE[route],
        StepKind.EXTERNAL,
        command=tuple(command),
        arguments={
            "architecture": checkpoint.architecture,
            "api": "tensorrt_llm.models." + api,
            "dtype": options.dtype.value,
            "quant_algo": quant_algo or "none",
            "kv_cache_quant_algo": kv_algo or "none",
            "trust_remote_code": str(options.trust_remote_code),
            "mapping": (
                f"Mapping(world_size={options.world_size}, tp_size={options.tp_size}, "
                f"pp_size={options.pp_size}, moe_tp_size={options.resolved_moe_tp_size}, "
                f"moe_ep_size={options.resolved_moe_ep_size})"
            ),
            "output": str(layout.trtllm_checkpoint),
        },
    )


_CALIBRATION_NOTE = {
    ConversionRoute.PER_RANK: "",
    ConversionRoute.MODELOPT: " (ModelOpt calibration)",
    ConversionRoute.CLASS_CALIBRATION: (
        " (int8 KV cache calibration by the model class's own quantize, not ModelOpt)"
    ),
}


def build_engine_step(options: BuildOptions, layout: OutputLayout) -> BuildStep:
    command = [
        "trtllm-build",
        "--checkpoint_dir",
        str(layout.trtllm_checkpoint),
        "--output_dir",
        str(layout.engine),
        "--max_batch_size",
        str(options.max_batch_size),
        "--max_input_len",
        str(options.input_len),
        "--max_seq_len",
        str(options.seq_len),
        "--max_num_tokens",
        str(options.max_num_tokens),
        "--max_beam_width",
        str(options.max_beam_width),
        # In-flight batching needs the attention plugin, a paged KV cache and packed
        # (padding-free) inputs; "auto" takes the plugin dtype from the checkpoint.
        "--gpt_attention_plugin",
        "auto",
        "--gemm_plugin",
        "auto",
        "--kv_cache_type",
        "paged",
        "--remove_input_padding",
        "enable",
        "--context_fmha",
        "enable",
        "--workers",
        str(min(options.build_workers, options.world_size)),
    ]
    if options.enable_kv_cache_reuse or options.enable_chunked_context:
        # Both reuse and chunking run the context phase over paged KV blocks.
        command += ["--use_paged_context_fmha", "enable"]
    if options.lora is not None:
        lora = options.lora
        command += ["--lora_plugin", "auto", "--max_lora_rank", str(lora.max_rank)]
        command += ["--lora_target_modules", *lora.target_modules]
        if lora.adapter_dirs:
            command += ["--lora_dir", *(str(path) for path in lora.adapter_dirs)]
    return BuildStep(
        BUILD_ENGINE,
        f"build the TensorRT engine ({options.world_size} rank(s)) with trtllm-build",
        StepKind.EXTERNAL,
        command=tuple(command),
        arguments={"output": str(layout.engine)},
    )


def render_plan(steps: list[BuildStep], *, dry_run: bool) -> str:
    lines = []
    for number, step in enumerate(steps, start=1):
        note = ""
        if dry_run and step.kind is StepKind.EXTERNAL:
            note = "   [dry run: printed, not run]"
        head, _, rest = step.render().partition("\n")
        lines.append(f"[{number}/{len(steps)}] {head}{note}")
        if rest:
            lines.append(rest)
    return "\n".join(lines)
