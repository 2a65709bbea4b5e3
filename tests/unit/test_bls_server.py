"""The BLS request lifecycle (`BlsServer`) against a scripted engine and a recording client.

The server runs its real threads (workers, generation loop, senders, cancellation
watcher); `serve` submits one request and waits until the client has its FINAL and the
engine's stream has been read to its end.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest

from bls.engine_io import EngineResponse, EngineRow
from bls.limits import BlsLimits, ServingOptions
from bls.loop import GenerationLoop
from bls.server import BlsServer
from bls.validation import RequestValidator
from postprocessing.detokenizer import IncrementalDetokenizer
from preprocessing.config import PreprocessingLimits
from preprocessing.encoding import PromptEncoder
from serving_common.tokenizer_loading import load_tokenizer


@dataclass
class ScriptedEngine:
    """Plays the scripted tokens one step at a time, from a thread of its own per request,
    into the generation loop, as the gRPC engine client does. A stop ends the stream at
    the next step, as the engine does. `final_flag`: whether the last response says it is
    the last (else the stream just ends)."""

    tokens: dict[tuple[int, int], list[int]]
    error_at_step: int | None = None
    step_s: float = 0.002
    final_flag: bool = True
    calls: list[tuple[str, dict[str, np.ndarray], tuple[str, ...]]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)  # stop requests
    given_up: list[str] = field(default_factory=list)  # calls cancelled (engine stalled)
    steps_served: int = 0
    loop: GenerationLoop | None = None

    def __call__(self, loop: GenerationLoop) -> ScriptedEngine:
        """The server's engine factory."""
        self.loop = loop
        return self

    def start(self, request_id, inputs, outputs, on_response, on_end) -> None:
        self.calls.append((request_id, dict(inputs), tuple(outputs)))
        threading.Thread(
            target=self._play, args=(request_id, on_response, on_end), daemon=True
        ).start()

    def _play(self, request_id, on_response, on_end) -> None:
        error = None
        try:
            for response in self._steps(request_id):
                self.loop.call_soon(on_response, response)
        except Exception as failure:
            error = failure
        self.loop.call_soon(on_end, error)

    def _tokens_for(self, request_id: str) -> dict[tuple[int, int], list[int]]:
        return self.tokens

    def _steps(self, request_id: str) -> Iterator[EngineResponse]:
        script = self._tokens_for(request_id)
        longest = max(len(t) for t in script.values())
        for step in range(longest):
            if request_id in self.cancelled:
                break
            if step == self.error_at_step:
                yield EngineResponse(error="prompt too long", error_code="INVALID_ARG", final=True)
                return
            rows = tuple(
                EngineRow(b, s, (tokens[step],), log_probs=(-0.5,))
                for (b, s), tokens in script.items()
                if step < len(tokens)
            )
            self.steps_served += 1
            yield EngineResponse(rows=rows)
            time.sleep(self.step_s)
        if self.final_flag:
            yield EngineResponse(final=True)

    def stop(self, request_id: str) -> None:
        self.cancelled.append(request_id)

    def cancel(self, request_id: str) -> None:
        self.given_up.append(request_id)

    def close(self) -> None:
        pass


@dataclass
class RecordingSink:
    sent: list[tuple[dict[str, np.ndarray] | None, bool]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    cancel_after_sends: int | None = None
    requested_outputs: frozenset[str] | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def send(self, outputs, final: bool) -> None:
        assert not self.finished, "nothing may follow FINAL"
        self.sent.append((None if outputs is None else dict(outputs), final))
        if final:
            self.done.set()

    def send_error(self, message: str, code: str) -> None:
        assert not self.finished, "nothing may follow FINAL"
        self.errors.append((message, code))
        self.done.set()

    def is_cancelled(self) -> bool:
        return self.cancel_after_sends is not None and len(self.sent) >= self.cancel_after_sends

    @property
    def finished(self) -> bool:
        return bool(self.errors) or any(final for _, final in self.sent)

    def texts(self, sequence: tuple[int, int] = (0, 0)) -> list[str]:
        found = []
        for outputs, _ in self.sent:
            if outputs is None:
                continue
            for row in range(outputs["text_output"].shape[0]):
                # Mid-sequence responses of a one-sequence request leave the indices out.
                batch = outputs.get("batch_index", np.zeros((row + 1, 1), np.int32))
                sample = outputs.get("sequence_index", np.zeros((row + 1, 1), np.int32))
                key = (int(batch[row, 0]), int(sample[row, 0]))
                if key == sequence:
                    found.append(outputs["text_output"][row, 0].decode())
        return found

    def last(self, name: str, row: int = 0):
        outputs = [o for o, _ in self.sent if o is not None][-1]
        value = outputs[name][row, 0]
        return value.decode() if isinstance(value, bytes) else value

    def total(self, name: str) -> int:
        return sum(int(o[name].sum()) for o, _ in self.sent if o is not None)


@pytest.fixture(scope="module")
def tokenizer(fixture_paths):
    return load_tokenizer(fixture_paths.sentencepiece_tokenizer)


def make_server(
    tokenizer, engine, limits: BlsLimits | None = None, reporter=None, **options: int
) -> BlsServer:
    options.setdefault("cancellation_check_period_ms", 1)
    return BlsServer(
        reporter=reporter,
        validator=RequestValidator(
            PromptEncoder(tokenizer, PreprocessingLimits()), limits or BlsLimits()
        ),
        engine=engine,
        new_detokenizer=lambda request: IncrementalDetokenizer(
            tokenizer, skip_special_tokens=request.skip_special_tokens
        ),
        options=ServingOptions(**options),
    )


def wait_idle(server: BlsServer, timeout_s: float = 10.0) -> None:
    """Until every request's engine stream has been read to its end."""
    deadline = time.monotonic() + timeout_s
    while server.admission.active_count or server.admission.waiting_count:
        assert time.monotonic() < deadline, "requests still active"
        time.sleep(0.002)


def serve(tokenizer, engine, inputs, sink=None, parameters=None, **server_options) -> RecordingSink:
    """Serve one request on a fresh server; return the client's recording once it is all
    over (FINAL sent, the engine's stream drained)."""
    sink = sink or RecordingSink()
    server = make_server(tokenizer, engine, **server_options)
    try:
        server.submit(inputs, parameters or {}, sink)
        assert sink.done.wait(10), "no FINAL"
        wait_idle(server)
    finally:
        server.close()
    return sink


def text_inputs(text: str, **scalars) -> dict[str, np.ndarray]:
    inputs = {"text_input": np.array([[text.encode()]], dtype=object)}
    for name, value in scalars.items():
        if isinstance(value, list):
            inputs[name] = np.array([[v.encode() for v in value]], dtype=object)
        elif isinstance(value, bool):
            inputs[name] = np.array([[value]], dtype=bool)
        else:
            inputs[name] = np.array([[value]], dtype=np.int32)
    return inputs


def ids_of(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


GENERATED = "Hello world, 世界 🙂 naïve café. STOP here and more text after"


def test_non_streaming_sends_exactly_one_final_response(tokenizer):
    ids = ids_of(tokenizer, GENERATED)
    engine = ScriptedEngine({(0, 0): ids})
    sink = RecordingSink()
    serve(tokenizer, engine, text_inputs("Hi", max_tokens=500), sink=sink)
    assert len(sink.sent) == 1 and sink.sent[0][1] is True
    assert sink.texts() == [tokenizer.decode(ids, skip_special_tokens=True)]
    assert sink.last("finish_reason") == "stop"  # fewer tokens than max_tokens: the model ended
    # The engine is always asked to stream, so stop strings can cut it short.
    _, inputs, _ = engine.calls[0]
    assert inputs["streaming"].tolist() == [[True]]
    assert inputs["request_output_len"].tolist() == [[500]]


def test_streaming_deltas_concatenate_to_the_full_text(tokenizer):
    ids = ids_of(tokenizer, GENERATED)
    engine = ScriptedEngine({(0, 0): ids})
    sink = RecordingSink()
    serve(
        tokenizer,
        engine,
        text_inputs("Hi", max_tokens=len(ids), stream=True, return_num_output_tokens=True),
        sink=sink,
    )
    assert "".join(sink.texts()) == tokenizer.decode(ids, skip_special_tokens=True)
    assert [final for _, final in sink.sent].count(True) == 1 and sink.sent[-1][1]
    assert not any("\ufffd" in text for text in sink.texts())
    assert sink.last("finish_reason") == "length"
    # Each response carries the tokens it adds; a stream's counts add up to the total.
    assert sink.total("num_output_tokens") == len(ids)
    # The finish reason comes with the last response only; the ones before carry the text.
    assert all("finish_reason" not in o for o, _ in sink.sent[:-1] if o is not None)


@pytest.mark.parametrize("stream", [False, True])
def test_stop_string_cuts_output_and_cancels_the_engine(tokenizer, stream):
    ids = ids_of(tokenizer, GENERATED)
    engine = ScriptedEngine({(0, 0): ids})
    sink = RecordingSink()
    serve(
        tokenizer,
        engine,
        text_inputs(
            "Hi", max_tokens=500, stream=stream, stop_words=["STOP"], return_num_output_tokens=True
        ),
        sink=sink,
    )
    assert "".join(sink.texts()) == "Hello world, 世界 🙂 naïve café. "
    assert sink.last("finish_reason") == "stop" and sink.last("stop_reason") == "STOP"
    request_id, inputs, _ = engine.calls[0]
    assert engine.cancelled == [request_id]
    assert engine.steps_served < len(ids)
    # Counted up to the token that completed "STOP", not beyond.
    counted = sink.total("num_output_tokens")
    assert "STOP" in tokenizer.decode(ids[:counted]) and "STOP" not in tokenizer.decode(
        ids[: counted - 1]
    )
    assert "stop_words_list" in inputs  # the engine gets the stop words too


def test_include_stop_str_in_output(tokenizer):
    ids = ids_of(tokenizer, GENERATED)
    sink = RecordingSink()
    serve(
        tokenizer,
        ScriptedEngine({(0, 0): ids}),
        text_inputs("Hi", stop_words=["here", "STOP"], include_stop_str_in_output=True),
        sink=sink,
    )
    # The later-listed stop string occurs first in the text and wins.
    assert sink.texts() == ["Hello world, 世界 🙂 naïve café. STOP"]
    assert sink.last("stop_reason") == "STOP"


def test_engine_error_is_passed_on_with_its_code(tokenizer):
    sink = RecordingSink()
    engine = ScriptedEngine({(0, 0): ids_of(tokenizer, GENERATED)}, error_at_step=2)
    serve(tokenizer, engine, text_inputs("Hi", stream=True), sink=sink)
    assert sink.errors == [("tensorrt_llm: prompt too long", "INVALID_ARG")]
    assert engine.cancelled == []


def test_bad_request_is_refused_before_the_engine_starts(tokenizer):
    engine = ScriptedEngine({(0, 0): [5]})
    sink = RecordingSink()
    serve(tokenizer, engine, text_inputs("Hi", max_tokens=0), sink=sink)
    assert len(sink.errors) == 1
    message, code = sink.errors[0]
    assert code == "INVALID_ARG" and "max_tokens" in message and "4096" in message
    assert engine.calls == []


def test_client_cancel_stops_the_engine_within_a_step(tokenizer):
    ids = ids_of(tokenizer, GENERATED)
    engine = ScriptedEngine({(0, 0): ids})
    sink = RecordingSink(cancel_after_sends=2)
    serve(tokenizer, engine, text_inputs("Hi", stream=True), sink=sink)
    request_id, _, _ = engine.calls[0]
    assert engine.cancelled == [request_id]
    assert sink.sent[-1][1] is True
    assert sink.last("finish_reason") == "cancelled"
    assert engine.steps_served <= 4


def test_each_sequence_has_its_own_text_and_stop_state(tokenizer):
    first = ids_of(tokenizer, "one STOP two")
    second = ids_of(tokenizer, "日本語のテキスト, no stop at all")
    engine = ScriptedEngine({(0, 0): first, (0, 1): second})
    sink = RecordingSink()
    serve(
        tokenizer,
        engine,
        text_inputs("Hi", stream=True, stop_words=["STOP"], num_return_sequences=2),
        sink=sink,
    )
    assert "".join(sink.texts((0, 0))) == "one "
    assert "".join(sink.texts((0, 1))) == tokenizer.decode(second)
    assert engine.cancelled == []  # sequence 1 still needed the engine


def test_exclude_input_in_output_false_echoes_the_prompt(tokenizer):
    ids = ids_of(tokenizer, " and then")
    sink = RecordingSink()
    serve(
        tokenizer,
        ScriptedEngine({(0, 0): ids}),
        text_inputs("Bonjour à tous", exclude_input_in_output=False),
        sink=sink,
    )
    prompt_ids = tokenizer.encode("Bonjour à tous")
    assert sink.texts() == [tokenizer.decode(prompt_ids + ids, skip_special_tokens=True)]


def test_log_probs_and_token_counts(tokenizer):
    ids = ids_of(tokenizer, "abc def")
    sink = RecordingSink()
    serve(
        tokenizer,
        ScriptedEngine({(0, 0): ids}),
        text_inputs("Hi", return_log_probs=True, return_num_input_tokens=True),
        sink=sink,
    )
    outputs = sink.sent[0][0]
    assert outputs["output_log_probs"].shape == (1, 1, len(ids))
    assert outputs["cum_log_probs"][0, 0] == pytest.approx(-0.5 * len(ids))
    assert outputs["num_input_tokens"][0, 0] == len(tokenizer.encode("Hi"))


def test_internal_failure_answers_once_and_stops_the_engine(tokenizer):
    class BrokenRowsEngine(ScriptedEngine):
        def _steps(self, request_id):
            yield EngineResponse(rows=(EngineRow(7, 0, (5,)),))  # a row nobody asked for
            time.sleep(0.05)  # the stop arrives while the request is still running
            if request_id not in self.cancelled:
                yield EngineResponse(rows=(EngineRow(0, 0, (5,)),))
            yield EngineResponse(final=True)

    engine = BrokenRowsEngine({(0, 0): [1]})
    sink = RecordingSink()
    serve(tokenizer, engine, text_inputs("Hi"), sink=sink)
    assert sink.errors == [("tensorrt_llm_bls: internal error while generating", "INTERNAL")]
    assert engine.cancelled == [engine.calls[0][0]]


def test_engine_log_probs_are_the_last_ones_of_each_response():
    from bls.engine_io import engine_rows

    def rows(log_probs: list[float]):
        return engine_rows(
            {
                "output_ids": np.array([[[42]]], dtype=np.int32),
                "sequence_length": np.array([[1]], dtype=np.int32),
                "output_log_probs": np.array([[log_probs]], dtype=np.float32),
            }
        )

    # The C++ backend streams the log probs of all tokens so far; ours only the new one.
    (cumulative,) = rows([-0.1, -0.2, -0.3])
    (step_only,) = rows([-0.3])
    assert cumulative.log_probs == step_only.log_probs == pytest.approx((-0.3,))


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ({"output_ids": np.array([5.0, 6.0], np.float32)}, "got float32 [2]"),
        ({"output_ids": np.array([[5, 6]], np.int32)}, "got int32 [1, 2]"),  # no beam dim
        ({"output_ids": np.array([[[5.0]]], np.float64)}, "got float64 [1, 1, 1]"),
        (
            {
                "output_ids": np.array([[[5, 6]]], np.int32),
                "sequence_length": np.array([[3]], np.int32),
            },
            "sequence_length 3 does not fit output_ids [1, 1, 2]",
        ),
    ],
)
def test_engine_tensors_outside_the_contract_are_refused_not_guessed(outputs, message):
    from bls.engine_io import MalformedEngineResponse, engine_rows

    with pytest.raises(MalformedEngineResponse, match=re.escape(message)):
        engine_rows(outputs)


@pytest.mark.parametrize("stream", [False, True])
def test_an_echoed_prompt_is_never_searched_for_stop_strings(tokenizer, stream):
    # In Llama-style vocabularies "\n" is a byte-fallback piece: the detokenizer holds the
    # prompt's final newlines back until the first generated token arrives.
    prompt = "Q: hi\nA: hello\n\n"
    generated = ids_of(tokenizer, "more text\n\nend")
    sink = RecordingSink()
    serve(
        tokenizer,
        ScriptedEngine({(0, 0): generated}),
        text_inputs(prompt, stop_words=["\n\n"], exclude_input_in_output=False, stream=stream),
        sink=sink,
    )
    full = tokenizer.decode(tokenizer.encode(prompt) + generated, skip_special_tokens=True)
    assert "".join(sink.texts()) == full[: full.index("\n\n", len(prompt))]
    assert sink.last("stop_reason") == "\n\n"


@pytest.mark.parametrize("include", [False, True])
@pytest.mark.parametrize("stream", [False, True])
def test_a_special_token_stop_word_ends_with_its_stop_reason(fixture_paths, include, stream):
    # Llama-3 style: "<|eot_id|>" is one special token, and skip_special_tokens (the
    # default) removes it from the text, so it cannot be matched as text.
    bpe = load_tokenizer(fixture_paths.bpe_tokenizer)
    eot = bpe.convert_tokens_to_ids("<|eot_id|>")
    generated = [*ids_of(bpe, "Sure, here it is."), eot, *ids_of(bpe, " and more")]
    engine = ScriptedEngine({(0, 0): generated})
    sink = RecordingSink()
    serve(
        bpe,
        engine,
        text_inputs(
            "Hi",
            stop_words=["<|eot_id|>"],
            include_stop_str_in_output=include,
            stream=stream,
            return_num_output_tokens=True,
        ),
        sink=sink,
    )
    expected = "Sure, here it is." + ("<|eot_id|>" if include else "")
    assert "".join(sink.texts()) == expected
    assert sink.last("finish_reason") == "stop"
    assert sink.last("stop_reason") == "<|eot_id|>"
    assert sink.total("num_output_tokens") == generated.index(eot) + 1
    # The engine got it as a one-token stop word too.
    _, inputs, _ = engine.calls[0]
    assert eot in inputs["stop_words_list"][0, 0].tolist()


def test_a_failing_cancel_still_drains_the_engine_request(tokenizer):
    class CancelFails(ScriptedEngine):
        def stop(self, request_id: str) -> None:
            raise RuntimeError("engine unreachable")

    ids = ids_of(tokenizer, GENERATED)
    engine = CancelFails({(0, 0): ids})
    sink = RecordingSink()
    serve(tokenizer, engine, text_inputs("Hi", stop_words=["STOP"]), sink=sink)
    assert sink.last("stop_reason") == "STOP" and len(sink.sent) == 1
    # Nothing left behind: the engine's stream was read to its end.
    assert engine.steps_served == len(ids)


def test_a_request_that_does_not_fit_the_engine_is_refused_before_it_starts(tokenizer):
    engine = ScriptedEngine({(0, 0): [5]})
    server = make_server(tokenizer, engine, limits=BlsLimits(max_seq_len=64))
    prompt_tokens = len(tokenizer.encode("Hi"))
    try:
        sink = RecordingSink()
        server.submit(text_inputs("Hi", max_tokens=64), {}, sink)
        assert sink.done.wait(10)
        ((message, code),) = sink.errors
        assert code == "INVALID_ARG" and engine.calls == []
        assert message == (
            f"max_tokens: the prompt is {prompt_tokens} tokens and max_tokens is 64: "
            f"{prompt_tokens + 64} is over the engine's limit of 64 tokens (max_seq_len); "
            f"ask for at most {64 - prompt_tokens} tokens or shorten the prompt"
        )
        fits = RecordingSink()
        server.submit(text_inputs("Hi", max_tokens=64 - prompt_tokens), {}, fits)
        assert fits.done.wait(10)
        assert fits.errors == [] and fits.sent[-1][1]
    finally:
        server.close()


def test_the_stream_end_without_a_final_flag_ends_the_request(tokenizer):
    # Triton's BLS response iterator just stops after the engine's last response.
    ids = ids_of(tokenizer, GENERATED)
    engine = ScriptedEngine({(0, 0): ids}, final_flag=False)
    sink = serve(tokenizer, engine, text_inputs("Hi", stream=True, max_tokens=len(ids)))
    assert "".join(sink.texts()) == tokenizer.decode(ids, skip_special_tokens=True)
    assert sink.last("finish_reason") == "length" and sink.sent[-1][1]


def test_an_engine_stream_that_breaks_off_is_an_error(tokenizer):
    class BreaksMidStream(ScriptedEngine):
        def _steps(self, request_id):
            yield EngineResponse(rows=(EngineRow(0, 0, (5,)),))
            raise RuntimeError("shared memory gone")

    engine = BreaksMidStream({(0, 0): [5]})
    sink = serve(tokenizer, engine, text_inputs("Hi", stream=True))
    ((message, code),) = sink.errors
    assert code == "UNAVAILABLE" and "shared memory gone" in message


def test_a_malformed_engine_response_is_an_error_and_the_stream_is_drained(tokenizer):
    class Malformed(ScriptedEngine):
        def _steps(self, request_id):
            yield EngineResponse(rows=(EngineRow(0, 0, (5,)),))
            # What the Triton adapter yields for a response it cannot read.
            yield EngineResponse(error="cannot read output_ids", error_code="INTERNAL")
            for _ in range(3):
                self.steps_served += 1
                yield EngineResponse(rows=(EngineRow(0, 0, (6,)),))

    engine = Malformed({(0, 0): [5]})
    sink = serve(tokenizer, engine, text_inputs("Hi", stream=True))
    assert sink.errors == [("tensorrt_llm: cannot read output_ids", "INTERNAL")]
    assert engine.cancelled == [engine.calls[0][0]]
    assert engine.steps_served == 3  # read to its end: nothing left behind


def test_cancellation_is_checked_on_a_timer_not_per_token(tokenizer):
    class CountingSink(RecordingSink):
        checks = 0

        def is_cancelled(self) -> bool:
            self.checks += 1
            return False

    ids = ids_of(tokenizer, GENERATED)  # ~40 tokens at 10 ms a step: ~0.4 s
    sink = CountingSink()
    serve(
        tokenizer,
        ScriptedEngine({(0, 0): ids}, step_s=0.01),
        text_inputs("Hi", stream=True, max_tokens=len(ids)),
        sink=sink,
        cancellation_check_period_ms=100,
    )
    assert 1 <= sink.checks <= 8 < len(ids)


def test_engine_outputs_are_only_those_the_request_needs(tokenizer):
    engine = ScriptedEngine({(0, 0): [5]})
    serve(tokenizer, engine, text_inputs("Hi"))
    assert engine.calls[0][2] == ("output_ids", "sequence_length")
    engine = ScriptedEngine({(0, 0): [5], (0, 1): [6]})
    serve(tokenizer, engine, text_inputs("Hi", num_return_sequences=2, return_log_probs=True))
    assert set(engine.calls[0][2]) == {
        "output_ids",
        "sequence_length",
        "batch_index",
        "sequence_index",
        "output_log_probs",
    }


class GatedEngine(ScriptedEngine):
    """Holds every stream open until `release` is set: requests stay active."""

    def __init__(self, tokens):
        super().__init__(tokens)
        self.release = threading.Event()
        self.started = threading.Semaphore(0)

    def _steps(self, request_id):
        yield EngineResponse(rows=(EngineRow(0, 0, (5,)),))
        self.started.release()
        self.release.wait(10)
        yield EngineResponse(final=True)


def test_requests_beyond_the_limit_wait_and_start_in_order(tokenizer, caplog):
    engine = GatedEngine({(0, 0): [5]})
    server = make_server(tokenizer, engine, max_concurrent_requests=2)
    sinks = [RecordingSink() for _ in range(4)]
    try:
        with caplog.at_level("INFO", logger="bls"):
            for index, sink in enumerate(sinks):
                server.submit(text_inputs(f"request {index}"), {}, sink)
            assert engine.started.acquire(timeout=5) and engine.started.acquire(timeout=5)
            assert len(engine.calls) == 2
            assert server.admission.waiting_count == 2
        assert "2 request(s) waiting for a slot" in caplog.text or "1 request(s) waiting" in (
            caplog.text
        )
        engine.release.set()
        for sink in sinks:
            assert sink.done.wait(10)
            assert sink.errors == [] and sink.sent[-1][1]
        wait_idle(server)
        prompts = [inputs["input_ids"][0].tolist() for _, inputs, _ in engine.calls]
        expected = [tokenizer.encode(f"request {index}") for index in range(4)]
        assert prompts == expected  # in arrival order
    finally:
        engine.release.set()
        server.close()


def test_a_request_cancelled_while_waiting_never_starts(tokenizer):
    engine = GatedEngine({(0, 0): [5]})
    server = make_server(tokenizer, engine, max_concurrent_requests=1)
    running, waiting = RecordingSink(), RecordingSink(cancel_after_sends=0)
    try:
        server.submit(text_inputs("first"), {}, running)
        assert engine.started.acquire(timeout=5)
        server.submit(text_inputs("second"), {}, waiting)
        assert waiting.done.wait(5)  # answered while the first still holds the slot
        ((message, code),) = waiting.errors
        assert code == "CANCELLED" and "waiting for a slot" in message
        assert server.admission.waiting_count == 0
        engine.release.set()
        assert running.done.wait(5)
        wait_idle(server)
        assert len(engine.calls) == 1  # the cancelled one never reached the engine
    finally:
        engine.release.set()
        server.close()


def test_many_concurrent_streams_each_get_their_own_exact_text(tokenizer):
    texts = [f"stream {index}: {GENERATED}" for index in range(32)]
    ids = [ids_of(tokenizer, text) for text in texts]

    class PerPrompt(ScriptedEngine):
        def start(self, request_id, inputs, outputs, on_response, on_end):
            prompt = tokenizer.decode(inputs["input_ids"][0].tolist(), skip_special_tokens=True)
            self.by_request[request_id] = ids[int(prompt.split()[-1])]
            super().start(request_id, inputs, outputs, on_response, on_end)

        def _tokens_for(self, request_id):
            return {(0, 0): self.by_request[request_id]}

    engine = PerPrompt({(0, 0): [5]})
    engine.by_request = {}
    server = make_server(tokenizer, engine, response_sender_threads=2)
    sinks = [RecordingSink() for _ in texts]
    try:
        for index, sink in enumerate(sinks):
            server.submit(text_inputs(f"prompt {index}", stream=True, max_tokens=500), {}, sink)
        for index, sink in enumerate(sinks):
            assert sink.done.wait(10)
            assert "".join(sink.texts()) == tokenizer.decode(ids[index])
            assert [final for _, final in sink.sent].count(True) == 1 and sink.sent[-1][1]
    finally:
        server.close()


def test_only_the_outputs_the_client_asked_for_are_built(tokenizer):
    ids = ids_of(tokenizer, "abc def")
    wanted = frozenset({"text_output", "num_output_tokens"})
    sink = serve(
        tokenizer,
        ScriptedEngine({(0, 0): ids}),
        text_inputs("Hi", stream=True, return_num_output_tokens=True),
        sink=RecordingSink(requested_outputs=wanted),
    )
    assert all(set(outputs) == wanted for outputs, _ in sink.sent if outputs is not None)
    assert sink.total("num_output_tokens") == len(ids)


class SilentEngine(ScriptedEngine):
    """Sends one token, then nothing, even after a stop, until its call is cancelled:
    then its stream ends with the error the gRPC client reports for a cancelled call."""

    def __init__(self, tokens):
        super().__init__(tokens)
        self.released = threading.Event()

    def _steps(self, request_id):
        yield EngineResponse(rows=(EngineRow(0, 0, (5,)),))
        if not self.released.wait(10):
            raise AssertionError("the BLS never gave the request up")
        raise ConnectionError("the call was cancelled")

    def cancel(self, request_id: str) -> None:
        super().cancel(request_id)
        self.released.set()


def test_an_engine_that_goes_silent_is_given_up_after_the_stall_timeout(tokenizer):
    engine = SilentEngine({(0, 0): [5]})
    reporter = RecordingReporter()
    server = make_server(tokenizer, engine, engine_stall_timeout_s=0.3, reporter=reporter)
    sink = RecordingSink()
    try:
        started = time.monotonic()
        server.submit(text_inputs("Hi", stream=True), {}, sink)
        assert sink.done.wait(5)
        waited = time.monotonic() - started
        ((message, code),) = sink.errors
        assert code == "UNAVAILABLE"
        assert message == (
            "tensorrt_llm: the engine sent nothing for 0.3 s (engine_stall_timeout_s); "
            "the request was cancelled"
        )
        assert 0.3 <= waited < 0.3 + 0.3 / 4 + 0.5  # timeout + one check period + slack
        assert len(sink.sent) == 1 and not sink.sent[0][1]  # the token came before it
        assert engine.given_up == [engine.calls[0][0]]
        wait_idle(server)  # the slot is free again
        assert len(server.stalls) == 0
        ((record,),) = [reporter.records]
        assert (record.finish_reason, record.error_kind) == ("error", "engine")
    finally:
        engine.released.set()
        server.close()


def test_an_engine_that_ignores_a_stop_is_given_up_too(tokenizer):
    # The client leaves: the stop goes to the engine, which never ends the request.
    engine = SilentEngine({(0, 0): [5]})
    server = make_server(tokenizer, engine, engine_stall_timeout_s=0.3)
    sink = RecordingSink(cancel_after_sends=1)
    try:
        server.submit(text_inputs("Hi", stream=True), {}, sink)
        assert sink.done.wait(5) and sink.last("finish_reason") == "cancelled"
        wait_idle(server)
        assert engine.cancelled == engine.given_up == [engine.calls[0][0]]
    finally:
        engine.released.set()
        server.close()


def test_a_slow_but_steady_engine_is_never_given_up(tokenizer):
    ids = ids_of(tokenizer, GENERATED)[:12]  # 12 steps of 0.1 s: 1.2 s in all
    engine = ScriptedEngine({(0, 0): ids}, step_s=0.1)
    sink = serve(tokenizer, engine, text_inputs("Hi", stream=True), engine_stall_timeout_s=0.3)
    assert sink.errors == [] and "".join(sink.texts()) == tokenizer.decode(ids)
    assert engine.given_up == []


def test_a_stall_timeout_of_zero_turns_the_watch_off(tokenizer):
    server = make_server(tokenizer, ScriptedEngine({(0, 0): [5]}), engine_stall_timeout_s=0)
    try:
        assert server.stalls is None
    finally:
        server.close()


def test_dropped_and_finished_requests_leave_no_state_behind(tokenizer):
    # The state a request holds in the BLS: its admission slot and its place in the
    # cancellation watcher and in the stall watch. All gone at the end, whichever way it
    # ended: refused, cancelled by its client at once or later, finished.
    ids = ids_of(tokenizer, GENERATED)
    engine = ScriptedEngine({(0, 0): ids}, step_s=0.005)
    server = make_server(tokenizer, engine, max_concurrent_requests=8)
    sinks = [
        RecordingSink(cancel_after_sends=index % 5 if index % 3 else None) for index in range(40)
    ]
    try:
        for index, sink in enumerate(sinks):
            inputs = text_inputs("Hi", stream=bool(index % 2), max_tokens=1 + index % 30)
            if index % 7 == 0:
                inputs = text_inputs("Hi", max_tokens=0)  # refused before it starts
            server.submit(inputs, {}, sink)
        for sink in sinks:
            assert sink.done.wait(10)
        wait_idle(server)
        assert server.admission.active_count == server.admission.waiting_count == 0
        assert len(server.watcher) == len(server.stalls) == 0
        assert any(sink.errors for sink in sinks)
        assert any(sink.sent and sink.last("finish_reason") == "cancelled" for sink in sinks)
    finally:
        server.close()


class RecordingReporter:
    def __init__(self) -> None:
        self.records = []

    def record(self, record) -> None:
        self.records.append(record)


def test_every_request_leaves_one_record(tokenizer):
    ids = ids_of(tokenizer, GENERATED)
    reporter = RecordingReporter()
    server = make_server(tokenizer, ScriptedEngine({(0, 0): ids}), reporter=reporter)
    try:
        good, bad = RecordingSink(), RecordingSink()
        server.submit(text_inputs("Hi", stream=True, stop_words=["STOP"]), {}, good, "a")
        server.submit(text_inputs("Hi", max_tokens=0), {}, bad, "b")
        assert good.done.wait(10) and bad.done.wait(10)
        wait_idle(server)
    finally:
        server.close()
    by_id = {record.request_id: record for record in reporter.records}
    assert set(by_id) == {"a", "b"}
    served, refused = by_id["a"], by_id["b"]
    assert served.finish_reason == "stop" and served.error_kind is None
    assert served.prompt_tokens == len(tokenizer.encode("Hi"))
    assert served.output_tokens == sum(
        1 for k in range(1, len(ids) + 1) if "STOP" not in tokenizer.decode(ids[: k - 1])
    )
    assert served.received_s <= served.started_s <= served.first_token_s
    assert served.first_token_s <= served.last_token_s <= served.finished_s
    assert (refused.finish_reason, refused.error_kind) == ("error", "invalid_request")
    assert "max_tokens" in refused.error and refused.started_s is None


def test_a_request_cancelled_while_waiting_is_recorded_as_such(tokenizer):
    engine = GatedEngine({(0, 0): [5]})
    reporter = RecordingReporter()
    server = make_server(tokenizer, engine, reporter=reporter, max_concurrent_requests=1)
    try:
        server.submit(text_inputs("first"), {}, RecordingSink(), "first")
        assert engine.started.acquire(timeout=5)
        waiting = RecordingSink(cancel_after_sends=0)
        server.submit(text_inputs("second"), {}, waiting, "second")
        assert waiting.done.wait(5)
        engine.release.set()
        wait_idle(server)
    finally:
        engine.release.set()
        server.close()
    by_id = {record.request_id: record for record in reporter.records}
    assert (by_id["second"].finish_reason, by_id["second"].error_kind) == (
        "cancelled",
        "cancelled_waiting",
    )
    assert by_id["first"].finish_reason == "stop"  # one token of 128: the model ended it
