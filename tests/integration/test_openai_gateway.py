"""`llm-bls-openai` driven by the official `openai` SDK over a real tritonserver.

The demo pipeline (tiny random Llama, greedy unless asked to sample) answers; its text is
gibberish but deterministic, so the gateway's answers are compared with what
tensorrt_llm_bls itself answers over gRPC for the same request.
"""

from __future__ import annotations

import asyncio
import json
import socket

import numpy as np
import openai
import pytest

from local_triton.gateway import GatewayProcess
from local_triton.server import free_port
from tests.integration.clients import engine_is_idle, grpc_generate, grpc_text, metric, wait_for

pytestmark = pytest.mark.integration

MODEL = "tensorrt_llm_bls"
CHAT = [{"role": "user", "content": "Tell me a story about a fox."}]
PROMPT = "The quick brown fox"
SAMPLING = {"temperature": 1.0, "top_p": 0.95}  # the engine decodes greedily without top_p


@pytest.fixture(scope="module")
def client(openai_gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=openai_gateway.base_url, api_key="none", max_retries=0)


def async_client(gateway: GatewayProcess) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.base_url, api_key="none", max_retries=0)


def bls(triton_server, **inputs) -> tuple[str, list]:
    """What tensorrt_llm_bls answers directly: (text, responses)."""
    responses = grpc_generate(
        triton_server.grpc_url,
        {"return_num_input_tokens": True, "return_num_output_tokens": True, **inputs},
    )
    return grpc_text(responses), [r for r in responses if r.outputs]


def test_models_and_health(client, openai_gateway):
    assert [model.id for model in client.models.list()] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4")
    assert openai_gateway.health() == "ok"


def test_chat_answers_what_the_bls_answers_with_usage(client, triton_server):
    reply = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=12)
    text, responses = bls(triton_server, messages=json.dumps(CHAT), max_tokens=12)
    (choice,) = reply.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == text
    assert choice.finish_reason == "length"
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")
    assert reply.usage.prompt_tokens == responses[0].scalar("num_input_tokens")
    assert reply.usage.completion_tokens == 12
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 12


def test_streamed_completion_concatenates_to_the_whole_answer_with_usage(client):
    whole = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=16)
    chunks = list(
        client.completions.create(
            model=MODEL,
            prompt=PROMPT,
            max_tokens=16,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    texts = [c.choices[0].text for c in chunks if c.choices]
    assert len(texts) > 3  # really streamed
    assert "".join(texts) == whole.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    assert all(c.usage is None for c in chunks[:-1])
    assert whole.usage.completion_tokens == 16


def test_async_client_chat_stream_and_completion(openai_gateway, client):
    expected_chat = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=10)
    expected_completion = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=10)

    async def run():
        async with async_client(openai_gateway) as aclient:
            stream = await aclient.chat.completions.create(
                model=MODEL, messages=CHAT, max_tokens=10, stream=True
            )
            deltas = [chunk.choices[0].delta async for chunk in stream]
            completion = await aclient.completions.create(model=MODEL, prompt=PROMPT, max_tokens=10)
            return deltas, completion

    deltas, completion = asyncio.run(run())
    assert deltas[0].role == "assistant"
    assert "".join(d.content or "" for d in deltas) == expected_chat.choices[0].message.content
    assert completion.choices[0].text == expected_completion.choices[0].text


def test_many_async_streams_at_once(openai_gateway):
    async def one(aclient, index):
        stream = await aclient.completions.create(
            model=MODEL, prompt=f"{PROMPT} {index}", max_tokens=8, stream=True
        )
        return [chunk async for chunk in stream]

    async def run():
        async with async_client(openai_gateway) as aclient:
            return await asyncio.gather(*(one(aclient, i) for i in range(16)))

    for chunks in asyncio.run(run()):
        assert chunks[-1].choices[0].finish_reason == "length"


@pytest.mark.parametrize("stream", [False, True])
def test_n_2_gives_two_choices(client, stream):
    request = dict(model=MODEL, messages=CHAT, max_tokens=8, n=2, seed=11, **SAMPLING)
    if not stream:
        reply = client.chat.completions.create(**request)
        assert [c.index for c in reply.choices] == [0, 1]
        assert all(c.finish_reason == "length" for c in reply.choices)
        assert reply.usage.completion_tokens == 16
        return
    texts, finishes = {0: "", 1: ""}, {}
    for chunk in client.chat.completions.create(**request, stream=True):
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    whole = client.chat.completions.create(**request)
    assert texts == {c.index: c.message.content for c in whole.choices}
    assert finishes == {0: "length", 1: "length"}


def test_several_prompts_in_one_completion(client):
    prompts = ["Once upon a time", "Hello 世界"]
    reply = client.completions.create(model=MODEL, prompt=prompts, max_tokens=6)
    one_by_one = [
        client.completions.create(model=MODEL, prompt=p, max_tokens=6).choices[0].text
        for p in prompts
    ]
    assert [c.text for c in reply.choices] == one_by_one


def a_word_of(text: str) -> str:
    """A word from the middle of `text`, not at its start."""
    words = [w for w in text.split(" ") if len(w) >= 2 and text.index(w) > 0]
    return words[len(words) // 2]


@pytest.mark.parametrize("stream", [False, True])
def test_stop_ends_the_text_before_the_stop_string(client, stream):
    full = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=24).choices[0].text
    stop = a_word_of(full)
    request = dict(model=MODEL, prompt=PROMPT, max_tokens=24, stop=[stop, "never-matches"])
    if stream:
        chunks = [c.choices[0] for c in client.completions.create(**request, stream=True)]
        text, finish = "".join(c.text for c in chunks), chunks[-1].finish_reason
    else:
        choice = client.completions.create(**request).choices[0]
        text, finish = choice.text, choice.finish_reason
    assert text == full[: full.index(stop)]
    assert finish == "stop"


def test_seed_reproduces_sampled_text(client):
    def sample(seed: int) -> str:
        reply = client.completions.create(
            model=MODEL, prompt=PROMPT, max_tokens=24, seed=seed, **SAMPLING
        )
        return reply.choices[0].text

    assert sample(7) == sample(7)
    assert sample(7) != sample(8)
    greedy = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=24).choices[0].text
    assert sample(7) != greedy  # it really sampled


def test_chat_logprobs_are_the_chosen_tokens_log_probs(client, triton_server):
    reply = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=8, logprobs=True)
    _, responses = bls(
        triton_server, messages=json.dumps(CHAT), max_tokens=8, return_log_probs=True
    )
    expected = responses[0].outputs["output_log_probs"].reshape(-1).tolist()
    got = [entry.logprob for entry in reply.choices[0].logprobs.content]
    assert got == pytest.approx(expected)
    assert len(got) == reply.usage.completion_tokens == 8
    assert all(value <= 0 for value in got)
    streamed = [
        entry.logprob
        for chunk in client.chat.completions.create(
            model=MODEL, messages=CHAT, max_tokens=8, logprobs=True, stream=True
        )
        if chunk.choices[0].logprobs
        for entry in chunk.choices[0].logprobs.content
    ]
    assert streamed == pytest.approx(expected)


def test_completion_logprobs_and_echo(client):
    reply = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=5, logprobs=0)
    assert len(reply.choices[0].logprobs.token_logprobs) == 5
    echoed = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=5, echo=True)
    assert echoed.choices[0].text.startswith(PROMPT)
    assert echoed.choices[0].text.endswith(reply.choices[0].text)


# -- errors ------------------------------------------------------------------------------


def post(gateway: GatewayProcess, path: str, body: bytes) -> tuple[int, dict]:
    """A raw POST, for bodies the SDK would never send."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"{gateway.base_url}{path}", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/completions", b"{not json", None),
        ("/completions", b"\xff\xfe", None),
        ("/completions", b"[1, 2]", None),
        (
            "/completions",
            b'{"model": "tensorrt_llm_bls", "prompt": "Hi", "max_tokens": "8"}',
            "max_tokens",
        ),
        (
            "/completions",
            b'{"model": "tensorrt_llm_bls", "prompt": "Hi", "stream": "yes"}',
            "stream",
        ),
        ("/completions", b'{"model": "tensorrt_llm_bls", "prompt": 42}', "prompt"),
        ("/completions", b'{"model": "tensorrt_llm_bls"}', "prompt"),
        ("/chat/completions", b'{"model": "tensorrt_llm_bls", "messages": "Hi"}', "messages"),
        (
            "/chat/completions",
            b'{"model": "tensorrt_llm_bls", "messages": [{"role": "user", "content": "Hi"}], "temprature": 1}',
            "temprature",
        ),
    ],
)
def test_malformed_requests_are_400s_in_openai_format(openai_gateway, path, body, param):
    status, reply = post(openai_gateway, path, body)
    assert status == 400, reply
    assert reply["error"]["type"] == "invalid_request_error"
    assert reply["error"]["param"] == param
    assert reply["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("request_fields", "param", "words"),
    [
        ({"max_tokens": 100000}, "max_tokens", "max_output_len"),  # the BLS's limit
        ({"max_completion_tokens": 100000}, "max_completion_tokens", "max_output_len"),
        ({"n": 50}, "n", "max_num_return_sequences"),
        ({"top_logprobs": 3, "logprobs": True}, "top_logprobs", "chosen token"),
        ({"logit_bias": {"42": 10}}, "logit_bias", "not supported"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools", "tool"),
        ({"temperature": 3.0}, "temperature", "less than or equal to 2"),
        ({"extra_body": {"best_of": 2}}, "best_of", "unrecognized"),
    ],
)
def test_refused_parameters_are_400s_naming_the_parameter(
    client, stream, request_fields, param, words
):
    request = {"model": MODEL, "messages": CHAT, "max_tokens": 4, "stream": stream}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**{**request, **request_fields})
    assert caught.value.status_code == 400
    assert caught.value.body["param"] == param
    assert words in caught.value.body["message"]


def test_an_unknown_model_is_a_404(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.completions.create(model="gpt-5", prompt="Hi")
    assert caught.value.body["code"] == "model_not_found"


def test_an_unknown_route_is_a_404_in_openai_format(openai_gateway):
    status, reply = post(openai_gateway, "/embeddings", b'{"model": "tensorrt_llm_bls"}')
    assert status == 404 and reply["error"]["message"] == "Not Found"


def test_triton_down_is_a_503():
    with GatewayProcess(f"127.0.0.1:{free_port()}", wait_for_triton=False) as gateway:
        down = openai.OpenAI(base_url=gateway.base_url, api_key="none", max_retries=0)
        for stream in (False, True):
            with pytest.raises(openai.InternalServerError) as caught:
                down.completions.create(model=MODEL, prompt="Hi", stream=stream)
            assert caught.value.status_code == 503
            assert caught.value.body["code"] == "triton_unavailable"
        assert gateway.health() == "unavailable"


# -- clients that leave ------------------------------------------------------------------


def engine_counts(server) -> tuple[float, float]:
    """(stop requests the engine got from the BLS, tokens it generated)."""
    return (
        metric(server.metrics_url, "reference_engine_cancelled_total", reason="stop_request"),
        metric(server.metrics_url, "reference_engine_generated_tokens_total"),
    )


def test_a_client_that_leaves_mid_stream_ends_the_engine_request(
    synthetic_openai_gateway, synthetic_server
):
    assert wait_for(lambda: engine_is_idle(synthetic_server))
    stops, tokens = engine_counts(synthetic_server)
    leaving = openai.OpenAI(base_url=synthetic_openai_gateway.base_url, api_key="none")
    stream = leaving.completions.create(model=MODEL, prompt="Hi", max_tokens=1000, stream=True)
    chunks = iter(stream)
    for _ in range(3):
        next(chunks)
    assert not engine_is_idle(synthetic_server)
    stream.close()  # the HTTP connection goes away mid-stream
    assert wait_for(lambda: engine_is_idle(synthetic_server))
    stops_after, tokens_after = engine_counts(synthetic_server)
    assert stops_after == stops + 1  # the BLS stopped the engine request
    assert tokens_after - tokens < 100  # of the 1000 asked for (30 ms a token)


def test_a_client_that_leaves_before_a_whole_answer_ends_the_engine_request(
    synthetic_openai_gateway, synthetic_server
):
    assert wait_for(lambda: engine_is_idle(synthetic_server))
    stops, tokens = engine_counts(synthetic_server)
    body = json.dumps({"model": MODEL, "prompt": "Hi", "max_tokens": 1000}).encode()
    with socket.create_connection(("127.0.0.1", synthetic_openai_gateway.port), timeout=30) as c:
        c.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json"
            b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
        assert wait_for(lambda: not engine_is_idle(synthetic_server))
    assert wait_for(lambda: engine_is_idle(synthetic_server))
    stops_after, tokens_after = engine_counts(synthetic_server)
    assert stops_after == stops + 1
    assert tokens_after - tokens < 100


def test_usage_of_a_stream_cut_by_a_stop_string_counts_to_the_stop(client, triton_server):
    full = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=24).choices[0].text
    stop = a_word_of(full)
    whole = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=24, stop=stop)
    chunks = list(
        client.completions.create(
            model=MODEL,
            prompt=PROMPT,
            max_tokens=24,
            stop=stop,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage == whole.usage
    assert 0 < whole.usage.completion_tokens < 24
    _, responses = bls(triton_server, text_input=PROMPT, max_tokens=24, stop_words=[stop])
    assert whole.usage.completion_tokens == int(
        np.sum([r.scalar("num_output_tokens") for r in responses])
    )
