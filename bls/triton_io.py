"""pb_utils adapters for the BLS: the client as a response sink, logging and metrics to Triton.

Only imported inside the Triton Python stub (by model.py), which passes in the
`triton_python_backend_utils` module: its classes exist only once the stub runs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from types import ModuleType

import numpy as np

from bls.metrics import COUNTER, GAUGE, HISTOGRAM, MetricSpec

logger = logging.getLogger(__name__)


class TritonResponseSink:
    """A decoupled request's response sender; a client that went away reads as cancelled.

    Thread-safe, and never asks whether the request was cancelled once FINAL is on its
    way: Triton 2.51 deletes the response factory with the FINAL response, and
    `is_cancelled()` on it afterwards crashes the server (seen: SIGSEGV in
    TRITONBACKEND_ResponseFactoryIsCancelled). The lock keeps a check and the FINAL
    send from overlapping.
    """

    def __init__(self, pb_utils: ModuleType, request) -> None:
        self._pb = pb_utils
        self._request = request
        self._sender = request.get_response_sender()
        # Triton passes on only the outputs a client asked for (all when it named none).
        self.requested_outputs = frozenset(request.requested_output_names() or ()) or None
        self._lock = threading.Lock()
        self._final = False  # FINAL sent (or being sent)
        self._lost = False

    def send(self, outputs: Mapping[str, np.ndarray] | None, final: bool) -> None:
        pb = self._pb
        flags = pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL if final else 0
        if final:
            self._mark_final()
        try:
            if outputs is None:
                self._sender.send(flags=flags)
            else:
                tensors = [pb.Tensor(name, value) for name, value in outputs.items()]
                self._sender.send(pb.InferenceResponse(output_tensors=tensors), flags=flags)
        except Exception as error:  # the client is gone; the caller sees is_cancelled()
            self._lost = True
            logger.warning("could not send a response: %s", error)

    def send_error(self, message: str, code: str) -> None:
        pb = self._pb
        error = pb.TritonError(message, getattr(pb.TritonError, code, pb.TritonError.INTERNAL))
        self._mark_final()
        try:
            self._sender.send(
                pb.InferenceResponse(output_tensors=[], error=error),
                flags=pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
            )
        except Exception as send_error:
            self._lost = True
            logger.warning("could not send an error response: %s", send_error)

    def is_cancelled(self) -> bool:
        with self._lock:
            if self._final:
                return self._lost
            return self._lost or bool(self._sender.is_cancelled())

    def _mark_final(self) -> None:
        with self._lock:  # waits for a cancellation check in progress
            self._final = True


class TritonLogHandler(logging.Handler):
    """Routes Python logging to Triton's log (pb_utils.Logger)."""

    def __init__(self, pb_utils: ModuleType) -> None:
        super().__init__()
        self._logger = pb_utils.Logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            if record.levelno >= logging.ERROR:
                self._logger.log_error(message)
            elif record.levelno >= logging.WARNING:
                self._logger.log_warn(message)
            else:
                self._logger.log_info(message)
        except Exception:  # logging must never break the request that logs
            self.handleError(record)


class TritonMetricsExporter:
    """bls.metrics updates as Triton custom metrics (served on the metrics port)."""

    def __init__(self, pb_utils: ModuleType, specs: Iterable[MetricSpec]) -> None:
        family = pb_utils.MetricFamily
        kinds = {COUNTER: family.COUNTER, GAUGE: family.GAUGE, HISTOGRAM: family.HISTOGRAM}
        # Families must outlive their metrics: both are kept.
        self._families = {
            spec: family(name=spec.name, description=spec.description, kind=kinds[spec.kind])
            for spec in specs
        }
        self._metrics: dict[tuple[MetricSpec, tuple[tuple[str, str], ...]], object] = {}

    def _metric(self, spec: MetricSpec, labels: Mapping[str, str]):
        key = (spec, tuple(sorted(labels.items())))
        metric = self._metrics.get(key)
        if metric is None:
            if spec.kind == HISTOGRAM:
                metric = self._families[spec].Metric(
                    labels=dict(labels), buckets=list(spec.buckets)
                )
            else:
                metric = self._families[spec].Metric(labels=dict(labels))
            self._metrics[key] = metric
        return metric

    def increment(self, spec: MetricSpec, labels: Mapping[str, str], value: float) -> None:
        self._metric(spec, labels).increment(value)

    def set(self, spec: MetricSpec, labels: Mapping[str, str], value: float) -> None:
        self._metric(spec, labels).set(value)

    def observe(self, spec: MetricSpec, labels: Mapping[str, str], value: float) -> None:
        self._metric(spec, labels).observe(value)
