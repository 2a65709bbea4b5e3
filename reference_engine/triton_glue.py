"""The Triton side of the engine, with `pb_utils` passed in (it only exists inside the
Python-backend stub, so nothing here imports it; tests pass a stand-in).

`TritonEngineModel` is what `triton_model/1/model.py` delegates to.
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from reference_engine.backends import create_backend
from reference_engine.config import EngineConfig, parameters_from_model_config
from reference_engine.contract import (
    SUPPORTED_INPUTS,
    UNSUPPORTED_INPUTS,
    ContractDefaults,
    EngineLimits,
    parse_request,
)
from reference_engine.delivery import ResponseDelivery
from reference_engine.metrics import CANCEL_REASONS
from reference_engine.scheduler import Scheduler
from reference_engine.sink import ResponseSink
from reference_engine.types import GenerationRequest, StopRequest
from serving_common.errors import RequestError
from serving_common.triton_glue import (
    TritonResponseSink,
    install_log_handler,
    read_inputs,
    remove_log_handler,
)

logger = logging.getLogger("reference_engine")

# The packages whose log records go to Triton's log.
LOGGERS = ("reference_engine", "serving_common")
# Every input of the tensor contract: the unsupported ones are read to be refused.
CONTRACT_INPUTS = (*SUPPORTED_INPUTS, *UNSUPPORTED_INPUTS)

BATCH_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]


class TritonMetrics:
    """EngineMetrics as Triton custom metrics (served on the metrics port)."""

    def __init__(self, pb_utils: Any, model_name: str) -> None:
        family = pb_utils.MetricFamily
        labels = {"model": model_name}
        # Families must outlive their metrics: keep references to both.
        self._families = {
            "requests": family(
                name="reference_engine_requests_total",
                description="Generation requests received by the reference engine",
                kind=family.COUNTER,
            ),
            "cancelled": family(
                name="reference_engine_cancelled_total",
                description="Requests ended early by a stop request or a client cancel",
                kind=family.COUNTER,
            ),
            "stops": family(
                name="reference_engine_stop_requests_total",
                description="stop=true requests received (matched: a request was in flight)",
                kind=family.COUNTER,
            ),
            "tokens": family(
                name="reference_engine_generated_tokens_total",
                description="Tokens generated (end_id not counted)",
                kind=family.COUNTER,
            ),
            "active": family(
                name="reference_engine_active_sequences",
                description="Sequences being generated now",
                kind=family.GAUGE,
            ),
            "batch": family(
                name="reference_engine_batch_size",
                description="Sequences advanced per engine iteration",
                kind=family.HISTOGRAM,
            ),
        }
        self._requests = self._families["requests"].Metric(labels=labels)
        self._cancelled = {
            reason: self._families["cancelled"].Metric(labels={**labels, "reason": reason})
            for reason in CANCEL_REASONS
        }
        self._stops = {
            matched: self._families["stops"].Metric(
                labels={**labels, "matched": "true" if matched else "false"}
            )
            for matched in (True, False)
        }
        self._tokens = self._families["tokens"].Metric(labels=labels)
        self._active = self._families["active"].Metric(labels=labels)
        self._batch = self._families["batch"].Metric(labels=labels, buckets=BATCH_SIZE_BUCKETS)

    def request_received(self) -> None:
        self._requests.increment(1)

    def cancelled(self, reason: str) -> None:
        self._cancelled[reason].increment(1)

    def stop_request_received(self, matched: bool) -> None:
        self._stops[matched].increment(1)

    def tokens_generated(self, count: int) -> None:
        if count:
            self._tokens.increment(count)

    def set_active_sequences(self, count: int) -> None:
        self._active.set(count)

    def observe_batch_size(self, size: int) -> None:
        self._batch.observe(size)


class TritonEngineModel:
    """initialize / execute / finalize of the `tensorrt_llm` stand-in."""

    def __init__(self, pb_utils: Any, args: Mapping[str, str]) -> None:
        self._pb = pb_utils
        self._handler = install_log_handler(pb_utils, *LOGGERS)
        model_config = decoupled_model_config(pb_utils, args, "the tensorrt_llm stand-in")
        self.config = EngineConfig.from_parameters(parameters_from_model_config(model_config))
        self.backend = create_backend(self.config)
        max_seq_len = self.config.max_seq_len or self.backend.default_max_seq_len
        self.limits = EngineLimits(max_seq_len=max_seq_len, vocab_size=self.backend.vocab_size)
        self.defaults = ContractDefaults(
            exclude_input_in_output=self.config.exclude_input_in_output
        )
        self._delivery = ResponseDelivery(lanes=self.config.response_sender_threads)
        model_name = args.get("model_name", "tensorrt_llm")
        self.scheduler = Scheduler(
            self.backend,
            max_active_sequences=self.config.max_active_sequences,
            random_seed=self.config.random_seed,
            cancellation_check_period_ms=self.config.cancellation_check_period_ms,
            metrics=TritonMetrics(pb_utils, model_name),
            faults=self.config.faults,
            # At most one step's responses waiting to be sent when a step starts.
            before_step=self._delivery.wait_for_backlog,
        )
        self.scheduler.start()
        logger.info(
            "ready: backend=%s max_seq_len=%d vocab=%d max_active_sequences=%d",
            self.config.generation_backend,
            max_seq_len,
            self.backend.vocab_size,
            self.config.max_active_sequences,
        )
        if self.config.faults.enabled:
            logger.warning("fault injection is on (test only): %s", self.config.faults)

    def execute(self, requests: list) -> None:
        """Hand each request to the scheduler and return at once (decoupled)."""
        for request in requests:
            try:
                self._accept(request)
            except Exception:  # never raise from execute: the stream would hang
                logger.exception("could not accept a request")
        return None

    def _accept(self, request: Any) -> None:
        accept_request(
            self._pb,
            request,
            self.limits,
            self.defaults,
            self.scheduler,
            wrap_sink=self._delivery.wrap,
        )

    def finalize(self) -> None:
        self.scheduler.shutdown()
        self._delivery.close()
        remove_log_handler(self._handler, *LOGGERS)
        # Whatever still holds a Triton request or response sender (finished sequences in
        # reference cycles, queued sinks) must be freed now, while the stub can still
        # release them: freed later, at interpreter exit, they crashed the stub (a null
        # read in triton_python_backend_stub, once per shutdown after any traffic).
        self.scheduler = None
        self._delivery = None
        gc.collect()


class RequestTarget(Protocol):
    """What takes parsed requests: the reference engine's scheduler, the LLM-API driver."""

    def submit(self, request: GenerationRequest, sink: ResponseSink) -> None: ...

    def stop(self, request_id: str, sink: ResponseSink) -> None: ...


def accept_request(
    pb_utils: Any,
    request: Any,
    limits: EngineLimits,
    defaults: ContractDefaults,
    target: RequestTarget,
    wrap_sink: Callable[[ResponseSink], ResponseSink] = lambda sink: sink,
) -> None:
    """Parse one Triton request and hand it to `target`; a bad one gets its error (FINAL).

    A refusal is sent here, on the execute thread; `target` gets the sink through
    `wrap_sink` (the reference engine queues its sends for sender threads).
    """
    sink = TritonResponseSink(pb_utils, request)
    try:
        parsed = parse_request(
            read_inputs(pb_utils, request, CONTRACT_INPUTS), request.request_id(), limits, defaults
        )
    except RequestError as exc:
        sink.send_error(str(exc), exc.code)
        return
    except Exception as exc:
        logger.exception("could not read a request")
        sink.send_error(f"could not read the request: {exc}", "INTERNAL")
        return
    if isinstance(parsed, StopRequest):
        target.stop(parsed.request_id, wrap_sink(sink))
    else:
        target.submit(parsed, wrap_sink(sink))


def decoupled_model_config(pb_utils: Any, args: Mapping[str, str], what: str) -> dict:
    """The model config from `initialize` args; refuses a model that is not decoupled."""
    model_config = json.loads(args["model_config"])
    if not pb_utils.using_decoupled_model_transaction_policy(model_config):
        raise ValueError(
            f"{what} must be decoupled (model_transaction_policy {{ decoupled: true }})"
        )
    return model_config
