"""The checkpoint conversion against TensorRT-LLM's API, and the checks that guard it.

tensorrt_llm cannot be installed here, so `engine_build.convert` runs against a stand-in
`tensorrt_llm` package (below) whose model class records every call. Its method
signatures copy those of TensorRT-LLM's 0.2x sources (LLaMAForCausalLM.from_hugging_face
and PretrainedModel.quantize), so a call that the real class would reject with a
TypeError is rejected here too.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
import types
from pathlib import Path
from typing import ClassVar

import pytest

from engine_build import convert
from engine_build.checkpoint import CheckpointInfo
from engine_build.executor import prepare
from engine_build.model_support import SUPPORTED_ARCHITECTURES, model_class_for
from engine_build.options import (
    BuildError,
    BuildOptions,
    ConversionRoute,
    EngineKind,
    KvCacheQuantization,
    Quantization,
    validate_options,
)
from engine_build.steps import CONVERT_CHECKPOINT, plan_build

REPO = Path(__file__).resolve().parents[2]


def checkpoint_dir(
    tmp_path: Path, architecture: str, *, auto_map: dict | None = None, **config
) -> Path:
    """A directory that passes the checkpoint checks: config.json, weights, tokenizer."""
    path = tmp_path / architecture
    path.mkdir()
    body = {"architectures": [architecture], "model_type": "x", **config}
    if auto_map is not None:
        body["auto_map"] = auto_map
    (path / "config.json").write_text(json.dumps(body), encoding="utf-8")
    (path / "model.safetensors").write_bytes(b"")
    (path / "tokenizer.json").write_text("{}", encoding="utf-8")
    return path


def build_options(checkpoint: Path, **changes) -> BuildOptions:
    base = BuildOptions(
        checkpoint=checkpoint,
        output_dir=checkpoint.parent / "out",
        dry_run=True,
        max_input_len=512,
        max_seq_len=1024,
    )
    return dataclasses.replace(base, **changes)


# --- A stand-in tensorrt_llm --------------------------------------------------------------


class RecordingModel:
    """A model class with LLaMAForCausalLM's conversion signatures; records its calls."""

    calls: ClassVar[list[tuple[str, dict]]] = []

    @classmethod
    def from_hugging_face(
        cls, hf_model_or_dir, dtype="auto", mapping=None, quant_config=None, **kwargs
    ):
        cls.calls.append(("from_hugging_face", {"dtype": dtype, "mapping": mapping, **kwargs}))
        return cls()

    def save_checkpoint(self, output_dir, save_config=True):
        if save_config:
            (Path(output_dir) / "config.json").write_text("{}", encoding="utf-8")

    @classmethod
    def quantize(
        cls,
        hf_model_dir,
        output_dir,
        dtype="auto",
        mapping=None,
        quant_config=None,
        *,
        device="cuda",
        calib_dataset="cnn_dailymail",
        calib_batches=512,
        calib_batch_size=1,
        calib_max_seq_length=512,
        random_seed=1234,
        tokenizer_max_seq_length=2048,
        **kwargs,
    ):
        cls.calls.append(("quantize", {"quant_config": quant_config, **kwargs}))
        (Path(output_dir) / "config.json").write_text("{}", encoding="utf-8")


@dataclasses.dataclass
class QuantConfig:
    """The fields of tensorrt_llm.models.modeling_utils.QuantConfig that we set."""

    quant_algo: enum.Enum | None = None
    kv_cache_quant_algo: enum.Enum | None = None
    group_size: int = 128


@pytest.fixture
def tensorrt_llm(monkeypatch) -> type[RecordingModel]:
    """Install the stand-in package; MODEL_MAP maps every supported architecture (and
    DeepseekV2ForCausalLM, whose real signature differs) to RecordingModel."""
    RecordingModel.calls = []
    root = types.ModuleType("tensorrt_llm")
    root.Mapping = lambda **fields: types.SimpleNamespace(**fields)
    models = types.ModuleType("tensorrt_llm.models")
    models.MODEL_MAP = dict.fromkeys(
        [*SUPPORTED_ARCHITECTURES, "DeepseekV2ForCausalLM"], RecordingModel
    )
    modeling_utils = types.ModuleType("tensorrt_llm.models.modeling_utils")
    modeling_utils.QuantConfig = QuantConfig
    quantization = types.ModuleType("tensorrt_llm.quantization")
    quantization.QuantAlgo = enum.Enum("QuantAlgo", "W8A16 W4A16_AWQ FP8 INT8")
    for module in (root, models, modeling_utils, quantization):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    return RecordingModel


def run_convert(hf_dir: Path, tmp_path: Path, *extra: str) -> int:
    return convert.main(
        [
            "--hf-dir",
            str(hf_dir),
            "--output-dir",
            str(tmp_path / "trtllm_checkpoint"),
            "--dtype",
            "float16",
            *extra,
        ]
    )


# --- trust_remote_code reaches the conversion ------------------------------------------


def test_conversion_passes_trust_remote_code_false_unless_asked(tensorrt_llm, tmp_path: Path):
    """TensorRT-LLM's config loaders default trust_remote_code to True; we never rely on it."""
    hf_dir = checkpoint_dir(tmp_path, "LlamaForCausalLM")
    assert run_convert(hf_dir, tmp_path, "--tp-size", "2") == 0
    assert [name for name, _ in tensorrt_llm.calls] == ["from_hugging_face"] * 2
    assert all(kwargs["trust_remote_code"] is False for _, kwargs in tensorrt_llm.calls)

    tensorrt_llm.calls.clear()
    assert run_convert(hf_dir, tmp_path, "--trust-remote-code") == 0
    assert tensorrt_llm.calls[0][1]["trust_remote_code"] is True


def test_calibrated_conversion_passes_trust_remote_code(tensorrt_llm, tmp_path: Path):
    hf_dir = checkpoint_dir(tmp_path, "LlamaForCausalLM")
    assert run_convert(hf_dir, tmp_path, "--quant-algo", "FP8") == 0
    ((name, kwargs),) = tensorrt_llm.calls
    assert name == "quantize"
    assert kwargs["trust_remote_code"] is False


def test_plan_shows_trust_remote_code(tmp_path: Path):
    hf_dir = checkpoint_dir(tmp_path, "LlamaForCausalLM")
    for trust in (False, True):
        _, _, steps = prepare(build_options(hf_dir, trust_remote_code=trust))
        (convert_step,) = [s for s in steps if s.name == CONVERT_CHECKPOINT]
        assert convert_step.arguments["trust_remote_code"] == str(trust)
        assert ("--trust-remote-code" in convert_step.command) is trust


def test_calibrating_custom_code_checkpoints_needs_trust_remote_code(tmp_path: Path):
    """Calibration loads the model with trust_remote_code=True inside TensorRT-LLM."""
    hf_dir = checkpoint_dir(
        tmp_path, "LlamaForCausalLM", auto_map={"AutoConfig": "configuration_x.XConfig"}
    )
    assert prepare(build_options(hf_dir))  # no calibration: trust_remote_code=False holds
    with pytest.raises(BuildError, match=r"ships its own Python code.*--trust-remote-code"):
        prepare(build_options(hf_dir, quantization=Quantization.FP8))
    assert prepare(build_options(hf_dir, quantization=Quantization.FP8, trust_remote_code=True))


# --- int8 KV cache: routed per model class ---------------------------------------------


def test_int8_kv_cache_is_the_model_class_calibration_not_modelopt(tmp_path: Path):
    hf_dir = checkpoint_dir(tmp_path, "LlamaForCausalLM")
    for weights in (Quantization.NONE, Quantization.INT8_WEIGHT_ONLY):
        options = build_options(
            hf_dir, quantization=weights, kv_cache_quantization=KvCacheQuantization.INT8
        )
        assert options.conversion_route is ConversionRoute.CLASS_CALIBRATION
        _, _, steps = prepare(options)
        (convert_step,) = [s for s in steps if s.name == CONVERT_CHECKPOINT]
        assert "ModelOpt calibration" not in convert_step.summary
        assert "model class's own quantize" in convert_step.summary
        assert "--calib-dataset" in convert_step.command
    # With AWQ/FP8 weights ModelOpt quantizes the int8 KV cache along with them.
    options = build_options(
        hf_dir, quantization=Quantization.FP8, kv_cache_quantization=KvCacheQuantization.INT8
    )
    assert options.conversion_route is ConversionRoute.MODELOPT


def test_int8_kv_cache_is_refused_for_a_class_without_its_own_calibration(tmp_path: Path):
    hf_dir = checkpoint_dir(tmp_path, "Phi3ForCausalLM")
    assert not model_class_for("Phi3ForCausalLM").own_int8_kv_calibration
    with pytest.raises(
        BuildError, match=r"kv-cache-quantization int8 .*Phi3ForCausalLM.* has none"
    ):
        prepare(build_options(hf_dir, kv_cache_quantization=KvCacheQuantization.INT8))
    # ModelOpt paths stay open for it.
    assert prepare(build_options(hf_dir, kv_cache_quantization=KvCacheQuantization.FP8))
    assert prepare(
        build_options(
            hf_dir,
            quantization=Quantization.INT4_AWQ,
            kv_cache_quantization=KvCacheQuantization.INT8,
        )
    )


def test_int8_kv_cache_conversion_calls_the_class_quantize(tensorrt_llm, tmp_path: Path):
    hf_dir = checkpoint_dir(tmp_path, "Qwen2ForCausalLM")
    assert run_convert(hf_dir, tmp_path, "--kv-cache-quant-algo", "INT8") == 0
    ((name, kwargs),) = tensorrt_llm.calls
    assert name == "quantize"
    assert kwargs["quant_config"].kv_cache_quant_algo.name == "INT8"
    assert kwargs["quant_config"].quant_algo is None


# --- fp8 KV cache under expert parallelism ---------------------------------------------


def test_fp8_kv_cache_with_expert_parallelism_is_refused():
    base = build_options(Path("/models/mixtral"), tp_size=4, moe_ep_size=2, gpus=4)
    validate_options(base)  # no quantization: expert parallelism is fine
    for weights in (Quantization.NONE, Quantization.FP8):
        with pytest.raises(
            BuildError, match=r"kv-cache-quantization fp8 .*ModelOpt.*moe-ep-size 2"
        ):
            validate_options(
                dataclasses.replace(
                    base, quantization=weights, kv_cache_quantization=KvCacheQuantization.FP8
                )
            )


# --- model classes ---------------------------------------------------------------------


def test_unchecked_architecture_is_refused_before_the_build(tmp_path: Path):
    hf_dir = checkpoint_dir(tmp_path, "DeepseekV2ForCausalLM")
    with pytest.raises(BuildError) as refused:
        prepare(build_options(hf_dir))
    message = str(refused.value)
    assert "'DeepseekV2ForCausalLM'" in message
    assert "LlamaForCausalLM" in message and "Qwen2ForCausalLM" in message
    # The reference engine serves any causal LM: no conversion, no check.
    assert prepare(build_options(hf_dir, engine=EngineKind.REFERENCE))


def test_convert_refuses_an_unchecked_architecture_without_calling_it(
    tensorrt_llm, tmp_path: Path, capsys
):
    hf_dir = checkpoint_dir(tmp_path, "DeepseekV2ForCausalLM")
    assert run_convert(hf_dir, tmp_path) == 2
    assert "'DeepseekV2ForCausalLM'" in capsys.readouterr().err
    assert tensorrt_llm.calls == []


def test_every_supported_architecture_plans(tmp_path: Path):
    for architecture in SUPPORTED_ARCHITECTURES:
        info = CheckpointInfo(
            path=tmp_path,
            architecture=architecture,
            model_type="x",
            max_position_embeddings=None,
            is_moe=False,
        )
        steps = plan_build(build_options(tmp_path), info)
        (convert_step,) = [s for s in steps if s.name == CONVERT_CHECKPOINT]
        assert convert_step.arguments["architecture"] == architecture


# --- the release that renamed min_length/random_seed -----------------------------------


@pytest.mark.parametrize(
    "relative",
    [
        "docs/production.md",
        "model_repository/tensorrt_llm/config.pbtxt",
        "reference_engine/__init__.py",
        "reference_engine/triton_model/config.pbtxt",
        "bls/engine_io.py",
    ],
)
def test_docs_date_the_min_tokens_and_seed_rename_to_triton_25_05(relative: str):
    """The C++ backend renamed min_length -> min_tokens and random_seed -> seed at Triton
    25.05 (tensorrtllm_backend commit c2e65b8); every note about the old names says so."""
    text = (REPO / relative).read_text(encoding="utf-8")
    first = text.index("min_length")
    assert "25.05" in text[max(0, first - 300) : first + 300], (
        f"{relative}: the note about min_length/random_seed does not name Triton 25.05"
    )
    assert "0.9 and 0.10" not in text and "0.21's config" not in text
