"""Sustained load: concurrency N on tensorrt_llm_bls for a while; every request accounted for.

    python -m benchmarks.soak [--minutes 10] [--concurrency 64]

Serves the pipeline over the synthetic engine (30 ms a step, never an early end token)
and drives it with the benchmark's closed loop (`benchmarks.load_shapes`) over raw gRPC
streams (`benchmarks.stream_client`). On top of the benchmark, each request is checked:
- lost: it ended without error but with other than its `max_tokens` tokens (the
  synthetic engine always generates all of them), so a response went missing;
- hung: no FINAL `hang_timeout_s` after it was sent (its stream is then cancelled);
- errors, by message.
The resident memory of the server and of each model process is read when the warm-up
ends (caches and pools filled) and at the end: growth = (end - start) / start. The
process ids at the end must be those at the start: none crashed or was restarted.

tests/integration/test_sustained_load.py runs the same code for 60 s in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from benchmarks.load_shapes import closed_loop
from benchmarks.resources import MiB, process_label, process_tree
from benchmarks.stats import Meter, RequestRecord, Window
from benchmarks.stream_client import StreamSession, open_channel, open_stream
from benchmarks.targets import BlsTarget
from benchmarks.workload import Lengths, WorkItem, Workload

RESULTS = Path(__file__).resolve().parent / "results" / "soak.json"
HUNG = "hung: no FINAL in time"
MAX_MEMORY_GROWTH = 0.10


@dataclass(frozen=True)
class SoakOptions:
    concurrency: int = 64
    duration_s: float = 600.0  # after the warm-up
    warmup_s: float = 30.0
    output_len: str = "uniform:1:64"  # benchmarks.workload.Lengths
    prompt_words: int = 16
    hang_timeout_s: float = 60.0
    seed: int = 0


@dataclass
class SoakReport:
    options: SoakOptions
    sent: int = 0
    completed: int = 0  # FINAL received, every token accounted for
    tokens: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)
    hung: int = 0
    cut_at_end: int = 0  # in flight when the time was up (cancelled, not counted)
    memory_mib: dict[str, tuple[float, float]] = field(default_factory=dict)  # start, end
    processes_gone: list[str] = field(default_factory=list)

    def growth(self, label: str) -> float:
        start, end = self.memory_mib[label]
        return (end - start) / start

    @property
    def ok(self) -> bool:
        return not (
            self.errors
            or self.lost
            or self.hung
            or self.processes_gone
            or any(self.growth(label) >= MAX_MEMORY_GROWTH for label in self.memory_mib)
        )

    def to_json(self) -> dict[str, object]:
        return {
            "options": vars(self.options),
            "requests_sent": self.sent,
            "completed": self.completed,
            "tokens": self.tokens,
            "errors": dict(self.errors),
            "lost": len(self.lost),
            "lost_samples": self.lost[:5],
            "hung": self.hung,
            "cut_at_end": self.cut_at_end,
            "processes_gone": self.processes_gone,
            "memory": {
                label: {
                    "start_mib": round(start, 1),
                    "end_mib": round(end, 1),
                    "growth_percent": round(100 * self.growth(label), 2),
                }
                for label, (start, end) in self.memory_mib.items()
            },
            "ok": self.ok,
        }


class CheckedSession:
    """A StreamSession whose requests are checked (lost, hung) and tallied."""

    def __init__(self, inner: StreamSession, report: SoakReport, hang_timeout_s: float) -> None:
        self._inner = inner
        self._report = report
        self._hang_timeout_s = hang_timeout_s
        self._hung = False

    @property
    def broken(self) -> bool:
        return self._hung or self._inner.broken

    async def run(self, item: WorkItem, request_id: str) -> RequestRecord:
        report = self._report
        report.sent += 1
        started = time.perf_counter()
        # Not asyncio.wait_for: cancelled at the end of the run, it can raise what the
        # request raised instead (a write on a stream the loop just closed).
        running = asyncio.ensure_future(self._inner.run(item, request_id))
        try:
            done, _ = await asyncio.wait({running}, timeout=self._hang_timeout_s)
        except asyncio.CancelledError:
            await _abandon(running)  # the run is over: this request is cut, not counted
            raise
        if not done:
            await _abandon(running)
            self._hung = True  # the loop closes (cancels) this stream and opens another
            report.hung += 1
            return RequestRecord(started, time.perf_counter(), 0, 0, error=HUNG)
        record = running.result()
        if record.error is not None:
            report.errors[record.error] += 1
        elif record.tokens != item.output_len:
            report.lost.append(f"{request_id}: {record.tokens} of {item.output_len} tokens")
        else:
            report.completed += 1
            report.tokens += record.tokens
        return record

    def close(self) -> None:
        self._inner.close()


async def _abandon(request: asyncio.Future) -> None:
    """Cancel `request` and wait for its end, whatever it ends with."""
    request.cancel()
    await asyncio.gather(request, return_exceptions=True)


def rss_by_process(server_pid: int) -> dict[tuple[int, str], float]:
    """RSS in MiB of the server and each model process, keyed by (pid, label)."""
    rss = {}
    for process in process_tree(server_pid):
        try:
            rss[(process.pid, process_label(process))] = process.memory_info().rss / MiB
        except psutil.Error:
            continue
    return rss


async def run_soak(grpc_url: str, server_pid: int, options: SoakOptions) -> SoakReport:
    report = SoakReport(options)
    workload = Workload(
        Lengths.fixed(options.prompt_words), Lengths.parse(options.output_len), options.seed
    )
    target = BlsTarget()
    meter = Meter(Window())  # the window stays closed: the soak counts per request
    channel = open_channel(grpc_url)
    stop = asyncio.Event()

    def open_session() -> CheckedSession:
        session = StreamSession(open_stream(channel), target, meter)
        return CheckedSession(session, report, options.hang_timeout_s)

    async def timer() -> dict[tuple[int, str], float]:
        await asyncio.sleep(options.warmup_s)
        at_start = rss_by_process(server_pid)
        await asyncio.sleep(options.duration_s)
        stop.set()
        return at_start

    try:
        clock = asyncio.create_task(timer())
        outcome = await closed_loop(
            open_session, workload, options.concurrency, stop, lambda record: None
        )
        at_start = await clock
    finally:
        await channel.close()
    at_end = rss_by_process(server_pid)
    report.cut_at_end = outcome.unfinished
    report.processes_gone = sorted(label for pid, label in at_start if (pid, label) not in at_end)
    report.memory_mib = {
        f"{label} (pid {pid})": (at_start[pid, label], at_end[pid, label])
        for pid, label in at_start
        if (pid, label) in at_end
    }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--warmup-s", type=float, default=SoakOptions.warmup_s)
    parser.add_argument("--step-ms", type=float, default=30.0, help="synthetic engine pace")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    options = SoakOptions(
        concurrency=args.concurrency, duration_s=args.minutes * 60, warmup_s=args.warmup_s
    )

    from local_triton.staging import staged_server, synthetic_plan
    from offline_fixtures import ensure_fixtures

    with staged_server(synthetic_plan(ensure_fixtures(), step_ms=args.step_ms)) as server:
        report = asyncio.run(run_soak(server.grpc_url, server.pid, options))
    result = json.dumps(report.to_json(), indent=2)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(result + "\n", encoding="utf-8")
    print(result)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
