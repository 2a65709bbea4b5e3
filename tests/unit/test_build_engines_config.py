"""The shipped production config of `tensorrt_llm` (the C++ tensorrtllm backend)."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from local_triton.model_config import config_parameters, tensor_specs

CONFIG = Path(__file__).resolve().parents[2] / "model_repository" / "tensorrt_llm" / "config.pbtxt"


def load() -> model_config_pb2.ModelConfig:
    config = model_config_pb2.ModelConfig()
    text_format.Parse(CONFIG.read_text(encoding="utf-8"), config)
    return config


def test_is_the_decoupled_inflight_batching_cpp_model():
    config = load()
    assert config.name == "tensorrt_llm"
    assert config.backend == "tensorrtllm"
    assert config.max_batch_size == 64
    assert config.model_transaction_policy.decoupled
    assert config.HasField("dynamic_batching")
    assert [(g.kind, g.count) for g in config.instance_group] == [
        (model_config_pb2.ModelInstanceGroup.KIND_CPU, 1)
    ]
    params = config_parameters(config)
    assert params["gpt_model_type"] == "inflight_fused_batching"
    assert params["gpt_model_path"] == "/engines/engine"
    assert params["max_beam_width"] == "1"
    assert params["batch_scheduler_policy"] == "guaranteed_no_evict"
    assert params["kv_cache_free_gpu_mem_fraction"] == "0.9"
    assert params["enable_kv_cache_reuse"] == "false"
    assert params["enable_chunked_context"] == "false"
    assert params["exclude_input_in_output"] == "true"
    assert params["cancellation_check_period_ms"] == "100"
    assert params["decoding_mode"] == "top_k_top_p"


def test_no_placeholders_and_no_empty_values_the_backend_would_parse():
    text = CONFIG.read_text(encoding="utf-8")
    assert "${" not in text
    params = config_parameters(load())
    # The backend reads these three without a default, so they are present; an empty
    # value is its documented "guided decoding off". Every other key is either set to a
    # real value or left out (the backend's default).
    empty = {key for key, value in params.items() if value == ""}
    assert empty == {"guided_decoding_backend", "xgrammar_tokenizer_info_path", "tokenizer_dir"}
    for optional in (
        "max_tokens_in_paged_kv_cache",
        "gpu_device_ids",
        "lora_cache_max_adapter_size",
    ):
        assert optional not in params
        assert optional in text  # documented in the comments as left at its default


def test_every_parameter_is_documented():
    lines = CONFIG.read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("parameters")]
    assert len(starts) == len(config_parameters(load()))
    for start in starts:
        # Walk up over the parameters of the same group to its comment.
        i = start - 1
        while lines[i].strip() == "}" or not lines[i].startswith("#"):
            assert lines[i].strip(), f"parameter at line {start + 1} has no comment above it"
            i -= 1
        comment = []
        while lines[i].startswith("#"):
            comment.append(lines[i])
            i -= 1
        text = " ".join(comment)
        assert any(word in text for word in ("Default", "Required", "must be present")), (
            f"the comment of the parameter at line {start + 1} gives no default: {text}"
        )


def test_inputs_and_outputs_are_the_official_contract():
    inputs, outputs = tensor_specs(load())
    # Names, dtypes and dims of the backend's own config (the targeted release).
    expected_inputs = {
        "input_ids": ("TYPE_INT32", (-1,), True),
        "input_lengths": ("TYPE_INT32", (1,), False),
        "request_output_len": ("TYPE_INT32", (1,), False),
        "end_id": ("TYPE_INT32", (1,), True),
        "pad_id": ("TYPE_INT32", (1,), True),
        "stop_words_list": ("TYPE_INT32", (2, -1), True),
        "bad_words_list": ("TYPE_INT32", (2, -1), True),
        "embedding_bias": ("TYPE_FP32", (-1,), True),
        "streaming": ("TYPE_BOOL", (1,), True),
        "stop": ("TYPE_BOOL", (1,), True),
        "seed": ("TYPE_UINT64", (1,), True),
        "min_tokens": ("TYPE_INT32", (1,), True),
        "num_return_sequences": ("TYPE_INT32", (1,), True),
        "exclude_input_in_output": ("TYPE_BOOL", (1,), True),
        "lora_weights": ("TYPE_FP16", (-1, -1), True),
        "lora_config": ("TYPE_INT32", (-1, 3), True),
    }
    for name, (dtype, dims, optional) in expected_inputs.items():
        spec = inputs[name]
        assert (spec.data_type, spec.dims, spec.optional) == (dtype, dims, optional), name
    assert "random_seed" not in inputs and "min_length" not in inputs
    assert {name: (s.data_type, s.dims) for name, s in outputs.items()} == {
        "output_ids": ("TYPE_INT32", (-1, -1)),
        "sequence_length": ("TYPE_INT32", (-1,)),
        "cum_log_probs": ("TYPE_FP32", (-1,)),
        "output_log_probs": ("TYPE_FP32", (-1, -1)),
        "context_logits": ("TYPE_FP32", (-1, -1)),
        "generation_logits": ("TYPE_FP32", (-1, -1, -1)),
        "batch_index": ("TYPE_INT32", (1,)),
        "sequence_index": ("TYPE_INT32", (1,)),
    }


def test_version_directory_explains_where_the_engine_is():
    readme = CONFIG.parent / "1" / "README.md"
    assert "gpt_model_path" in readme.read_text(encoding="utf-8")
