"""One cell: one model, one load level, warm-up then a measured window, summarised.

A cell opens one gRPC channel, drives it with a load shape (closed or open loop), opens
the measurement window after the warm-up (a time, or a number of completed requests),
stops when the window closes, cancels what is still in flight and summarises.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from benchmarks.load_shapes import LoadOutcome, closed_loop, open_loop
from benchmarks.stats import (
    ClientCost,
    Meter,
    RequestRecord,
    Summary,
    Window,
    summarize,
    timed_requests,
)
from benchmarks.stream_client import StreamSession, open_channel, open_stream
from benchmarks.targets import Target
from benchmarks.workload import Workload

PROGRESS_INTERVAL_S = 0.5


@dataclass(frozen=True)
class LoadSpec:
    """Closed loop with `concurrency` clients, or open loop at `rate_per_s`."""

    concurrency: int | None = None
    rate_per_s: float | None = None
    ramp_up_s: float = 0.0  # closed loop only
    max_in_flight: int = 1024  # open loop only
    seed: int = 0  # open loop arrivals

    def __post_init__(self) -> None:
        if (self.concurrency is None) == (self.rate_per_s is None):
            raise ValueError("give either a concurrency (closed loop) or a rate (open loop)")

    @property
    def label(self) -> str:
        if self.concurrency is not None:
            return f"concurrency {self.concurrency}"
        return f"rate {self.rate_per_s:g}/s"


@dataclass(frozen=True)
class Timing:
    duration_s: float
    warmup_s: float = 0.0
    warmup_requests: int | None = None  # instead of warmup_s: completed requests
    warmup_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        if self.duration_s <= 0:
            raise ValueError(f"duration must be positive, got {self.duration_s}")
        if self.warmup_s < 0:
            raise ValueError(f"warm-up must be >= 0 s, got {self.warmup_s}")
        if self.warmup_requests is not None and self.warmup_requests < 0:
            raise ValueError(f"warm-up requests must be >= 0, got {self.warmup_requests}")


@dataclass
class CellResult:
    model: str
    load: LoadSpec
    summary: Summary
    outcome: LoadOutcome
    # The requests in the latency statistics, for charts; not written to JSON.
    timed: list[RequestRecord] = field(default_factory=list, repr=False)

    def to_json(self) -> dict:
        lags = self.outcome.send_lags_s
        return {
            "model": self.model,
            "load": asdict(self.load),
            **self.summary.to_json(),
            "streams_opened": self.outcome.streams_opened,
            "send_lag_max_ms": max(lags) * 1000 if lags else None,
        }


class WindowHooks:
    """Called when the measurement window opens and closes (e.g. a resource sampler)."""

    def on_open(self) -> None:
        pass

    def on_close(self) -> None:
        pass


class _Progress:
    def __init__(self, label: str, total_s: float, enabled: bool) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=round(total_s, 1),
            desc=label,
            unit="s",
            disable=not enabled,
            leave=True,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s {postfix}",
        )

    def update(self, elapsed_s: float, **postfix: object) -> None:
        self._bar.n = round(min(elapsed_s, self._bar.total), 1)
        self._bar.set_postfix(postfix, refresh=True)

    def close(self) -> None:
        self._bar.close()


async def run_cell(
    url: str,
    target: Target,
    workload: Workload,
    load: LoadSpec,
    timing: Timing,
    *,
    progress: bool = True,
    hooks: WindowHooks | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> CellResult:
    hooks = hooks or WindowHooks()
    window = Window()
    meter = Meter(window)
    records: list[RequestRecord] = []
    stop = asyncio.Event()
    warmed_up = asyncio.Event()
    completed = 0

    def on_record(record: RequestRecord) -> None:
        nonlocal completed
        records.append(record)
        completed += record.ok
        if timing.warmup_requests is not None and completed >= timing.warmup_requests:
            warmed_up.set()

    total_s = timing.duration_s + (timing.warmup_s if timing.warmup_requests is None else 0)
    bar = _Progress(f"{target.model} {load.label}", total_s, progress)
    cpu_start = cpu_end = 0.0

    async def warm_up() -> None:
        if timing.warmup_requests is None:
            await asyncio.sleep(timing.warmup_s)
            return
        if timing.warmup_requests == 0:
            return
        try:
            await asyncio.wait_for(warmed_up.wait(), timing.warmup_timeout_s)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"warm-up: {completed} of {timing.warmup_requests} requests completed "
                f"in {timing.warmup_timeout_s:.0f} s"
            ) from None

    async def control() -> None:
        nonlocal cpu_start, cpu_end
        try:
            started = clock()
            await warm_up()
            window.open(clock(), timing.duration_s)
            hooks.on_open()
            cpu_start = time.process_time()
            shown_before = window.start - started if timing.warmup_requests is None else 0.0
            while (now := clock()) < window.end:
                elapsed = max(now - window.start, 1e-9)
                bar.update(
                    shown_before + elapsed, done=completed, tok_s=round(meter.tokens / elapsed)
                )
                await asyncio.sleep(min(PROGRESS_INTERVAL_S, window.end - now))
            cpu_end = time.process_time()
            hooks.on_close()
            bar.update(total_s, done=completed, tok_s=round(meter.tokens / timing.duration_s))
        finally:
            stop.set()  # also when the warm-up failed: the load must end

    channel = open_channel(url)
    controller = asyncio.create_task(control())
    try:

        def open_session() -> StreamSession:
            return StreamSession(open_stream(channel), target, meter, clock)

        if load.concurrency is not None:
            driving = closed_loop(
                open_session,
                workload,
                load.concurrency,
                stop,
                on_record,
                ramp_up_s=load.ramp_up_s,
            )
        else:
            assert load.rate_per_s is not None
            driving = open_loop(
                open_session,
                workload,
                load.rate_per_s,
                stop,
                on_record,
                seed=load.seed,
                max_in_flight=load.max_in_flight,
                clock=clock,
            )
        outcome = await driving
        await controller  # raises the warm-up's failure, if that is what ended the load
    finally:
        controller.cancel()
        bar.close()
        await channel.close()
    summary = summarize(
        records,
        window,
        meter,
        ClientCost(cpu_s=cpu_end - cpu_start, responses=meter.responses),
        unfinished=outcome.unfinished,
    )
    return CellResult(target.model, load, summary, outcome, timed_requests(records, window))
