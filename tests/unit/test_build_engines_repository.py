"""build_engines end to end on the fixture checkpoint: dry run, reference engine, errors.

Uses the shipped model_repository/ as templates and the tiny Llama fixture; nothing here
needs a GPU or tensorrt_llm (their steps are faked where a test runs them).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

import engine_build.executor as executor
from build_engines import main
from engine_build.options import BuildError, BuildOptions, EngineKind
from engine_build.repository import first_party_imports
from engine_build.steps import BUILD_ENGINE, CONVERT_CHECKPOINT, BuildStep
from engine_build.versions import CONTAINER_IMAGE
from local_triton.model_config import config_parameters
from local_triton.staging import StagingPlan, stage_repository
from offline_fixtures import ensure_fixtures

MODELS = ("preprocessing", "postprocessing", "tensorrt_llm_bls", "tensorrt_llm")


@pytest.fixture(scope="module")
def checkpoint() -> Path:
    return ensure_fixtures().tiny_llama


def parse(config_file: Path) -> model_config_pb2.ModelConfig:
    """Parse with Triton's protobuf directly, as tritonserver would."""
    config = model_config_pb2.ModelConfig()
    text_format.Parse(config_file.read_text(encoding="utf-8"), config)
    return config


def run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_dry_run_writes_a_finished_repository(checkpoint: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    code, stdout, stderr = run(
        [
            "--checkpoint",
            str(checkpoint),
            "--output-dir",
            str(out),
            "--dry-run",
            "--max-input-len",
            "256",
            "--max-seq-len",
            "1024",
            "--max-batch-size",
            "16",
        ],
        capsys,
    )
    assert code == 0, stderr
    # The build steps are printed with their arguments, and not run.
    assert "$ trtllm-build --checkpoint_dir" in stdout
    assert "-m engine_build.convert --hf-dir" in stdout
    assert "convert_checkpoint: skipped (dry run)" in stdout
    assert not (out / "engine").exists()
    assert not (out / "trtllm_checkpoint").exists()

    repo = out / "model_repository"
    for model in MODELS:
        text = (repo / model / "config.pbtxt").read_text(encoding="utf-8")
        assert "${" not in text, model
        config = parse(repo / model / "config.pbtxt")
        assert config.name == model
        assert config.max_batch_size == 16
        assert (repo / model / "1").is_dir()
    params = {model: config_parameters(parse(repo / model / "config.pbtxt")) for model in MODELS}
    tokenizer = str((out / "tokenizer").resolve())
    for model in ("preprocessing", "postprocessing", "tensorrt_llm_bls"):
        assert params[model]["tokenizer_dir"] == tokenizer
    assert params["preprocessing"]["max_input_len"] == "256"
    assert params["tensorrt_llm_bls"]["max_input_len"] == "256"
    assert params["tensorrt_llm_bls"]["max_output_len"] == "768"
    assert int(params["tensorrt_llm_bls"]["default_max_tokens"]) <= 768
    engine = parse(repo / "tensorrt_llm" / "config.pbtxt")
    assert engine.backend == "tensorrtllm"
    assert engine.model_transaction_policy.decoupled
    assert params["tensorrt_llm"]["gpt_model_path"] == str((out / "engine").resolve())
    assert params["tensorrt_llm"]["gpt_model_type"] == "inflight_fused_batching"
    assert params["tensorrt_llm"]["exclude_input_in_output"] == "true"
    # Comments of the shipped configs survive the edits.
    assert "# Engine directory" in (repo / "tensorrt_llm" / "config.pbtxt").read_text()
    # Tokenizer copied, no weights.
    assert (out / "tokenizer" / "tokenizer.json").is_file()
    assert not list((out / "tokenizer").glob("*.safetensors"))
    assert not (out / "launch_triton.sh").exists()


def test_each_model_py_finds_the_copied_packages(checkpoint: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    code, _, stderr = run(
        ["--checkpoint", str(checkpoint), "--output-dir", str(out), "--dry-run"], capsys
    )
    assert code == 0, stderr
    model_files = sorted((out / "model_repository").glob("*/1/model.py"))
    assert {path.parents[1].name for path in model_files} >= {
        "preprocessing",
        "postprocessing",
        "tensorrt_llm_bls",
    }
    for model_file in model_files:
        # The fallback in each model.py puts parents[3] on sys.path: that is OUT.
        assert model_file.resolve().parents[3] == out.resolve()
        for package in first_party_imports([model_file]):
            assert (out / package / "__init__.py").is_file(), (model_file, package)
    # Without site-packages (python -S) the packages are found under OUT alone.
    probe = (
        "import sys, importlib.util; sys.path.insert(0, sys.argv[1]); "
        "print(importlib.util.find_spec('bls').origin)"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", probe, str(out)], capture_output=True, text=True, check=True
    )
    assert Path(result.stdout.strip()).resolve() == (out / "bls" / "__init__.py").resolve()


def test_tensor_parallel_dry_run_writes_launch_scripts(checkpoint: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    code, stdout, stderr = run(
        [
            "--checkpoint",
            str(checkpoint),
            "--output-dir",
            str(out),
            "--dry-run",
            "--tp-size",
            "2",
            "--deploy-root",
            "/deploy",
        ],
        capsys,
    )
    assert code == 0, stderr
    launch = (out / "launch_triton.sh").read_text()
    assert launch.count("--model-repository=/deploy/model_repository") == 2
    assert "prefix1_" in launch
    assert (out / "launch_triton.sh").stat().st_mode & 0o111
    assert '--container-mounts="$OUTPUT_DIR:/deploy"' in (out / "slurm_example.sbatch").read_text()
    params = config_parameters(parse(out / "model_repository" / "tensorrt_llm" / "config.pbtxt"))
    # Configs hold the paths as the server sees them.
    assert params["gpt_model_path"] == "/deploy/engine"
    for script in ("launch_triton.sh", "slurm_example.sbatch"):
        assert subprocess.run(["bash", "-n", str(out / script)]).returncode == 0
    assert "--tp-size 2" in stdout


def test_guided_decoding_dry_run_writes_the_tokenizer_info_the_engine_config_names(
    checkpoint: Path, tmp_path: Path, capsys
):
    out = tmp_path / "out"
    args = ["--checkpoint", str(checkpoint), "--output-dir", str(out), "--dry-run"]
    code, _, stderr = run([*args, "--guided-decoding"], capsys)
    assert code == 0, stderr
    info = out / "xgrammar_tokenizer_info.json"
    data = json.loads(info.read_text(encoding="utf-8"))
    assert sorted(data) == ["encoded_vocab", "stop_token_ids", "tokenizer_str"]
    params = config_parameters(parse(out / "model_repository" / "tensorrt_llm" / "config.pbtxt"))
    assert params["guided_decoding_backend"] == "xgrammar"
    assert params["xgrammar_tokenizer_info_path"] == str(info.resolve())
    # Built again without the flag: the old file goes, guided decoding is off again.
    code, _, stderr = run([*args, "--overwrite"], capsys)
    assert code == 0, stderr
    assert not info.exists()
    params = config_parameters(parse(out / "model_repository" / "tensorrt_llm" / "config.pbtxt"))
    assert params["guided_decoding_backend"] == ""


def test_reference_engine_repository_is_servable_as_is(checkpoint: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    code, stdout, stderr = run(
        ["--checkpoint", str(checkpoint), "--output-dir", str(out), "--engine", "reference"],
        capsys,
    )
    assert code == 0, stderr
    assert "trtllm-build" not in stdout
    assert f"llm-bls-serve --model-repository {out.resolve() / 'model_repository'}" in stdout
    repo = out / "model_repository"
    engine = parse(repo / "tensorrt_llm" / "config.pbtxt")
    assert engine.backend == "python"
    assert engine.model_transaction_policy.decoupled
    params = config_parameters(engine)
    assert params["generation_backend"] == "reference"
    assert params["model_dir"] == str(checkpoint.resolve())
    assert params["exclude_input_in_output"] == "true"
    # The fixture's max_position_embeddings (2048) sets the lengths.
    assert params["max_seq_len"] == "2048"
    assert (repo / "tensorrt_llm" / "1" / "model.py").is_file()
    assert (out / "reference_engine" / "__init__.py").is_file()
    for model in MODELS:
        assert "${" not in (repo / model / "config.pbtxt").read_text()
    # The launcher stages it unchanged (native engine: the repository's own tensorrt_llm).
    staged = stage_repository(StagingPlan(source=repo), tmp_path / "staged")
    assert parse(staged / "tensorrt_llm" / "config.pbtxt").backend == "python"


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path, capsys):
    code, _, stderr = run(
        ["--checkpoint", str(tmp_path / "nope"), "--output-dir", str(tmp_path / "o"), "--dry-run"],
        capsys,
    )
    assert code == 2
    assert f"checkpoint {tmp_path / 'nope'} does not exist" in stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, stderr = run(
        ["--checkpoint", str(empty), "--output-dir", str(tmp_path / "o"), "--dry-run"], capsys
    )
    assert code == 2
    assert "has no config.json" in stderr


def test_missing_tokenizer_is_a_clear_error(checkpoint: Path, tmp_path: Path, capsys):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(checkpoint / name, bare / name)
    code, _, stderr = run(
        ["--checkpoint", str(bare), "--output-dir", str(tmp_path / "o"), "--dry-run"], capsys
    )
    assert code == 2
    assert f"no tokenizer in {bare.resolve()}" in stderr or f"no tokenizer in {bare}" in stderr
    assert "pass --tokenizer-dir" in stderr
    # The tokenizer may come from elsewhere.
    code, _, stderr = run(
        [
            "--checkpoint",
            str(bare),
            "--tokenizer-dir",
            str(checkpoint),
            "--output-dir",
            str(tmp_path / "o"),
            "--dry-run",
        ],
        capsys,
    )
    assert code == 0, stderr
    code, _, stderr = run(
        [
            "--checkpoint",
            str(bare),
            "--tokenizer-dir",
            str(tmp_path / "none"),
            "--output-dir",
            str(tmp_path / "o2"),
            "--dry-run",
        ],
        capsys,
    )
    assert code == 2
    assert "(--tokenizer-dir) does not exist" in stderr


def test_tp_pp_not_matching_the_gpus_is_a_clear_error(checkpoint: Path, tmp_path: Path, capsys):
    code, _, stderr = run(
        [
            "--checkpoint",
            str(checkpoint),
            "--output-dir",
            str(tmp_path / "o"),
            "--dry-run",
            "--tp-size",
            "2",
            "--pp-size",
            "2",
            "--gpus",
            "2",
        ],
        capsys,
    )
    assert code == 2
    assert "4 ranks need 4 GPUs (one per rank), but 2 GPU(s) are available" in stderr
    assert not (tmp_path / "o").exists()


def test_max_input_len_over_max_seq_len_is_a_clear_error(checkpoint: Path, tmp_path: Path, capsys):
    code, _, stderr = run(
        [
            "--checkpoint",
            str(checkpoint),
            "--output-dir",
            str(tmp_path / "o"),
            "--dry-run",
            "--max-input-len",
            "1024",
            "--max-seq-len",
            "512",
        ],
        capsys,
    )
    assert code == 2
    assert "max-input-len (1024) must be below max-seq-len (512)" in stderr


def test_existing_output_needs_overwrite(checkpoint: Path, tmp_path: Path, capsys):
    args = ["--checkpoint", str(checkpoint), "--output-dir", str(tmp_path / "o"), "--dry-run"]
    assert run(args, capsys)[0] == 0
    code, _, stderr = run(args, capsys)
    assert code == 2
    assert "already holds model_repository" in stderr and "--overwrite" in stderr
    assert run([*args, "--overwrite"], capsys)[0] == 0


def test_real_build_without_tensorrt_llm_says_which_container(
    checkpoint: Path, tmp_path: Path, capsys
):
    code, _, stderr = run(
        ["--checkpoint", str(checkpoint), "--output-dir", str(tmp_path / "o"), "--gpus", "1"],
        capsys,
    )
    assert code == 2
    assert f"tensorrt_llm is not installed: run inside {CONTAINER_IMAGE}" in stderr


# --- The executor with the TensorRT-LLM commands replaced by stand-ins ------------------


def fake_engine_config(*, max_batch_size: int, max_input_len: int, max_seq_len: int) -> dict:
    return {
        "version": "0.21.0",
        "pretrained_config": {
            "architecture": "LlamaForCausalLM",
            "dtype": "float16",
            "mapping": {"world_size": 1, "tp_size": 1, "pp_size": 1},
        },
        "build_config": {
            "max_batch_size": max_batch_size,
            "max_input_len": max_input_len,
            "max_seq_len": max_seq_len,
            "max_beam_width": 1,
            "max_num_tokens": 8192,
            "kv_cache_type": "PAGED",
            "plugin_config": {"paged_kv_cache": True, "remove_input_padding": True},
        },
    }


def with_fake_toolchain(
    monkeypatch, engine_config: dict, convert_code: str = "print('converting rank 1/1')"
) -> None:
    """Replace the convert and trtllm-build commands by Python one-liners that print and
    write an engine directory with `engine_config`."""
    real_plan = executor.plan_build

    def plan(options, checkpoint):
        steps = real_plan(options, checkpoint)
        engine_dir = options.output_dir.resolve() / "engine"
        write = (
            "import json, pathlib, sys; d = pathlib.Path(sys.argv[1]); d.mkdir(parents=True); "
            "(d / 'config.json').write_text(sys.argv[2]); (d / 'rank0.engine').write_bytes(b'x');"
            " print('engine written')"
        )
        fakes = {
            CONVERT_CHECKPOINT: (sys.executable, "-c", convert_code),
            BUILD_ENGINE: (sys.executable, "-c", write, str(engine_dir), json.dumps(engine_config)),
        }
        return [
            dataclasses.replace(s, command=fakes[s.name]) if s.name in fakes else s for s in steps
        ]

    monkeypatch.setattr(executor, "plan_build", plan)
    monkeypatch.setattr(executor, "preflight_toolchain", lambda: None)


def build_options(checkpoint: Path, out: Path) -> BuildOptions:
    return BuildOptions(
        checkpoint=checkpoint,
        output_dir=out,
        gpus=1,
        max_batch_size=8,
        max_input_len=128,
        max_seq_len=512,
    )


def test_build_runs_the_commands_and_checks_the_engine(
    checkpoint: Path, tmp_path: Path, monkeypatch
):
    with_fake_toolchain(
        monkeypatch, fake_engine_config(max_batch_size=8, max_input_len=128, max_seq_len=512)
    )
    lines: list[str] = []
    result = executor.run_build(build_options(checkpoint, tmp_path / "o"), echo=lines.append)
    assert result.engine_built
    text = "\n".join(lines)
    assert "    | converting rank 1/1" in text
    assert "    | engine written" in text
    assert "the engine's config.json agrees with the repository" in text
    assert [s.name for s in result.steps][:2] == [CONVERT_CHECKPOINT, BUILD_ENGINE]
    assert all(isinstance(s, BuildStep) for s in result.steps)


def test_build_refuses_an_engine_smaller_than_the_repository(
    checkpoint: Path, tmp_path: Path, monkeypatch
):
    with_fake_toolchain(
        monkeypatch, fake_engine_config(max_batch_size=4, max_input_len=64, max_seq_len=512)
    )
    with pytest.raises(BuildError) as raised:
        executor.run_build(build_options(checkpoint, tmp_path / "o"), echo=lambda _: None)
    message = str(raised.value)
    assert "tensorrt_llm max_batch_size 8 exceeds the engine's max_batch_size 4" in message
    assert "preprocessing max_input_len 128 exceeds the engine's max_input_len 64" in message


def test_failing_command_reports_its_output(checkpoint: Path, tmp_path: Path, monkeypatch):
    real_plan = executor.plan_build

    def plan(options, checkpoint_info):
        steps = real_plan(options, checkpoint_info)
        failing = (sys.executable, "-c", "print('out of memory on rank 0'); raise SystemExit(3)")
        return [
            dataclasses.replace(s, command=failing) if s.name == CONVERT_CHECKPOINT else s
            for s in steps
        ]

    monkeypatch.setattr(executor, "plan_build", plan)
    monkeypatch.setattr(executor, "preflight_toolchain", lambda: None)
    with pytest.raises(BuildError, match=r"convert_checkpoint failed \(exit code 3\)") as raised:
        executor.run_build(build_options(checkpoint, tmp_path / "o"), echo=lambda _: None)
    assert "out of memory on rank 0" in str(raised.value)


def test_quiet_command_gets_heartbeats(checkpoint: Path, tmp_path: Path, monkeypatch):
    with_fake_toolchain(
        monkeypatch,
        fake_engine_config(max_batch_size=8, max_input_len=128, max_seq_len=512),
        convert_code="import time; time.sleep(0.5)",
    )
    lines: list[str] = []
    executor.run_build(
        build_options(checkpoint, tmp_path / "o"), echo=lines.append, heartbeat_s=0.1
    )
    assert any("convert_checkpoint still running" in line for line in lines)


def test_gpus_are_counted_only_for_real_builds(monkeypatch):
    base = BuildOptions(checkpoint=Path("/m"), output_dir=Path("/o"), tp_size=2)
    assert executor.resolve_gpus(dataclasses.replace(base, dry_run=True)).gpus == 2
    assert executor.resolve_gpus(base, counter=lambda: 1).gpus == 1
    assert executor.resolve_gpus(dataclasses.replace(base, gpus=8), counter=lambda: 1).gpus == 8
    reference = dataclasses.replace(base, engine=EngineKind.REFERENCE)
    assert executor.resolve_gpus(reference, counter=lambda: 1 / 0).gpus is None
