"""One BLS request from start to FINAL: validate, tokenize, stream the engine, detokenize,
apply stop strings, respond.

Free of pb_utils: the engine and the client's response stream come in as small
interfaces (`EngineClient`, `ResponseSink`), so every path is unit-tested with fakes and
the Triton model only adapts them. Every path ends with exactly one FINAL to the client.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Protocol

import numpy as np

from bls.engine_io import (
    EncodedPrompts,
    EngineClient,
    EngineResponse,
    engine_inputs,
    new_engine_request_id,
)
from bls.request import BlsLimits, ChatPrompt, GenerateRequest, TextPrompt, parse_generate_request
from bls.sequence import SequenceDelta, SequenceState
from bls.stop_strings import StopStringMatcher
from postprocessing.detokenizer import IncrementalDetokenizer
from preprocessing.encoding import PromptEncoder
from preprocessing.errors import RequestError

logger = logging.getLogger(__name__)


class ResponseSink(Protocol):
    """The client's side of one request (a decoupled response sender in production)."""

    def send(self, outputs: Mapping[str, np.ndarray] | None, final: bool) -> None: ...

    def send_error(self, message: str, code: str) -> None:
        """One error response, together with FINAL."""
        ...

    def is_cancelled(self) -> bool: ...


def response_tensors(
    deltas: list[SequenceDelta], request: GenerateRequest, prompt_lengths: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """One row per sequence; `batch_index` and `sequence_index` say which one it is."""

    def column(values: list[object], dtype: type) -> np.ndarray:
        return np.asarray(values, dtype=dtype).reshape(len(values), 1)

    def text(values: list[str]) -> np.ndarray:
        return column([value.encode("utf-8") for value in values], np.object_)

    outputs = {
        "text_output": text([d.text for d in deltas]),
        "finish_reason": text([d.finish_reason for d in deltas]),
        "stop_reason": text([d.stop_reason for d in deltas]),
        "batch_index": column([d.batch_index for d in deltas], np.int32),
        "sequence_index": column([d.sequence_index for d in deltas], np.int32),
    }
    if request.return_num_input_tokens:
        outputs["num_input_tokens"] = column(
            [prompt_lengths[d.batch_index] for d in deltas], np.int32
        )
    if request.return_num_output_tokens:
        outputs["num_output_tokens"] = column([d.num_output_tokens for d in deltas], np.int32)
    if request.return_log_probs:
        outputs["cum_log_probs"] = column([d.cum_log_prob for d in deltas], np.float32)
        longest = max((len(d.log_probs) for d in deltas), default=0)
        log_probs = np.zeros((len(deltas), 1, longest), dtype=np.float32)
        for row, delta in enumerate(deltas):
            log_probs[row, 0, : len(delta.log_probs)] = delta.log_probs
        outputs["output_log_probs"] = log_probs
    return outputs


class RequestHandler:
    """Serves requests; one instance per model, `handle` called on many threads at once."""

    def __init__(
        self,
        *,
        tokenizer,
        encoder: PromptEncoder,
        limits: BlsLimits,
        engine: EngineClient,
        spaces_between_special_tokens: bool = True,
    ) -> None:
        self.tokenizer = tokenizer
        self.encoder = encoder
        self.limits = limits
        self.engine = engine
        self.spaces_between_special_tokens = spaces_between_special_tokens

    # -- entry point -------------------------------------------------------------------
    def handle(
        self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, object], sink: ResponseSink
    ) -> None:
        """Serve one request; never raises, always ends the client's stream with FINAL."""
        try:
            request = parse_generate_request(inputs, parameters, self.limits)
            prompts = self.encode(request)
            generation = _Generation(self, request, prompts, sink)
        except RequestError as error:
            sink.send_error(str(error), error.code)
            return
        except Exception:
            # FINAL first: a failure while logging must not leave the client waiting.
            sink.send_error(
                "tensorrt_llm_bls: internal error while preparing the request", "INTERNAL"
            )
            logger.exception("tensorrt_llm_bls: preparing a request failed")
            return
        generation.run()

    # -- preprocessing -----------------------------------------------------------------
    def encode(self, request: GenerateRequest) -> EncodedPrompts:
        encoder = self.encoder
        input_ids = []
        for row, prompt in enumerate(request.prompts):
            if isinstance(prompt, TextPrompt):
                field = "text_input" if request.batch_size == 1 else f"text_input[{row}]"
                input_ids.append(tuple(encoder.encode_text(prompt.text, field)))
            else:
                assert isinstance(prompt, ChatPrompt)
                field = "messages" if request.batch_size == 1 else f"messages[{row}]"
                input_ids.append(tuple(encoder.encode_conversation(prompt.as_dicts(), field)))
        self._check_fits_the_engine(request, input_ids)
        end_id = request.end_id if request.end_id is not None else encoder.end_id
        if end_id is None:
            raise RequestError("end_id", "the tokenizer has no EOS token; send end_id")
        pad_id = request.pad_id if request.pad_id is not None else encoder.pad_id
        bias = None
        if request.embedding_bias_words:
            bias = encoder.embedding_bias(
                request.embedding_bias_words, request.embedding_bias_weights
            )
        return EncodedPrompts(
            input_ids=tuple(input_ids),
            end_id=end_id,
            pad_id=end_id if pad_id is None else pad_id,
            stop_words=tuple(map(tuple, encoder.word_lists(request.stop_words, "stop_words"))),
            bad_words=tuple(map(tuple, encoder.word_lists(request.bad_words, "bad_words"))),
            embedding_bias=bias,
            special_stop_words={
                token_id: word
                for word in request.stop_words
                if (token_id := encoder.single_token_id(word)) is not None
            },
        )

    def _check_fits_the_engine(
        self, request: GenerateRequest, input_ids: list[tuple[int, ...]]
    ) -> None:
        limit = self.limits.max_seq_len
        longest = max(len(ids) for ids in input_ids)
        if limit and longest + request.max_tokens > limit:
            room = max(limit - longest, 0)
            raise RequestError(
                "max_tokens",
                f"the prompt is {longest} tokens and max_tokens is {request.max_tokens}: "
                f"{longest + request.max_tokens} is over the engine's limit of {limit} tokens "
                f"(max_seq_len); ask for at most {room} tokens or shorten the prompt",
            )

    def new_detokenizer(self, request: GenerateRequest) -> IncrementalDetokenizer:
        return IncrementalDetokenizer(
            self.tokenizer,
            skip_special_tokens=request.skip_special_tokens,
            spaces_between_special_tokens=self.spaces_between_special_tokens,
        )


class _Generation:
    """The engine-facing part of one request."""

    def __init__(
        self,
        handler: RequestHandler,
        request: GenerateRequest,
        prompts: EncodedPrompts,
        sink: ResponseSink,
    ) -> None:
        self.handler = handler
        self.request = request
        self.prompts = prompts
        self.sink = sink
        self.request_id = new_engine_request_id()
        self.sequences: dict[tuple[int, int], SequenceState] = {}
        for batch_index, prompt_ids in enumerate(prompts.input_ids):
            for sequence_index in range(request.sampling.num_return_sequences):
                self.sequences[(batch_index, sequence_index)] = self._new_sequence(
                    batch_index, sequence_index, prompt_ids
                )
        self._finish_reported: set[tuple[int, int]] = set()
        self._final_sent = False

    def _new_sequence(self, batch_index: int, sequence_index: int, prompt_ids) -> SequenceState:
        request = self.request
        stops = (
            StopStringMatcher(request.stop_words, request.include_stop_str_in_output)
            if request.stop_words
            else None
        )
        sequence = SequenceState(
            batch_index=batch_index,
            sequence_index=sequence_index,
            max_tokens=request.max_tokens,
            detokenizer=self.handler.new_detokenizer(request),
            stops=stops,
            special_stops=self.prompts.special_stop_words,
            include_stop_str_in_output=request.include_stop_str_in_output,
        )
        if not request.exclude_input_in_output:
            sequence.echo_prompt(prompt_ids)
        return sequence

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> None:
        responses: Iterator[EngineResponse] | None = None
        engine_done = False
        try:
            responses = iter(
                self.handler.engine.generate(
                    self.request_id, engine_inputs(self.request, self.prompts)
                )
            )
            for response in responses:
                if response.error is not None:
                    engine_done = True
                    self._fail(f"tensorrt_llm: {response.error}", response.error_code or "INTERNAL")
                    return
                for row in response.rows:
                    self._sequence_for(row.batch_index, row.sequence_index).consume(row)
                engine_done = response.final
                if self.sink.is_cancelled():
                    for sequence in self.sequences.values():
                        sequence.cancel()
                    self._respond(final=True)
                    return
                if all(s.finished for s in self.sequences.values()):
                    # Every sequence hit a stop string: answer now, stop the engine after.
                    self._respond(final=True)
                    return
                if engine_done:
                    break
                self._respond(final=False)
            engine_done = True
            for sequence in self.sequences.values():
                sequence.end_of_generation()
            self._respond(final=True)
        except Exception:
            self._fail("tensorrt_llm_bls: internal error while generating", "INTERNAL")
            logger.exception("tensorrt_llm_bls: request %s failed", self.request_id)
        finally:
            if not engine_done and responses is not None:
                self._stop_engine(responses)

    def _sequence_for(self, batch_index: int, sequence_index: int) -> SequenceState:
        try:
            return self.sequences[(batch_index, sequence_index)]
        except KeyError:
            raise RuntimeError(
                f"engine answered for batch_index={batch_index}, sequence_index="
                f"{sequence_index}, which this request did not ask for"
            ) from None

    def _stop_engine(self, responses: Iterator[EngineResponse]) -> None:
        """Cancel the engine request and wait for its end, so nothing is left running.

        Drained even when the cancel fails: then the engine runs to its own end, and this
        thread waits for it rather than leave a request behind.
        """
        try:
            self.handler.engine.cancel(self.request_id)
        except Exception:
            logger.exception(
                "tensorrt_llm_bls: cancelling engine request %s failed", self.request_id
            )
        try:
            for _ in responses:
                pass
        except Exception:
            logger.exception("tensorrt_llm_bls: draining engine request %s failed", self.request_id)

    # -- responses ---------------------------------------------------------------------
    def _respond(self, final: bool) -> None:
        if self._final_sent:
            return
        if not self.request.stream:
            if final:  # exactly one response, so HTTP /generate works
                deltas = [s.take_delta() for s in self.sequences.values()]
                self._send(deltas, final=True)
            return
        deltas = []
        for key, sequence in self.sequences.items():
            newly_finished = sequence.finished and key not in self._finish_reported
            if sequence.has_news() or newly_finished:
                deltas.append(sequence.take_delta())
            if sequence.finished:
                self._finish_reported.add(key)
        if not deltas:
            if final:
                self._send_final_flag()
            return
        for position, delta in enumerate(deltas):
            self._send([delta], final=final and position == len(deltas) - 1)

    def _send(self, deltas: list[SequenceDelta], final: bool) -> None:
        lengths = tuple(len(ids) for ids in self.prompts.input_ids)
        self.sink.send(response_tensors(deltas, self.request, lengths), final)
        self._final_sent = final

    def _send_final_flag(self) -> None:
        self.sink.send(None, True)
        self._final_sent = True

    def _fail(self, message: str, code: str) -> None:
        if not self._final_sent:
            self.sink.send_error(message, code)
            self._final_sent = True
