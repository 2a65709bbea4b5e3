"""BLS responses -> OpenAI bodies and server-sent events; Triton errors -> HTTP statuses."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tritonclient.grpc import service_pb2
from tritonclient.utils import serialize_byte_tensor

from openai_gateway.errors import from_triton
from openai_gateway.mapping import BlsCall
from openai_gateway.responses import DONE, Answer
from openai_gateway.triton_client import BlsResponse, BlsRow, decode_response


def call(n: int = 1, prompts: int = 1, *, logprobs=False, include_usage=False, stream=False):
    return BlsCall(
        inputs={},
        prompts=prompts,
        n=n,
        stream=stream,
        include_usage=include_usage,
        logprobs=logprobs,
        max_tokens_param="max_tokens",
    )


def row(text, batch=0, sequence=0, finish="", prompt=5, tokens=1, log_probs=None) -> BlsRow:
    return BlsRow(batch, sequence, text, finish, prompt, tokens, log_probs)


def answer(bls_call: BlsCall, chat: bool) -> Answer:
    return Answer(bls_call, chat=chat, request_id="abc", created=123, model="m")


def events(chunks: list[bytes]) -> list[dict]:
    decoded = []
    for chunk in chunks:
        assert chunk.startswith(b"data: ") and chunk.endswith(b"\n\n")
        decoded.append(json.loads(chunk[6:]))
    return decoded


def test_a_whole_chat_answer_with_two_samples_and_usage():
    whole = answer(call(n=2, logprobs=True), chat=True).whole(
        [
            BlsResponse(
                (
                    row("Hello", 0, 0, "length", tokens=3, log_probs=(-0.1, -0.2, -0.3)),
                    row("Hi", 0, 1, "stop", tokens=2, log_probs=(-0.5, -0.6)),
                ),
                final=True,
            )
        ]
    )
    assert whole["id"] == "chatcmpl-abc" and whole["object"] == "chat.completion"
    assert (whole["created"], whole["model"]) == (123, "m")
    first, second = whole["choices"]
    assert first["message"] == {"role": "assistant", "content": "Hello"}
    assert (first["index"], first["finish_reason"]) == (0, "length")
    assert [entry["logprob"] for entry in first["logprobs"]["content"]] == [-0.1, -0.2, -0.3]
    assert (second["index"], second["finish_reason"]) == (1, "stop")
    assert second["message"]["content"] == "Hi"
    # The prompt is counted once; the completion tokens of both samples are summed.
    assert whole["usage"] == {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}


def test_choices_of_several_prompts_are_numbered_prompt_by_prompt():
    whole = answer(call(n=2, prompts=2), chat=False).whole(
        [
            BlsResponse(
                (
                    row("a0", 0, 0, "length", prompt=3),
                    row("a1", 0, 1, "length", prompt=3),
                    row("b0", 1, 0, "stop", prompt=4),
                    row("b1", 1, 1, "stop", prompt=4),
                ),
                final=True,
            )
        ]
    )
    assert [(c["index"], c["text"]) for c in whole["choices"]] == [
        (0, "a0"),
        (1, "a1"),
        (2, "b0"),
        (3, "b1"),
    ]
    assert whole["object"] == "text_completion" and whole["id"] == "cmpl-abc"
    assert whole["usage"]["prompt_tokens"] == 7
    assert whole["choices"][0]["logprobs"] is None


def test_streamed_chat_deltas_role_first_then_content_then_finish_then_usage():
    stream = answer(call(include_usage=True, stream=True), chat=True)
    chunks = []
    for response in (
        BlsResponse((row("Hel", tokens=2),), final=False),
        BlsResponse((row("", tokens=1),), final=False),  # held-back text: nothing to send
        BlsResponse((row("lo", tokens=1),), final=False),
        BlsResponse((row("", finish="length", tokens=0),), final=False),
        BlsResponse((), final=True),  # the empty final response
    ):
        chunks.extend(stream.chunks(response))
    chunks.append(stream.usage_chunk())
    sent = events(chunks)
    assert [event["choices"][0]["delta"] for event in sent[:3]] == [
        {"role": "assistant", "content": "Hel"},
        {"content": "lo"},
        {},
    ]
    assert [event["choices"][0]["finish_reason"] for event in sent[:3]] == [None, None, "length"]
    assert all(event["object"] == "chat.completion.chunk" for event in sent)
    assert all(event["usage"] is None for event in sent[:3])  # include_usage: null until last
    assert sent[3]["choices"] == []
    # Per-response counts (2 + 1 + 1 + 0) add up to the completion tokens.
    assert sent[3]["usage"] == {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
    assert DONE == b"data: [DONE]\n\n"


def test_streamed_completion_chunks_carry_text_and_log_probs():
    stream = answer(call(logprobs=True, stream=True), chat=False)
    sent = events(
        [
            *stream.chunks(BlsResponse((row("Hel", log_probs=(-1.0,)),), final=False)),
            *stream.chunks(BlsResponse((row("", finish="stop", tokens=0),), final=True)),
        ]
    )
    assert [event["choices"][0]["text"] for event in sent] == ["Hel", ""]
    assert sent[0]["choices"][0]["logprobs"]["token_logprobs"] == [-1.0]
    assert sent[1]["choices"][0]["finish_reason"] == "stop"
    assert "usage" not in sent[0]  # only with stream_options.include_usage


def test_a_chat_answer_is_valid_json_with_any_text():
    text = 'quote " backslash \\ newline \n emoji 🙂 \u2028'
    stream = answer(call(stream=True), chat=True)
    (chunk,) = stream.chunks(BlsResponse((row(text),), final=False))
    assert json.loads(chunk[6:])["choices"][0]["delta"]["content"] == text


def bls_response(rows: int, log_probs: list[list[float]], final: bool):
    """A ModelInferResponse as tensorrt_llm_bls sends it (padded log probs)."""
    response = service_pb2.ModelInferResponse()
    longest = max(len(values) for values in log_probs)
    padded = np.zeros((rows, 1, longest), np.float32)
    for index, values in enumerate(log_probs):
        padded[index, 0, : len(values)] = values
    tensors = {
        "text_output": np.array([f"t{i}".encode() for i in range(rows)], dtype=object),
        "finish_reason": np.array([b"length"] * rows, dtype=object),
        "batch_index": np.zeros(rows, np.int32),
        "sequence_index": np.arange(rows, dtype=np.int32),
        "num_input_tokens": np.full(rows, 7, np.int32),
        "num_output_tokens": np.array([len(v) for v in log_probs], np.int32),
        "output_log_probs": padded,
    }
    for name, array in tensors.items():
        output = response.outputs.add()
        output.name = name
        output.datatype = {"O": "BYTES", "i": "INT32", "f": "FP32"}[array.dtype.kind]
        output.shape.extend([rows, *array.shape[1:]] if array.ndim > 1 else [rows, 1])
        raw = serialize_byte_tensor(array).item() if array.dtype == object else array.tobytes()
        response.raw_output_contents.append(raw)
    response.parameters["triton_final_response"].bool_param = final
    return response


def test_decode_response_reads_every_row_and_trims_padded_log_probs():
    decoded = decode_response(bls_response(2, [[-1.0, -2.0, -3.0], [-4.0]], final=True))
    assert decoded.final
    first, second = decoded.rows
    assert (first.text, first.finish_reason, first.sequence_index) == ("t0", "length", 0)
    assert (first.num_input_tokens, first.num_output_tokens) == (7, 3)
    assert first.log_probs == (-1.0, -2.0, -3.0)
    assert second.sequence_index == 1 and second.log_probs == (-4.0,)


def test_an_empty_final_response_has_no_rows():
    response = service_pb2.ModelInferResponse()
    response.parameters["triton_final_response"].bool_param = True
    assert decode_response(response) == BlsResponse((), True)


@pytest.mark.parametrize(
    ("grpc_status", "message", "status", "param", "text"),
    [
        (
            "INVALID_ARGUMENT",
            "num_return_sequences: must be between 1 and 8 (max_num_return_sequences), got 9",
            400,
            "n",
            "n: must be between 1 and 8",
        ),
        ("INVALID_ARGUMENT", "stop_words: has 70 words", 400, "stop", "stop: has 70 words"),
        ("UNIMPLEMENTED", "messages: message 0 has keys ['x']", 400, "messages", "messages: "),
        ("INVALID_ARGUMENT", "text_input[1]: the prompt is empty", 400, "prompt", "prompt: "),
        ("INVALID_ARGUMENT", "end_id: the tokenizer has no EOS", 400, None, "end_id: "),
        ("NOT_FOUND", "Request for unknown model", 404, None, "unknown model"),
        ("UNAVAILABLE", "failed to connect", 503, None, "Triton is unavailable"),
        ("INTERNAL", "tensorrt_llm_bls: internal error", 500, None, "Triton failed"),
    ],
)
def test_triton_errors_become_http_statuses_with_the_openai_parameter(
    grpc_status, message, status, param, text
):
    error = from_triton(grpc_status, message)
    assert (error.status, error.param) == (status, param)
    assert text in error.message


def test_max_tokens_errors_name_the_parameter_the_client_sent():
    error = from_triton(
        "INVALID_ARGUMENT", "max_tokens: must be between 1 and 4096", max_tokens_param="x_tokens"
    )
    assert error.param == "x_tokens" and error.message.startswith("x_tokens: ")
