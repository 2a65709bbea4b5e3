"""One asyncio loop, on one thread, drives every request through the LLM API.

The LLM API batches requests in flight itself, so there is no step scheduler here: each
contract sequence becomes one `generate_async(..., streaming=True)` call, and one task per
sequence reads its step outputs and turns them into contract responses
(`outputs.SequenceProgress`). Triton's `execute` threads only post work to the loop.

Ending a request early:
- a stop=true request with the same request id aborts its engine requests; each
  unfinished sequence then gets its last response (streaming: no new tokens;
  non-streaming: the tokens so far), the last one FINAL, then the stop request's own
  empty FINAL (the reference engine's order);
- a client cancellation, polled every `cancellation_check_period_ms` as the C++ backend
  does, aborts them and ends the request with a CANCELLED error;
- end_id, a stop word or request_output_len reached before the engine stopped aborts that
  sequence's engine request.
Every request ends with exactly one FINAL response on every path, errors included.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

from llm_api_engine.outputs import Advance, CompletionSnapshot, SequenceProgress
from llm_api_engine.sampling import GenerationCall, generation_call
from reference_engine.contract import response_tensors
from reference_engine.scheduler import sample_seed
from reference_engine.sink import ResponseSink, safe_error, safe_send
from reference_engine.types import GenerationRequest
from serving_common.errors import RequestError

logger = logging.getLogger(__name__)

_U64 = 2**64


class GenerationStream(Protocol):
    """One engine request: its step outputs, and a way to end it early."""

    def __aiter__(self) -> AsyncIterator[CompletionSnapshot]: ...

    def abort(self) -> None: ...


class LlmEngine(Protocol):
    """What the driver needs of TensorRT-LLM (`engine.TensorRtLlmEngine` in production)."""

    def generate(self, call: GenerationCall) -> GenerationStream:
        """Start one request; called on the driver's event loop. May raise RequestError
        or ValueError for a request the engine refuses."""
        ...

    def shutdown(self) -> None: ...


@dataclass(eq=False)
class _Sequence:
    progress: SequenceProgress
    stream: GenerationStream | None = None
    finished: bool = False

    def abort(self) -> None:
        if self.stream is None or self.finished:
            return
        try:
            self.stream.abort()
        except Exception:
            logger.exception("aborting an engine request failed")


@dataclass(eq=False)
class _Request:
    request_id: str
    streaming: bool
    sink: ResponseSink
    sequences: list[_Sequence] = field(default_factory=list)
    remaining: int = 0
    done: bool = False
    tasks: list[asyncio.Task] = field(default_factory=list)


class LlmApiDriver:
    """Thread-safe front (`submit`, `stop`, `shutdown`) over the event-loop thread."""

    def __init__(
        self,
        engine: LlmEngine,
        *,
        random_seed: int = 0,
        cancellation_check_period_ms: float = 100.0,
        guided_decoding_backend: str | None = None,
    ) -> None:
        self._engine = engine
        self._random_seed = random_seed
        self._guided_decoding_backend = guided_decoding_backend  # None: guides are refused
        self._seed_counter = 0
        self._check_period_s = max(cancellation_check_period_ms, 1.0) / 1000.0
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._requests: list[_Request] = []  # loop-thread state
        self._closed = False
        self._lock = threading.Lock()

    # --- any thread ---------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run_loop, name="llm-api-driver", daemon=True)
        self._thread.start()

    def submit(self, request: GenerationRequest, sink: ResponseSink) -> None:
        self._post(sink, lambda: self._start(request, sink))

    def stop(self, request_id: str, sink: ResponseSink) -> None:
        """stop=true: end the in-flight requests with this id; `sink` then gets FINAL."""
        self._post(sink, lambda: self._stop(request_id, sink))

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """End every open request with UNAVAILABLE, stop the loop, shut the engine down."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._thread is not None:
            done = asyncio.run_coroutine_threadsafe(self._close_all(), self._loop)
            try:
                done.result(timeout_s)
            except Exception:
                logger.exception("closing open requests failed")
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout_s)
        try:
            self._engine.shutdown()
        finally:
            if not self._loop.is_running():
                self._loop.close()

    def _post(self, sink: ResponseSink, action: Callable[[], None]) -> None:
        with self._lock:
            closed = self._closed
            if not closed:
                self._loop.call_soon_threadsafe(action)
        if closed:
            safe_error(sink, "the engine is shutting down", "UNAVAILABLE")

    # --- the loop thread ----------------------------------------------------------------

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.create_task(self._poll_cancellation())
        self._loop.run_forever()

    def _next_seed(self, given: int | None, sequence_index: int) -> int:
        if given is not None:
            return sample_seed(given, sequence_index)
        seed = (self._random_seed + self._seed_counter) % _U64
        self._seed_counter += 1
        return seed

    def _start(self, parsed: GenerationRequest, sink: ResponseSink) -> None:
        request = _Request(request_id=parsed.request_id, streaming=parsed.streaming, sink=sink)
        for spec in parsed.sequences:
            seed = self._next_seed(spec.sampling.seed, spec.sequence_index)
            request.sequences.append(_Sequence(SequenceProgress(spec, seed)))
        request.remaining = len(request.sequences)
        self._requests.append(request)
        try:
            # Every call first: a request refused here has started no engine request.
            calls = [
                generation_call(
                    seq.progress.spec,
                    seq.progress.live.seed,
                    guided_decoding_backend=self._guided_decoding_backend,
                )
                for seq in request.sequences
            ]
        except RequestError as exc:
            self._fail(request, str(exc), exc.code)
            return
        for seq, call in zip(request.sequences, calls, strict=True):
            try:
                seq.stream = self._engine.generate(call)
            except RequestError as exc:
                self._fail(request, str(exc), exc.code)
                return
            except ValueError as exc:  # the LLM API's own validation of SamplingParams
                self._fail(request, f"the LLM API refused the request: {exc}", "INVALID_ARG")
                return
            except Exception as exc:
                logger.exception("could not start an engine request")
                self._fail(request, f"the engine could not start the request: {exc}", "INTERNAL")
                return
            request.tasks.append(self._loop.create_task(self._follow(request, seq)))

    async def _follow(self, request: _Request, seq: _Sequence) -> None:
        """Read one sequence's step outputs until it ends or the request is closed."""
        assert seq.stream is not None
        try:
            async for snapshot in seq.stream:
                if request.done:
                    return
                advance = seq.progress.advance(snapshot)
                if advance.needs_abort:
                    seq.abort()
                self._deliver(request, seq, advance)
                if advance.ended:
                    return
            if not request.done and not seq.finished:  # the stream ended without "finished"
                self._deliver(request, seq, Advance(ended=True))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("generation failed for request %r", request.request_id)
            self._fail(request, f"generation failed: {exc}", "INTERNAL")

    def _deliver(self, request: _Request, seq: _Sequence, advance: Advance) -> None:
        progress = seq.progress
        last = advance.ended and request.remaining == 1
        if request.streaming:
            if advance.tokens or advance.ended:
                tensors = response_tensors(
                    progress.spec, advance.tokens, advance.log_probs, progress.cum_log_prob
                )
                self._send(request, tensors, final=last)
        elif advance.ended:
            self._send(request, self._full_response(progress), final=last)
        if advance.ended and not seq.finished:
            seq.finished = True
            request.remaining -= 1
            if request.remaining == 0:
                self._close(request)

    def _full_response(self, progress: SequenceProgress) -> dict:
        return response_tensors(
            progress.spec, progress.output_tokens(), progress.live.log_probs, progress.cum_log_prob
        )

    def _stop(self, request_id: str, stop_sink: ResponseSink) -> None:
        matched = [r for r in self._requests if r.request_id == request_id and not r.done]
        if not matched:
            logger.info("stop request for id=%r: no such request in flight", request_id)
        for request in matched:
            pending = [seq for seq in request.sequences if not seq.finished]
            for seq in pending:
                seq.abort()
            for i, seq in enumerate(pending):
                tensors = (
                    response_tensors(seq.progress.spec, [], [], seq.progress.cum_log_prob)
                    if request.streaming
                    else self._full_response(seq.progress)
                )
                seq.finished = True
                self._send(request, tensors, final=i == len(pending) - 1)
            self._close(request)
        safe_send(stop_sink, {}, final=True)

    async def _poll_cancellation(self) -> None:
        while True:
            await asyncio.sleep(self._check_period_s)
            for request in list(self._requests):
                try:
                    cancelled = request.sink.is_cancelled()
                except Exception:
                    logger.exception("is_cancelled() failed for request %r", request.request_id)
                    continue
                if cancelled and not request.done:
                    logger.info("request id=%r cancelled by the client", request.request_id)
                    self._fail(request, "request cancelled by the client", "CANCELLED")

    async def _close_all(self) -> None:
        for request in list(self._requests):
            self._fail(request, "the engine is shutting down", "UNAVAILABLE")
        for task in asyncio.all_tasks(self._loop):
            if task is not asyncio.current_task():
                task.cancel()

    def _send(self, request: _Request, tensors: dict, *, final: bool) -> None:
        if request.done:
            return
        if not safe_send(request.sink, tensors, final=final, request_id=request.request_id):
            self._abort_all(request)  # nothing more can reach this client
            self._close(request)
        elif final:
            self._close(request)

    def _fail(self, request: _Request, message: str, code: str) -> None:
        if request.done:
            return
        self._abort_all(request)
        self._close(request)
        safe_error(request.sink, message, code)

    def _abort_all(self, request: _Request) -> None:
        for seq in request.sequences:
            seq.abort()
            seq.finished = True

    def _close(self, request: _Request) -> None:
        """Forget a request (its responses are the caller's business)."""
        request.done = True
        if request in self._requests:
            self._requests.remove(request)
        current = asyncio.current_task(self._loop) if self._loop.is_running() else None
        for task in request.tasks:
            if task is not current and not task.done():
                task.cancel()
