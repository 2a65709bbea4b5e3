"""What operators watch: Prometheus metrics and one log line per finished request.

In the Python backend every metric update and every log line is a synchronous round trip
to the server process. Made per token they would cost what the generation loop saves;
made per request on the loop they would still hold it up. So the serving threads only
hand a `RequestRecord` (typed, a few floats) to `RequestReporter`, and its own thread
turns records into histogram observations, counter increments (summed, once a period)
and log lines. Histograms are observed once per request: inter-token latency is the
request's mean gap, (last token - first token) / (output tokens - 1), as genai-perf and
AIPerf define it.

Names follow Prometheus conventions: base units in the name, `_total` on counters. Each
series carries the label `model` (the BLS model's name). The bucket edges below are for
LLM serving: milliseconds to a minute for latencies, 1 to 128k for token counts.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

logger = logging.getLogger(__name__)

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: str
    description: str
    buckets: tuple[float, ...] = ()


TTFT = MetricSpec(
    "llm_bls_time_to_first_token_seconds",
    HISTOGRAM,
    "Time from a request's arrival to its first generated token being sent",
    (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 60),
)
_ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1)  # fmt: skip
ITL = MetricSpec(
    "llm_bls_inter_token_latency_seconds",
    HISTOGRAM,
    "A request's mean time between output tokens: (last - first) / (tokens - 1)",
    _ITL_BUCKETS,
)
E2E = MetricSpec(
    "llm_bls_request_duration_seconds",
    HISTOGRAM,
    "Time from a request's arrival to its last response",
    (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
)
QUEUE = MetricSpec(
    "llm_bls_queue_time_seconds",
    HISTOGRAM,
    "Time a request waited for a slot (max_concurrent_requests) before its engine call",
    (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
PROMPT_TOKENS = MetricSpec(
    "llm_bls_prompt_tokens",
    HISTOGRAM,
    "Prompt tokens per request (all its prompts)",
    (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072),
)
OUTPUT_TOKENS = MetricSpec(
    "llm_bls_output_tokens",
    HISTOGRAM,
    "Output tokens per request (all its sequences)",
    (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384),
)
REQUESTS = MetricSpec(
    "llm_bls_requests_total",
    COUNTER,
    "Requests answered, by finish_reason (stop, length, cancelled, error)",
)
INPUT_TOKENS_TOTAL = MetricSpec(
    "llm_bls_input_tokens_total", COUNTER, "Prompt tokens of the requests answered"
)
OUTPUT_TOKENS_TOTAL = MetricSpec(
    "llm_bls_output_tokens_total", COUNTER, "Tokens generated for the requests answered"
)
ERRORS = MetricSpec(
    "llm_bls_errors_total",
    COUNTER,
    "Requests answered with an error, by kind: invalid_request, engine, cancelled_waiting, "
    "unavailable, internal",
)
ACTIVE = MetricSpec(
    "llm_bls_active_requests", GAUGE, "Requests holding a slot: their engine call is running"
)
WAITING = MetricSpec("llm_bls_waiting_requests", GAUGE, "Requests waiting for a slot")
METRICS = (
    TTFT,
    ITL,
    E2E,
    QUEUE,
    PROMPT_TOKENS,
    OUTPUT_TOKENS,
    REQUESTS,
    INPUT_TOKENS_TOTAL,
    OUTPUT_TOKENS_TOTAL,
    ERRORS,
    ACTIVE,
    WAITING,
)

# Error kinds: which part of the pipeline said no.
INVALID_REQUEST = "invalid_request"  # validation: INVALID_ARG or UNSUPPORTED
ENGINE = "engine"  # the engine answered with an error, or its stream broke
CANCELLED_WAITING = "cancelled_waiting"  # the client left before the request started
UNAVAILABLE = "unavailable"  # the model is shutting down
INTERNAL = "internal"  # a bug in the BLS

# The finish reason of a request is the most telling of its sequences'.
_FINISH_ORDER = ("error", "cancelled", "length", "stop")


def request_finish_reason(reasons: list[str]) -> str:
    for reason in _FINISH_ORDER:
        if reason in reasons:
            return reason
    return "stop"


@dataclass(frozen=True)
class RequestRecord:
    """One finished request, as metrics and the request log see it (times: monotonic s)."""

    request_id: str  # the client's id (may be empty)
    engine_request_id: str
    received_s: float
    started_s: float | None  # got its slot (None: never started)
    first_token_s: float | None
    last_token_s: float | None
    finished_s: float
    prompt_tokens: int
    output_tokens: int
    finish_reason: str  # stop, length, cancelled, error
    error_kind: str | None = None
    error: str | None = None
    prompt_text: str | None = None  # only with request_log_text
    output_text: str | None = None

    def observations(self) -> list[tuple[MetricSpec, float]]:
        found = [(E2E, self.finished_s - self.received_s)]
        if self.started_s is not None:
            found.append((QUEUE, self.started_s - self.received_s))
            found.append((PROMPT_TOKENS, float(self.prompt_tokens)))
            found.append((OUTPUT_TOKENS, float(self.output_tokens)))
        if self.first_token_s is not None:
            found.append((TTFT, self.first_token_s - self.received_s))
            if self.last_token_s is not None and self.output_tokens > 1:
                gap = (self.last_token_s - self.first_token_s) / (self.output_tokens - 1)
                found.append((ITL, gap))
        return found

    def log_line(self) -> str:
        def ms(start: float | None, end: float | None) -> float | None:
            return None if start is None or end is None else round((end - start) * 1000, 1)

        fields: dict[str, object] = {
            "id": self.request_id,
            "engine_id": self.engine_request_id,
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "queue_ms": ms(self.received_s, self.started_s),
            "ttft_ms": ms(self.received_s, self.first_token_s),
            "duration_ms": ms(self.received_s, self.finished_s),
        }
        if self.error_kind is not None:
            fields["error_kind"] = self.error_kind
            fields["error"] = self.error
        if self.prompt_text is not None:
            fields["prompt"] = self.prompt_text
        if self.output_text is not None:
            fields["output"] = self.output_text
        return "tensorrt_llm_bls request " + json.dumps(fields, ensure_ascii=False)


class MetricsExporter(Protocol):
    """Where metric updates go (Triton's metrics in production; see bls/triton_metrics.py)."""

    def increment(self, spec: MetricSpec, labels: Mapping[str, str], value: float) -> None: ...

    def set(self, spec: MetricSpec, labels: Mapping[str, str], value: float) -> None: ...

    def observe(self, spec: MetricSpec, labels: Mapping[str, str], value: float) -> None: ...


LOG_LEVELS = ("off", "info", "verbose")


class RequestReporter:
    """Takes records from any thread; its own thread exports and logs them."""

    def __init__(
        self,
        exporter: MetricsExporter,
        labels: Mapping[str, str],
        gauges: Callable[[], tuple[int, int]],
        log: Callable[[str], None] | None,
        period_s: float = 1.0,
    ) -> None:
        self._exporter = exporter
        self._labels = dict(labels)
        self._gauges = gauges  # (active, waiting)
        self._log = log
        self._period_s = period_s
        self._records: queue.SimpleQueue[RequestRecord | None] = queue.SimpleQueue()
        self._counts: Counter[tuple[MetricSpec, tuple[tuple[str, str], ...]]] = Counter()
        self._thread = threading.Thread(target=self._run, name="bls-metrics", daemon=True)
        self._thread.start()

    def record(self, record: RequestRecord) -> None:
        self._records.put(record)

    def close(self) -> None:
        self._records.put(None)
        self._thread.join(10.0)

    def flush(self) -> None:
        """Export what is counted so far (the reporter's thread calls it every period)."""
        # The request counter goes last: whoever sees a request counted (a dashboard, a
        # test waiting for it) also sees its tokens and errors.
        counts = sorted(self._counts.items(), key=lambda item: item[0][0] is REQUESTS)
        for (spec, labels), value in counts:
            if value:
                self._exporter.increment(spec, dict(labels), value)
        self._counts.clear()
        active, waiting = self._gauges()
        self._exporter.set(ACTIVE, self._labels, active)
        self._exporter.set(WAITING, self._labels, waiting)

    def _run(self) -> None:
        while True:
            try:
                record = self._records.get(timeout=self._period_s)
            except queue.Empty:
                record = False  # type: ignore[assignment]
            try:
                if record is None:
                    self.flush()
                    return
                if record:
                    self._take(record)
                    # Everything that piled up, then one flush of the counters.
                    while True:
                        try:
                            more = self._records.get_nowait()
                        except queue.Empty:
                            break
                        if more is None:
                            self.flush()
                            return
                        self._take(more)
                self.flush()
            except Exception:  # metrics must never stop the reporter
                logger.exception("tensorrt_llm_bls: exporting metrics failed")

    def _take(self, record: RequestRecord) -> None:
        labels = self._labels
        for spec, value in record.observations():
            self._exporter.observe(spec, labels, value)
        self._count(REQUESTS, {"finish_reason": record.finish_reason}, 1)
        self._count(INPUT_TOKENS_TOTAL, {}, record.prompt_tokens)
        self._count(OUTPUT_TOKENS_TOTAL, {}, record.output_tokens)
        if record.error_kind is not None:
            self._count(ERRORS, {"kind": record.error_kind}, 1)
        if self._log is not None:
            self._log(record.log_line())

    def _count(self, spec: MetricSpec, extra: Mapping[str, str], value: float) -> None:
        key = (spec, tuple(sorted({**self._labels, **extra}.items())))
        self._counts[key] += value
