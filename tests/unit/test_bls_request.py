"""read_client_request and RequestValidator: what a valid request becomes, and the exact error for each bad one.

Input tensors are built the way Triton hands them to the model: the dtype each input has
in model_repository/tensorrt_llm_bls/config.pbtxt, with the batch dimension first.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from bls.limits import BlsLimits
from bls.request_rules import read_client_request
from bls.request_types import (
    ChatPrompt,
    ClientRequest,
    LoraOptions,
    SamplingOptions,
    TextPrompt,
)
from bls.validation import RequestValidator
from preprocessing.config import PreprocessingLimits
from preprocessing.encoding import PromptEncoder
from serving_common.errors import RequestError
from serving_common.tokenizer_loading import load_tokenizer

CONFIG = Path(__file__).resolve().parents[2] / "model_repository/tensorrt_llm_bls/config.pbtxt"
_NUMPY = {
    "TYPE_STRING": object,
    "TYPE_INT32": np.int32,
    "TYPE_UINT64": np.uint64,
    "TYPE_FP32": np.float32,
    "TYPE_FP16": np.float16,
    "TYPE_BOOL": np.bool_,
}


def _config_dtypes() -> dict[str, type]:
    config = model_config_pb2.ModelConfig()
    text_format.Parse(CONFIG.read_text(encoding="utf-8"), config)
    return {
        tensor.name: _NUMPY[model_config_pb2.DataType.Name(tensor.data_type)]
        for tensor in config.input
    }


DTYPES = _config_dtypes()
LIMITS = BlsLimits(
    max_output_len=4096,
    default_max_tokens=128,
    max_batch_rows=4,
    max_num_return_sequences=8,
)


def tensor(name: str, rows: list) -> np.ndarray:
    """A [B, ...] input as Triton gives it; strings become bytes in an object array."""
    dtype = DTYPES[name]
    if dtype is object:
        encode = np.vectorize(lambda v: v.encode() if isinstance(v, str) else v, otypes=[object])
        return encode(np.array(rows, dtype=object))
    return np.array(rows, dtype=dtype)


def scalar(name: str, value: object, batch: int = 1) -> np.ndarray:
    return tensor(name, [[value]] * batch)


def parse(
    inputs: dict[str, np.ndarray] | None = None,
    parameters: dict[str, object] | None = None,
    limits: BlsLimits = LIMITS,
    prompt: str | None = "Hello",
) -> ClientRequest:
    arrays = {} if prompt is None else {"text_input": scalar("text_input", prompt)}
    arrays.update(inputs or {})
    return read_client_request(arrays, parameters or {}, limits)


def error_of(*args, **kwargs) -> RequestError:
    with pytest.raises(RequestError) as info:
        parse(*args, **kwargs)
    return info.value


def scalars(**values: object) -> dict[str, np.ndarray]:
    return {name: scalar(name, value) for name, value in values.items()}


# ---------------------------------------------------------------------------------------
# Valid requests


def test_minimal_request_takes_the_defaults():
    request = parse()
    assert request == ClientRequest(
        prompts=(TextPrompt("Hello"),),
        max_tokens=128,
        stream=False,
        stop_words=(),
        bad_words=(),
        end_id=None,
        pad_id=None,
        sampling=SamplingOptions(),
        return_log_probs=False,
        exclude_input_in_output=True,
        include_stop_str_in_output=False,
        skip_special_tokens=True,
        embedding_bias_words=(),
        embedding_bias_weights=(),
        return_num_input_tokens=False,
        return_num_output_tokens=False,
        lora=None,
    )
    assert request.batch_size == 1
    assert not request.is_chat
    # Nothing the client left out is invented: the engine's defaults apply.
    assert request.sampling.temperature is None and request.sampling.top_p is None


def test_defaults_come_from_the_limits():
    limits = BlsLimits(default_max_tokens=7, default_skip_special_tokens=False)
    request = parse(limits=limits)
    assert request.max_tokens == 7
    assert request.skip_special_tokens is False


def test_every_setting_is_carried_into_the_typed_request():
    inputs = scalars(
        max_tokens=50,
        stream=True,
        end_id=2,
        pad_id=0,
        top_k=40,
        top_p=0.5,
        temperature=0.25,
        length_penalty=1.0,
        repetition_penalty=1.25,
        presence_penalty=-0.5,
        frequency_penalty=1.5,
        min_tokens=3,
        seed=2**64 - 1,
        beam_width=1,
        num_return_sequences=3,
        return_log_probs=True,
        exclude_input_in_output=False,
        include_stop_str_in_output=True,
        skip_special_tokens=False,
        return_num_input_tokens=True,
        return_num_output_tokens=True,
        return_context_logits=False,
        return_generation_logits=False,
        return_perf_metrics=False,
    )
    inputs["stop_words"] = tensor("stop_words", [["\n\n", "User:"]])
    inputs["bad_words"] = tensor("bad_words", [["damn"]])
    inputs["embedding_bias_words"] = tensor("embedding_bias_words", [["yes", "no"]])
    inputs["embedding_bias_weights"] = tensor("embedding_bias_weights", [[2.0, -1.5]])
    request = parse(inputs)
    assert request.max_tokens == 50
    assert request.stream is True
    assert request.stop_words == ("\n\n", "User:")
    assert request.bad_words == ("damn",)
    assert (request.end_id, request.pad_id) == (2, 0)
    assert request.sampling == SamplingOptions(
        top_k=40,
        top_p=0.5,
        temperature=0.25,
        length_penalty=1.0,
        repetition_penalty=1.25,
        presence_penalty=-0.5,
        frequency_penalty=1.5,
        min_tokens=3,
        seed=2**64 - 1,
        beam_width=1,
        num_return_sequences=3,
    )
    assert request.return_log_probs is True
    assert request.exclude_input_in_output is False
    assert request.include_stop_str_in_output is True
    assert request.skip_special_tokens is False
    assert request.embedding_bias_words == ("yes", "no")
    assert request.embedding_bias_weights == (2.0, -1.5)
    assert request.return_num_input_tokens is True
    assert request.return_num_output_tokens is True


def test_several_prompts_share_settings_given_once_per_row():
    inputs = {
        "text_input": tensor("text_input", [["first"], ["second"], ["third"]]),
        "max_tokens": scalar("max_tokens", 9, batch=3),
        "stop_words": tensor("stop_words", [["x", ""], ["x", ""], ["x", ""]]),
    }
    request = parse(inputs, prompt=None)
    assert request.prompts == (TextPrompt("first"), TextPrompt("second"), TextPrompt("third"))
    assert request.batch_size == 3
    assert request.max_tokens == 9
    assert request.stop_words == ("x",)


def test_unicode_prompt_is_decoded_from_utf8():
    request = parse(prompt="日本語 😀 ünïcödé")
    assert request.prompts == (TextPrompt("日本語 😀 ünïcödé"),)


def test_messages_become_a_chat_prompt():
    conversation = (
        '[{"role": "system", "content": "Be brief."},'
        ' {"role": "user", "content": "Hi", "name": "ann"}]'
    )
    request = parse({"messages": scalar("messages", conversation)}, prompt=None)
    assert request.is_chat
    assert request.prompts == (
        ChatPrompt(
            (
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi", "name": "ann"},
            )
        ),
    )
    assert request.prompts[0].as_dicts() == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi", "name": "ann"},
    ]


def test_scalar_inputs_may_come_as_request_parameters():
    request = parse(
        parameters={"max_tokens": 12, "temperature": 0.5, "stream": True, "top_k": 5, "seed": 7}
    )
    assert request.max_tokens == 12
    assert request.stream is True
    assert request.sampling.temperature == 0.5
    assert request.sampling.top_k == 5
    assert request.sampling.seed == 7


def test_integer_parameter_is_accepted_for_a_float_setting():
    assert parse(parameters={"temperature": 1}).sampling.temperature == 1.0


def test_same_value_as_input_and_parameter_is_accepted():
    # 0.7 is not exact in FP32: the parameter is compared as the FP32 the engine would get.
    request = parse(scalars(max_tokens=10, temperature=0.7), {"max_tokens": 10, "temperature": 0.7})
    assert request.max_tokens == 10
    assert request.sampling.temperature == pytest.approx(0.7)


def test_triton_parameters_and_the_request_id_are_ignored():
    request = parse(parameters={"triton_enable_empty_final_response": True, "id": "req-1"})
    assert request == parse()


def test_older_names_are_aliases():
    request = parse(scalars(min_length=4, random_seed=99))
    assert request.sampling.min_tokens == 4
    assert request.sampling.seed == 99
    same = parse(scalars(min_tokens=4, min_length=4, seed=99, random_seed=99))
    assert same.sampling == request.sampling
    # An alias given as a parameter counts too.
    assert parse(parameters={"random_seed": 5}).sampling.seed == 5


def test_empty_words_are_padding_and_dropped():
    inputs = {
        "stop_words": tensor("stop_words", [[""]]),
        "bad_words": tensor("bad_words", [["", "bad", ""]]),
    }
    request = parse(inputs)
    assert request.stop_words == ()
    assert request.bad_words == ("bad",)


def test_an_empty_word_list_is_no_words():
    # What the HTTP generate endpoint makes of "stop_words": [] (shape [1, 0]).
    empty = np.empty((1, 0), dtype=object)
    assert parse({"stop_words": empty}).stop_words == ()


def test_embedding_bias_drops_empty_words_with_their_weights():
    inputs = {
        "embedding_bias_words": tensor("embedding_bias_words", [["", "yes", ""]]),
        "embedding_bias_weights": tensor("embedding_bias_weights", [[9.0, 1.5, 8.0]]),
    }
    request = parse(inputs)
    assert request.embedding_bias_words == ("yes",)
    assert request.embedding_bias_weights == (1.5,)


def test_scalars_reshaped_to_one_dimension_are_accepted():
    # What a config with `reshape: { shape: [ ] }` (as the official BLS uses) hands over.
    request = parse({"return_log_probs": np.array([True]), "max_tokens": np.array([3], np.int32)})
    assert request.return_log_probs is True
    assert request.max_tokens == 3


def test_lora_task_id_alone_selects_a_cached_adapter():
    assert parse(scalars(lora_task_id=17)).lora == LoraOptions(task_id=17)


def test_lora_weights_and_config_are_passed_as_given():
    weights = np.arange(12, dtype=np.float16).reshape(1, 2, 6)
    config = np.array([[[0, 0, 4], [1, 0, 4]]], dtype=np.int32)
    lora = parse(
        {"lora_task_id": scalar("lora_task_id", 3), "lora_weights": weights, "lora_config": config}
    ).lora
    assert lora is not None and lora.task_id == 3
    assert lora.weights is not None and lora.config is not None
    assert lora.weights.dtype == np.float16 and np.array_equal(lora.weights, weights[0])
    assert lora.config.dtype == np.int32 and np.array_equal(lora.config, config[0])
    # Read-only copies: the typed request cannot be changed behind its back.
    assert not lora.weights.flags.writeable and not lora.config.flags.writeable
    weights[0, 0, 0] = 100
    assert lora.weights[0, 0] == 0


def test_inputs_given_as_none_count_as_absent():
    assert parse({"max_tokens": None}).max_tokens == 128  # type: ignore[dict-item]


# ---------------------------------------------------------------------------------------
# Bad requests: each error names the field, the value and the limit


def check(error: RequestError, text: str, code: str = "INVALID_ARG") -> None:
    assert str(error) == text
    assert error.code == code


def test_a_prompt_is_required():
    check(
        error_of(prompt=None),
        "text_input: a prompt is required: send text_input (the prompt text) or messages "
        "(a JSON array of chat messages)",
    )


def test_text_input_and_messages_together_are_refused():
    error = error_of({"messages": scalar("messages", '[{"role": "user", "content": "x"}]')})
    check(
        error,
        "text_input: send either text_input (the prompt text) or messages "
        "(a chat conversation), not both",
    )


def test_unknown_input_is_refused_with_the_accepted_names():
    error = error_of({"decoder_text_input": scalar("text_input", "x")})
    assert error.field == "decoder_text_input"
    assert str(error).startswith(
        "decoder_text_input: unknown input; accepted inputs: text_input, messages, max_tokens,"
    )
    assert "lora_config" in str(error)


def test_unknown_parameter_is_refused_with_the_accepted_names():
    error = error_of(parameters={"max_new_tokens": 5})
    assert error.field == "max_new_tokens"
    assert str(error).startswith(
        "max_new_tokens: unknown request parameter; accepted parameters: beam_width, end_id, "
        "exclude_input_in_output, frequency_penalty,"
    )
    assert str(error).endswith("(parameters named triton_* belong to Triton and are ignored)")
    for name in ("max_tokens", "temperature", "seed", "random_seed", "stream"):
        assert name in str(error)


def test_prompt_or_word_list_as_a_parameter_says_it_must_be_a_tensor():
    error = error_of(parameters={"stop_words": "\n"})
    assert str(error).startswith(
        "stop_words: unknown request parameter (it must be sent as an input tensor); "
        "accepted parameters:"
    )


@pytest.mark.parametrize(
    ("value", "limits", "expected"),
    [
        (0, LIMITS, "max_tokens: must be between 1 and 4096 (max_output_len), got 0"),
        (4097, LIMITS, "max_tokens: must be between 1 and 4096 (max_output_len), got 4097"),
        (
            65,
            BlsLimits(max_output_len=64, default_max_tokens=16),
            "max_tokens: must be between 1 and 64 (max_output_len), got 65",
        ),
    ],
)
def test_max_tokens_range(value, limits, expected):
    check(error_of(scalars(max_tokens=value), limits=limits), expected)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("top_p", 0.0, "top_p: must be greater than 0 and at most 1, got 0.0"),
        ("top_p", 1.5, "top_p: must be greater than 0 and at most 1, got 1.5"),
        ("top_p", math.nan, "top_p: must be greater than 0 and at most 1, got nan"),
        ("top_k", -1, "top_k: must be >= 0 (0 disables top-k), got -1"),
        ("temperature", -0.5, "temperature: must be >= 0, got -0.5"),
        ("temperature", math.inf, "temperature: must be a finite number, got inf"),
        (
            "repetition_penalty",
            0.0,
            "repetition_penalty: must be greater than 0 (1.0 means no penalty), got 0.0",
        ),
        ("presence_penalty", 2.5, "presence_penalty: must be between -2.0 and 2.0, got 2.5"),
        ("frequency_penalty", -3.0, "frequency_penalty: must be between -2.0 and 2.0, got -3.0"),
        ("frequency_penalty", math.nan, "frequency_penalty: must be a finite number, got nan"),
        ("beam_width", 0, "beam_width: must be at least 1, got 0"),
        (
            "num_return_sequences",
            0,
            "num_return_sequences: must be between 1 and 8 (max_num_return_sequences), got 0",
        ),
        (
            "num_return_sequences",
            9,
            "num_return_sequences: must be between 1 and 8 (max_num_return_sequences), got 9",
        ),
        ("min_tokens", -1, "min_tokens: must be between 0 and max_tokens (128), got -1"),
        ("min_tokens", 129, "min_tokens: must be between 0 and max_tokens (128), got 129"),
        ("min_length", 129, "min_tokens: must be between 0 and max_tokens (128), got 129"),
        ("end_id", -1, "end_id: must be a token id (>= 0), got -1"),
        ("pad_id", -2, "pad_id: must be a token id (>= 0), got -2"),
    ],
)
def test_sampling_ranges(name, value, expected):
    check(error_of(scalars(**{name: value})), expected)


def test_min_tokens_is_checked_against_the_requested_max_tokens():
    check(
        error_of(scalars(max_tokens=5, min_tokens=6)),
        "min_tokens: must be between 0 and max_tokens (5), got 6",
    )


def test_beam_search_is_unsupported():
    check(
        error_of(scalars(beam_width=4)),
        "beam_width: beam search is not supported by this BLS (got 4, only 1 is accepted): "
        "stop strings and streamed text need one sequence per output; use "
        "num_return_sequences for several samples",
        code="UNSUPPORTED",
    )


def test_length_penalty_other_than_one_is_unsupported():
    check(
        error_of(scalars(length_penalty=0.5)),
        "length_penalty: only acts on beam search, which this BLS does not support; "
        "got 0.5, only 1.0 is accepted",
        code="UNSUPPORTED",
    )


@pytest.mark.parametrize(
    "name", ["return_context_logits", "return_generation_logits", "return_perf_metrics"]
)
def test_logits_and_perf_metrics_cannot_be_returned(name):
    check(
        error_of(scalars(**{name: True})),
        f"{name}: true is not supported: this BLS returns neither logits nor the engine's "
        "performance metrics; leave it out or send false",
        code="UNSUPPORTED",
    )


def test_alias_conflicts_name_both():
    check(
        error_of(scalars(min_tokens=3, min_length=5)),
        "min_tokens: min_tokens and min_length are the same setting (min_length is its older "
        "name), got min_tokens=3 and min_length=5; send one of them",
    )
    check(
        error_of(scalars(seed=1), {"random_seed": 2}),
        "seed: seed and random_seed are the same setting (random_seed is its older name), "
        "got seed=1 and random_seed=2; send one of them",
    )


def test_input_and_parameter_with_different_values_conflict():
    check(
        error_of(scalars(max_tokens=10), {"max_tokens": 20}),
        "max_tokens: given as an input (10) and as a request parameter (20) with different "
        "values; send it once",
    )


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        (
            {"max_tokens": "5"},
            "max_tokens: the request parameter must be an integer, got str '5'",
        ),
        (
            {"max_tokens": True},
            "max_tokens: the request parameter must be an integer, got a boolean (True)",
        ),
        (
            {"max_tokens": 2.5},
            "max_tokens: the request parameter must be an integer, got float 2.5",
        ),
        ({"stream": 1}, "stream: the request parameter must be true or false, got int 1"),
        ({"stream": "true"}, "stream: the request parameter must be true or false, got str 'true'"),
        (
            {"temperature": False},
            "temperature: the request parameter must be a number, got a boolean (False)",
        ),
        (
            {"top_k": 2**40},
            "top_k: the request parameter must fit in a 32-bit signed integer, got 1099511627776",
        ),
        ({"seed": -1}, "seed: the request parameter must be between 0 and 2**64-1, got -1"),
    ],
)
def test_parameters_of_the_wrong_type(parameters, expected):
    check(error_of(parameters=parameters), expected)


def test_prompts_of_one_request_must_share_settings():
    inputs = {
        "text_input": tensor("text_input", [["a"], ["b"], ["c"]]),
        "max_tokens": tensor("max_tokens", [[5], [6], [5]]),
    }
    check(
        error_of(inputs, prompt=None),
        "max_tokens: the prompts of one request must share one value, got [5, 6]; send "
        "prompts that need different settings as separate requests",
        code="UNSUPPORTED",
    )
    inputs = {
        "text_input": tensor("text_input", [["a"], ["b"]]),
        "stop_words": tensor("stop_words", [["x"], ["y"]]),
    }
    check(
        error_of(inputs, prompt=None),
        "stop_words: the prompts of one request must share one list, got different lists "
        "per prompt; send prompts that need different lists as separate requests",
        code="UNSUPPORTED",
    )


def test_too_many_prompts():
    inputs = {"text_input": tensor("text_input", [["p"]] * 5)}
    check(
        error_of(inputs, prompt=None),
        "text_input: has 5 prompts; at most 4 (max_batch_size) are allowed in one request",
    )


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        (
            {"text_input": tensor("text_input", [["a", "b"]])},
            "text_input: expected one value per prompt (shape [1, 1]), got shape [1, 2]",
        ),
        (
            {"text_input": np.empty((0, 1), dtype=object)},
            "text_input: expected at least one prompt, got shape [0, 1]",
        ),
        (
            {"text_input": np.array(b"x", dtype=object)},
            "text_input: expected at least one prompt, got shape []",
        ),
        (
            {
                "text_input": scalar("text_input", "x"),
                "max_tokens": tensor("max_tokens", [[1, 2]]),
            },
            "max_tokens: expected one value per prompt (shape [1, 1]), got shape [1, 2]",
        ),
        (
            {
                "text_input": scalar("text_input", "x"),
                "max_tokens": tensor("max_tokens", [[1], [2]]),
            },
            "max_tokens: has 2 rows but the prompt has 1; every input needs one row per prompt",
        ),
        (
            {
                "text_input": scalar("text_input", "x"),
                "stop_words": tensor("stop_words", ["a", "b"]),
            },
            "stop_words: has 2 rows but the prompt has 1; every input needs one row per prompt",
        ),
        (
            {
                "text_input": scalar("text_input", "x"),
                "stop_words": tensor("stop_words", [[["a"]]]),
            },
            "stop_words: expected a list per prompt (shape [1, N]), got shape [1, 1, 1]",
        ),
        (
            {
                "text_input": scalar("text_input", "x"),
                "max_tokens": np.array([[2.5]], dtype=np.float32),
            },
            "max_tokens: the value must be an integer, got float32 2.5",
        ),
    ],
)
def test_wrong_shapes_and_dtypes(inputs, expected):
    check(error_of(inputs, prompt=None), expected)


def test_non_utf8_bytes_are_located():
    check(
        error_of({"text_input": tensor("text_input", [[b"ok\xff"]])}, prompt=None),
        "text_input: prompt 0 is not valid UTF-8 (invalid start byte at byte offset 2)",
    )
    check(
        error_of({"stop_words": tensor("stop_words", [["fine", b"\xe6\x97"]])}),
        "stop_words: word 1 is not valid UTF-8 (unexpected end of data at byte offset 0)",
    )
    inputs = {
        "text_input": tensor("text_input", [["a"], [b"b\xc3"]]),
    }
    check(
        error_of(inputs, prompt=None),
        "text_input: prompt 1 is not valid UTF-8 (unexpected end of data at byte offset 1)",
    )


@pytest.fixture(scope="module")
def validator(fixture_paths) -> RequestValidator:
    """The whole pass: the word limits are the encoder's, applied as words are tokenized."""
    tokenizer = load_tokenizer(fixture_paths.sentencepiece_tokenizer)
    return RequestValidator(PromptEncoder(tokenizer, PreprocessingLimits(max_words=4)), LIMITS)


def validation_error(validator: RequestValidator, inputs: dict[str, np.ndarray]) -> RequestError:
    with pytest.raises(RequestError) as info:
        validator.validate({"text_input": scalar("text_input", "Hello"), **inputs}, {})
    return info.value


@pytest.mark.parametrize("name", ["stop_words", "bad_words"])
def test_word_count_cap(validator, name):
    check(
        validation_error(validator, {name: tensor(name, [["a", "b", "", "c", "d", "e"]])}),
        f"{name}: has 5 words, over the limit of 4 words (max_words)",
    )


def test_embedding_bias_errors(validator):
    words = tensor("embedding_bias_words", [["a", "b"]])
    weights = tensor("embedding_bias_weights", [[1.0]])
    check(
        error_of({"embedding_bias_words": words, "embedding_bias_weights": weights}),
        "embedding_bias_words: has 2 words but embedding_bias_weights has 1 weights; send one "
        "weight per word",
    )
    check(
        error_of({"embedding_bias_words": words}),
        "embedding_bias_words: needs embedding_bias_weights (one weight per word)",
    )
    check(
        error_of({"embedding_bias_weights": weights}),
        "embedding_bias_weights: needs embedding_bias_words (one weight per word)",
    )
    check(
        error_of(
            {
                "embedding_bias_words": tensor("embedding_bias_words", [["a"]]),
                "embedding_bias_weights": tensor("embedding_bias_weights", [[math.nan]]),
            }
        ),
        "embedding_bias_weights: must be finite numbers (no NaN or infinity)",
    )
    check(
        validation_error(
            validator,
            {
                "embedding_bias_words": tensor("embedding_bias_words", [list("abcde")]),
                "embedding_bias_weights": tensor("embedding_bias_weights", [[1.0] * 5]),
            },
        ),
        "embedding_bias_words: has 5 words, over the limit of 4 words (max_words)",
    )


@pytest.mark.parametrize(
    ("conversation", "expected", "code"),
    [
        (
            "not json",
            "messages: prompt 0 is not valid JSON (Expecting value at line 1 column 1); "
            'expected a JSON array like [{"role": "user", "content": "Hi"}]',
            "INVALID_ARG",
        ),
        (
            '{"role": "user", "content": "hi"}',
            "messages: prompt 0 must be a JSON array of messages, got a JSON object",
            "INVALID_ARG",
        ),
        (
            "[]",
            "messages: prompt 0 is empty; send at least one message",
            "INVALID_ARG",
        ),
        (
            '["hi"]',
            "messages: prompt 0, message 0 must be a JSON object, got a JSON string",
            "INVALID_ARG",
        ),
        (
            '[{"content": "hi"}]',
            "messages: prompt 0, message 0 needs a non-empty string 'role', got None",
            "INVALID_ARG",
        ),
        (
            '[{"role": "user"}]',
            "messages: prompt 0, message 0 needs a 'content' string",
            "INVALID_ARG",
        ),
        (
            '[{"role": "user", "content": "a"}, {"role": "user", "name": 5, "content": "b"}]',
            "messages: prompt 0, message 1 has a 'name' that is not a string: 5",
            "INVALID_ARG",
        ),
        (
            '[{"role": "user", "content": [{"type": "text", "text": "hi"}]}]',
            "messages: prompt 0, message 0 has 'content' of JSON type array; only string "
            "content is supported (no content parts or images)",
            "UNSUPPORTED",
        ),
        (
            '[{"role": "assistant", "content": "", "tool_calls": []}]',
            "messages: prompt 0, message 0 has keys ['tool_calls'] that are not supported; "
            "accepted keys: ['role', 'content', 'name']",
            "UNSUPPORTED",
        ),
    ],
)
def test_bad_messages(conversation, expected, code):
    check(error_of({"messages": scalar("messages", conversation)}, prompt=None), expected, code)


def test_lora_errors():
    weights = np.zeros((1, 2, 6), dtype=np.float16)
    config = np.array([[[0, 0, 4], [1, 0, 4]]], dtype=np.int32)
    task = scalar("lora_task_id", 1)
    check(
        error_of({"lora_weights": weights, "lora_config": config}),
        "lora_weights: needs lora_task_id (the id under which the engine caches the adapter)",
    )
    check(
        error_of({"lora_task_id": task, "lora_weights": weights}),
        "lora_config: is required with lora_weights: a new adapter needs both lora_weights "
        "and lora_config (a cached one needs neither, only lora_task_id)",
    )
    check(
        error_of({"lora_task_id": task, "lora_config": config}),
        "lora_weights: is required with lora_config: a new adapter needs both lora_weights "
        "and lora_config (a cached one needs neither, only lora_task_id)",
    )
    check(
        error_of({"lora_task_id": task, "lora_weights": weights, "lora_config": config[:, :1]}),
        "lora_config: has 1 rows but lora_weights has 2; they need one row per module and layer",
    )
    check(
        error_of(
            {
                "lora_task_id": task,
                "lora_weights": weights,
                "lora_config": np.zeros((1, 2, 2), dtype=np.int32),
            }
        ),
        "lora_config: expected rows of [module_id, layer_idx, adapter_size] (shape [N, 3]), "
        "got shape [2, 2]",
    )
    check(
        error_of({"lora_task_id": task, "lora_weights": weights[0], "lora_config": config}),
        "lora_weights: expected shape [1, N, M] (one 2-D array per prompt), got shape [2, 6]",
    )
    check(
        error_of(
            {
                "lora_task_id": task,
                "lora_weights": weights,
                "lora_config": config.astype(np.float32),
            }
        ),
        "lora_config: expected integer values, got dtype float32",
    )


def test_lora_adapters_must_be_shared_by_the_prompts():
    weights = np.stack([np.zeros((1, 4)), np.ones((1, 4))]).astype(np.float16)
    config = np.array([[[0, 0, 1]], [[0, 0, 1]]], dtype=np.int32)
    inputs = {
        "text_input": tensor("text_input", [["a"], ["b"]]),
        "lora_task_id": scalar("lora_task_id", 1, batch=2),
        "lora_weights": weights,
        "lora_config": config,
    }
    check(
        error_of(inputs, prompt=None),
        "lora_weights: the prompts of one request must share one value; send prompts that "
        "need different LoRA adapters as separate requests",
        code="UNSUPPORTED",
    )
