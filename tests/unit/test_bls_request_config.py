"""The BLS config.pbtxt agrees with the parser, and BlsLimits reads its parameters."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from bls.limits import BlsLimits, RequestLogSettings, ServingOptions, TextSettings
from bls.request_fields import INPUT_SPECS, REQUEST_PARAMETER_NAMES
from preprocessing.config import PreprocessingLimits, PreprocessingSettings
from serving_common.config import ConfigError

CONFIG = Path(__file__).resolve().parents[2] / "model_repository/tensorrt_llm_bls/config.pbtxt"


@pytest.fixture(scope="module")
def config():
    text = CONFIG.read_text(encoding="utf-8")
    parsed = model_config_pb2.ModelConfig()
    text_format.Parse(text, parsed)  # raises on anything Triton would not read
    return parsed


def _dtype(tensor) -> str:
    return model_config_pb2.DataType.Name(tensor.data_type)


def test_model_is_a_decoupled_batched_python_model(config):
    assert config.name == "tensorrt_llm_bls"
    assert config.backend == "python"
    assert config.max_batch_size > 0  # prompts come as rows [B, 1]
    assert config.model_transaction_policy.decoupled is True
    assert [(group.count, group.kind) for group in config.instance_group] == [
        (1, model_config_pb2.ModelInstanceGroup.KIND_CPU)
    ]


def test_declared_inputs_are_exactly_the_ones_the_parser_reads(config):
    declared = {tensor.name: (_dtype(tensor), tuple(tensor.dims)) for tensor in config.input}
    parsed = {spec.name: (spec.triton_dtype, spec.dims) for spec in INPUT_SPECS}
    assert declared == parsed


def test_every_input_is_optional_at_the_triton_level(config):
    # text_input or messages is required, which only the model can check.
    assert [tensor.name for tensor in config.input if not tensor.optional] == []


def test_inputs_use_the_official_bls_dtypes(config):
    declared = {tensor.name: (_dtype(tensor), list(tensor.dims)) for tensor in config.input}
    official = {
        "text_input": ("TYPE_STRING", [1]),
        "max_tokens": ("TYPE_INT32", [1]),
        "stream": ("TYPE_BOOL", [1]),
        "stop_words": ("TYPE_STRING", [-1]),
        "bad_words": ("TYPE_STRING", [-1]),
        "end_id": ("TYPE_INT32", [1]),
        "pad_id": ("TYPE_INT32", [1]),
        "top_k": ("TYPE_INT32", [1]),
        "top_p": ("TYPE_FP32", [1]),
        "temperature": ("TYPE_FP32", [1]),
        "length_penalty": ("TYPE_FP32", [1]),
        "repetition_penalty": ("TYPE_FP32", [1]),
        "presence_penalty": ("TYPE_FP32", [1]),
        "frequency_penalty": ("TYPE_FP32", [1]),
        "min_tokens": ("TYPE_INT32", [1]),
        "min_length": ("TYPE_INT32", [1]),
        "seed": ("TYPE_UINT64", [1]),
        "random_seed": ("TYPE_UINT64", [1]),
        "beam_width": ("TYPE_INT32", [1]),
        "num_return_sequences": ("TYPE_INT32", [1]),
        "return_log_probs": ("TYPE_BOOL", [1]),
        "exclude_input_in_output": ("TYPE_BOOL", [1]),
        "embedding_bias_words": ("TYPE_STRING", [-1]),
        "embedding_bias_weights": ("TYPE_FP32", [-1]),
        "return_num_input_tokens": ("TYPE_BOOL", [1]),
        "return_num_output_tokens": ("TYPE_BOOL", [1]),
        "lora_task_id": ("TYPE_UINT64", [1]),
        "lora_weights": ("TYPE_FP16", [-1, -1]),
        "lora_config": ("TYPE_INT32", [-1, 3]),
    }
    assert {name: declared[name] for name in official} == official


def test_outputs(config):
    declared = {tensor.name: (_dtype(tensor), list(tensor.dims)) for tensor in config.output}
    assert declared == {
        "text_output": ("TYPE_STRING", [-1]),
        "finish_reason": ("TYPE_STRING", [1]),
        "stop_reason": ("TYPE_STRING", [1]),
        "num_input_tokens": ("TYPE_INT32", [1]),
        "num_output_tokens": ("TYPE_INT32", [1]),
        "cum_log_probs": ("TYPE_FP32", [-1]),
        "output_log_probs": ("TYPE_FP32", [-1, -1]),
        "batch_index": ("TYPE_INT32", [1]),
        "sequence_index": ("TYPE_INT32", [1]),
    }


def test_parameters_hold_finished_values(config):
    values = {key: value.string_value for key, value in config.parameters.items()}
    assert values == {
        "tokenizer_dir": "/engines/tokenizer",
        "tensorrt_llm_model_name": "tensorrt_llm",
        "max_input_len": "4096",
        "max_output_len": "4096",
        "max_seq_len": "0",
        "default_max_tokens": "128",
        "add_special_tokens": "true",
        "max_words": "64",
        "max_word_tokens": "32",
        "max_word_chars": "256",
        "max_request_bytes": "1048576",
        "max_num_return_sequences": "8",
        "trust_remote_code": "false",
        "skip_special_tokens": "true",
        "engine_grpc_url": "auto",
        "max_concurrent_requests": "256",
        "cancellation_check_period_ms": "100",
        "response_sender_threads": "2",
        "event_loop": "auto",
        "engine_stall_timeout_s": "600",
        "request_log_level": "info",
        "request_log_text": "false",
        "spaces_between_special_tokens": "true",
    }
    code = [line.split("#", 1)[0] for line in CONFIG.read_text(encoding="utf-8").splitlines()]
    assert not [line for line in code if "${" in line]


def test_serving_options_from_the_shipped_config(config):
    parameters = {key: {"string_value": v.string_value} for key, v in config.parameters.items()}
    assert ServingOptions.from_parameters(parameters) == ServingOptions()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_concurrent_requests", "0"),
        ("response_sender_threads", "x"),
        ("cancellation_check_period_ms", "-5"),
        ("event_loop", "trio"),
    ],
)
def test_a_bad_serving_option_names_itself(name, value):
    with pytest.raises(ConfigError, match=name):
        ServingOptions.from_parameters({name: value})


def test_request_log_settings():
    assert RequestLogSettings.from_parameters({}) == RequestLogSettings("info", False)
    settings = {"request_log_level": "Verbose", "request_log_text": "true"}
    assert RequestLogSettings.from_parameters(settings) == RequestLogSettings("verbose", True)
    with pytest.raises(ConfigError, match="request_log_level must be one of off, info, verbose"):
        RequestLogSettings.from_parameters({"request_log_level": "debug"})


def test_limits_from_the_shipped_config(config):
    # The shape Triton's model_config JSON gives the model: {key: {"string_value": ...}}.
    parameters = {key: {"string_value": v.string_value} for key, v in config.parameters.items()}
    limits = BlsLimits.from_parameters(parameters, max_batch_size=config.max_batch_size)
    assert limits == BlsLimits(
        max_output_len=4096,
        default_max_tokens=128,
        max_batch_rows=64,
        max_num_return_sequences=8,
        default_skip_special_tokens=True,
    )
    # The dataclass defaults are the shipped values.
    assert limits == BlsLimits()
    # The prompt and word limits are the preprocessing model's, read from the same
    # parameters by the same class the BLS's encoder gets them from.
    assert PreprocessingSettings.from_parameters(parameters).limits == PreprocessingLimits()
    assert TextSettings.from_parameters(parameters) == TextSettings(
        spaces_between_special_tokens=True
    )


def test_spaces_between_special_tokens_is_read_and_checked():
    assert TextSettings.from_parameters({}) == TextSettings()
    off = TextSettings.from_parameters({"spaces_between_special_tokens": "false"})
    assert off.spaces_between_special_tokens is False
    with pytest.raises(ConfigError, match='spaces_between_special_tokens must be "true"'):
        TextSettings.from_parameters({"spaces_between_special_tokens": "maybe"})


def test_limits_from_plain_strings_and_defaults_for_missing_keys():
    limits = BlsLimits.from_parameters(
        {"max_output_len": "256", "default_max_tokens": "16", "skip_special_tokens": "False"},
        max_batch_size=8,
    )
    assert limits.max_output_len == 256
    assert limits.default_max_tokens == 16
    assert limits.default_skip_special_tokens is False
    assert limits.max_batch_rows == 8
    assert limits.max_num_return_sequences == BlsLimits().max_num_return_sequences


@pytest.mark.parametrize(
    ("parameters", "max_batch_size", "message"),
    [
        (
            {"max_output_len": "lots"},
            64,
            "max_output_len must be a positive integer, got 'lots'",
        ),
        (
            {"max_num_return_sequences": "0"},
            64,
            "max_num_return_sequences must be a positive integer, got '0'",
        ),
        (
            {"max_input_len": "${max_input_len}"},
            64,
            "parameter max_input_len: unfilled template placeholder '${max_input_len}'; "
            "config.pbtxt must hold finished values",
        ),
        (
            {"skip_special_tokens": "maybe"},
            64,
            'skip_special_tokens must be "true" or "false", got \'maybe\'',
        ),
        (
            {"max_output_len": "64", "default_max_tokens": "65"},
            64,
            "default_max_tokens (65) must not exceed max_output_len (64)",
        ),
        (
            {},
            0,
            "max_batch_size must be at least 1 (a request carries prompts as rows [B, 1]), got 0",
        ),
        (
            {"max_words": {"int_value": 3}},
            64,
            "parameter max_words: expected a string_value, got {'int_value': 3}",
        ),
        ({"max_words": 3}, 64, "parameter max_words must be a string, got 3"),
    ],
)
def test_bad_config_values_are_named(parameters, max_batch_size, message):
    with pytest.raises(ConfigError) as info:
        BlsLimits.from_parameters(parameters, max_batch_size=max_batch_size)
    assert str(info.value) == message


def test_parameters_the_bls_leaves_to_others_are_not_checked_here():
    limits = BlsLimits.from_parameters({"tokenizer_dir": "/x", "trust_remote_code": "nonsense"})
    assert limits == BlsLimits()


def test_scalar_inputs_are_the_accepted_request_parameters():
    scalar_names = {spec.name for spec in INPUT_SPECS if spec.dims == (1,)}
    # Text (the prompt, and a guide that may be a long schema) comes as a tensor only.
    assert scalar_names - REQUEST_PARAMETER_NAMES == {
        "text_input",
        "messages",
        "guided_decoding_guide_type",
        "guided_decoding_guide",
    }
    assert scalar_names >= REQUEST_PARAMETER_NAMES


def test_the_shipped_parameters_are_exactly_those_the_bls_reads(config):
    from bls.limits import BLS_PARAMETERS

    assert sorted(config.parameters) == sorted(BLS_PARAMETERS)


def test_a_misspelt_parameter_is_refused():
    from bls.limits import BLS_PARAMETERS
    from serving_common.config import check_known_parameters

    with pytest.raises(
        ConfigError, match=r"unknown parameter 'max_output_length'.*tensorrt_llm_bls"
    ):
        check_known_parameters({"max_output_length": "9"}, BLS_PARAMETERS, "tensorrt_llm_bls")
