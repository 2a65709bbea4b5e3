"""The `tensorrt_llm` contract's behaviour, run against both of this project's engines:
the reference engine (its scheduler) and the LLM-API model (its driver and mapping).

Both get their tokens from the same script, `100 + prompt[0] * 10 + position` (log
probability -0.5 each), through their own token-source interface: a scripted
`GenerationBackend` for the scheduler, a scripted `LlmEngine` for the driver. The
scripted LLM engine is this project's test double of its own interface, not a model of
TensorRT-LLM: it streams the script until aborted (or until the call's max_tokens), and
everything the contract promises (end_id dropped, stop words kept, FINAL last, stop
requests, cancellation) is the driver's doing. What only TensorRT-LLM can show is
tested in test_llm_api_mapping.py at the level of argument names.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence

import numpy as np
import pytest

from llm_api_engine.driver import LlmApiDriver
from llm_api_engine.outputs import CompletionSnapshot
from llm_api_engine.sampling import GenerationCall
from reference_engine.contract import EngineLimits, parse_request
from reference_engine.scheduler import Scheduler, sample_seed
from reference_engine.testing import RecordingSink
from reference_engine.types import GenerationRequest
from serving_common.word_lists import encode_word_list
from tests.unit.test_reference_engine_scheduler import ScriptedBackend

LIMITS = EngineLimits(max_seq_len=512, vocab_size=1000)
LOG_PROB = -0.5


def script(prompt: Sequence[int], position: int) -> int:
    return 100 + prompt[0] * 10 + position


# --- the two engines over the script ----------------------------------------------------


class ScriptedStream:
    def __init__(self, engine: ScriptedLlmEngine, call: GenerationCall) -> None:
        self.call = call
        self.aborted = False
        self._engine = engine
        self._wake = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[CompletionSnapshot]:
        tokens: list[int] = []
        max_tokens = self.call.sampling_params["max_tokens"]
        asked_log_probs = "logprobs" in self.call.sampling_params
        while not self.aborted:
            if self._engine.fail_with is not None:
                raise self._engine.fail_with
            if self._engine.hold_after is not None and len(tokens) >= self._engine.hold_after:
                self._engine.held.add(id(self))
                await self._wake.wait()  # until aborted
                continue
            tokens.append(script(self.call.prompt_token_ids, len(tokens)))
            finished = len(tokens) >= max_tokens
            log_probs = (LOG_PROB,) * len(tokens) if asked_log_probs else None
            yield CompletionSnapshot(tuple(tokens), log_probs, finished)
            if finished:
                return
            await asyncio.sleep(0)

    def abort(self) -> None:
        self.aborted = True
        self._wake.set()


class ScriptedLlmEngine:
    """Test double of llm_api_engine.driver.LlmEngine (not of TensorRT-LLM)."""

    def __init__(self, hold_after: int | None = None) -> None:
        self.hold_after = hold_after
        self.held: set[int] = set()
        self.streams: list[ScriptedStream] = []
        self.fail_with: Exception | None = None
        self.refuse_with: Exception | None = None
        self.shut_down = False

    def generate(self, call: GenerationCall) -> ScriptedStream:
        if self.refuse_with is not None:
            raise self.refuse_with
        stream = ScriptedStream(self, call)
        self.streams.append(stream)
        return stream

    def shutdown(self) -> None:
        self.shut_down = True


class ReferenceHarness:
    def __init__(self, hold_after: int | None = None) -> None:
        # The scheduler tests' backend, whose default script is `script` above.
        self.scheduler = Scheduler(ScriptedBackend())
        self.hold_after = hold_after

    def submit(self, parsed: GenerationRequest, sink: RecordingSink) -> None:
        self.scheduler.submit(parsed, sink)

    def stop(self, request_id: str, sink: RecordingSink) -> None:
        self.scheduler.stop(request_id, sink)

    def reach_hold(self) -> None:
        for _ in range(self.hold_after or 0):
            self.scheduler.run_once()

    def finish(self, sinks: list[RecordingSink]) -> None:
        for _ in range(200):
            if all(s.done for s in sinks):
                return
            self.scheduler.run_once()
        raise AssertionError("requests did not finish")

    def close(self) -> None:
        self.scheduler.shutdown()


class LlmApiHarness:
    def __init__(self, hold_after: int | None = None) -> None:
        self.engine = ScriptedLlmEngine(hold_after)
        self.driver = LlmApiDriver(self.engine, cancellation_check_period_ms=1)
        self.driver.start()

    def submit(self, parsed: GenerationRequest, sink: RecordingSink) -> None:
        self.driver.submit(parsed, sink)

    def stop(self, request_id: str, sink: RecordingSink) -> None:
        self.driver.stop(request_id, sink)

    def reach_hold(self) -> None:
        wait_for(lambda: self.engine.streams and len(self.engine.held) == len(self.engine.streams))

    def finish(self, sinks: list[RecordingSink]) -> None:
        for sink in sinks:
            assert sink.wait_done(10), "request did not finish"

    def close(self) -> None:
        self.driver.shutdown()


def wait_for(condition: Callable[[], object], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


HARNESSES = {"reference": ReferenceHarness, "llm_api": LlmApiHarness}


@pytest.fixture(params=sorted(HARNESSES))
def engine(request):
    """A harness factory: engine(hold_after=None)."""
    made = []

    def make(hold_after: int | None = None):
        harness = HARNESSES[request.param](hold_after)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()


# --- requests ---------------------------------------------------------------------------


def request(prompts: list[list[int]], out_len: int = 3, request_id: str = "r", **extra):
    width = max(len(p) for p in prompts)
    ids = np.zeros((len(prompts), width), np.int32)
    for i, p in enumerate(prompts):
        ids[i, : len(p)] = p
    inputs = {
        "input_ids": ids,
        "input_lengths": np.array([[len(p)] for p in prompts], np.int32),
        "request_output_len": np.array([[out_len]] * len(prompts), np.int32),
        **extra,
    }
    return parse_request(inputs, request_id, LIMITS)


def flag(value: bool, n: int = 1) -> np.ndarray:
    return np.array([[value]] * n)


def assert_one_final_last(sink: RecordingSink) -> None:
    finals = [r.final for r in sink.responses]
    assert finals.count(True) == 1 and finals[-1], finals


# --- behaviour --------------------------------------------------------------------------


def test_streaming_one_response_per_token_last_one_final(engine):
    harness = engine()
    sink = RecordingSink()
    harness.submit(request([[1, 2]], 3, streaming=flag(True)), sink)
    harness.finish([sink])
    assert [r.tokens for r in sink.responses] == [[110], [111], [112]]
    assert_one_final_last(sink)
    first = sink.responses[0].tensors
    assert first["output_ids"].shape == (1, 1, 1)
    assert first["sequence_length"].tolist() == [[1]]
    assert first["batch_index"].tolist() == [[0]] and first["sequence_index"].tolist() == [[0]]


def test_non_streaming_one_response_prompt_first_unless_excluded(engine):
    harness = engine()
    with_prompt, without = RecordingSink(), RecordingSink()
    harness.submit(request([[1, 2]], 3, exclude_input_in_output=flag(False)), with_prompt)
    harness.submit(request([[1, 2]], 3), without)
    harness.finish([with_prompt, without])
    assert len(with_prompt.responses) == 1 and with_prompt.responses[0].final
    assert with_prompt.responses[0].tokens == [1, 2, 110, 111, 112]
    assert with_prompt.responses[0].tensors["sequence_length"].tolist() == [[5]]
    assert without.responses[0].tokens == [110, 111, 112]


def test_end_id_ends_and_is_not_output(engine):
    harness = engine()
    streaming, full = RecordingSink(), RecordingSink()
    end = np.array([[111]], np.int32)
    harness.submit(request([[1]], 5, streaming=flag(True), end_id=end), streaming)
    harness.submit(request([[1]], 5, end_id=end), full)
    harness.finish([streaming, full])
    assert streaming.tokens() == [110]
    last = streaming.responses[-1]
    assert last.final and last.tensors["output_ids"].shape == (1, 1, 0)
    assert_one_final_last(streaming)
    assert full.responses[0].tokens == [110] and full.finals == 1


def test_stop_words_end_generation_and_are_output_even_across_the_prompt(engine):
    harness = engine()
    a, c = RecordingSink(), RecordingSink()
    harness.submit(request([[1]], 10, stop_words_list=encode_word_list([[111, 112]])[None, ...]), a)
    harness.submit(request([[2, 7]], 10, stop_words_list=encode_word_list([[7, 120]])[None]), c)
    harness.finish([a, c])
    assert a.responses[0].tokens == [110, 111, 112]
    assert c.responses[0].tokens == [120]


def test_prompts_and_samples_are_told_apart_and_the_last_response_is_final(engine):
    harness = engine()
    sink = RecordingSink()
    parsed = request(
        [[1], [2]],
        2,
        streaming=flag(True, 2),
        num_return_sequences=np.array([[2], [2]], np.int32),
        runtime_top_k=np.array([[5], [5]], np.int32),
    )
    harness.submit(parsed, sink)
    harness.finish([sink])
    for b, first in ((0, 110), (1, 120)):
        for s in (0, 1):
            assert sink.tokens(b, s) == [first, first + 1]
    assert_one_final_last(sink)


def test_log_probs_per_token_and_cumulative(engine):
    harness = engine()
    sink = RecordingSink()
    harness.submit(request([[1]], 2, streaming=flag(True), return_log_probs=flag(True)), sink)
    harness.finish([sink])
    assert [r.tensors["output_log_probs"].tolist() for r in sink.responses] == [
        [[[LOG_PROB]]],
        [[[LOG_PROB]]],
    ]
    assert [r.tensors["cum_log_probs"].tolist() for r in sink.responses] == [
        [[LOG_PROB]],
        [[2 * LOG_PROB]],
    ]


@pytest.mark.parametrize("streaming", [True, False])
def test_stop_request_ends_the_request_then_answers_itself(engine, streaming):
    harness = engine(hold_after=2)
    sink, stop_sink = RecordingSink(), RecordingSink()
    harness.submit(request([[1]], 10, request_id="42", streaming=flag(streaming)), sink)
    harness.reach_hold()
    harness.stop("42", stop_sink)
    harness.finish([sink, stop_sink])
    assert sink.tokens() == [110, 111]
    assert_one_final_last(sink)
    if streaming:
        assert sink.responses[-1].tensors["output_ids"].shape == (1, 1, 0)
    assert sink.error is None
    assert len(stop_sink.responses) == 1 and stop_sink.responses[0].final


def test_client_cancellation_ends_with_a_cancelled_error(engine):
    harness = engine(hold_after=1)
    sink = RecordingSink()
    harness.submit(request([[1]], 10, streaming=flag(True)), sink)
    harness.reach_hold()
    sink.cancelled = True
    harness.finish([sink])
    assert sink.error is not None and sink.error[1] == "CANCELLED"
    assert_one_final_last(sink)


# --- the driver's own duties --------------------------------------------------------------


@pytest.fixture
def driver_and_engine():
    engine = ScriptedLlmEngine()
    driver = LlmApiDriver(engine, random_seed=7, cancellation_check_period_ms=1)
    driver.start()
    yield driver, engine
    driver.shutdown()


def test_engine_requests_are_aborted_when_the_contract_ends_them_first(driver_and_engine):
    driver, engine = driver_and_engine
    sink = RecordingSink()
    words = encode_word_list([[110, 111]])[None, ...]
    driver.submit(request([[1]], 10, stop_words_list=words), sink)
    assert sink.wait_done(10)
    (stream,) = engine.streams
    assert stream.aborted and sink.responses[0].tokens == [110, 111]
    # Ended by the engine at max_tokens: nothing to abort.
    done = RecordingSink()
    driver.submit(request([[1]], 2), done)
    assert done.wait_done(10)
    assert not engine.streams[-1].aborted


def test_each_sample_is_its_own_engine_request_with_the_reference_seeds(driver_and_engine):
    driver, engine = driver_and_engine
    seeded, unseeded = RecordingSink(), RecordingSink()
    top_k = np.array([[5]], np.int32)
    n3 = np.array([[3]], np.int32)
    driver.submit(
        request(
            [[1]], 1, num_return_sequences=n3, runtime_top_k=top_k, seed=np.array([[9]], np.uint64)
        ),
        seeded,
    )
    assert seeded.wait_done(10)
    driver.submit(request([[1]], 1, num_return_sequences=n3, runtime_top_k=top_k), unseeded)
    assert unseeded.wait_done(10)
    seeds = [s.call.sampling_params["seed"] for s in engine.streams]
    assert seeds == [sample_seed(9, 0), sample_seed(9, 1), sample_seed(9, 2), 7, 8, 9]


@pytest.mark.parametrize(
    ("refusal", "code"),
    [
        (ValueError("best_of (2) cannot be less than n (3)"), "INVALID_ARG"),
        (RuntimeError("x"), "INTERNAL"),
    ],
)
def test_an_engine_refusal_is_an_error_response(driver_and_engine, refusal, code):
    driver, engine = driver_and_engine
    engine.refuse_with = refusal
    sink = RecordingSink()
    driver.submit(request([[1]], 2), sink)
    assert sink.wait_done(10)
    assert sink.error is not None and sink.error[1] == code and str(refusal) in sink.error[0]
    assert sink.finals == 1


def test_a_guided_request_reaches_the_engine_with_its_guide():
    pytest.importorskip("xgrammar")  # the contract layer checks guides with it
    engine = ScriptedLlmEngine()
    driver = LlmApiDriver(engine, guided_decoding_backend="xgrammar")
    driver.start()
    try:
        guided, plain = RecordingSink(), RecordingSink()
        json_guide = np.array([[b"json"]], dtype=object)
        driver.submit(request([[1]], 2, guided_decoding_guide_type=json_guide), guided)
        assert guided.wait_done(10)
        driver.submit(request([[1]], 2), plain)
        assert plain.wait_done(10)
    finally:
        driver.shutdown()
    assert guided.error is None and plain.error is None
    assert [s.call.guided_decoding for s in engine.streams] == [{"json_object": True}, None]


def test_a_guided_request_without_a_backend_is_refused_before_any_engine_request(
    driver_and_engine,
):
    pytest.importorskip("xgrammar")
    driver, engine = driver_and_engine  # no guided_decoding_backend
    sink = RecordingSink()
    # Row 0 unguided, row 1 guided: the refusal comes before row 0 starts.
    inputs = {"guided_decoding_guide_type": np.array([[b""], [b"json"]], dtype=object)}
    driver.submit(request([[1], [2]], 2, **inputs), sink)
    assert sink.wait_done(10)
    assert sink.error is not None and sink.error[1] == "UNSUPPORTED"
    assert "guided_decoding_backend" in sink.error[0]
    assert sink.finals == 1 and engine.streams == []


def test_a_failing_stream_is_an_internal_error(driver_and_engine):
    driver, engine = driver_and_engine
    engine.fail_with = RuntimeError("CUDA error")
    sink = RecordingSink()
    driver.submit(request([[1]], 2, streaming=flag(True)), sink)
    assert sink.wait_done(10)
    assert sink.error == ("generation failed: CUDA error", "INTERNAL")


def test_a_client_that_went_away_stops_its_engine_request(driver_and_engine):
    driver, engine = driver_and_engine
    sink = RecordingSink()
    sink.fail_sends = True
    driver.submit(request([[1]], 50, streaming=flag(True)), sink)
    wait_for(lambda: engine.streams and engine.streams[0].aborted)


def test_shutdown_ends_open_requests_and_refuses_new_ones():
    engine = ScriptedLlmEngine(hold_after=1)
    driver = LlmApiDriver(engine)
    driver.start()
    open_sink = RecordingSink()
    driver.submit(request([[1]], 10, streaming=flag(True)), open_sink)
    wait_for(lambda: engine.held)
    driver.shutdown()
    assert open_sink.error is not None and open_sink.error[1] == "UNAVAILABLE"
    assert_one_final_last(open_sink)
    assert engine.streams[0].aborted and engine.shut_down
    late = RecordingSink()
    driver.submit(request([[1]], 1), late)
    assert late.error is not None and late.error[1] == "UNAVAILABLE"


def test_requests_from_many_threads_all_finish(driver_and_engine):
    driver, _ = driver_and_engine
    sinks = [RecordingSink() for _ in range(20)]

    def send(i: int) -> None:
        driver.submit(request([[i % 5 + 1]], 4, streaming=flag(True), request_id=str(i)), sinks[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, sink in enumerate(sinks):
        assert sink.wait_done(10)
        first = 100 + (i % 5 + 1) * 10
        assert sink.tokens() == [first, first + 1, first + 2, first + 3]
        assert_one_final_last(sink)
