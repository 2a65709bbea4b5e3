"""`llm-bls-build --backend pytorch`: no engine build; a finished repository whose
`tensorrt_llm` model is the LLM-API Python model, checked like the engine path's.
Helpers and the fixture checkpoint come from the engine path's tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from llm_api_engine.config import LlmApiConfig
from local_triton.model_config import config_parameters, tensor_specs
from local_triton.staging import default_model_repository
from offline_fixtures import ensure_fixtures
from tests.unit.test_build_engines_repository import MODELS, parse, run


@pytest.fixture(scope="module")
def checkpoint() -> Path:
    return ensure_fixtures().tiny_llama


def build(checkpoint: Path, out: Path, capsys, *extra: str) -> tuple[int, str, str]:
    return run(
        [
            "--checkpoint",
            str(checkpoint),
            "--output-dir",
            str(out),
            "--backend",
            "pytorch",
            "--max-input-len",
            "128",
            "--max-seq-len",
            "256",
            *extra,
        ],
        capsys,
    )


def test_dry_run_writes_a_repository_for_the_llm_api_model(checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, stderr = build(checkpoint, out, capsys, "--dry-run", "--max-batch-size", "16")
    assert code == 0, stderr
    assert "trtllm-build" not in stdout and "engine_build.convert" not in stdout
    assert "LLM-API model" in stdout and "quantization: none" in stdout
    assert not (out / "engine").exists() and not (out / "trtllm_checkpoint").exists()

    repo = out / "model_repository"
    configs = {model: parse(repo / model / "config.pbtxt") for model in MODELS}
    for model, config in configs.items():
        assert config.name == model and config.max_batch_size == 16
    engine = configs["tensorrt_llm"]
    assert engine.backend == "python" and engine.model_transaction_policy.decoupled
    assert (repo / "tensorrt_llm" / "1" / "model.py").is_file()
    # The same tensors as the C++ backend's config: the BLS works unchanged.
    cpp = parse(default_model_repository() / "tensorrt_llm" / "config.pbtxt")
    assert tensor_specs(engine) == tensor_specs(cpp)

    params = config_parameters(engine)
    assert params["model_dir"] == str(checkpoint.resolve())
    assert params["max_seq_len"] == "256" and params["max_batch_size"] == "16"
    assert params["tensor_parallel_size"] == "1"
    assert params["exclude_input_in_output"] == "true"
    # The model accepts what the build wrote.
    config = LlmApiConfig.from_parameters(params)
    assert config.max_seq_len == 256 and config.trust_remote_code is False
    assert (out / "llm_api_engine" / "__init__.py").is_file()
    assert (out / "reference_engine" / "contract.py").is_file()  # imported by the model
    bls = config_parameters(configs["tensorrt_llm_bls"])
    assert bls["tensorrt_llm_model_name"] == "tensorrt_llm" and bls["max_seq_len"] == "256"


def test_tensor_parallel_needs_no_launcher(checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, stderr = build(checkpoint, out, capsys, "--dry-run", "--tp-size", "2")
    assert code == 0, stderr
    params = config_parameters(parse(out / "model_repository" / "tensorrt_llm" / "config.pbtxt"))
    assert params["tensor_parallel_size"] == "2"
    assert not (out / "launch_triton.sh").exists()
    assert "the LLM API starts 2 GPU workers itself" in stdout


def test_guided_decoding_switches_the_llm_api_backend_on_without_a_tokenizer_info_file(
    checkpoint, tmp_path, capsys
):
    out = tmp_path / "out"
    engine_config = out / "model_repository" / "tensorrt_llm" / "config.pbtxt"
    code, stdout, stderr = build(checkpoint, out, capsys, "--dry-run", "--guided-decoding")
    assert code == 0, stderr
    params = config_parameters(parse(engine_config))
    assert params["guided_decoding_backend"] == "xgrammar"
    assert LlmApiConfig.from_parameters(params).llm_kwargs()["guided_decoding_backend"] == (
        "xgrammar"
    )
    # The LLM API builds xgrammar's tokenizer information itself.
    assert not (out / "xgrammar_tokenizer_info.json").exists()
    assert "write_xgrammar_tokenizer_info" not in stdout
    code, _, stderr = build(checkpoint, out, capsys, "--dry-run", "--overwrite")
    assert code == 0, stderr
    assert config_parameters(parse(engine_config))["guided_decoding_backend"] == ""


def test_a_modelopt_export_is_reported(checkpoint, tmp_path, capsys):
    export = tmp_path / "fp8"
    shutil.copytree(checkpoint, export)
    (export / "hf_quant_config.json").write_text(
        json.dumps({"quantization": {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8"}})
    )
    code, stdout, stderr = build(export, tmp_path / "out", capsys, "--dry-run")
    assert code == 0, stderr
    assert "quantization: FP8, KV cache FP8 (ModelOpt export, hf_quant_config.json)" in stdout


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--quantization", "fp8"], "quantize with NVIDIA ModelOpt"),
        (["--kv-cache-quantization", "fp8"], "quantize with NVIDIA ModelOpt"),
        (["--lora"], "LoRA"),
        (["--max-beam-width", "2"], "max-beam-width must be 1"),
        (["--engine", "reference"], "exclude each other"),
        (["--tp-size", "2", "--gpus", "1"], "2 ranks need 2 GPUs"),
    ],
)
def test_refusals_name_the_option(checkpoint, tmp_path, capsys, extra, needle):
    code, _, stderr = build(checkpoint, tmp_path / "out", capsys, "--dry-run", *extra)
    assert code == 2
    assert needle in stderr


def test_the_checkpoint_and_tokenizer_are_checked_as_for_an_engine(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, stderr = build(empty, tmp_path / "out", capsys, "--dry-run")
    assert code == 2 and "no config.json" in stderr
