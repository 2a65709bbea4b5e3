"""Iteration-level ("in-flight") scheduling on one background thread.

Each iteration: take new requests and stop requests, check client cancellation, end
cancelled requests, admit waiting sequences up to `max_active_sequences`, then advance
every active sequence by one token with one `backend.step` call. New requests join at
the next iteration and finished ones leave, so concurrent requests progress together.

Every request ends with exactly one FINAL response on every path: finished, stopped,
cancelled, refused by the backend, failed in the backend, or at shutdown.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from reference_engine.backends.base import GenerationBackend
from reference_engine.contract import response_tensors
from reference_engine.faults import Fault, FaultPlan, malformed
from reference_engine.metrics import EngineMetrics, NullMetrics
from reference_engine.sink import ResponseSink, safe_error, safe_send
from reference_engine.types import GenerationRequest, LiveSequence, StepOutput
from reference_engine.words import matched_stop_word
from serving_common.errors import RequestError

logger = logging.getLogger(__name__)

_U64 = 2**64
_GOLDEN = 0x9E3779B97F4A7C15  # spreads the seeds of a request's samples apart


def sample_seed(seed: int, sequence_index: int) -> int:
    """Seed of sample `sequence_index` of a request seeded with `seed` (sample 0: seed)."""
    return (seed + sequence_index * _GOLDEN) % _U64


@dataclass(eq=False)
class _Request:
    key: int
    request_id: str
    streaming: bool
    sink: ResponseSink
    seqs: list[_Seq] = field(default_factory=list)
    remaining: int = 0
    done: bool = False
    cancel_reason: str | None = None
    next_cancel_check: float = 0.0


@dataclass(eq=False)
class _Seq:
    live: LiveSequence
    request: _Request
    admitted: bool = False
    finished: bool = False
    stalled: bool = False  # an injected stall: silent until its request is ended
    cum_log_prob: float = 0.0


@dataclass(frozen=True)
class _Submit:
    request: GenerationRequest
    sink: ResponseSink


@dataclass(frozen=True)
class _Stop:
    request_id: str
    sink: ResponseSink


class Scheduler:
    """Owns the backend: only the scheduler thread calls it."""

    def __init__(
        self,
        backend: GenerationBackend,
        *,
        max_active_sequences: int = 256,
        random_seed: int = 0,
        cancellation_check_period_ms: float = 0.0,
        metrics: EngineMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        faults: FaultPlan | None = None,
        before_step: Callable[[int], object] | None = None,
    ) -> None:
        if max_active_sequences < 1:
            raise ValueError(f"max_active_sequences must be >= 1, got {max_active_sequences}")
        self.backend = backend
        self._max_active = max_active_sequences
        self._random_seed = random_seed
        self._seed_counter = 0
        self._check_period_s = cancellation_check_period_ms / 1000.0
        self._metrics: EngineMetrics = metrics or NullMetrics()
        self._clock = clock
        self._faults = faults or FaultPlan()
        # Called with the batch size before each step: lets responses of the previous
        # steps leave first (in Triton: wait while the sender threads are behind).
        self._before_step = before_step

        self._cond = threading.Condition()
        self._inbox: deque[_Submit | _Stop] = deque()
        self._shutdown = False
        self._thread: threading.Thread | None = None

        # Scheduler-thread state (never touched by other threads).
        self._next_key = 0
        self._requests: dict[int, _Request] = {}
        self._waiting: deque[_Seq] = deque()
        self._active: list[_Seq] = []
        self._stalled = 0  # stalled sequences: out of _active, still in flight

    # --- called from any thread ------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name="reference-engine-scheduler", daemon=True
        )
        self._thread.start()

    def submit(self, request: GenerationRequest, sink: ResponseSink) -> None:
        """Queue a request; its responses go to `sink` from the scheduler thread."""
        self._post(_Submit(request, sink))

    def stop(self, request_id: str, sink: ResponseSink) -> None:
        """A stop=true request: end in-flight requests with this id at the next
        iteration; `sink` then gets one empty FINAL response."""
        self._post(_Stop(request_id, sink))

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Stop the thread; every request still open gets UNAVAILABLE + FINAL."""
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.error("scheduler thread did not stop within %.0f s", timeout_s)
                return
        self._drain_inbox_at_shutdown()
        for request in list(self._requests.values()):
            self._fail(request, "the engine is shutting down", "UNAVAILABLE")
        self.backend.close()

    def _post(self, command: _Submit | _Stop) -> None:
        with self._cond:
            if self._shutdown:
                rejected = True
            else:
                rejected = False
                self._inbox.append(command)
                self._cond.notify()
        if rejected:
            safe_error(command.sink, "the engine is shutting down", "UNAVAILABLE")

    # --- the scheduler thread ----------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._shutdown:
                    return
            try:
                self.run_once(block=True)
            except Exception:
                # A bug in the scheduler itself: fail what is in flight (each request
                # still ends with FINAL) and keep serving new requests.
                logger.exception("scheduler iteration failed")
                for request in list(self._requests.values()):
                    self._fail(request, "internal error in the engine scheduler", "INTERNAL")
                self._active.clear()
                self._waiting.clear()

    def run_once(self, block: bool = False) -> bool:
        """One iteration. Returns whether sequences were advanced. Tests may call this
        directly (without `start`) to drive the engine step by step."""
        commands = self._take_commands(block)
        stop_sinks = self._handle_commands(commands)
        self._check_client_cancellation()
        self._end_cancelled()
        for sink in stop_sinks:  # after the stopped requests got their final response
            safe_send(sink, {}, final=True)
        self._admit()
        advanced = False
        if self._active:
            self._step()
            advanced = True
        self._metrics.set_active_sequences(len(self._active) + self._stalled)
        return advanced

    @property
    def active_count(self) -> int:
        return len(self._active)

    @property
    def waiting_count(self) -> int:
        return len(self._waiting)

    @property
    def open_count(self) -> int:
        """Requests received and not yet ended (read on the scheduler thread, or when it
        is not running)."""
        return len(self._requests)

    def _take_commands(self, block: bool) -> list[_Submit | _Stop]:
        with self._cond:
            while (
                block
                and not self._inbox
                and not self._shutdown
                and not self._active
                and not self._waiting
            ):
                if self._stalled:  # nothing to step, but their clients may cancel
                    self._cond.wait(timeout=max(self._check_period_s, 0.05))
                    break
                self._cond.wait(timeout=1.0)
            commands = list(self._inbox)
            self._inbox.clear()
        return commands

    def _handle_commands(self, commands: list[_Submit | _Stop]) -> list[ResponseSink]:
        stop_sinks: list[ResponseSink] = []
        for command in commands:
            if isinstance(command, _Submit):
                self._register(command.request, command.sink)
            else:
                matched = False
                for request in self._requests.values():
                    if request.request_id == command.request_id and request.cancel_reason is None:
                        request.cancel_reason = "stop_request"
                        matched = True
                self._metrics.stop_request_received(matched)
                if not matched:
                    logger.info(
                        "stop request for id=%r: no such request in flight (already finished?)",
                        command.request_id,
                    )
                stop_sinks.append(command.sink)
        return stop_sinks

    def _register(self, parsed: GenerationRequest, sink: ResponseSink) -> None:
        self._metrics.request_received()
        request = _Request(
            key=self._next_key, request_id=parsed.request_id, streaming=parsed.streaming, sink=sink
        )
        self._next_key += 1
        for spec in parsed.sequences:
            if spec.sampling.seed is not None:
                seed = sample_seed(spec.sampling.seed, spec.sequence_index)
            else:
                seed = (self._random_seed + self._seed_counter) % _U64
                self._seed_counter += 1
            seq = _Seq(live=LiveSequence(spec=spec, seed=seed), request=request)
            request.seqs.append(seq)
            self._waiting.append(seq)
        request.remaining = len(request.seqs)
        self._requests[request.key] = request
        if request.remaining == 0:  # nothing to generate (cannot come from parse_request)
            self._close(request)
            safe_send(sink, {}, final=True)

    def _check_client_cancellation(self) -> None:
        now = self._clock()
        for request in self._requests.values():
            if request.cancel_reason is not None or now < request.next_cancel_check:
                continue
            request.next_cancel_check = now + self._check_period_s
            try:
                if request.sink.is_cancelled():
                    request.cancel_reason = "client"
            except Exception:
                logger.exception("is_cancelled() failed for request %r", request.request_id)

    def _end_cancelled(self) -> None:
        for request in list(self._requests.values()):
            reason = request.cancel_reason
            if reason is None or request.done:
                continue
            produced = sum(len(s.live.generated) for s in request.seqs)
            self._metrics.cancelled(reason)
            logger.info(
                "cancelled request id=%r (%s) after %d generated token(s)",
                request.request_id,
                "stop request" if reason == "stop_request" else "client cancelled",
                produced,
            )
            if reason == "client":
                self._fail(request, "request cancelled by the client", "CANCELLED")
                continue
            # Stopped: each unfinished sequence gets its last response, the last one
            # FINAL: the tokens so far (non-streaming) or no new tokens (streaming).
            pending = [s for s in request.seqs if not s.finished]
            for i, seq in enumerate(pending):
                tensors = (
                    self._empty_response(seq) if request.streaming else (self._full_response(seq))
                )
                self._send(request, tensors, final=i == len(pending) - 1)
            self._close(request)
        self._active = [s for s in self._active if not s.request.done]

    def _admit(self) -> None:
        while self._waiting and len(self._active) < self._max_active:
            seq = self._waiting.popleft()
            if seq.request.done:
                continue
            try:
                self.backend.admit(seq.live)
            except RequestError as exc:
                self._fail(seq.request, str(exc), exc.code)
                continue
            except Exception as exc:
                logger.exception("backend refused a sequence")
                self._fail(
                    seq.request, f"the engine could not start the sequence: {exc}", "INTERNAL"
                )
                continue
            seq.admitted = True
            self._active.append(seq)
        self._active = [s for s in self._active if not s.request.done]

    def _step(self) -> None:
        batch = list(self._active)
        if self._before_step is not None:
            self._before_step(len(batch))
        self._metrics.observe_batch_size(len(batch))
        try:
            results: list[StepOutput | Exception] = self.backend.step([s.live for s in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"backend returned {len(results)} results for {len(batch)}")
        except Exception as exc:
            logger.exception("backend step failed for the whole batch")
            results = [exc] * len(batch)
        emitted = 0
        for seq, result in zip(batch, results, strict=True):
            if seq.request.done or seq.finished:
                continue
            if isinstance(result, Exception):
                # A RequestError is the request's own doing (e.g. a guide that min_tokens
                # contradicts) and keeps its code; anything else is the engine's failure.
                code = result.code if isinstance(result, RequestError) else "INTERNAL"
                self._fail(seq.request, f"generation failed: {result}", code)
                continue
            emitted += self._apply(seq, result)
        self._active = [s for s in self._active if not (s.finished or s.stalled or s.request.done)]
        self._metrics.tokens_generated(emitted)

    def _apply(self, seq: _Seq, output: StepOutput) -> int:
        """Add one token to a sequence; returns how many tokens joined the output (0/1)."""
        live, request = seq.live, seq.request
        spec = live.spec
        step = len(live.generated) + 1
        fault = self._faults.at(step)
        if fault is Fault.ERROR:
            message = f"injected fault: generation failed at step {step} ({fault.value})"
            self._fail(request, message, "INTERNAL")
            return 0
        if fault is Fault.STALL:
            logger.info(
                "request id=%r stalls at step %d (%s)", request.request_id, step, fault.value
            )
            seq.stalled = True
            self._stalled += 1
            return 0
        token = int(output.token_id)
        if spec.end_id is not None and token == spec.end_id:
            self._finish(seq, final_sent=False)  # end_id is never part of the output
            return 0
        live.generated.append(token)
        log_probs: list[float] = []
        if output.log_prob is not None:
            live.log_probs.append(output.log_prob)
            seq.cum_log_prob += output.log_prob
            log_probs = [output.log_prob]
        finished = (
            len(live.generated) >= spec.max_new_tokens
            or matched_stop_word(live, spec.stop_words) is not None
        )
        if request.streaming:
            final = finished and request.remaining == 1
            tensors = response_tensors(spec, [token], log_probs, seq.cum_log_prob)
            if fault is Fault.MALFORMED:
                tensors = malformed(tensors)
            self._send(request, tensors, final=final)
        if finished and not request.done:
            self._finish(seq, final_sent=request.streaming)
        return 1

    def _finish(self, seq: _Seq, *, final_sent: bool) -> None:
        """A sequence ended normally (end_id, stop word, length)."""
        request = seq.request
        seq.finished = True
        request.remaining -= 1
        last = request.remaining == 0
        if seq.admitted:
            self.backend.release(seq.live)
            seq.admitted = False
        if not request.streaming:
            self._send(request, self._full_response(seq), final=last)
        elif not final_sent:
            # Ended on end_id, which is not output: a response with no new tokens
            # tells the client which sequence ended (FINAL when it is the last one).
            self._send(request, self._empty_response(seq), final=last)
        if last:
            self._close(request)

    def _full_response(self, seq: _Seq) -> dict:
        spec = seq.live.spec
        generated = seq.live.generated
        tokens = generated if spec.exclude_input_in_output else list(spec.prompt) + generated
        return response_tensors(spec, tokens, seq.live.log_probs, seq.cum_log_prob)

    def _empty_response(self, seq: _Seq) -> dict:
        return response_tensors(seq.live.spec, [], [], seq.cum_log_prob)

    def _send(self, request: _Request, tensors: dict, *, final: bool) -> None:
        if request.done:
            return
        sent = safe_send(request.sink, tensors, final=final, request_id=request.request_id)
        # Final, or nothing more can reach this client: free the request's sequences.
        if final or not sent:
            self._close(request)

    def _fail(self, request: _Request, message: str, code: str) -> None:
        if request.done:
            return
        self._close(request)
        safe_error(request.sink, message, code)

    def _close(self, request: _Request) -> None:
        """Forget a request and free its sequences (responses are the caller's job)."""
        request.done = True
        for seq in request.seqs:
            if seq.stalled:
                seq.stalled = False
                self._stalled -= 1
            if seq.admitted:
                try:
                    self.backend.release(seq.live)
                except Exception:
                    logger.exception("backend release failed")
                seq.admitted = False
        # Each _Seq points back at its request, so request and sequences form a cycle,
        # which only the cyclic garbage collector frees: every ended request, with its
        # sink and Triton's request and response sender, waited for a full collection
        # (measured in the stub at 64 streams: up to 10 000 dead objects at a time, RSS
        # 60 MiB instead of 45). Dropping the list frees them by reference counting as
        # soon as the last queued response has left.
        request.seqs = []
        self._requests.pop(request.key, None)

    def _drain_inbox_at_shutdown(self) -> None:
        with self._cond:
            commands = list(self._inbox)
            self._inbox.clear()
        for command in commands:
            safe_error(command.sink, "the engine is shutting down", "UNAVAILABLE")
