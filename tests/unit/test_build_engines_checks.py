"""build_engines checks: engine vs repository, config edits, GPU count, conversion errors."""

from __future__ import annotations

import copy
import json
import os
import stat
from pathlib import Path

import pytest

from engine_build import convert
from engine_build.gpus import count_gpus
from engine_build.layout import OutputLayout
from engine_build.options import BuildError
from engine_build.repository import edit_config
from engine_build.values import ModelEdits
from engine_build.verify import (
    ModelView,
    VerificationError,
    check_engine_agreement,
    load_engine_config,
    verify_repository,
)
from engine_build.versions import CONTAINER_IMAGE
from local_triton.model_config import config_parameters, parse_model_config

ENGINE = {
    "version": "0.21.0",
    "pretrained_config": {
        "architecture": "LlamaForCausalLM",
        "mapping": {"world_size": 2, "tp_size": 2, "pp_size": 1},
    },
    "build_config": {
        "max_batch_size": 64,
        "max_input_len": 1024,
        "max_seq_len": 4096,
        "max_beam_width": 1,
        "plugin_config": {
            "paged_kv_cache": True,
            "remove_input_padding": True,
            "lora_plugin": "auto",
        },
        "lora_config": {"max_lora_rank": 64, "lora_target_modules": ["attn_q"]},
    },
}


def models(
    *, batch: int = 64, input_len: int = 1024, output_len: int = 3072, beams: int = 1
) -> dict[str, ModelView]:
    def view(name: str, backend: str, parameters: dict[str, str]) -> ModelView:
        return ModelView(name, backend, batch, True, parameters)

    return {
        "preprocessing": view("preprocessing", "python", {"max_input_len": str(input_len)}),
        "postprocessing": view("postprocessing", "python", {}),
        "tensorrt_llm_bls": view(
            "tensorrt_llm_bls",
            "python",
            {"max_input_len": str(input_len), "max_output_len": str(output_len)},
        ),
        "tensorrt_llm": view("tensorrt_llm", "tensorrtllm", {"max_beam_width": str(beams)}),
    }


def problems(engine: dict, views: dict[str, ModelView], **kwargs) -> list[str]:
    try:
        check_engine_agreement(engine, views, **{"world_size": 2, **kwargs})
    except VerificationError as error:
        return error.problems
    return []


def test_agreeing_engine_passes():
    assert problems(ENGINE, models()) == []
    assert problems(ENGINE, models(batch=32, input_len=512), lora_rank=16) == []


def test_each_disagreement_is_reported():
    assert problems(ENGINE, models(batch=128)) == [
        "tensorrt_llm max_batch_size 128 exceeds the engine's max_batch_size 64"
    ]
    found = problems(ENGINE, models(input_len=2048, output_len=1024))
    assert "preprocessing max_input_len 2048 exceeds the engine's max_input_len 1024" in found
    assert "tensorrt_llm_bls max_input_len 2048 exceeds the engine's max_input_len 1024" in found
    assert problems(ENGINE, models(output_len=4000)) == [
        "tensorrt_llm_bls max_input_len + max_output_len = 5024 exceeds the engine's "
        "max_seq_len 4096"
    ]
    assert problems(ENGINE, models(beams=4)) == [
        "tensorrt_llm max_beam_width 4 exceeds the engine's 1"
    ]
    assert problems(ENGINE, models(), world_size=1) == [
        "the engine was built for 2 rank(s) (tp 2 × pp 1) but the repository is launched with 1"
    ]
    assert problems(ENGINE, models(), lora_rank=128) == [
        "the engine's max_lora_rank 64 is below 128"
    ]


def test_engine_without_inflight_batching_features_is_refused():
    engine = copy.deepcopy(ENGINE)
    engine["build_config"]["plugin_config"] = {"paged_kv_cache": False}
    engine["build_config"]["kv_cache_type"] = "CONTINUOUS"
    found = problems(engine, models(), lora_rank=8)
    assert "the engine has no paged KV cache, which in-flight batching needs" in found
    assert "LoRA was asked for but the engine has no lora_plugin" in found


def test_rank_files_must_match_the_world_size(tmp_path: Path):
    (tmp_path / "config.json").write_text(json.dumps(ENGINE))
    (tmp_path / "rank0.engine").write_bytes(b"x")
    found = problems(load_engine_config(tmp_path), models(), engine_dir=tmp_path)
    assert found == [f"{tmp_path} holds 1 rank*.engine file(s), expected 2"]
    (tmp_path / "rank1.engine").write_bytes(b"x")
    assert problems(load_engine_config(tmp_path), models(), engine_dir=tmp_path) == []


def test_unknown_engine_config_format_and_missing_config(tmp_path: Path):
    with pytest.raises(VerificationError, match="not in the format this tool reads"):
        check_engine_agreement({"builder_config": {}}, models(), world_size=1)
    with pytest.raises(BuildError, match=r"has no config\.json"):
        load_engine_config(tmp_path)


TEMPLATE = """\
name: "tensorrt_llm_bls"
backend: "python"
max_batch_size: 64
model_transaction_policy { decoupled: true }
instance_group [ { count: 1 kind: KIND_CPU } ]
# Where the tokenizer is.
parameters { key: "tokenizer_dir" value: { string_value: "/engines/tokenizer" } }
parameters { key: "default_max_tokens" value: { string_value: "4096" } }
"""


def test_edit_config_sets_values_keeps_comments_and_caps():
    edits = ModelEdits(
        parameters={"tokenizer_dir": "/deploy/tokenizer"},
        optional_parameters={"trust_remote_code": "false"},  # not declared: skipped
        max_batch_size=8,
        instance_count=3,
        caps={"default_max_tokens": 1000},
        added_parameters={"lora_cache_max_adapter_size": ("32", "Largest LoRA rank.")},
    )
    text = edit_config(TEMPLATE, "tensorrt_llm_bls", edits, "t.pbtxt")
    config = parse_model_config(text)
    assert config_parameters(config) == {
        "tokenizer_dir": "/deploy/tokenizer",
        "default_max_tokens": "1000",
        "lora_cache_max_adapter_size": "32",
    }
    assert config.max_batch_size == 8
    assert config.instance_group[0].count == 3
    assert "# Where the tokenizer is." in text
    assert "# Largest LoRA rank.\nparameters" in text


def test_edit_config_refuses_unknown_parameters_and_placeholders():
    with pytest.raises(BuildError, match=r"does not declare parameter\(s\) \['max_input_len'\]"):
        edit_config(TEMPLATE, "m", ModelEdits(parameters={"max_input_len": "5"}), "t.pbtxt")
    broken = TEMPLATE.replace('"/engines/tokenizer"', '"${tokenizer_dir}"')
    with pytest.raises(BuildError, match="placeholder"):
        edit_config(broken, "m", ModelEdits(), "t.pbtxt")


def test_verify_repository_requires_decoupled_models(tmp_path: Path):
    repo = tmp_path / "model_repository"
    tokenizer = tmp_path / "tokenizer"
    tokenizer.mkdir()
    for name, backend, decoupled in (
        ("preprocessing", "python", False),
        ("postprocessing", "python", False),
        ("tensorrt_llm_bls", "python", False),
        ("tensorrt_llm", "tensorrtllm", True),
    ):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "1" / "model.py").write_text("")
        (repo / name / "config.pbtxt").write_text(
            f'name: "{name}"\nbackend: "{backend}"\nmax_batch_size: 4\n'
            f"model_transaction_policy {{ decoupled: {str(decoupled).lower()} }}\n"
            f'parameters {{ key: "tokenizer_dir" value: {{ string_value: "{tokenizer}" }} }}\n'
            'parameters { key: "max_input_len" value: { string_value: "8" } }\n'
        )
    layout = OutputLayout(root=tmp_path, deploy_root=tmp_path)
    with pytest.raises(VerificationError) as raised:
        verify_repository(layout, engine_built=False)
    assert raised.value.problems == [
        "tensorrt_llm_bls: model_transaction_policy.decoupled must be true"
    ]


def test_count_gpus_reads_nvidia_smi_and_visible_devices(tmp_path: Path, monkeypatch):
    smi = tmp_path / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: a)'\necho 'GPU 1: NVIDIA H100 (UUID: b)'\n"
        "echo 'GPU 2: NVIDIA H100 (UUID: c)'\n"
    )
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert count_gpus() == 3
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,2")
    assert count_gpus() == 2


def test_conversion_without_tensorrt_llm_names_the_container(tmp_path: Path, capsys):
    code = convert.main(
        ["--hf-dir", str(tmp_path), "--output-dir", str(tmp_path / "c"), "--dtype", "float16"]
    )
    assert code == 2
    assert f"tensorrt_llm is not installed: run inside {CONTAINER_IMAGE}" in capsys.readouterr().err
