"""What a request can never do: be larger than max_request_bytes, set a deployment setting
(tokenizer_dir, a model name, the engine's address), or run a tokenizer's own code.

The other caps (prompt tokens, max_tokens, max_seq_len, words per list, tokens and
characters per word, num_return_sequences, prompts per request) are tested where they
are enforced: test_bls_request.py, test_bls_server.py, test_preprocessing_encoding.py.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from bls.limits import BLS_PARAMETERS, BlsLimits
from bls.validation import RequestValidator
from engine_build.cli import build_parser
from engine_build.options import BuildOptions
from llm_api_engine.config import LlmApiConfig
from local_triton.model_config import load_model_config
from local_triton.staging import default_model_repository, reference_engine_model_dir
from postprocessing.config import PostprocessingSettings
from postprocessing.handler import Postprocessor
from preprocessing.config import PreprocessingLimits, PreprocessingSettings
from preprocessing.encoding import PromptEncoder
from preprocessing.handler import preprocess
from preprocessing.request_size import check_request_size, input_bytes
from serving_common.errors import RequestError
from serving_common.tokenizer_loading import load_tokenizer


@pytest.fixture(scope="module")
def tokenizer(fixture_paths):
    return load_tokenizer(fixture_paths.sentencepiece_tokenizer)


def text(value: str | bytes, rows: int = 1) -> np.ndarray:
    raw = value.encode() if isinstance(value, str) else value
    return np.array([[raw]] * rows, dtype=object)


# ---- max_request_bytes ---------------------------------------------------------------


def test_input_bytes_counts_string_lengths_and_tensor_sizes():
    assert input_bytes(np.array([[b"abc", b""], [b"de", "fgh"]], dtype=object)) == 8
    assert input_bytes(np.zeros((2, 3), dtype=np.float32)) == 24


def test_an_oversized_request_names_its_largest_input_and_the_limit():
    inputs = {"text_input": text("x" * 60), "stop_words": text("y" * 50)}
    check_request_size(inputs, 110)
    with pytest.raises(RequestError) as caught:
        check_request_size(inputs, 109)
    assert caught.value.field == "text_input"
    assert caught.value.message == (
        "the request is 110 bytes (text_input: 60), over the limit of 109 bytes (max_request_bytes)"
    )
    check_request_size(inputs, 60, exempt={"stop_words"})


def validator(tokenizer, max_request_bytes: int) -> RequestValidator:
    limits = PreprocessingLimits(max_request_bytes=max_request_bytes)
    return RequestValidator(PromptEncoder(tokenizer, limits), BlsLimits())


def test_the_bls_refuses_an_oversized_request_before_reading_it(tokenizer):
    check = validator(tokenizer, max_request_bytes=1000)
    # Not even valid UTF-8, and an unknown input: the size is judged first.
    inputs = {"text_input": text(b"\xff" * 1001), "nonsense": text("z")}
    with pytest.raises(RequestError) as caught:
        check.validate(inputs, {})
    assert caught.value.field == "text_input" and "(max_request_bytes)" in caught.value.message


def test_lora_weights_do_not_count_towards_the_bls_request_size(tokenizer):
    check = validator(tokenizer, max_request_bytes=1000)
    weights = np.zeros((1, 2, 4000), dtype=np.float16)  # 16 000 bytes
    validated = check.validate(
        {
            "text_input": text("Hi"),
            "lora_task_id": np.array([[1]], dtype=np.uint64),
            "lora_weights": weights,
            "lora_config": np.array([[[0, 0, 8], [1, 0, 8]]], dtype=np.int32),
        },
        {},
    )
    assert validated.request.lora is not None


def test_the_preprocessing_model_refuses_an_oversized_request(tokenizer):
    encoder = PromptEncoder(tokenizer, PreprocessingLimits(max_request_bytes=100))
    with pytest.raises(RequestError) as caught:
        preprocess(encoder, {"QUERY": text("x" * 101)})
    assert caught.value.field == "QUERY" and "(max_request_bytes)" in caught.value.message


def test_the_shipped_size_caps_are_the_defaults():
    for model in ("preprocessing", "tensorrt_llm_bls"):
        config = load_model_config(default_model_repository() / model / "config.pbtxt")
        values = {key: value.string_value for key, value in config.parameters.items()}
        assert values["max_request_bytes"] == str(PreprocessingLimits().max_request_bytes)
        assert values["max_word_chars"] == str(PreprocessingLimits().max_word_chars)


# ---- deployment settings are not a request's to set -----------------------------------

DEPLOYMENT_SETTINGS = [
    "tokenizer_dir",
    "tensorrt_llm_model_name",
    "engine_grpc_url",
    "trust_remote_code",
    "max_input_len",
    "model_name",
]


@pytest.mark.parametrize("name", DEPLOYMENT_SETTINGS)
def test_the_bls_refuses_a_deployment_setting_as_a_request_parameter(tokenizer, name):
    with pytest.raises(RequestError) as caught:
        validator(tokenizer, 10_000).validate({"text_input": text("Hi")}, {name: "/tmp/evil"})
    assert caught.value.field == name
    assert caught.value.message.startswith("unknown request parameter; accepted parameters:")


@pytest.mark.parametrize("name", ["tokenizer_dir", "tensorrt_llm_model_name"])
def test_the_bls_refuses_a_deployment_setting_as_an_input(tokenizer, name):
    with pytest.raises(RequestError) as caught:
        validator(tokenizer, 10_000).validate(
            {"text_input": text("Hi"), name: text("/tmp/evil")}, {}
        )
    assert caught.value.field == name and "unknown input" in caught.value.message


def test_the_bls_reads_its_settings_only_from_its_config():
    # A request can only send the inputs declared in config.pbtxt, and the scalar ones as
    # parameters (bls/request_fields.py). The one name they share with the config is a
    # per-request choice whose default the config sets.
    from bls.request_fields import INPUTS_BY_NAME, REQUEST_PARAMETER_NAMES

    shared = set(BLS_PARAMETERS) & (set(INPUTS_BY_NAME) | REQUEST_PARAMETER_NAMES)
    assert shared == {"skip_special_tokens"}


@pytest.mark.parametrize("name", ["tokenizer_dir", "skip_special_tokens"])
def test_pre_and_postprocessing_refuse_request_parameters(tokenizer, name):
    encoder = PromptEncoder(tokenizer, PreprocessingLimits())
    with pytest.raises(RequestError) as caught:
        preprocess(encoder, {"QUERY": text("Hi")}, {name: "x"})
    assert caught.value.field == name
    postprocessor = Postprocessor(tokenizer)
    tokens = {
        "TOKENS_BATCH": np.array([[[5, 6]]], dtype=np.int32),
        "SEQUENCE_LENGTH": np.array([[2]], dtype=np.int32),
    }
    assert postprocessor.postprocess(tokens, {"triton_enable_empty_final_response": True})
    with pytest.raises(RequestError) as caught:
        postprocessor.postprocess(tokens, {name: "x"})
    assert caught.value.field == name and "request parameter" in caught.value.message


# ---- trust_remote_code is off unless a deployment turns it on --------------------------


def shipped_configs():
    root = default_model_repository()
    yield from sorted(root.glob("*/config.pbtxt"))
    yield reference_engine_model_dir() / "config.pbtxt"
    from local_triton.staging import checkout_root

    yield checkout_root() / "llm_api_engine" / "triton_model" / "config.pbtxt"


def test_every_shipped_config_keeps_trust_remote_code_off():
    declared = 0
    for path in shipped_configs():
        parameters = load_model_config(path).parameters
        if "trust_remote_code" in parameters:
            declared += 1
            assert parameters["trust_remote_code"].string_value == "false", path
    assert declared == 4  # preprocessing, postprocessing, tensorrt_llm_bls, LLM API


def test_every_reader_defaults_trust_remote_code_to_off(tmp_path):
    assert PreprocessingSettings.from_parameters({}).trust_remote_code is False
    assert PostprocessingSettings.from_parameters({}).trust_remote_code is False
    assert LlmApiConfig.from_parameters({"model_dir": str(tmp_path)}).trust_remote_code is False
    assert BuildOptions(checkpoint=tmp_path, output_dir=tmp_path).trust_remote_code is False
    args = build_parser().parse_args(["--checkpoint", "c", "--output-dir", "o"])
    assert isinstance(args, argparse.Namespace) and args.trust_remote_code is False
