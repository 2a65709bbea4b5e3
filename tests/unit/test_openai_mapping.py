"""OpenAI requests -> the tensors the gateway sends to tensorrt_llm_bls, and refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bls.client import grpc_inputs
from openai_gateway.errors import OpenAIError
from openai_gateway.mapping import REFUSED, BlsCall, chat_call, completion_call
from openai_gateway.schemas import ChatCompletionRequest, CompletionRequest, parse_request

MODEL = "tensorrt_llm_bls"


def completion(**fields) -> BlsCall:
    body = json.dumps({"model": MODEL, **fields}).encode()
    return completion_call(parse_request(CompletionRequest, body))


def chat(**fields) -> BlsCall:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], **fields}
    return chat_call(parse_request(ChatCompletionRequest, json.dumps(body).encode()))


def tensors(call) -> dict[str, tuple[str, list[int], list]]:
    """name -> (Triton dtype, shape, values) of the gRPC inputs the gateway sends."""
    result = {}
    for tensor, (name, array) in zip(grpc_inputs(call.inputs), call.inputs.items(), strict=True):
        assert tensor.name() == name
        result[name] = (tensor.datatype(), tensor.shape(), array.tolist())
    return result


def refused(make, param: str, **fields) -> OpenAIError:
    with pytest.raises(OpenAIError) as caught:
        make(**fields)
    assert caught.value.status == 400
    assert caught.value.param == param, caught.value.message
    assert caught.value.message.startswith(f"{param}: ")
    return caught.value


def test_a_full_completion_request_becomes_these_tensors():
    call = completion(
        prompt="Once upon a time",
        max_tokens=32,
        temperature=0.7,
        top_p=0.9,
        n=2,
        stop=["\n\n", "User:"],
        seed=2**64 - 1,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        stream=True,
        stream_options={"include_usage": True},
        logprobs=0,
        top_k=40,
        min_tokens=2,
        repetition_penalty=1.1,
    )
    sent = tensors(call)
    assert sent == {
        "text_input": ("BYTES", [1, 1], [[b"Once upon a time"]]),
        "stream": ("BOOL", [1, 1], [[True]]),
        "return_num_input_tokens": ("BOOL", [1, 1], [[True]]),
        "return_num_output_tokens": ("BOOL", [1, 1], [[True]]),
        "max_tokens": ("INT32", [1, 1], [[32]]),
        "temperature": ("FP32", [1, 1], [[pytest.approx(0.7)]]),
        "top_p": ("FP32", [1, 1], [[pytest.approx(0.9)]]),
        "top_k": ("INT32", [1, 1], [[40]]),
        "presence_penalty": ("FP32", [1, 1], [[0.5]]),
        "frequency_penalty": ("FP32", [1, 1], [[-0.5]]),
        "repetition_penalty": ("FP32", [1, 1], [[pytest.approx(1.1)]]),
        "min_tokens": ("INT32", [1, 1], [[2]]),
        "seed": ("UINT64", [1, 1], [[2**64 - 1]]),
        "num_return_sequences": ("INT32", [1, 1], [[2]]),
        "return_log_probs": ("BOOL", [1, 1], [[True]]),
        "stop_words": ("BYTES", [1, 2], [[b"\n\n", b"User:"]]),
    }
    assert (call.prompts, call.n, call.choices) == (1, 2, 2)
    assert call.stream and call.include_usage and call.logprobs


def test_a_minimal_request_leaves_every_setting_to_the_bls():
    sent = tensors(completion(prompt="Hi"))
    assert set(sent) == {
        "text_input",
        "stream",
        "return_num_input_tokens",
        "return_num_output_tokens",
    }
    assert sent["stream"] == ("BOOL", [1, 1], [[False]])


def test_several_prompts_give_every_input_one_row_per_prompt():
    # Triton wants one batch size for all inputs of a request.
    call = completion(prompt=["a", "bb", "ccc"], max_tokens=4, stop="x", seed=3)
    sent = tensors(call)
    assert sent["text_input"] == ("BYTES", [3, 1], [[b"a"], [b"bb"], [b"ccc"]])
    assert sent["max_tokens"] == ("INT32", [3, 1], [[4], [4], [4]])
    assert sent["stop_words"] == ("BYTES", [3, 1], [[b"x"], [b"x"], [b"x"]])
    assert all(shape[0] == 3 for _, shape, _ in sent.values())
    assert call.prompts == 3 and call.choices == 3


def test_echo_asks_for_the_prompt_in_the_output():
    assert tensors(completion(prompt="Hi", echo=True))["exclude_input_in_output"] == (
        "BOOL",
        [1, 1],
        [[False]],
    )
    assert "exclude_input_in_output" not in tensors(completion(prompt="Hi", echo=False))


def test_chat_messages_go_as_one_json_string_for_the_chat_template():
    call = chat(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi 世界", "name": "ann"},
            {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]},
            {
                "role": "user",
                "content": [{"type": "text", "text": "two"}, {"type": "text", "text": "parts"}],
            },
        ]
    )
    dtype, shape, [[raw]] = tensors(call)["messages"]
    assert (dtype, shape) == ("BYTES", [1, 1])
    assert json.loads(raw) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi 世界", "name": "ann"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "two\nparts"},
    ]
    assert "text_input" not in call.inputs


def test_max_completion_tokens_wins_over_max_tokens_and_names_itself_in_errors():
    call = chat(max_tokens=10, max_completion_tokens=20)
    assert call.inputs["max_tokens"].tolist() == [[20]]
    assert call.max_tokens_param == "max_completion_tokens"
    call = chat(max_tokens=10)
    assert call.inputs["max_tokens"].tolist() == [[10]]
    assert call.max_tokens_param == "max_tokens"


def test_response_format_maps_to_guided_decoding():
    assert "guided_decoding_guide_type" not in chat(response_format={"type": "text"}).inputs
    json_object = tensors(chat(response_format={"type": "json_object"}))
    assert json_object["guided_decoding_guide_type"] == ("BYTES", [1, 1], [[b"json"]])
    assert "guided_decoding_guide" not in json_object
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}}
    sent = tensors(
        chat(
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": schema, "strict": True},
            }
        )
    )
    assert sent["guided_decoding_guide_type"] == ("BYTES", [1, 1], [[b"json_schema"]])
    dtype, shape, [[guide]] = sent["guided_decoding_guide"]
    assert (dtype, shape) == ("BYTES", [1, 1])
    assert json.loads(guide) == schema


def test_completions_response_format_guides_every_prompt():
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    sent = tensors(
        completion(
            prompt=["a", "b"],
            response_format={"type": "json_schema", "json_schema": {"schema": schema}},
        )
    )
    assert sent["guided_decoding_guide_type"] == (
        "BYTES",
        [2, 1],
        [[b"json_schema"], [b"json_schema"]],
    )
    dtype, shape, rows = sent["guided_decoding_guide"]
    assert (dtype, shape) == ("BYTES", [2, 1])
    assert [json.loads(guide) for [guide] in rows] == [schema, schema]
    json_object = tensors(completion(prompt="a", response_format={"type": "json_object"}))
    assert json_object["guided_decoding_guide_type"] == ("BYTES", [1, 1], [[b"json"]])
    assert "guided_decoding_guide_type" not in completion(prompt="a").inputs


@pytest.mark.parametrize(("make", "fields"), [(chat, {}), (completion, {"prompt": "a"})])
def test_a_json_schema_format_without_a_schema_is_refused(make, fields):
    refused(
        make,
        "response_format.json_schema.schema",
        response_format={"type": "json_schema", "json_schema": {"name": "x"}},
        **fields,
    )


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("logit_bias", {"50256": -100}),
        ("tools", [{"type": "function", "function": {"name": "f"}}]),
        ("tool_choice", "required"),
        ("functions", [{"name": "f"}]),
        ("function_call", "auto"),
        ("audio", {"voice": "alloy", "format": "wav"}),
        ("modalities", ["text", "audio"]),
        ("prediction", {"type": "content", "content": "x"}),
        ("reasoning_effort", "high"),
        ("service_tier", "flex"),
        ("store", True),
        ("metadata", {"k": "v"}),
        ("web_search_options", {"search_context_size": "low"}),
    ],
)
def test_chat_parameters_the_bls_cannot_honour_are_refused_by_name(param, value):
    error = refused(chat, param, **{param: value})
    assert REFUSED[param].reason in error.message
    assert error.code == "unsupported_parameter"


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("logit_bias", {}),
        ("tools", []),
        ("tool_choice", "none"),
        ("modalities", ["text"]),
        ("service_tier", "auto"),
        ("store", False),
        ("metadata", {}),
    ],
)
def test_values_that_ask_for_nothing_are_accepted(param, value):
    chat(**{param: value})


@pytest.mark.parametrize(
    ("param", "value"), [("logit_bias", {"1": 5}), ("best_of", 3), ("suffix", "the end")]
)
def test_completion_parameters_the_bls_cannot_honour_are_refused_by_name(param, value):
    refused(completion, param, prompt="Hi", **{param: value})


def test_best_of_equal_to_n_asks_for_nothing_more():
    completion(prompt="Hi", n=2, best_of=2)
    completion(prompt="Hi", best_of=1)


def test_log_probs_of_alternatives_are_refused_chosen_tokens_accepted():
    assert "top_logprobs" in refused(chat, "top_logprobs", logprobs=True, top_logprobs=2).message
    assert chat(logprobs=True, top_logprobs=0).inputs["return_log_probs"].tolist() == [[True]]
    refused(completion, "logprobs", prompt="Hi", logprobs=1)
    assert completion(prompt="Hi", logprobs=0).logprobs
    refused(completion, "echo", prompt="Hi", logprobs=0, echo=True)


def test_stream_options_need_stream():
    refused(completion, "stream_options", prompt="Hi", stream_options={"include_usage": True})
    assert not completion(prompt="Hi", stream=True).include_usage


def test_prompts_of_token_ids_are_refused():
    refused(completion, "prompt", prompt=[1, 2, 3])
    refused(completion, "prompt", prompt=[[1, 2], [3]])
    refused(completion, "prompt", prompt=[])


def test_messages_with_images_or_tool_calls_are_refused_naming_the_message():
    image = {"type": "image_url", "image_url": {"url": "http://x/cat.png"}}
    error = refused(
        chat,
        "messages[1].content[1]",
        messages=[
            {"role": "system", "content": "x"},
            {"role": "user", "content": [{"type": "text", "text": "look"}, image]},
        ],
    )
    assert "image_url" in error.message
    refused(
        chat,
        "messages[0].tool_calls",
        messages=[{"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]}],
    )
    refused(chat, "messages[0].content", messages=[{"role": "assistant", "content": None}])


def test_inputs_are_numpy_arrays_the_tensor_builder_passes_through():
    call = completion(prompt="Hi", max_tokens=3)
    assert all(isinstance(array, np.ndarray) for array in call.inputs.values())
