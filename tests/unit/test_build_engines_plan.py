"""build_engines: options -> steps. Pure: no files, no GPU, no tensorrt_llm."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from engine_build import convert
from engine_build.checkpoint import CheckpointInfo
from engine_build.launch import launch_script, mpirun_command, slurm_script
from engine_build.options import (
    BuildError,
    BuildOptions,
    DType,
    EngineKind,
    KvCacheQuantization,
    LoraOptions,
    Quantization,
    ServerPorts,
    resolve_lengths,
    validate_options,
)
from engine_build.steps import (
    BUILD_ENGINE,
    CONVERT_CHECKPOINT,
    WRITE_LAUNCH_SCRIPTS,
    WRITE_REPOSITORY,
    BuildStep,
    StepKind,
    plan_build,
    render_plan,
)

CHECKPOINT = CheckpointInfo(
    path=Path("/models/llama"),
    architecture="LlamaForCausalLM",
    model_type="llama",
    max_position_embeddings=8192,
    is_moe=False,
)


def options(**changes) -> BuildOptions:
    base = BuildOptions(
        checkpoint=Path("/models/llama"),
        output_dir=Path("/out"),
        max_input_len=1024,
        max_seq_len=3072,
    )
    return dataclasses.replace(base, **changes)


def step(steps: list[BuildStep], name: str) -> BuildStep:
    (found,) = [s for s in steps if s.name == name]
    return found


def flag(command: tuple[str, ...], name: str) -> str:
    """The value after `name` in an argv (the flag must be there exactly once)."""
    assert command.count(name) == 1, f"{name} appears {command.count(name)} times in {command}"
    return command[command.index(name) + 1]


def values_after(command: tuple[str, ...], name: str) -> list[str]:
    start = command.index(name) + 1
    values = []
    for word in command[start:]:
        if word.startswith("--"):
            break
        values.append(word)
    return values


def test_float16_plan_converts_builds_and_fills():
    steps = plan_build(options(), CHECKPOINT)
    assert [s.name for s in steps] == [
        "convert_checkpoint",
        "build_engine",
        "copy_tokenizer",
        "write_repository",
        "copy_packages",
        "verify",
    ]
    convert_cmd = step(steps, CONVERT_CHECKPOINT).command
    assert convert_cmd[:3] == (sys.executable, "-m", "engine_build.convert")
    assert flag(convert_cmd, "--hf-dir") == "/models/llama"
    assert flag(convert_cmd, "--output-dir") == str(Path("/out/trtllm_checkpoint").resolve())
    assert flag(convert_cmd, "--dtype") == "float16"
    assert flag(convert_cmd, "--tp-size") == "1"
    assert "--quant-algo" not in convert_cmd
    assert "--calib-dataset" not in convert_cmd
    convert_args = step(steps, CONVERT_CHECKPOINT).arguments
    assert convert_args["architecture"] == "LlamaForCausalLM"
    assert "from_hugging_face" in convert_args["api"]
    assert convert_args["quant_algo"] == "none"

    build = step(steps, BUILD_ENGINE)
    assert build.kind is StepKind.EXTERNAL
    command = build.command
    assert command[0] == "trtllm-build"
    assert flag(command, "--checkpoint_dir") == str(Path("/out/trtllm_checkpoint").resolve())
    assert flag(command, "--output_dir") == str(Path("/out/engine").resolve())
    assert flag(command, "--max_batch_size") == "64"
    assert flag(command, "--max_input_len") == "1024"
    assert flag(command, "--max_seq_len") == "3072"
    assert flag(command, "--max_num_tokens") == "8192"
    assert flag(command, "--gemm_plugin") == "auto"
    assert flag(command, "--kv_cache_type") == "paged"
    assert flag(command, "--remove_input_padding") == "enable"
    assert "--lora_plugin" not in command
    assert "--use_paged_context_fmha" not in command

    repo = step(steps, WRITE_REPOSITORY).arguments
    assert repo["tensorrt_llm.gpt_model_path"] == str(Path("/out/engine").resolve())
    assert repo["tensorrt_llm.gpt_model_type"] == "inflight_fused_batching"
    assert repo["tensorrt_llm.exclude_input_in_output"] == "true"
    assert repo["tensorrt_llm.kv_cache_free_gpu_mem_fraction"] == "0.9"
    assert repo["preprocessing.max_input_len"] == "1024"
    assert repo["tensorrt_llm_bls.max_input_len"] == "1024"
    # Every request the BLS admits (prompt <= 1024, output <= cap) fits in max_seq_len.
    assert repo["tensorrt_llm_bls.max_output_len"] == "2048"
    assert repo["postprocessing.tokenizer_dir"] == str(Path("/out/tokenizer").resolve())
    for name in ("preprocessing", "postprocessing", "tensorrt_llm_bls", "tensorrt_llm"):
        assert repo[f"{name}.max_batch_size"] == "64"


def test_bfloat16_and_sizes_reach_both_tools():
    steps = plan_build(
        options(dtype=DType.BFLOAT16, max_batch_size=8, max_num_tokens=4096), CHECKPOINT
    )
    assert flag(step(steps, CONVERT_CHECKPOINT).command, "--dtype") == "bfloat16"
    build = step(steps, BUILD_ENGINE).command
    assert flag(build, "--max_batch_size") == "8"
    assert flag(build, "--max_num_tokens") == "4096"
    assert step(steps, WRITE_REPOSITORY).arguments["tensorrt_llm.max_batch_size"] == "8"


def test_int4_awq_calibrates_with_modelopt():
    steps = plan_build(options(quantization=Quantization.INT4_AWQ), CHECKPOINT)
    convert_step = step(steps, CONVERT_CHECKPOINT)
    command = convert_step.command
    assert flag(command, "--quant-algo") == "W4A16_AWQ"
    assert flag(command, "--awq-block-size") == "128"
    assert flag(command, "--calib-dataset") == "cnn_dailymail"
    assert flag(command, "--calib-size") == "512"
    assert "--kv-cache-quant-algo" not in command
    assert convert_step.arguments["quant_algo"] == "W4A16_AWQ"
    assert ".quantize(" in convert_step.arguments["api"]
    assert "calibration" in convert_step.summary
    assert flag(step(steps, BUILD_ENGINE).command, "--gemm_plugin") == "auto"


def test_fp8_with_fp8_kv_cache():
    steps = plan_build(
        options(
            quantization=Quantization.FP8,
            kv_cache_quantization=KvCacheQuantization.FP8,
            calib_dataset="/data/calib",
            calib_size=64,
        ),
        CHECKPOINT,
    )
    command = step(steps, CONVERT_CHECKPOINT).command
    assert flag(command, "--quant-algo") == "FP8"
    assert flag(command, "--kv-cache-quant-algo") == "FP8"
    assert flag(command, "--calib-dataset") == "/data/calib"
    assert flag(command, "--calib-size") == "64"
    assert "--awq-block-size" not in command


def test_int8_weight_only_needs_no_calibration():
    steps = plan_build(options(quantization=Quantization.INT8_WEIGHT_ONLY), CHECKPOINT)
    convert_step = step(steps, CONVERT_CHECKPOINT)
    assert flag(convert_step.command, "--quant-algo") == "W8A16"
    assert "--calib-dataset" not in convert_step.command
    assert "from_hugging_face" in convert_step.arguments["api"]


def test_tensor_parallel_two_converts_two_ranks_and_writes_launch():
    steps = plan_build(options(tp_size=2), CHECKPOINT)
    command = step(steps, CONVERT_CHECKPOINT).command
    assert flag(command, "--tp-size") == "2"
    assert flag(command, "--pp-size") == "1"
    assert flag(command, "--moe-tp-size") == "2"
    assert flag(command, "--moe-ep-size") == "1"
    assert "world_size=2" in step(steps, CONVERT_CHECKPOINT).arguments["mapping"]
    assert "2 rank(s)" in step(steps, BUILD_ENGINE).summary
    launch = step(steps, WRITE_LAUNCH_SCRIPTS)
    assert launch.arguments["world_size"] == "2"
    assert launch.arguments["launch"].endswith("launch_triton.sh")


def test_pipeline_parallel_counts_in_world_size():
    steps = plan_build(options(tp_size=2, pp_size=2, build_workers=8), CHECKPOINT)
    assert step(steps, WRITE_LAUNCH_SCRIPTS).arguments["world_size"] == "4"
    # No more build workers than ranks.
    assert flag(step(steps, BUILD_ENGINE).command, "--workers") == "4"


def test_moe_tensor_and_expert_parallel_split():
    steps = plan_build(options(tp_size=4, moe_tp_size=2), CHECKPOINT)
    command = step(steps, CONVERT_CHECKPOINT).command
    assert flag(command, "--moe-tp-size") == "2"
    assert flag(command, "--moe-ep-size") == "2"
    with pytest.raises(BuildError, match=r"moe-tp-size × moe-ep-size must equal tp-size \(4\)"):
        validate_options(options(tp_size=4, moe_tp_size=3, gpus=4))


def test_lora_engine_gets_plugin_and_backend_cache_parameters():
    lora = LoraOptions(max_rank=32, target_modules=("attn_q", "attn_v"))
    steps = plan_build(options(lora=lora), CHECKPOINT)
    command = step(steps, BUILD_ENGINE).command
    assert flag(command, "--lora_plugin") == "auto"
    assert flag(command, "--max_lora_rank") == "32"
    assert values_after(command, "--lora_target_modules") == ["attn_q", "attn_v"]
    assert "--lora_dir" not in command
    repo = step(steps, WRITE_REPOSITORY).arguments
    assert repo["tensorrt_llm.lora_cache_max_adapter_size"] == "32"
    assert repo["tensorrt_llm.lora_cache_gpu_memory_fraction"] == "0.05"
    with pytest.raises(BuildError, match="unknown module"):
        validate_options(options(lora=LoraOptions(target_modules=("attn_x",)), gpus=1))


def test_kv_cache_reuse_builds_paged_context_attention():
    command = step(plan_build(options(enable_kv_cache_reuse=True), CHECKPOINT), BUILD_ENGINE)
    assert flag(command.command, "--use_paged_context_fmha") == "enable"


def test_reference_engine_plan_has_no_toolchain_steps():
    steps = plan_build(options(engine=EngineKind.REFERENCE), CHECKPOINT)
    assert all(s.kind is StepKind.LOCAL for s in steps)
    assert CONVERT_CHECKPOINT not in [s.name for s in steps]
    repo = step(steps, WRITE_REPOSITORY).arguments
    assert repo["tensorrt_llm.generation_backend"] == "reference"
    assert repo["tensorrt_llm.model_dir"] == str(Path("/models/llama").resolve())
    assert "reference_engine" in step(steps, "copy_packages").arguments["packages"]


def test_lengths_default_from_the_checkpoint():
    unset = BuildOptions(checkpoint=Path("/m"), output_dir=Path("/o"))
    resolved = resolve_lengths(unset, 8192)
    assert (resolved.max_input_len, resolved.max_seq_len) == (2048, 8192)
    short = resolve_lengths(unset, 1024)
    assert (short.max_input_len, short.max_seq_len) == (512, 1024)
    assert resolve_lengths(unset, None).max_seq_len == 4096
    # Given values win.
    assert resolve_lengths(options(), 8192).max_seq_len == 3072


def test_max_input_len_over_max_seq_len_is_refused():
    with pytest.raises(
        BuildError, match=r"max-input-len \(4096\) must be below max-seq-len \(2048\)"
    ):
        validate_options(options(max_input_len=4096, max_seq_len=2048, gpus=1))
    with pytest.raises(BuildError, match="must be below"):
        validate_options(options(max_input_len=2048, max_seq_len=2048, gpus=1))


def test_tp_pp_over_the_gpus_is_refused():
    with pytest.raises(
        BuildError, match=r"2 × 2 = 4 ranks need 4 GPUs \(one per rank\), but 2 GPU\(s\)"
    ):
        validate_options(options(tp_size=2, pp_size=2, gpus=2))
    validate_options(options(tp_size=2, gpus=8))  # spare GPUs are fine


def test_prompt_longer_than_a_step_needs_chunked_context():
    with pytest.raises(BuildError, match=r"max-num-tokens \(512\) is below max-input-len"):
        validate_options(options(max_num_tokens=512, gpus=1))
    validate_options(options(max_num_tokens=512, enable_chunked_context=True, gpus=1))


def test_reference_engine_refuses_parallelism_and_quantization():
    with pytest.raises(BuildError, match="runs on one device"):
        validate_options(options(engine=EngineKind.REFERENCE, tp_size=2))
    with pytest.raises(BuildError, match="TensorRT-LLM engines only"):
        validate_options(options(engine=EngineKind.REFERENCE, quantization=Quantization.FP8))
    with pytest.raises(BuildError, match="max_position_embeddings"):
        validate_options(options(engine=EngineKind.REFERENCE, max_seq_len=9000), 8192)


def test_dry_run_render_marks_external_steps():
    text = render_plan(plan_build(options(), CHECKPOINT), dry_run=True)
    assert "[1/6] convert_checkpoint" in text
    assert "$ trtllm-build --checkpoint_dir" in text
    assert text.count("[dry run: printed, not run]") == 2
    assert "tensorrt_llm.gpt_model_path = " in text


def test_convert_command_parses_with_the_convert_module():
    """The planner and `python -m engine_build.convert` agree on every flag."""
    for quantization in Quantization:
        command = step(
            plan_build(options(quantization=quantization, tp_size=2), CHECKPOINT),
            CONVERT_CHECKPOINT,
        ).command
        args = convert.parse_arguments(list(command[3:]))
        assert args.tp_size == 2
        assert args.quant_algo == quantization.quant_algo


def test_mpirun_command_one_tritonserver_per_rank():
    repo = Path("/deploy/model_repository")
    command = mpirun_command(3, repo, ServerPorts(http=9000, grpc=9001, metrics=9002))
    assert command[:2] == ["mpirun", "--allow-run-as-root"]
    ranks = " ".join(command[2:]).split(" : ")
    assert len(ranks) == 3
    for rank, text in enumerate(ranks):
        words = text.split()
        assert words[:3] == ["-n", "1", "/opt/tritonserver/bin/tritonserver"]
        assert f"--model-repository={repo}" in words
        assert "--http-port=9000" in words
        assert "--disable-auto-complete-config" in words
        assert f"--backend-config=python,shm-region-prefix-name=prefix{rank}_" in words
        only_engine = "--load-model=tensorrt_llm" in words
        assert only_engine == (rank != 0)


def test_launch_scripts_are_valid_shell(tmp_path: Path):
    repo = Path("/deploy/model_repository")
    for name, text in {
        "launch.sh": launch_script(2, repo, ServerPorts()),
        "job.sbatch": slurm_script(2, repo, ServerPorts(), Path("/scratch/out")),
    }.items():
        path = tmp_path / name
        path.write_text(text)
        result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    assert "#SBATCH --ntasks-per-node=2" in slurm_script(2, repo, ServerPorts(), Path("/s"))
    assert "prefix${SLURM_PROCID}_" in slurm_script(2, repo, ServerPorts(), Path("/s"))


def test_guided_decoding_writes_the_tokenizer_info_and_switches_the_backend_on():
    plain = step(plan_build(options(), CHECKPOINT), WRITE_REPOSITORY).arguments
    assert "tensorrt_llm.guided_decoding_backend" not in plain  # stays "" (off), as shipped

    steps = plan_build(options(guided_decoding=True), CHECKPOINT)
    names = [s.name for s in steps]
    assert names.index("copy_tokenizer") < names.index("write_xgrammar_tokenizer_info")
    info_path = str(Path("/out/xgrammar_tokenizer_info.json").resolve())
    assert step(steps, "write_xgrammar_tokenizer_info").arguments["to"] == info_path
    repo = step(steps, WRITE_REPOSITORY).arguments
    assert repo["tensorrt_llm.guided_decoding_backend"] == "xgrammar"
    assert repo["tensorrt_llm.xgrammar_tokenizer_info_path"] == info_path

    deployed = plan_build(options(guided_decoding=True, deploy_root=Path("/srv")), CHECKPOINT)
    repo = step(deployed, WRITE_REPOSITORY).arguments
    assert repo["tensorrt_llm.xgrammar_tokenizer_info_path"] == "/srv/xgrammar_tokenizer_info.json"
