"""Per-request records, the measurement window and the numbers reported from them.

Definitions (docs/performance.md repeats them for readers of the results):
- TTFT: from sending the request to the first response that carries at least one token.
- ITL (inter-token latency) of one request: (time of its last token-carrying response -
  time of its first) / (tokens - 1), as genai-perf and AIPerf define it; requests with
  fewer than 2 tokens have none. Percentiles are over requests.
- Stall: the largest gap between two consecutive token-carrying responses of one
  request; percentiles over requests show streams that go silent even when the mean
  (ITL) looks fine.
- End-to-end latency: from sending the request to its FINAL response.
- Throughput counts what happened inside the window: requests whose FINAL arrived in
  it (without error), tokens and responses received in it, divided by its length.
  Latency statistics use the requests that both started and ended inside the window,
  so the warm-up burst and the requests cut off at the end are left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class RequestRecord:
    """One request as the client saw it; times in seconds on one monotonic clock."""

    start_s: float
    end_s: float
    tokens: int
    responses: int
    first_token_s: float | None = None
    last_token_s: float | None = None
    max_gap_s: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token_s is None else self.first_token_s - self.start_s

    @property
    def e2e_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def itl_s(self) -> float | None:
        if self.tokens < 2 or self.first_token_s is None or self.last_token_s is None:
            return None
        return (self.last_token_s - self.first_token_s) / (self.tokens - 1)


class Window:
    """The measurement window [start, end); closed (nothing inside) until `open`."""

    def __init__(self) -> None:
        self.start = math.inf
        self.end = math.inf

    def open(self, start: float, duration_s: float) -> None:
        self.start = start
        self.end = start + duration_s

    @property
    def is_open(self) -> bool:
        return self.start != math.inf

    def __contains__(self, when: float) -> bool:
        return self.start <= when < self.end


class Meter:
    """Live counts of what arrives inside the window, updated once per response."""

    def __init__(self, window: Window) -> None:
        self.window = window
        self.responses = 0
        self.tokens = 0

    def on_response(self, when: float, tokens: int) -> None:
        window = self.window
        if window.start <= when < window.end:
            self.responses += 1
            self.tokens += tokens


@dataclass(frozen=True)
class Distribution:
    """Milliseconds; `count` values went into it."""

    count: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


def distribution(values_s: Iterable[float | None]) -> Distribution | None:
    """Percentiles (linear interpolation, numpy's default) of the values that are set."""
    values = np.array([v for v in values_s if v is not None], dtype=np.float64) * 1000.0
    if values.size == 0:
        return None
    p50, p90, p99 = np.percentile(values, PERCENTILES)
    return Distribution(
        count=int(values.size),
        mean_ms=float(values.mean()),
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        max_ms=float(values.max()),
    )


@dataclass(frozen=True)
class ClientCost:
    """The load generator's own CPU (all its threads) while the window was open."""

    cpu_s: float
    responses: int

    @property
    def us_per_response(self) -> float | None:
        return None if self.responses == 0 else self.cpu_s / self.responses * 1e6


@dataclass(frozen=True)
class Summary:
    window_s: float
    requests_completed: int
    requests_per_s: float
    output_tokens: int
    output_tokens_per_s: float
    responses: int
    responses_per_s: float
    errors: int
    error_samples: tuple[str, ...]
    latency_requests: int  # requests in the latency statistics (started and ended inside)
    # Tokens of each of those requests: a fixed output length should give min == max.
    tokens_per_request_min: int | None
    tokens_per_request_mean: float | None
    tokens_per_request_max: int | None
    ttft: Distribution | None
    itl: Distribution | None
    e2e: Distribution | None
    stall: Distribution | None
    client_cpu_s: float
    client_cpu_us_per_response: float | None
    unfinished: int = 0  # still in flight when the window closed (cancelled, not counted)

    @property
    def client_cpu_cores(self) -> float:
        """The load generator's CPU as a share of one core (1.0: one core busy)."""
        return self.client_cpu_s / self.window_s

    def to_json(self) -> dict:
        return {**asdict(self), "client_cpu_cores": self.client_cpu_cores}


def timed_requests(records: Sequence[RequestRecord], window: Window) -> list[RequestRecord]:
    """The requests in the latency statistics: without error, started and ended inside."""
    return [r for r in records if r.ok and r.start_s >= window.start and r.end_s in window]


def summarize(
    records: Sequence[RequestRecord],
    window: Window,
    meter: Meter,
    cost: ClientCost,
    *,
    unfinished: int = 0,
    max_error_samples: int = 5,
) -> Summary:
    if not window.is_open:
        raise ValueError("the measurement window never opened (warm-up did not end)")
    length = window.end - window.start
    ended_inside = [r for r in records if r.end_s in window]
    completed = [r for r in ended_inside if r.ok]
    failed = [r for r in ended_inside if not r.ok]
    timed = timed_requests(completed, window)
    counts = [r.tokens for r in timed]
    samples: list[str] = []
    for record in failed:
        if record.error not in samples and len(samples) < max_error_samples:
            samples.append(str(record.error))
    return Summary(
        window_s=length,
        requests_completed=len(completed),
        requests_per_s=len(completed) / length,
        output_tokens=meter.tokens,
        output_tokens_per_s=meter.tokens / length,
        responses=meter.responses,
        responses_per_s=meter.responses / length,
        errors=len(failed),
        error_samples=tuple(samples),
        latency_requests=len(timed),
        tokens_per_request_min=min(counts) if counts else None,
        tokens_per_request_mean=sum(counts) / len(counts) if counts else None,
        tokens_per_request_max=max(counts) if counts else None,
        ttft=distribution(r.ttft_s for r in timed),
        itl=distribution(r.itl_s for r in timed),
        e2e=distribution(r.e2e_s for r in timed),
        stall=distribution(r.max_gap_s if r.tokens >= 2 else None for r in timed),
        client_cpu_s=cost.cpu_s,
        client_cpu_us_per_response=cost.us_per_response,
        unfinished=unfinished,
    )
