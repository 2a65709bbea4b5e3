"""`BlsServer`: how one model instance serves its requests, from arrival to FINAL.

    submit: validate + encode ─► admission (a slot, or wait) ─► engine.start
                                                                   │ engine responses
    client ◄─ sender threads ◄─ ClientStream ◄─ generation loop ◄──┘
    cancellation watcher (every period) ─► withdraw a waiting request / cancel an active one
    stall watch (on the loop, bls.stall) ─► give up an engine request silent for too long

Threads: the caller's (Triton's execute: validation and encoding happen there, so a bad
request is answered at once, before it waits for anything); one generation loop
(`bls.loop`), which also reads the engine's stream; `response_sender_threads` senders
(`bls.outbox`: client sends are round trips); one cancellation watcher. Nothing scales
with the number of requests in flight.

Free of pb_utils: the engine and the clients come in as `EngineClient` and
`ResponseSink`, so every path is unit-tested without Triton.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import numpy as np

from bls.admission import Admission, Ticket
from bls.cancellation import CancellationWatcher
from bls.engine_io import EngineResponse, engine_inputs, engine_outputs, new_engine_request_id
from bls.generation import Generation
from bls.limits import ServingOptions
from bls.loop import ActiveRequest, GenerationLoop
from bls.metrics import (
    CANCELLED_WAITING,
    INTERNAL,
    INVALID_REQUEST,
    UNAVAILABLE,
    RequestRecord,
    request_finish_reason,
)
from bls.outbox import ClientStream, SenderPool
from bls.request_types import ClientRequest
from bls.responses import ResponseSink, response_tensors
from bls.stall import StallWatch
from bls.validation import RequestValidator
from postprocessing.detokenizer import IncrementalDetokenizer
from serving_common.errors import RequestError

logger = logging.getLogger(__name__)


class EngineClient(Protocol):
    """The engine model (`tensorrt_llm`), push-based: `start` and `stop` from any thread;
    the callbacks are called on the generation loop's thread."""

    def start(
        self,
        request_id: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str],
        on_response: Callable[[EngineResponse], None],
        on_end: Callable[[BaseException | None], None],
    ) -> None: ...

    def stop(self, request_id: str) -> None:
        """Ask the engine to end the request with this id (stop=true)."""
        ...

    def cancel(self, request_id: str) -> None:
        """On the loop thread: give the request up without waiting for the engine to end
        it (its stream is cancelled); `on_end` still follows."""
        ...

    def close(self) -> None: ...


EngineFactory = Callable[[GenerationLoop], EngineClient]


class Reporter(Protocol):
    """Takes one record per finished request (bls.metrics.RequestReporter)."""

    def record(self, record: RequestRecord) -> None: ...


class BlsServer:
    def __init__(
        self,
        *,
        validator: RequestValidator,
        engine: EngineFactory,
        new_detokenizer: Callable[[ClientRequest], IncrementalDetokenizer],
        options: ServingOptions | None = None,
        reporter: Reporter | None = None,
        log_text: bool = False,
    ) -> None:
        options = options or ServingOptions()
        self.reporter = reporter
        self.log_text = log_text  # keep prompt and output text for the request log
        self.validator = validator
        self.new_detokenizer = new_detokenizer
        self.options = options
        self.loop = GenerationLoop(self._stop_engine, event_loop_kind=options.event_loop)
        self.engine = engine(self.loop)
        self.senders = SenderPool(options.response_sender_threads)
        self.admission = Admission(options.max_concurrent_requests, start=self._start)
        self.watcher = CancellationWatcher(
            options.cancellation_check_period_ms / 1000, on_cancelled=self._on_cancelled
        )
        self.stalls: StallWatch | None = None
        if options.engine_stall_timeout_s:
            self.stalls = StallWatch(options.engine_stall_timeout_s, self._engine_stalled)
            self.loop.call_soon(self.stalls.start, self.loop.event_loop)
        self._closing = False
        self.loop.start()
        self.watcher.start()

    # -- the caller's thread -------------------------------------------------------------
    def submit(
        self,
        inputs: Mapping[str, np.ndarray],
        parameters: Mapping[str, object],
        sink: ResponseSink,
        request_id: str = "",
    ) -> None:
        """Serve one request; returns at once. The client always gets FINAL."""
        received_s = time.monotonic()
        if self._closing:
            self._refuse(sink, request_id, received_s, "the model is shutting down", UNAVAILABLE)
            return
        try:
            validated = self.validator.validate(inputs, parameters)
        except RequestError as error:
            sink.send_error(str(error), error.code)
            self._report_refusal(request_id, received_s, str(error), INVALID_REQUEST)
            return
        except Exception:
            # FINAL first: a failure while logging must not leave the client waiting.
            message = "tensorrt_llm_bls: internal error while preparing the request"
            sink.send_error(message, "INTERNAL")
            logger.exception("tensorrt_llm_bls: preparing a request failed")
            self._report_refusal(request_id, received_s, message, INTERNAL)
            return
        ticket = Ticket(validated, sink, request_id, received_s)
        self.watcher.watch(ticket)
        self.admission.submit(ticket)

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop taking requests, end the ones in flight, stop the threads."""
        self._closing = True
        for ticket in self.admission.take_waiting():
            self.watcher.unwatch(ticket)
            self._refuse(
                ticket.sink,
                ticket.request_id,
                ticket.received_s,
                "the model is shutting down",
                UNAVAILABLE,
            )
        self.watcher.close()
        self.engine.close()  # requests in flight end with an error
        self.loop.close(timeout_s)
        self.senders.close(timeout_s)

    # -- admission (any thread) ----------------------------------------------------------
    def _start(self, ticket: Ticket) -> None:
        """`ticket` has its slot: start its engine request."""
        if ticket.cancelled:  # the client left while it waited
            self._withdrawn(ticket, "before it started")
            self.admission.release()
            return
        validated = ticket.validated
        request = validated.request
        generation = Generation(validated, self.new_detokenizer)

        wanted = ticket.sink.requested_outputs

        def render(deltas):
            return response_tensors(deltas, request, generation.prompt_lengths, wanted)

        active = ActiveRequest(
            engine_request_id=new_engine_request_id(),
            generation=generation,
            client=ClientStream(ticket.sink, render, request.stream, self.senders),
            output_text=[] if self.log_text else None,
        )
        ticket.active = active
        if ticket.cancelled:  # the watcher saw it before `active` was set
            self.loop.call_soon(self.loop.on_client_cancelled, active)
        if self.stalls is not None:  # on the loop, before the engine call begins there
            self.loop.call_soon(self.stalls.watch, active)
        loop = self.loop
        self.engine.start(
            active.engine_request_id,
            engine_inputs(request, validated.prompts),
            engine_outputs(request, validated.prompts),
            lambda response: loop.on_engine_response(active, response),
            lambda error: self._engine_ended(ticket, error),
        )

    def _engine_ended(self, ticket: Ticket, error: BaseException | None) -> None:
        """On the loop: the engine is done with the request; its slot is free."""
        try:
            self.loop.on_engine_end(ticket.active, error)
        finally:
            if self.stalls is not None:
                self.stalls.forget(ticket.active)
            self.watcher.unwatch(ticket)
            self.admission.release()
            self._report_finished(ticket)

    def _on_cancelled(self, ticket: Ticket) -> None:
        """From the watcher: the client of `ticket` cancelled or went away."""
        if self.admission.withdraw(ticket):
            self._withdrawn(ticket, "while waiting for a slot")
        elif ticket.active is not None:
            self.loop.call_soon(self.loop.on_client_cancelled, ticket.active)
        # Else it is being started: _start sees `ticket.cancelled`.

    def _withdrawn(self, ticket: Ticket, when: str) -> None:
        self.watcher.unwatch(ticket)
        message = f"tensorrt_llm_bls: the request was cancelled {when}"
        ticket.sink.send_error(message, "CANCELLED")
        self._report_refusal(
            ticket.request_id, ticket.received_s, message, CANCELLED_WAITING, "cancelled"
        )

    # -- metrics and the request log -----------------------------------------------------
    def _refuse(
        self, sink: ResponseSink, request_id: str, received_s: float, why: str, kind: str
    ) -> None:
        message = f"tensorrt_llm_bls: {why}"
        sink.send_error(message, "UNAVAILABLE")
        self._report_refusal(request_id, received_s, message, kind)

    def _report_refusal(
        self,
        request_id: str,
        received_s: float,
        error: str,
        kind: str,
        finish_reason: str = "error",
    ) -> None:
        if self.reporter is None:
            return
        self.reporter.record(
            RequestRecord(
                request_id=request_id,
                engine_request_id="",
                received_s=received_s,
                started_s=None,
                first_token_s=None,
                last_token_s=None,
                finished_s=time.monotonic(),
                prompt_tokens=0,
                output_tokens=0,
                finish_reason=finish_reason,
                error_kind=kind,
                error=error,
            )
        )

    def _report_finished(self, ticket: Ticket) -> None:
        active = ticket.active
        if self.reporter is None or active is None:
            return
        sequences = active.generation.sequences.values()
        reasons = [sequence.finish_reason for sequence in sequences]
        if active.error_kind is not None:
            reasons.append("error")
        request = ticket.validated.request
        self.reporter.record(
            RequestRecord(
                request_id=ticket.request_id,
                engine_request_id=active.engine_request_id,
                received_s=ticket.received_s,
                started_s=ticket.started_s,
                first_token_s=active.first_token_s,
                last_token_s=active.last_token_s,
                finished_s=active.answered_s or time.monotonic(),
                prompt_tokens=sum(active.generation.prompt_lengths),
                output_tokens=sum(sequence.num_tokens for sequence in sequences),
                finish_reason=request_finish_reason(reasons),
                error_kind=active.error_kind,
                error=active.error,
                prompt_text=_prompt_text(request) if self.log_text else None,
                output_text=(
                    "".join(active.output_text) if active.output_text is not None else None
                ),
            )
        )

    # -- engine stops (loop thread) ------------------------------------------------------
    def _engine_stalled(self, active: ActiveRequest) -> None:
        assert self.stalls is not None
        logger.warning(
            "tensorrt_llm_bls: engine request %s sent nothing for %g s; giving it up",
            active.engine_request_id,
            self.stalls.timeout_s,
        )
        self.loop.on_engine_stalled(
            active,
            f"tensorrt_llm: the engine sent nothing for {self.stalls.timeout_s:g} s "
            "(engine_stall_timeout_s); the request was cancelled",
        )
        self.engine.cancel(active.engine_request_id)

    def _stop_engine(self, active: ActiveRequest) -> None:
        try:
            self.engine.stop(active.engine_request_id)
        except Exception:
            # The engine's stream is still read to its end: nothing is left behind.
            logger.exception(
                "tensorrt_llm_bls: stopping engine request %s failed", active.engine_request_id
            )


def _prompt_text(request: ClientRequest) -> str:
    texts = []
    for prompt in request.prompts:
        texts.append(getattr(prompt, "text", None) or json.dumps(prompt.as_dicts()))
    return "\n".join(texts)
