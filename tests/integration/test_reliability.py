"""Reliability on one real server: fuzzed bad input, and clients that leave mid-stream.

Bad input: hypothesis (derandomized: the same requests every run) draws batches of
malformed requests, sent concurrently over HTTP /generate, HTTP /generate_stream and
gRPC streaming. Each must be answered within 2 s. Where the model decides, the answer is
an error naming the field (HTTP 400). Where Triton answers before the model runs (its
JSON parser meets a value of the wrong JSON type, or no JSON at all), the answer is
Triton's own HTTP 500; those cases are listed in docs/reliability.md. Afterwards the
server is the same process and serves a normal request correctly.

Dropped clients: 100 streams (HTTP and gRPC) left at random points; every engine request
must end (reference_engine_active_sequences back to 0 within 2 s) and the BLS must hold
nothing for them (llm_bls_active_requests and llm_bls_waiting_requests 0).

Each test prints its counts (run with -s to see them; docs/reliability.md quotes them).
"""

from __future__ import annotations

import http.client
import json
import math
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bls.client import GenerateError, stream_generate
from tests.integration.clients import (
    bls_open_requests,
    engine_is_idle,
    http_generate,
    metric,
    wait_for,
)

pytestmark = pytest.mark.integration

ANSWER_WITHIN_S = 2.0
# 3 transports x EXAMPLES x BATCH requests: 2 400 in all, a few seconds of server time.
EXAMPLES = 20
BATCH = 40
SENDERS = 4  # requests in flight at once (more only queue on a 2-core machine)
PROMPT = "The quick brown fox"
MAX_OUTPUT_LEN = 4096  # the BLS's max_output_len in the shipped config
GENERATE = "/v2/models/tensorrt_llm_bls/generate"
GENERATE_STREAM = "/v2/models/tensorrt_llm_bls/generate_stream"


@dataclass(frozen=True)
class BadRequest:
    """A request the model must refuse, naming `field`. `inputs` are JSON values over
    HTTP and tensors (bls.client.as_input_array) over gRPC; `raw` replaces the JSON."""

    kind: str
    field: str
    inputs: dict
    raw: bytes | None = None


@dataclass(frozen=True)
class TritonRejected:
    """An HTTP body Triton's JSON parser refuses (HTTP 500) before the model sees it."""

    kind: str
    raw: bytes


words = st.text(alphabet="abcdefghij", min_size=1, max_size=8)
unknown_names = st.from_regex(r"[a-z]{3,12}_[a-z]{3,8}", fullmatch=True).filter(
    lambda name: name not in {"max_tokens", "top_p", "top_k", "stop_words", "bad_words"}
)


def with_prompt(**fields) -> dict:
    return {"text_input": PROMPT, "max_tokens": 4, **fields}


def model_refused() -> st.SearchStrategy[BadRequest]:
    """Malformed requests both transports can send, each refused by the model."""
    bad_float = st.sampled_from([math.nan, math.inf, -math.inf])
    return st.one_of(
        st.builds(
            lambda n: BadRequest("missing text_input", "text_input", {"max_tokens": n}),
            st.integers(1, 16),
        ),
        st.builds(
            lambda n: BadRequest(
                "max_tokens out of range", "max_tokens", with_prompt(max_tokens=n)
            ),
            st.one_of(st.integers(-(2**31), 0), st.integers(MAX_OUTPUT_LEN + 1, 2**31 - 1)),
        ),
        st.builds(
            lambda t: BadRequest(
                "temperature not finite or negative", "temperature", with_prompt(temperature=t)
            ),
            st.one_of(bad_float, st.floats(-1e6, -0.01)),
        ),
        st.builds(
            lambda p: BadRequest("top_p outside (0, 1]", "top_p", with_prompt(top_p=p)),
            st.one_of(bad_float, st.floats(-10, 0), st.floats(1.01, 100)),
        ),
        st.builds(
            lambda ws: BadRequest("too many stop words", "stop_words", with_prompt(stop_words=ws)),
            st.integers(65, 3000).map(lambda n: [f"w{i}" for i in range(n)]),
        ),
        st.builds(
            lambda w: BadRequest("stop word too long", "stop_words", with_prompt(stop_words=[w])),
            st.integers(257, 2000).map(lambda n: "x" * n),
        ),
        st.builds(
            lambda ws: BadRequest("too many bad words", "bad_words", with_prompt(bad_words=ws)),
            st.integers(65, 3000).map(lambda n: [f"w{i}" for i in range(n)]),
        ),
        st.builds(
            lambda n: BadRequest(
                "prompt over max_request_bytes",
                "text_input",
                {"text_input": "a" * n, "max_tokens": 4},
            ),
            st.integers(1_048_577, 1_100_000),
        ),
        st.builds(
            lambda name, value: BadRequest("unknown field", name, with_prompt(**{name: value})),
            unknown_names,
            st.one_of(st.integers(0, 9), words),
        ),
        st.builds(
            lambda text: BadRequest(
                "messages not a JSON list of messages",
                "messages",
                {"messages": text, "max_tokens": 4},
            ),
            st.one_of(
                st.sampled_from(["[{'role': 'user'", "{}", "[1, 2]", "null", '"hi"', "[]"]),
                words,
            ),
        ),
        st.builds(
            lambda n: BadRequest(
                "num_return_sequences over its cap",
                "num_return_sequences",
                with_prompt(num_return_sequences=n),
            ),
            st.integers(9, 1000),
        ),
        st.builds(
            lambda n: BadRequest("negative top_k", "top_k", with_prompt(top_k=n)),
            st.integers(-(2**31), -1),
        ),
    )


def http_only() -> st.SearchStrategy[BadRequest | TritonRejected]:
    """Malformed HTTP bodies: invalid UTF-8 and batch mismatches named by a field, and
    values of the wrong JSON type, which Triton's parser refuses before the model."""
    invalid_utf8 = st.sampled_from([b"caf\xc3 au lait", b"\xff\xfe", b"ok \xed\xa0\x80"])
    wrong_types = st.sampled_from(
        [
            ("max_tokens as a string", b'{"text_input": "hi", "max_tokens": "ten"}'),
            ("max_tokens as a float", b'{"text_input": "hi", "max_tokens": 3.5}'),
            ("max_tokens as a boolean", b'{"text_input": "hi", "max_tokens": true}'),
            ("text_input as an object", b'{"text_input": {"a": 1}}'),
            ("text_input as null", b'{"text_input": null}'),
            ("stop_words with a number", b'{"text_input": "hi", "stop_words": ["a", 1]}'),
            ("temperature as a string", b'{"text_input": "hi", "temperature": "hot"}'),
            ("stream as a string", b'{"text_input": "hi", "stream": "yes"}'),
            ("number beyond a double", b'{"text_input": "hi", "temperature": 1e999}'),
            ("not JSON", b'{"text_input": '),
            ("not a JSON object", b"[1, 2]"),
        ]
    )
    return st.one_of(
        invalid_utf8.map(
            lambda raw: BadRequest(
                "invalid UTF-8",
                "text_input",
                {},
                raw=b'{"max_tokens": 4, "text_input": "' + raw + b'"}',
            )
        ),
        st.integers(2, 8).map(
            lambda n: BadRequest(
                "batch size mismatch", "text_input", {"text_input": ["hi"] * n, "max_tokens": 4}
            )
        ),
        wrong_types.map(lambda case: TritonRejected(*case)),
    )


def grpc_only() -> st.SearchStrategy[BadRequest]:
    """Malformed tensors: wrong datatype or shape, mismatched batches, invalid UTF-8."""
    prompt = np.array([[PROMPT.encode()]], dtype=object)
    return st.one_of(
        st.sampled_from(
            [
                ("max_tokens", np.array([[4.0]], dtype=np.float32)),
                ("max_tokens", np.array([[b"4"]], dtype=object)),
                ("temperature", np.array([[1]], dtype=np.int32)),
                ("stream", np.array([[1]], dtype=np.int32)),
                ("text_input", np.array([[1, 2]], dtype=np.int32)),
            ]
        ).map(lambda c: BadRequest("wrong datatype", c[0], {"text_input": prompt, c[0]: c[1]})),
        st.integers(2, 6).map(
            lambda n: BadRequest(
                "wrong shape",
                "max_tokens",
                {"text_input": prompt, "max_tokens": np.full((1, n), 4, dtype=np.int32)},
            )
        ),
        st.integers(2, 6).map(
            lambda n: BadRequest(
                "batch size mismatch",
                "text_input",  # Triton names the first input whose batch differs
                {"text_input": prompt, "max_tokens": np.full((n, 1), 4, dtype=np.int32)},
            )
        ),
        st.sampled_from([b"caf\xc3 au lait", b"\xff\xfe", b"ok \xed\xa0\x80"]).map(
            lambda raw: BadRequest(
                "invalid UTF-8", "text_input", {"text_input": np.array([[raw]], dtype=object)}
            )
        ),
    )


class Tally:
    """What the fuzzed requests got, by transport and kind (printed for the docs)."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self.slowest_s = 0.0
        self.lock = threading.Lock()

    def add(self, transport: str, kind: str, answer: str, seconds: float) -> None:
        with self.lock:
            self.counts[(transport, kind, answer)] += 1
            self.slowest_s = max(self.slowest_s, seconds)


@pytest.fixture(scope="module")
def tally():
    tally = Tally()
    yield tally
    total = sum(tally.counts.values())
    print(f"\nfuzzed requests: {total}, slowest answer {tally.slowest_s:.3f} s")
    for (transport, kind, answer), count in sorted(tally.counts.items()):
        print(f"  {transport:16} {kind:40} {answer:24} {count}")


def http_body(case: BadRequest | TritonRejected, stream: bool) -> bytes:
    if isinstance(case, TritonRejected) or case.raw is not None:
        return case.raw
    return json.dumps({**case.inputs, "stream": stream} if stream else case.inputs).encode()


def post(server, path: str, body: bytes) -> tuple[int, str]:
    """Status and the error of a reply (the first event's, for /generate_stream)."""
    host = server.http_url.split("//", 1)[1]
    connection = http.client.HTTPConnection(host, timeout=30)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        reply = connection.getresponse()
        text = reply.read().decode("utf-8", errors="replace")
    finally:
        connection.close()
    if text.startswith("data: "):
        text = text.splitlines()[0][len("data: ") :]
    return reply.status, json.loads(text).get("error", "")


def check_http(server, tally: Tally, transport: str, path: str, case) -> None:
    started = time.monotonic()
    status, error = post(server, path, http_body(case, stream=path == GENERATE_STREAM))
    took = time.monotonic() - started
    assert took < ANSWER_WITHIN_S, (case.kind, took)
    if isinstance(case, TritonRejected):
        assert status == 500 and error, (case, status, error)
        tally.add(transport, case.kind, "500 from Triton", took)
        return
    assert status == 400, (case, status, error)
    assert case.field in error, (case.kind, case.field, error)
    assert "Traceback" not in error
    tally.add(transport, case.kind, "400 naming the field", took)


def check_grpc(server, tally: Tally, case: BadRequest) -> None:
    started = time.monotonic()
    with pytest.raises(GenerateError) as caught:
        list(stream_generate(server.grpc_url, {"stream": True, **case.inputs}, timeout_s=30))
    took = time.monotonic() - started
    assert took < ANSWER_WITHIN_S, (case.kind, took)
    assert case.field in str(caught.value), (case.kind, case.field, str(caught.value))
    tally.add("gRPC stream", case.kind, "error naming the field", took)


def send_all(check, cases) -> None:
    with ThreadPoolExecutor(SENDERS) as pool:
        for future in [pool.submit(check, case) for case in cases]:
            future.result()


FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize(
    "transport, path",
    [("HTTP generate", GENERATE), ("HTTP stream", GENERATE_STREAM)],
)
def test_fuzzed_bad_input_over_http(synthetic_server, tally, transport, path):
    @FUZZ
    @given(st.lists(st.one_of(model_refused(), http_only()), min_size=BATCH, max_size=BATCH))
    def fuzz(cases):
        send_all(lambda case: check_http(synthetic_server, tally, transport, path, case), cases)

    fuzz()


def test_fuzzed_bad_input_over_grpc_streaming(synthetic_server, tally):
    @FUZZ
    @given(st.lists(st.one_of(model_refused(), grpc_only()), min_size=BATCH, max_size=BATCH))
    def fuzz(cases):
        send_all(lambda case: check_grpc(synthetic_server, tally, case), cases)

    fuzz()


def test_after_the_bad_input_the_same_server_serves_normally(synthetic_server, tally):
    assert sum(tally.counts.values()) >= 2000
    pid = synthetic_server.pid
    reply = http_generate(synthetic_server.http_url, with_prompt(max_tokens=6))
    assert reply.status == 200 and reply.body["finish_reason"] == "length", reply.body
    responses = list(stream_generate(synthetic_server.grpc_url, with_prompt(stream=True)))
    assert responses[-1].final and responses[-1].scalar("finish_reason") == "length"
    assert synthetic_server.pid == pid and synthetic_server.is_ready()
    assert wait_for(lambda: engine_is_idle(synthetic_server), ANSWER_WITHIN_S)


# ---- dropped clients --------------------------------------------------------------------

DROPPED_STREAMS = 100
DROP_TOKENS = 400  # far more than a client reads before it leaves: none ends on its own


def drop_http_stream(server, read_events: int) -> None:
    host = server.http_url.split("//", 1)[1]
    connection = http.client.HTTPConnection(host, timeout=30)
    body = json.dumps(with_prompt(max_tokens=DROP_TOKENS, stream=True))
    connection.request("POST", GENERATE_STREAM, body=body)
    reply = connection.getresponse()
    assert reply.status == 200
    for _ in range(read_events):
        while reply.fp.readline().strip() == b"":  # skip chunk framing and blank lines
            pass
    connection.sock.close()  # leave without a word, as a crashed client does
    connection.close()


def drop_grpc_stream(server, read_responses: int) -> None:
    stream = stream_generate(server.grpc_url, with_prompt(max_tokens=DROP_TOKENS, stream=True))
    for _ in range(read_responses):
        next(stream)
    stream.close()  # stop_stream(cancel_requests=True): the call is cancelled


def test_dropped_clients_leave_nothing_behind(synthetic_server):
    server = synthetic_server
    rng = random.Random(9)
    drops = [
        (drop_http_stream if index % 2 else drop_grpc_stream, rng.randint(1, 20))
        for index in range(DROPPED_STREAMS)
    ]
    cancelled_before = metric(server.metrics_url, "reference_engine_cancelled_total")
    with ThreadPoolExecutor(16) as pool:
        for future in [pool.submit(drop, server, after) for drop, after in drops]:
            future.result()
    assert wait_for(lambda: engine_is_idle(server), ANSWER_WITHIN_S)
    assert wait_for(lambda: bls_open_requests(server) == (0, 0), ANSWER_WITHIN_S), (
        bls_open_requests(server)
    )
    cancelled = metric(server.metrics_url, "reference_engine_cancelled_total") - cancelled_before
    # Every engine request was ended by a cancel or a stop (none ran to its 400 tokens).
    assert cancelled == DROPPED_STREAMS
    print(
        f"\ndropped streams: {DROPPED_STREAMS} (HTTP {DROPPED_STREAMS // 2}, gRPC "
        f"{DROPPED_STREAMS - DROPPED_STREAMS // 2}); engine requests cancelled {cancelled:g}; "
        "engine active 0, BLS active 0, waiting 0"
    )
