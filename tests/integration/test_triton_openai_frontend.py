"""tensorrt_llm_bls as Triton's own OpenAI frontend calls it, over gRPC.

That frontend runs only in-process inside NVIDIA's container, so its requests are
reproduced here tensor for tensor: the inputs of its TensorRT-LLM request builder, with
their dtypes and shapes ([1, 1] scalars, `stop_words` [1, N], `seed` UINT64), and the
responses are read as it reads them:
- `text_output`: exactly one string per response (it reads one string from the buffer);
- not streaming: one response, or two with the second empty, the last one FINAL;
- streaming: the text is the concatenation of the responses' text;
- usage: `num_input_tokens` from the first response, `num_output_tokens` SUMMED over the
  streamed responses (as INT32 or UINT32).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.integration.clients import grpc_generate

pytestmark = pytest.mark.integration

PROMPT = "The quick brown fox"


def frontend_inputs(prompt: str, stream: bool, **request) -> dict[str, np.ndarray]:
    """What the frontend sends for a completion request (its trtllm request builder)."""
    inputs = {
        "text_input": np.array([[prompt.encode()]], dtype=object),
        "stream": np.bool_([[stream]]),
        "max_tokens": np.int32([[request.get("max_tokens", 16)]]),
    }
    if request.get("stop"):
        inputs["stop_words"] = np.array([[w.encode() for w in request["stop"]]], dtype=object)
    for name in ("top_p", "frequency_penalty", "presence_penalty", "temperature"):
        if request.get(name) is not None:
            inputs[name] = np.float32([[request[name]]])
    if request.get("seed") is not None:
        inputs["seed"] = np.uint64([[request["seed"]]])
    if request.get("echo") is not None:
        inputs["exclude_input_in_output"] = np.bool_([[not request["echo"]]])
    inputs["return_num_input_tokens"] = np.bool_([[True]])
    inputs["return_num_output_tokens"] = np.bool_([[True]])
    return inputs


def read_as_the_frontend(responses, stream: bool) -> tuple[str, int, int]:
    """(text, prompt_tokens, completion_tokens) as the frontend builds them."""
    if not stream:
        assert 1 <= len(responses) <= 2 and responses[-1].final
    text, prompt_tokens, completion_tokens = "", None, 0
    for response in responses:
        if "text_output" not in response.outputs:  # the empty final response
            assert response.final
            continue
        assert response.outputs["text_output"].size == 1
        text += response.text()
        counts = (response.outputs["num_input_tokens"], response.outputs["num_output_tokens"])
        assert all(c.dtype in (np.int32, np.uint32) and c.size == 1 for c in counts)
        if prompt_tokens is None:
            prompt_tokens = int(counts[0].item())
        completion_tokens += int(counts[1].item())
    if not stream:
        assert "text_output" in responses[0].outputs
    return text, prompt_tokens, completion_tokens


REQUESTS = {
    "plain": {"max_tokens": 12},
    "sampling": {
        "max_tokens": 12,
        "top_p": 0.9,
        "temperature": 0.8,
        "frequency_penalty": 0.1,
        "presence_penalty": 0.2,
        "seed": 2**63 + 5,
    },
    "stop": {"max_tokens": 24, "stop": ["zzz-never", "\n\n"]},
    "echo": {"max_tokens": 6, "echo": True},
}


@pytest.mark.parametrize("name", list(REQUESTS))
def test_every_frontend_request_is_accepted_and_answered_as_it_reads_answers(triton_server, name):
    request = REQUESTS[name]
    whole = grpc_generate(triton_server.grpc_url, frontend_inputs(PROMPT, False, **request))
    text, prompt_tokens, completion_tokens = read_as_the_frontend(whole, stream=False)
    streamed = grpc_generate(triton_server.grpc_url, frontend_inputs(PROMPT, True, **request))
    assert len(streamed) > 2  # one response per step
    stream_text, stream_prompt, stream_completion = read_as_the_frontend(streamed, stream=True)
    assert stream_text == text
    assert stream_prompt == prompt_tokens == 5  # "<s>" + four tokens
    # Summed per-response counts give the same usage as the one whole response.
    assert stream_completion == completion_tokens
    assert 0 < completion_tokens <= request["max_tokens"]
    if name == "echo":
        assert text.startswith(PROMPT)


def test_streamed_counts_are_per_response_not_a_running_total(triton_server):
    streamed = grpc_generate(triton_server.grpc_url, frontend_inputs(PROMPT, True, max_tokens=16))
    counts = [int(r.scalar("num_output_tokens")) for r in streamed if r.outputs]
    assert sum(counts) == 16
    assert max(counts) < 16  # a running total would end at 16
