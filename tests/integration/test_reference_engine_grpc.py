"""The reference engine served by a real tritonserver as `tensorrt_llm`, over gRPC
(streaming and not): outputs, stop conditions, seeds, cancellation, concurrency."""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pytest

pytestmark = pytest.mark.integration

grpcclient = pytest.importorskip("tritonclient.grpc")

MODEL = "tensorrt_llm"
PROMPTS = [
    [1, 15, 27, 300, 41],
    [1, 7],
    [1, 900, 901, 902, 903, 904, 905, 906],
    [1, 1500, 3, 3, 3],
    [1, 222, 1999, 64],
]


def word_list(words: list[list[int]]) -> np.ndarray:
    tokens = [t for w in words for t in w]
    offsets = list(np.cumsum([len(w) for w in words]))
    n = max(len(tokens), 1)
    return np.array(
        [[tokens + [0] * (n - len(tokens)), offsets + [-1] * (n - len(offsets))]], np.int32
    )


def make_inputs(prompt: list[int], n: int, streaming: bool, **extra: np.ndarray) -> list:
    arrays = {
        "input_ids": np.array([prompt], np.int32),
        "input_lengths": np.array([[len(prompt)]], np.int32),
        "request_output_len": np.array([[n]], np.int32),
        "streaming": np.array([[streaming]]),
        **extra,
    }
    return to_inputs(arrays)


def to_inputs(arrays: dict[str, np.ndarray]) -> list:
    inputs = []
    for name, arr in arrays.items():
        dtype = {"i": "INT32", "u": "UINT64", "f": "FP32", "b": "BOOL"}[arr.dtype.kind]
        tensor = grpcclient.InferInput(name, list(arr.shape), dtype)
        tensor.set_data_from_numpy(arr)
        inputs.append(tensor)
    return inputs


@dataclass
class Stream:
    """Responses of one request id on a shared gRPC stream."""

    tokens: list[int] = field(default_factory=list)
    responses: int = 0
    errors: list[str] = field(default_factory=list)
    final: threading.Event = field(default_factory=threading.Event)
    times: list[float] = field(default_factory=list)


class StreamClient:
    """One gRPC bidirectional stream carrying many requests, routed by request id."""

    def __init__(self, url: str) -> None:
        self.client = grpcclient.InferenceServerClient(url)
        self.streams: dict[str, Stream] = defaultdict(Stream)
        self._lock = threading.Lock()
        self.client.start_stream(callback=self._on_response)

    def _on_response(self, result, error) -> None:
        now = time.monotonic()
        with self._lock:
            if error is not None:
                # The callback's error names no request: tests that expect an error
                # keep exactly one request open on their stream.
                for s in self.streams.values():
                    if not s.final.is_set():
                        s.errors.append(str(error))
                        s.final.set()
                return
            response = result.get_response()
            stream = self.streams[response.id]
            ids = result.as_numpy("output_ids")
            if ids is not None:
                stream.tokens.extend(int(t) for t in ids.reshape(-1))
                stream.responses += 1
                stream.times.append(now)
            final = response.parameters.get("triton_final_response")
            if final is not None and final.bool_param:
                stream.final.set()

    def send(self, request_id: str, prompt, n: int, streaming: bool = True, **extra) -> Stream:
        with self._lock:
            stream = self.streams[request_id]
        self.client.async_stream_infer(
            MODEL,
            make_inputs(prompt, n, streaming, **extra),
            request_id=request_id,
            enable_empty_final_response=True,
        )
        return stream

    def stop(self, request_id: str) -> None:
        arrays = {
            "input_ids": np.zeros((1, 1), np.int32),
            "input_lengths": np.zeros((1, 1), np.int32),
            "request_output_len": np.zeros((1, 1), np.int32),
            "stop": np.array([[True]]),
        }
        self.client.async_stream_infer(
            MODEL, to_inputs(arrays), request_id=request_id, enable_empty_final_response=True
        )

    def close(self) -> None:
        self.client.stop_stream()
        self.client.close()


@pytest.fixture
def stream_client(engine_server):
    client = StreamClient(engine_server.grpc_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def hf_model(fixture_paths):
    pytest.importorskip("torch")
    from reference_engine.backends.reference import load_float32_model

    return load_float32_model(fixture_paths.tiny_llama).eval()


def hf_greedy(model, prompt, n) -> list[int]:
    import torch

    out = model.generate(
        torch.tensor([prompt]),
        do_sample=False,
        max_new_tokens=n,
        eos_token_id=None,
        pad_token_id=0,
    )
    return out[0, len(prompt) :].tolist()


def metric_value(server, name: str, **labels: str) -> float:
    text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    total = 0.0
    found = False
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    if not found:
        raise AssertionError(
            f"metric {name} {labels} not served:\n"
            + "\n".join(line for line in text.splitlines() if "reference_engine" in line)
        )
    return total


def wait_all(streams, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    for s in streams:
        assert s.final.wait(max(0.1, deadline - time.monotonic())), "no final response"


def test_greedy_equals_hf_generate_streaming_and_not(stream_client, hf_model):
    expected = [hf_greedy(hf_model, p, 16) for p in PROMPTS]
    streamed = [stream_client.send(f"s{i}", p, 16) for i, p in enumerate(PROMPTS)]
    full = [
        stream_client.send(
            f"f{i}", p, 16, streaming=False, exclude_input_in_output=np.array([[False]])
        )
        for i, p in enumerate(PROMPTS)
    ]
    wait_all(streamed + full)
    assert [s.tokens for s in streamed] == expected
    assert all(s.responses == 16 for s in streamed)
    assert [s.tokens for s in full] == [p + e for p, e in zip(PROMPTS, expected, strict=True)]
    assert all(s.responses == 1 and not s.errors for s in full)


def test_stop_words_end_and_are_included(stream_client, hf_model):
    reference = hf_greedy(hf_model, PROMPTS[0], 16)
    word = reference[4:6]
    s = stream_client.send("stopword", PROMPTS[0], 16, stop_words_list=word_list([word]))
    wait_all([s])
    assert s.tokens[-2:] == word and s.tokens == reference[: len(s.tokens)]


def test_end_id_is_excluded(stream_client, hf_model):
    reference = hf_greedy(hf_model, PROMPTS[1], 16)
    end_id = reference[3]
    s = stream_client.send("endid", PROMPTS[1], 16, end_id=np.array([[end_id]], np.int32))
    wait_all([s])
    assert s.tokens == reference[: reference.index(end_id)]


def test_bad_words_never_appear(stream_client, hf_model):
    reference = hf_greedy(hf_model, PROMPTS[2], 16)
    banned = sorted(set(reference[:3]))
    s = stream_client.send(
        "badwords", PROMPTS[2], 16, bad_words_list=word_list([[t] for t in banned])
    )
    wait_all([s])
    assert len(s.tokens) == 16 and not set(s.tokens) & set(banned)


def test_same_seed_same_tokens(stream_client):
    sampling = {
        "runtime_top_k": np.array([[40]], np.int32),
        "temperature": np.array([[1.3]], np.float32),
    }
    runs = [
        stream_client.send(
            f"seed{i}", PROMPTS[3], 20, seed=np.array([[seed]], np.uint64), **sampling
        )
        for i, seed in enumerate([5, 5, 6])
    ]
    wait_all(runs)
    assert runs[0].tokens == runs[1].tokens
    assert runs[0].tokens != runs[2].tokens


def test_stop_request_ends_an_inflight_stream(engine_server, stream_client):
    before = metric_value(engine_server, "reference_engine_cancelled_total", reason="stop_request")
    s = stream_client.send("to-stop", PROMPTS[0], 1500)
    deadline = time.monotonic() + 30
    while s.responses < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert s.responses >= 3
    stream_client.stop("to-stop")
    assert s.final.wait(30)
    assert len(s.tokens) < 1500 and not s.errors
    after = metric_value(engine_server, "reference_engine_cancelled_total", reason="stop_request")
    assert after == before + 1


def test_stop_request_for_a_finished_request_is_answered_and_counted(engine_server, stream_client):
    name = "reference_engine_stop_requests_total"
    before = metric_value(engine_server, name, matched="false")
    s = stream_client.send("done-already", PROMPTS[1], 2)
    assert s.final.wait(30)
    stream_client.stop("done-already")
    deadline = time.monotonic() + 10
    while metric_value(engine_server, name, matched="false") == before:
        assert time.monotonic() < deadline, "stop request not counted"
        time.sleep(0.05)
    assert metric_value(engine_server, name, matched="false") == before + 1


def test_client_cancellation_reaches_the_engine(engine_server):
    before = metric_value(engine_server, "reference_engine_cancelled_total", reason="client")
    client = StreamClient(engine_server.grpc_url)
    s = client.send("to-cancel", PROMPTS[1], 1500)
    deadline = time.monotonic() + 30
    while s.responses < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    client.client.stop_stream(cancel_requests=True)
    client.client.close()
    deadline = time.monotonic() + 30
    after = before
    while after == before and time.monotonic() < deadline:
        time.sleep(0.05)
        after = metric_value(engine_server, "reference_engine_cancelled_total", reason="client")
    assert after == before + 1
    # the cancelled sequence left the engine (no other request is in flight here)
    deadline = time.monotonic() + 10
    while metric_value(engine_server, "reference_engine_active_sequences") != 0:
        assert time.monotonic() < deadline, "cancelled sequence still active"
        time.sleep(0.05)


def test_refused_request_gets_an_error(stream_client):
    s = stream_client.send("beam", PROMPTS[0], 4, beam_width=np.array([[2]], np.int32))
    assert s.final.wait(30)
    assert s.errors and "beam_width" in s.errors[0]


def test_32_concurrent_streams_all_start_before_any_finishes(stream_client):
    # 64 tokens: about 2 s of generation for 32 sequences on the tiny model, so one late
    # request arrival on a busy machine does not decide the outcome.
    streams = [stream_client.send(f"c{i}", PROMPTS[i % 5], 64) for i in range(32)]
    wait_all(streams, timeout_s=120)
    assert all(len(s.tokens) == 64 and not s.errors for s in streams)
    start = min(s.times[0] for s in streams)
    first_tokens = sorted(round(s.times[0] - start, 3) for s in streams)
    finishes = sorted(round(s.times[-1] - start, 3) for s in streams)
    assert first_tokens[-1] < finishes[0], (first_tokens, finishes)


def test_metrics_are_served(engine_server):
    text = urllib.request.urlopen(engine_server.metrics_url, timeout=10).read().decode()
    for name in (
        "reference_engine_requests_total",
        "reference_engine_generated_tokens_total",
        "reference_engine_active_sequences",
        "reference_engine_batch_size",
    ):
        assert re.search(rf"^{name}", text, re.MULTILINE), name
