"""The BLS request lifecycle against a scripted engine and a recording client."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import pytest

from bls.engine_io import EngineResponse, EngineRow
from bls.limits import BlsLimits
from bls.orchestrator import RequestHandler
from preprocessing.config import PreprocessingLimits
from preprocessing.encoding import PromptEncoder
from preprocessing.tokenizer_loading import load_tokenizer


@dataclass
class ScriptedEngine:
    """Yields the scripted tokens one per step; a cancel ends the stream at the next step."""

    tokens: dict[tuple[int, int], list[int]]
    error_at_step: int | None = None
    calls: list[tuple[str, dict[str, np.ndarray]]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    steps_served: int = 0

    def generate(
        self, request_id: str, inputs: Mapping[str, np.ndarray]
    ) -> Iterator[EngineResponse]:
        self.calls.append((request_id, dict(inputs)))
        longest = max(len(t) for t in self.tokens.values())
        for step in range(longest):
            if request_id in self.cancelled:
                break
            if step == self.error_at_step:
                yield EngineResponse(error="prompt too long", error_code="INVALID_ARG", final=True)
                return
            rows = tuple(
                EngineRow(b, s, (tokens[step],), log_probs=(-0.5,))
                for (b, s), tokens in self.tokens.items()
                if step < len(tokens)
            )
            self.steps_served += 1
            yield EngineResponse(rows=rows)
        yield EngineResponse(final=True)

    def cancel(self, request_id: str) -> None:
        self.cancelled.append(request_id)


@dataclass
class RecordingSink:
    sent: list[tuple[dict[str, np.ndarray] | None, bool]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    cancel_after_sends: int | None = None

    def send(self, outputs, final: bool) -> None:
        assert not self.finished, "nothing may follow FINAL"
        self.sent.append((None if outputs is None else dict(outputs), final))

    def send_error(self, message: str, code: str) -> None:
        assert not self.finished, "nothing may follow FINAL"
        self.errors.append((message, code))

    def is_cancelled(self) -> bool:
        return self.cancel_after_sends is not None and len(self.sent) >= self.cancel_after_sends

    @property
    def finished(self) -> bool:
        return bool(self.errors) or any(final for _, final in self.sent)

    def texts(self, sequence: tuple[int, int] = (0, 0)) -> list[str]:
        return [text.decode() for text in self.values("text_output", sequence)]

    def values(self, name: str, sequence: tuple[int, int] = (0, 0)) -> list:
        """`name` of every response row that belongs to `sequence`, in order."""
        found = []
        for outputs, _ in self.sent:
            if outputs is None:
                continue
            for row in range(outputs["text_output"].shape[0]):
                key = (int(outputs["batch_index"][row, 0]), int(outputs["sequence_index"][row, 0]))
                if key == sequence:
                    value = outputs[name][row, 0]
                    found.append(value if isinstance(value, bytes) else value.item())
        return found

    def last(self, name: str, row: int = 0):
        outputs = [o for o, _ in self.sent if o is not None][-1]
        value = outputs[name][row, 0]
        return value.decode() if isinstance(value, bytes) else value


@pytest.fixture(scope="module")
def tokenizer(fixture_paths):
    return load_tokenizer(fixture_paths.sentencepiece_tokenizer)


def make_handler(tokenizer, engine: ScriptedEngine) -> RequestHandler:
    return RequestHandler(
        tokenizer=tokenizer,
        encoder=PromptEncoder(tokenizer, PreprocessingLimits()),
        limits=BlsLimits(),
        engine=engine,
    )


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
    make_handler(tokenizer, engine).handle(text_inputs("Hi", max_tokens=500), {}, sink)
    assert len(sink.sent) == 1 and sink.sent[0][1] is True
    assert sink.texts() == [tokenizer.decode(ids, skip_special_tokens=True)]
    assert sink.last("finish_reason") == "stop"  # fewer tokens than max_tokens: the model ended
    # The engine is always asked to stream, so stop strings can cut it short.
    _, inputs = engine.calls[0]
    assert inputs["streaming"].tolist() == [[True]]
    assert inputs["request_output_len"].tolist() == [[500]]


def test_streaming_deltas_concatenate_to_the_full_text(tokenizer):
    ids = ids_of(tokenizer, GENERATED)
    engine = ScriptedEngine({(0, 0): ids})
    sink = RecordingSink()
    make_handler(tokenizer, engine).handle(
        text_inputs("Hi", max_tokens=len(ids), stream=True, return_num_output_tokens=True), {}, sink
    )
    assert "".join(sink.texts()) == tokenizer.decode(ids, skip_special_tokens=True)
    assert [final for _, final in sink.sent].count(True) == 1 and sink.sent[-1][1]
    assert not any("\ufffd" in text for text in sink.texts())
    assert sink.last("finish_reason") == "length"
    # Each response counts the tokens it adds; Triton's OpenAI frontend sums them.
    counts = sink.values("num_output_tokens")
    assert sum(counts) == len(ids)
    assert len(counts) > 1 and all(count >= 0 for count in counts)
    finish_reasons = [o["finish_reason"][0, 0] for o, _ in sink.sent[:-1] if o is not None]
    assert set(finish_reasons) <= {b""}


@pytest.mark.parametrize("stream", [False, True])
def test_stop_string_cuts_output_and_cancels_the_engine(tokenizer, stream):
    ids = ids_of(tokenizer, GENERATED)
    engine = ScriptedEngine({(0, 0): ids})
    sink = RecordingSink()
    make_handler(tokenizer, engine).handle(
        text_inputs(
            "Hi", max_tokens=500, stream=stream, stop_words=["STOP"], return_num_output_tokens=True
        ),
        {},
        sink,
    )
    assert "".join(sink.texts()) == "Hello world, 世界 🙂 naïve café. "
    assert sink.last("finish_reason") == "stop" and sink.last("stop_reason") == "STOP"
    request_id, inputs = engine.calls[0]
    assert engine.cancelled == [request_id]
    assert engine.steps_served < len(ids)
    # Counted up to the token that completed "STOP", not beyond.
    counted = sum(sink.values("num_output_tokens"))
    assert "STOP" in tokenizer.decode(ids[:counted]) and "STOP" not in tokenizer.decode(
        ids[: counted - 1]
    )
    assert "stop_words_list" in inputs  # the engine gets the stop words too


def test_include_stop_str_in_output(tokenizer):
    ids = ids_of(tokenizer, GENERATED)
    sink = RecordingSink()
    make_handler(tokenizer, ScriptedEngine({(0, 0): ids})).handle(
        text_inputs("Hi", stop_words=["here", "STOP"], include_stop_str_in_output=True), {}, sink
    )
    # The later-listed stop string occurs first in the text and wins.
    assert sink.texts() == ["Hello world, 世界 🙂 naïve café. STOP"]
    assert sink.last("stop_reason") == "STOP"


def test_engine_error_is_passed_on_with_its_code(tokenizer):
    sink = RecordingSink()
    engine = ScriptedEngine({(0, 0): ids_of(tokenizer, GENERATED)}, error_at_step=2)
    make_handler(tokenizer, engine).handle(text_inputs("Hi", stream=True), {}, sink)
    assert sink.errors == [("tensorrt_llm: prompt too long", "INVALID_ARG")]
    assert engine.cancelled == []


def test_bad_request_is_refused_before_the_engine_starts(tokenizer):
    engine = ScriptedEngine({(0, 0): [5]})
    sink = RecordingSink()
    make_handler(tokenizer, engine).handle(text_inputs("Hi", max_tokens=0), {}, sink)
    assert len(sink.errors) == 1
    message, code = sink.errors[0]
    assert code == "INVALID_ARG" and "max_tokens" in message and "4096" in message
    assert engine.calls == []


def test_client_cancel_stops_the_engine_within_a_step(tokenizer):
    ids = ids_of(tokenizer, GENERATED)
    engine = ScriptedEngine({(0, 0): ids})
    sink = RecordingSink(cancel_after_sends=2)
    make_handler(tokenizer, engine).handle(text_inputs("Hi", stream=True), {}, sink)
    request_id, _ = engine.calls[0]
    assert engine.cancelled == [request_id]
    assert sink.sent[-1][1] is True
    assert sink.last("finish_reason") == "cancelled"
    assert engine.steps_served <= 4


def test_each_sequence_has_its_own_text_and_stop_state(tokenizer):
    first = ids_of(tokenizer, "one STOP two")
    second = ids_of(tokenizer, "日本語のテキスト, no stop at all")
    engine = ScriptedEngine({(0, 0): first, (0, 1): second})
    sink = RecordingSink()
    make_handler(tokenizer, engine).handle(
        text_inputs("Hi", stream=True, stop_words=["STOP"], num_return_sequences=2), {}, sink
    )
    assert "".join(sink.texts((0, 0))) == "one "
    assert "".join(sink.texts((0, 1))) == tokenizer.decode(second)
    assert engine.cancelled == []  # sequence 1 still needed the engine


def test_exclude_input_in_output_false_echoes_the_prompt(tokenizer):
    ids = ids_of(tokenizer, " and then")
    sink = RecordingSink()
    make_handler(tokenizer, ScriptedEngine({(0, 0): ids})).handle(
        text_inputs("Bonjour à tous", exclude_input_in_output=False), {}, sink
    )
    prompt_ids = tokenizer.encode("Bonjour à tous")
    assert sink.texts() == [tokenizer.decode(prompt_ids + ids, skip_special_tokens=True)]


def test_log_probs_and_token_counts(tokenizer):
    ids = ids_of(tokenizer, "abc def")
    sink = RecordingSink()
    make_handler(tokenizer, ScriptedEngine({(0, 0): ids})).handle(
        text_inputs("Hi", return_log_probs=True, return_num_input_tokens=True), {}, sink
    )
    outputs = sink.sent[0][0]
    assert outputs["output_log_probs"].shape == (1, 1, len(ids))
    assert outputs["cum_log_probs"][0, 0] == pytest.approx(-0.5 * len(ids))
    assert outputs["num_input_tokens"][0, 0] == len(tokenizer.encode("Hi"))


def test_internal_failure_answers_once_and_stops_the_engine(tokenizer):
    class BrokenRowsEngine(ScriptedEngine):
        def generate(self, request_id, inputs):
            self.calls.append((request_id, dict(inputs)))
            yield EngineResponse(rows=(EngineRow(7, 0, (5,)),))  # a row nobody asked for
            yield EngineResponse(final=True)

    engine = BrokenRowsEngine({(0, 0): [1]})
    sink = RecordingSink()
    make_handler(tokenizer, engine).handle(text_inputs("Hi"), {}, sink)
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


@pytest.mark.parametrize("stream", [False, True])
def test_an_echoed_prompt_is_never_searched_for_stop_strings(tokenizer, stream):
    # In Llama-style vocabularies "\n" is a byte-fallback piece: the detokenizer holds the
    # prompt's final newlines back until the first generated token arrives.
    prompt = "Q: hi\nA: hello\n\n"
    generated = ids_of(tokenizer, "more text\n\nend")
    sink = RecordingSink()
    make_handler(tokenizer, ScriptedEngine({(0, 0): generated})).handle(
        text_inputs(prompt, stop_words=["\n\n"], exclude_input_in_output=False, stream=stream),
        {},
        sink,
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
    make_handler(bpe, engine).handle(
        text_inputs(
            "Hi",
            stop_words=["<|eot_id|>"],
            include_stop_str_in_output=include,
            stream=stream,
            return_num_output_tokens=True,
        ),
        {},
        sink,
    )
    expected = "Sure, here it is." + ("<|eot_id|>" if include else "")
    assert "".join(sink.texts()) == expected
    assert sink.last("finish_reason") == "stop"
    assert sink.last("stop_reason") == "<|eot_id|>"
    assert sum(sink.values("num_output_tokens")) == generated.index(eot) + 1
    # The engine got it as a one-token stop word too.
    _, inputs = engine.calls[0]
    assert eot in inputs["stop_words_list"][0, 0].tolist()


def test_a_failing_cancel_still_drains_the_engine_request(tokenizer):
    class CancelFails(ScriptedEngine):
        def cancel(self, request_id: str) -> None:
            raise RuntimeError("engine unreachable")

    ids = ids_of(tokenizer, GENERATED)
    engine = CancelFails({(0, 0): ids})
    sink = RecordingSink()
    make_handler(tokenizer, engine).handle(text_inputs("Hi", stop_words=["STOP"]), {}, sink)
    assert sink.last("stop_reason") == "STOP" and len(sink.sent) == 1
    # Nothing left behind: the engine's stream was read to its end.
    assert engine.steps_served == len(ids)


def test_a_request_that_does_not_fit_the_engine_is_refused_before_it_starts(tokenizer):
    engine = ScriptedEngine({(0, 0): [5]})
    handler = make_handler(tokenizer, engine)
    handler.limits = BlsLimits(max_seq_len=64)
    prompt_tokens = len(tokenizer.encode("Hi"))
    sink = RecordingSink()
    handler.handle(text_inputs("Hi", max_tokens=64), {}, sink)
    ((message, code),) = sink.errors
    assert code == "INVALID_ARG" and engine.calls == []
    assert message == (
        f"max_tokens: the prompt is {prompt_tokens} tokens and max_tokens is 64: "
        f"{prompt_tokens + 64} is over the engine's limit of 64 tokens (max_seq_len); "
        f"ask for at most {64 - prompt_tokens} tokens or shorten the prompt"
    )
    fits = RecordingSink()
    handler.handle(text_inputs("Hi", max_tokens=64 - prompt_tokens), {}, fits)
    assert fits.errors == [] and fits.sent[-1][1]
