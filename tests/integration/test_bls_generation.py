"""tensorrt_llm_bls on a real tritonserver with the reference engine: text, streaming, stops.

The model is the reciting fixture: greedy decoding reproduces known multilingual text,
so stop strings are real words and multi-byte characters really span several tokens.
"""

from __future__ import annotations

import time

import pytest

from offline_fixtures.reciting_llama import RECITALS
from tests.integration.clients import (
    grpc_generate,
    grpc_text,
    http_generate,
    http_generate_stream,
    metric,
)

pytestmark = pytest.mark.integration

MAX_TOKENS = 64


@pytest.fixture(scope="module")
def hf(fixture_paths):
    """The same checkpoint in Hugging Face transformers: the reference to match."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(fixture_paths.reciting_llama)
    model = AutoModelForCausalLM.from_pretrained(fixture_paths.reciting_llama).eval()

    def generate_ids(prompt: str, max_new_tokens: int = MAX_TOKENS) -> list[int]:
        prompt_ids = tokenizer.encode(prompt)
        with torch.no_grad():
            output = model.generate(
                torch.tensor([prompt_ids]), max_new_tokens=max_new_tokens, do_sample=False
            )
        generated = output[0, len(prompt_ids) :].tolist()
        if generated and generated[-1] == tokenizer.eos_token_id:
            generated = generated[:-1]  # the engine never returns end_id
        return generated

    return tokenizer, generate_ids


def stream_text(events: list[dict]) -> str:
    return "".join(event["text_output"] for event in events)


@pytest.mark.parametrize("recital", RECITALS, ids=lambda r: r.prompt[:12])
def test_greedy_text_equals_hugging_face_on_every_transport(reciting_server, hf, recital):
    tokenizer, generate_ids = hf
    expected = tokenizer.decode(generate_ids(recital.prompt), skip_special_tokens=True)
    body = {"text_input": recital.prompt, "max_tokens": MAX_TOKENS}

    whole = http_generate(reciting_server.http_url, body)
    assert whole.status == 200, whole.body
    assert whole.body["text_output"] == expected
    assert whole.body["finish_reason"] == "stop"  # the recital ends with EOS

    events = http_generate_stream(reciting_server.http_url, {**body, "stream": True})
    assert stream_text(events) == expected
    assert len(events) > 5  # really streamed, one response per step
    assert events[-1]["finish_reason"] == "stop"
    # Mid-stream events carry the text; the finish reason comes with the last one only.
    assert all("finish_reason" not in event for event in events[:-1])

    responses = grpc_generate(reciting_server.grpc_url, {**body, "stream": True})
    assert grpc_text(responses) == expected
    assert responses[-1].final


def test_multi_byte_text_streams_without_replacement_characters(reciting_server, hf):
    tokenizer, generate_ids = hf
    split_characters = 0
    for recital in RECITALS:
        ids = generate_ids(recital.prompt)
        tokens = tokenizer.convert_ids_to_tokens(ids)
        split_characters += sum(
            1 for t in tokens if t.startswith("<0x") and int(t[3:5], 16) >= 0xC0
        )
        body = {"text_input": recital.prompt, "max_tokens": MAX_TOKENS, "stream": True}
        for deltas in (
            [e["text_output"] for e in http_generate_stream(reciting_server.http_url, body)],
            [r.text() for r in grpc_generate(reciting_server.grpc_url, body) if r.outputs],
        ):
            assert not any("\ufffd" in delta for delta in deltas), deltas
            assert "".join(deltas) == tokenizer.decode(ids, skip_special_tokens=True)
    # The point of the test: characters that span several byte-fallback tokens.
    assert split_characters >= 3


def token_pieces(tokenizer, ids: list[int]) -> list[str]:
    """The text each token adds to the decode of the ones before it."""
    pieces, previous = [], ""
    for end in range(1, len(ids) + 1):
        text = tokenizer.decode(ids[:end], skip_special_tokens=True)
        pieces.append(text[len(previous) :])
        previous = text
    return pieces


FOX = RECITALS[0]  # "The quick brown" -> " fox jumps over the lazy dog 🦊 and says 你好世界 ..."


def stop_cases(tokenizer, ids: list[int]) -> dict[str, tuple[list[str], str, str, int]]:
    """name -> (stop strings, expected text, expected stop_reason, tokens counted)."""
    pieces = token_pieces(tokenizer, ids)
    text = "".join(pieces)
    # Three whole tokens of plain words, e.g. " jumps over the".
    start = next(
        k for k in range(1, len(pieces) - 3) if all(p.strip().isalpha() for p in pieces[k : k + 3])
    )
    three = "".join(pieces[start : start + 3])
    # Ending inside a token: a word token cut after its second letter.
    inner = next(k for k in range(start + 3, len(pieces)) if len(pieces[k].strip()) >= 3)
    partial = pieces[inner - 1] + pieces[inner][: pieces[inner].index(pieces[inner].strip()) + 2]
    return {
        "three_tokens": ([three], text[: text.index(three)], three, start + 3),
        "inside_a_token": ([partial], text[: text.index(partial)], partial, inner + 1),
        "earliest_wins": (
            ["你好世界", "lazy"],
            text[: text.index("lazy")],
            "lazy",
            next(k for k in range(1, len(pieces) + 1) if "lazy" in "".join(pieces[:k])),
        ),
    }


@pytest.mark.parametrize("case", ["three_tokens", "inside_a_token", "earliest_wins"])
@pytest.mark.parametrize("transport", ["http", "http_stream", "grpc_stream"])
def test_stop_strings(reciting_server, hf, case, transport):
    tokenizer, generate_ids = hf
    ids = generate_ids(FOX.prompt)
    stops, expected, stop_reason, counted = stop_cases(tokenizer, ids)[case]
    body = {
        "text_input": FOX.prompt,
        "max_tokens": MAX_TOKENS,
        "stop_words": stops,
        "return_num_output_tokens": True,
    }
    generated_before = metric(
        reciting_server.metrics_url, "reference_engine_generated_tokens_total"
    )
    stops_before = metric(reciting_server.metrics_url, "reference_engine_stop_requests_total")
    if transport == "http":
        reply = http_generate(reciting_server.http_url, body)
        assert reply.status == 200, reply.body
        text, last = reply.body["text_output"], reply.body
    elif transport == "http_stream":
        events = http_generate_stream(reciting_server.http_url, {**body, "stream": True})
        text, last = stream_text(events), events[-1]
        # Each streamed response counts the tokens it adds.
        last["num_output_tokens"] = sum(event.get("num_output_tokens", 0) for event in events)
    else:
        responses = grpc_generate(reciting_server.grpc_url, {**body, "stream": True})
        text = grpc_text(responses)
        last = {name: responses[-1].scalar(name) for name in responses[-1].outputs}
        last["num_output_tokens"] = sum(
            r.scalar("num_output_tokens") or 0 for r in responses if r.outputs
        )
    assert text == expected
    assert last["finish_reason"] == "stop"
    assert last["stop_reason"] == stop_reason
    assert last["num_output_tokens"] == counted
    # The engine did not run on: it ended the request on its own stop words, or the BLS
    # told it to stop (stop=true) as soon as the stop string completed. This tiny model
    # takes a few milliseconds a step, so a few steps may pass while the stop travels;
    # left alone it makes MAX_TOKENS.
    assert counted + 12 < MAX_TOKENS
    deadline = time.monotonic() + 10
    while metric(reciting_server.metrics_url, "reference_engine_active_sequences") > 0:
        assert time.monotonic() < deadline, "the engine request is still running"
        time.sleep(0.05)
    generated = (
        metric(reciting_server.metrics_url, "reference_engine_generated_tokens_total")
        - generated_before
    )
    assert counted <= generated <= counted + 12
    stops = metric(reciting_server.metrics_url, "reference_engine_stop_requests_total")
    if generated > counted:  # the engine went on past the stop string: it was told to stop
        assert stops == stops_before + 1


def test_include_stop_str_in_output(reciting_server):
    reply = http_generate(
        reciting_server.http_url,
        {
            "text_input": FOX.prompt,
            "max_tokens": MAX_TOKENS,
            "stop_words": ["everyone", "lazy"],
            "include_stop_str_in_output": True,
        },
    )
    assert reply.body["text_output"] == "fox jumps over the lazy"
    assert reply.body["stop_reason"] == "lazy"


def test_length_finish_reason_and_token_counts(reciting_server, hf):
    tokenizer, generate_ids = hf
    reply = http_generate(
        reciting_server.http_url,
        {
            "text_input": FOX.prompt,
            "max_tokens": 5,
            "return_num_input_tokens": True,
            "return_num_output_tokens": True,
        },
    )
    assert reply.body["finish_reason"] == "length"
    assert reply.body["num_output_tokens"] == 5
    assert reply.body["num_input_tokens"] == len(tokenizer.encode(FOX.prompt))
    assert reply.body["text_output"] == tokenizer.decode(generate_ids(FOX.prompt, 5))


def test_exclude_input_in_output_false_echoes_the_prompt(reciting_server, hf):
    tokenizer, generate_ids = hf
    reply = http_generate(
        reciting_server.http_url,
        {"text_input": FOX.prompt, "max_tokens": 8, "exclude_input_in_output": False},
    )
    prompt_ids = tokenizer.encode(FOX.prompt)
    expected = tokenizer.decode(prompt_ids + generate_ids(FOX.prompt, 8), skip_special_tokens=True)
    assert reply.body["text_output"] == expected


def test_bad_words_never_appear(reciting_server, hf):
    tokenizer, generate_ids = hf
    plain = tokenizer.decode(generate_ids(FOX.prompt))
    assert "lazy" in plain
    reply = http_generate(
        reciting_server.http_url,
        {"text_input": FOX.prompt, "max_tokens": MAX_TOKENS, "bad_words": ["lazy"]},
    )
    assert reply.status == 200, reply.body
    assert "lazy" not in reply.body["text_output"]
    assert reply.body["text_output"].startswith("fox jumps over the")


def test_several_prompts_and_samples_each_have_their_own_sequence(reciting_server, hf):
    tokenizer, generate_ids = hf
    prompts = [RECITALS[0].prompt, RECITALS[2].prompt]
    import numpy as np

    inputs = {
        "text_input": np.array([[p.encode()] for p in prompts], dtype=object),
        "max_tokens": np.array([[MAX_TOKENS], [MAX_TOKENS]], dtype=np.int32),
        "stream": np.array([[True], [True]], dtype=bool),
        "num_return_sequences": np.array([[2], [2]], dtype=np.int32),
    }
    responses = grpc_generate(reciting_server.grpc_url, inputs)
    texts: dict[tuple[int, int], str] = {}
    for response in responses:
        if not response.outputs:
            continue
        key = (response.scalar("batch_index"), response.scalar("sequence_index"))
        texts[key] = texts.get(key, "") + response.text()
    assert sorted(texts) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for (batch_index, _), text in texts.items():
        # Greedy: both samples of a prompt are its greedy continuation.
        assert text == tokenizer.decode(
            generate_ids(prompts[batch_index]), skip_special_tokens=True
        )


def test_chat_messages_use_the_chat_template(reciting_server, hf):
    tokenizer, _ = hf
    import json

    messages = [{"role": "user", "content": "Hello 世界"}]
    reply = http_generate(
        reciting_server.http_url,
        {"messages": json.dumps(messages), "max_tokens": 4, "return_num_input_tokens": True},
    )
    assert reply.status == 200, reply.body
    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    expected_ids = tokenizer.encode(rendered, add_special_tokens=False)
    if tokenizer.bos_token and not rendered.startswith(tokenizer.bos_token):
        expected_ids = tokenizer.encode(rendered)
    assert reply.body["num_input_tokens"] == len(expected_ids)


def run_client(server, *args: str):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "bls.client", "--url", server.grpc_url, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_llm_bls_client_streams_text_and_reports_why_it_ended(reciting_server):
    done = run_client(
        reciting_server, FOX.prompt, "--stream", "--max-tokens", "40", "--stop", "lazy"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "fox jumps over the "  # exactly the text: pipes stay clean
    assert "[finish_reason: stop]" in done.stderr


def test_llm_bls_client_shows_the_servers_error_without_a_traceback(reciting_server):
    done = run_client(reciting_server, FOX.prompt, "--max-tokens", "0")
    assert done.returncode == 1
    assert "max_tokens: must be between 1 and 4096" in done.stderr
    assert "Traceback" not in done.stderr
