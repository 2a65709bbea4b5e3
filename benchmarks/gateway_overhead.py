"""The OpenAI gateway against direct gRPC: one server, the same load, two ways in.

    .venv/bin/python -m benchmarks.gateway_overhead --aiperf /tmp/aiperf-venv/bin/aiperf

One tritonserver serves the synthetic engine (20 ms steps) and `tensorrt_llm_bls`;
`llm-bls-openai` runs in front of it. Then, one after the other on the same machine:

(a) llm-bls-bench's closed loop straight to `tensorrt_llm_bls` over gRPC streaming;
(b) AIPerf against the gateway's `/v1/completions`, streaming;

both at the same concurrency, with the same prompt and a fixed output length (the
synthetic engine never ends a request early, so every answer is `--output-len` tokens;
the run checks it). What (b) loses against (a) is the gateway's cost plus the difference
between the two load generators; the gateway's own CPU per streamed token is measured
directly (psutil, its process's CPU time over AIPerf's run divided by the tokens the BLS
generated meanwhile). docs/performance.md has the results and how to read them.

AIPerf is not a dependency of this project: install it in an environment of its own
(`python3 -m venv /tmp/aiperf-venv && /tmp/aiperf-venv/bin/pip install aiperf`) and pass
its executable with `--aiperf`. Without it, (b) is skipped and said so.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import psutil

from benchmarks.report import RESULTS_DIR, markdown_table, write_json
from benchmarks.resources import process_tree
from benchmarks.side_by_side import (
    ACTIVE_SEQUENCES,
    ServerDied,
    Side,
    SideBySideConfig,
    explaining_server_death,
    fmt,
    measure_cell,
    ratio,
    wait_until_engine_idle,
)
from benchmarks.stats import Distribution
from benchmarks.targets import BLS_MODEL, BlsTarget
from local_triton.gateway import GatewayProcess
from local_triton.server import ServerStartError, TritonServer, read_metric
from local_triton.staging import StagingError, staged_server

# Tokens the BLS generated, over all requests (bls/metrics.py); its reporter thread
# exports counters once a second, so read it after that long.
BLS_OUTPUT_TOKENS = "llm_bls_output_tokens_total"
COUNTER_PERIOD_S = 1.0
AIPERF_EXPORT = "profile_export_aiperf.json"
# The process trees whose CPU (b) reports.
GATEWAY, SERVER, AIPERF = "gateway", "server", "aiperf"


@dataclass(frozen=True)
class OverheadConfig:
    concurrency: int = 64
    output_len: int = 100
    prompt_words: int = 8  # (a) sends this many words; (b) asks AIPerf for this many tokens
    step_ms: float = 20.0
    duration_s: float = 30.0
    warmup_s: float = 5.0
    aiperf: Path | None = None
    # After AIPerf's measured time, how long it waits for the requests still in flight.
    aiperf_grace_s: float = 30.0
    progress: bool = True

    def side_by_side(self) -> SideBySideConfig:
        """The side-by-side run's settings for (a), and its staging of the server."""
        return SideBySideConfig(
            concurrencies=(self.concurrency,),
            duration_s=self.duration_s,
            warmup_s=self.warmup_s,
            output_len=self.output_len,
            prompt_words=self.prompt_words,
            step_ms=self.step_ms,
            progress=self.progress,
        )


def aiperf_command(
    config: OverheadConfig, aiperf: Path, gateway_url: str, tokenizer: Path, artifacts: Path
) -> list[str]:
    """AIPerf over the gateway's completions endpoint, streaming, fixed lengths."""
    return [
        str(aiperf),
        "profile",
        "--model", BLS_MODEL,
        "--url", gateway_url,
        "--endpoint-type", "completions",
        "--streaming",
        # Prompts are built with the served model's tokenizer (the offline fixture).
        "--tokenizer", str(tokenizer),
        # Count output tokens from the gateway's usage, as generated, not re-tokenized.
        "--use-server-token-count",
        # /v1/completions takes max_tokens (max_completion_tokens is chat's).
        "--use-legacy-max-tokens",
        "--prompt-input-tokens-mean", str(config.prompt_words),
        "--prompt-input-tokens-stddev", "0",
        "--prompt-output-tokens-mean", str(config.output_len),
        "--prompt-output-tokens-stddev", "0",
        "--concurrency", str(config.concurrency),
        "--warmup-request-count", str(config.concurrency),
        "--benchmark-duration", f"{config.duration_s:g}",
        "--benchmark-grace-period", f"{config.aiperf_grace_s:g}",
        "--random-seed", "0",
        "--ui-type", "none",
        # No GPU here, and the gateway has no Prometheus endpoint to scrape.
        "--no-gpu-telemetry",
        "--no-server-metrics",
        "--output-artifact-dir", str(artifacts),
    ]  # fmt: skip


# --- one row per way in ----------------------------------------------------------------


@dataclass(frozen=True)
class PathResult:
    """One way into the server, as the table shows it (times in ms)."""

    label: str
    requests_per_s: float
    output_tokens_per_s: float
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    itl_p50_ms: float | None
    itl_p99_ms: float | None
    errors: int
    tokens_per_request_min: float | None
    tokens_per_request_max: float | None
    server_cpu_us_per_token: float | None  # tritonserver and its stubs
    gateway_cpu_us_per_token: float | None  # the llm-bls-openai process; None: not in path
    load_generator_cpu_cores: float | None


def _percentile(distribution: Distribution | None, key: str) -> float | None:
    return None if distribution is None else getattr(distribution, key)


def direct_result(
    side: Side, tokens_min: int | None, tokens_max: int | None, client_cores: float
) -> PathResult:
    """(a) from the llm-bls-bench cell."""
    return PathResult(
        label="(a) gRPC, llm-bls-bench",
        requests_per_s=side.requests_per_s,
        output_tokens_per_s=side.output_tokens_per_s,
        ttft_p50_ms=_percentile(side.ttft, "p50_ms"),
        ttft_p99_ms=_percentile(side.ttft, "p99_ms"),
        itl_p50_ms=_percentile(side.itl, "p50_ms"),
        itl_p99_ms=_percentile(side.itl, "p99_ms"),
        errors=side.errors,
        tokens_per_request_min=tokens_min,
        tokens_per_request_max=tokens_max,
        server_cpu_us_per_token=side.cpu_us_per_token,
        gateway_cpu_us_per_token=None,
        load_generator_cpu_cores=client_cores,
    )


@dataclass(frozen=True)
class GatewayRun:
    """What was measured while AIPerf had requests in flight (its warm-up included)."""

    wall_s: float
    tokens: float  # generated by the BLS meanwhile: all of them went through the gateway
    gateway_cpu_s: float
    server_cpu_s: float
    aiperf_cpu_s: float  # AIPerf's processes, all of them

    def us_per_token(self, cpu_s: float) -> float | None:
        return cpu_s * 1e6 / self.tokens if self.tokens > 0 else None


def _metric(export: Mapping, name: str, stat: str) -> float | None:
    value = export.get(name)
    return None if not isinstance(value, Mapping) else value.get(stat)


def aiperf_result(export: Mapping, run: GatewayRun) -> PathResult:
    """(b) from AIPerf's JSON export (its profiling phase) and the CPU measured around it."""
    completed = _metric(export, "completed_request_count", "avg") or 0.0
    error_rate = _metric(export, "request_error_rate", "avg") or 0.0
    return PathResult(
        label="(b) gateway, AIPerf",
        requests_per_s=_metric(export, "request_throughput", "avg") or 0.0,
        output_tokens_per_s=_metric(export, "output_token_throughput", "avg") or 0.0,
        ttft_p50_ms=_metric(export, "time_to_first_token", "p50"),
        ttft_p99_ms=_metric(export, "time_to_first_token", "p99"),
        itl_p50_ms=_metric(export, "inter_token_latency", "p50"),
        itl_p99_ms=_metric(export, "inter_token_latency", "p99"),
        errors=round(completed * error_rate / 100),
        tokens_per_request_min=_metric(export, "output_sequence_length", "min"),
        tokens_per_request_max=_metric(export, "output_sequence_length", "max"),
        server_cpu_us_per_token=run.us_per_token(run.server_cpu_s),
        gateway_cpu_us_per_token=run.us_per_token(run.gateway_cpu_s),
        load_generator_cpu_cores=run.aiperf_cpu_s / run.wall_s if run.wall_s > 0 else None,
    )


@dataclass(frozen=True)
class Overhead:
    """(b) against (a): what going through the gateway added."""

    requests_ratio: float | None
    tokens_ratio: float | None
    added_ttft_p50_ms: float | None
    added_ttft_p99_ms: float | None
    added_itl_p50_ms: float | None
    added_itl_p99_ms: float | None
    gateway_cpu_us_per_token: float | None

    @classmethod
    def of(cls, direct: PathResult, gateway: PathResult) -> Overhead:
        def added(over: float | None, under: float | None) -> float | None:
            return None if over is None or under is None else over - under

        return cls(
            requests_ratio=ratio(gateway.requests_per_s, direct.requests_per_s),
            tokens_ratio=ratio(gateway.output_tokens_per_s, direct.output_tokens_per_s),
            added_ttft_p50_ms=added(gateway.ttft_p50_ms, direct.ttft_p50_ms),
            added_ttft_p99_ms=added(gateway.ttft_p99_ms, direct.ttft_p99_ms),
            added_itl_p50_ms=added(gateway.itl_p50_ms, direct.itl_p50_ms),
            added_itl_p99_ms=added(gateway.itl_p99_ms, direct.itl_p99_ms),
            gateway_cpu_us_per_token=gateway.gateway_cpu_us_per_token,
        )


def length_warnings(results: Sequence[PathResult], expected: int) -> list[str]:
    """Every request asks for `expected` tokens and the synthetic engine never stops
    early: any other count means the two paths did not carry the same work."""
    warnings = []
    for result in results:
        low, high = result.tokens_per_request_min, result.tokens_per_request_max
        if low is not None and not (low == expected == high):
            warnings.append(
                f"{result.label}: {low:g}..{high:g} tokens per request, expected {expected}"
            )
    return warnings


# --- the table -------------------------------------------------------------------------


TABLE_HEADER = (
    "path",
    "req/s",
    "output tok/s",
    "TTFT p50/p99",
    "ITL p50/p99",
    "errors",
    "server CPU µs/token",
    "gateway CPU µs/token",
    "load generator cores",
)


def format_table(results: Sequence[PathResult], overhead: Overhead | None) -> str:
    rows = [
        (
            r.label,
            fmt(r.requests_per_s, ".2f"),
            fmt(r.output_tokens_per_s, ".0f"),
            f"{fmt(r.ttft_p50_ms)}/{fmt(r.ttft_p99_ms)}",
            f"{fmt(r.itl_p50_ms, '.2f')}/{fmt(r.itl_p99_ms, '.2f')}",
            str(r.errors),
            fmt(r.server_cpu_us_per_token, ".0f"),
            fmt(r.gateway_cpu_us_per_token, ".0f"),
            fmt(r.load_generator_cpu_cores, ".2f"),
        )
        for r in results
    ]
    if overhead is not None:
        rows.append(
            (
                "(b) - (a)",
                "x" + fmt(overhead.requests_ratio, ".3f"),
                "x" + fmt(overhead.tokens_ratio, ".3f"),
                f"{fmt(overhead.added_ttft_p50_ms, signed=True)}/"
                f"{fmt(overhead.added_ttft_p99_ms, signed=True)}",
                f"{fmt(overhead.added_itl_p50_ms, '.2f', signed=True)}/"
                f"{fmt(overhead.added_itl_p99_ms, '.2f', signed=True)}",
                "",
                "",
                fmt(overhead.gateway_cpu_us_per_token, ".0f"),
                "",
            )
        )
    return markdown_table(TABLE_HEADER, rows)


# --- the run ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuSample:
    """One look at the processes: CPU seconds so far, by tree then process id."""

    at_s: float
    busy: bool  # the engine had active sequences
    cpu_s: Mapping[str, Mapping[int, float]]


def busy_span(samples: Sequence[CpuSample]) -> tuple[float, dict[str, float]] | None:
    """Wall seconds and CPU seconds by tree from the last idle sample before the first
    busy one to the first idle sample after the last busy one: AIPerf's start-up and
    export, seconds long on two cores, are left out. A process that appears inside the
    span counts from zero; one that ends inside it counts until it was last seen."""
    busy = [i for i, sample in enumerate(samples) if sample.busy]
    if not busy:
        return None
    first = max(busy[0] - 1, 0)
    last = min(busy[-1] + 1, len(samples) - 1)
    start, span = samples[first], samples[first : last + 1]
    used: dict[str, float] = {}
    for tree in start.cpu_s.keys() | {name for s in span for name in s.cpu_s}:
        last_seen: dict[int, float] = {}
        for sample in span:
            last_seen.update(sample.cpu_s.get(tree, {}))
        before = start.cpu_s.get(tree, {})
        used[tree] = sum(seconds - before.get(pid, 0.0) for pid, seconds in last_seen.items())
    return samples[last].at_s - start.at_s, used


class SpanSampler:
    """Every `interval_s` on a thread: the engine's active sequences and the CPU time of
    each named process tree (psutil)."""

    def __init__(self, metrics_url: str, trees: Mapping[str, int], interval_s: float = 0.25):
        self._metrics_url = metrics_url
        self._trees = dict(trees)
        self._interval_s = interval_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="span-sampler", daemon=True)
        self.samples: list[CpuSample] = []

    def add_tree(self, name: str, root_pid: int) -> None:
        self._trees[name] = root_pid

    def _sample(self) -> CpuSample:
        cpu: dict[str, dict[int, float]] = {}
        for name, root in list(self._trees.items()):
            seconds: dict[int, float] = {}
            try:
                processes = process_tree(root)
            except psutil.Error:
                processes = []  # the tree's root has ended
            for process in processes:
                try:
                    times = process.cpu_times()
                except psutil.Error:
                    continue
                seconds[process.pid] = times.user + times.system
            cpu[name] = seconds
        active = read_metric(self._metrics_url, ACTIVE_SEQUENCES)
        return CpuSample(at_s=time.monotonic(), busy=active > 0, cpu_s=cpu)

    def _loop(self) -> None:
        while True:
            self.samples.append(self._sample())
            if self._stopping.wait(self._interval_s):
                break
        self.samples.append(self._sample())

    def __enter__(self) -> SpanSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._thread.join()


def run_aiperf(
    command: Sequence[str], server: TritonServer, gateway: GatewayProcess
) -> tuple[int, GatewayRun | None]:
    """AIPerf to its end (its console output goes through to this terminal), with the
    CPU of the gateway, the server and AIPerf while requests were in flight, and the
    tokens the BLS generated: all of them went through the gateway."""
    assert server.pid is not None and gateway.pid is not None
    tokens_before = read_metric(server.metrics_url, BLS_OUTPUT_TOKENS)
    trees = {GATEWAY: gateway.pid, SERVER: server.pid}
    with SpanSampler(server.metrics_url, trees) as sampler:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        sampler.add_tree(AIPERF, process.pid)
        code = process.wait()
    time.sleep(2 * COUNTER_PERIOD_S)  # the last requests' tokens reach the counter
    span = busy_span(sampler.samples)
    if span is None:
        return code, None
    wall_s, cpu_s = span
    return code, GatewayRun(
        wall_s=wall_s,
        tokens=read_metric(server.metrics_url, BLS_OUTPUT_TOKENS) - tokens_before,
        gateway_cpu_s=cpu_s.get(GATEWAY, 0.0),
        server_cpu_s=cpu_s.get(SERVER, 0.0),
        aiperf_cpu_s=cpu_s.get(AIPERF, 0.0),
    )


class AIPerfFailed(RuntimeError):
    """AIPerf ended without its results (its own output says why)."""


@dataclass
class OverheadResult:
    config: OverheadConfig
    results: list[PathResult]
    overhead: Overhead | None
    aiperf_command: list[str] | None
    aiperf_export: dict | None  # AIPerf's own JSON, as it wrote it
    gateway_run: GatewayRun | None
    direct_cell: dict  # llm-bls-bench's full cell
    warnings: list[str]

    def to_json(self) -> dict:
        return {
            "config": {**asdict(self.config), "aiperf": str(self.config.aiperf)},
            "results": [asdict(r) for r in self.results],
            "overhead": None if self.overhead is None else asdict(self.overhead),
            "aiperf_command": self.aiperf_command,
            "gateway_run": None if self.gateway_run is None else asdict(self.gateway_run),
            "direct_cell": self.direct_cell,
            "aiperf_export": self.aiperf_export,
            "warnings": self.warnings,
        }


def measure(
    server: TritonServer, gateway: GatewayProcess, config: OverheadConfig, tokenizer: Path
) -> OverheadResult:
    sides = config.side_by_side()
    warnings: list[str] = []
    # First requests pay for lazy initialisation; AIPerf warms its own path up.
    measure_cell(
        server, BlsTarget(), 2, replace(sides, duration_s=0.5, warmup_s=0.0, progress=False)
    )
    cell, side, record = measure_cell(server, BlsTarget(), config.concurrency, sides)
    summary = cell.summary
    results = [
        direct_result(
            side,
            summary.tokens_per_request_min,
            summary.tokens_per_request_max,
            summary.client_cpu_cores,
        )
    ]
    command = export = run = overhead = None
    if config.aiperf is None or not Path(config.aiperf).is_file():
        warnings.append(
            f"(b) skipped: no AIPerf executable at {config.aiperf} (install it with "
            "`python3 -m venv /tmp/aiperf-venv && /tmp/aiperf-venv/bin/pip install aiperf` "
            "and pass --aiperf /tmp/aiperf-venv/bin/aiperf)"
        )
    else:
        if not wait_until_engine_idle(server, sides.settle_timeout_s):
            warnings.append("the engine still had active sequences before (b); measured anyway")
        with tempfile.TemporaryDirectory(prefix="aiperf-") as artifacts:
            command = aiperf_command(
                config, Path(config.aiperf), gateway.url, tokenizer, Path(artifacts)
            )
            print(f"running: {shlex.join(command)}", flush=True)
            code, run = run_aiperf(command, server, gateway)
            export_path = Path(artifacts) / AIPERF_EXPORT
            if code != 0 or not export_path.is_file():
                raise AIPerfFailed(
                    f"AIPerf exited with code {code} and no {AIPERF_EXPORT}; its output is above"
                )
            if run is None:
                raise AIPerfFailed("AIPerf ended without the engine ever having a request")
            export = json.loads(export_path.read_text(encoding="utf-8"))
        results.append(aiperf_result(export, run))
        overhead = Overhead.of(results[0], results[1])
    warnings.extend(length_warnings(results, config.output_len))
    return OverheadResult(config, results, overhead, command, export, run, record, warnings)


def run_overhead(config: OverheadConfig) -> OverheadResult:
    """Stage and start the server and the gateway, measure (a) then (b), stop both."""
    from offline_fixtures import ensure_fixtures

    fixtures = ensure_fixtures()
    plan = config.side_by_side().staging_plan(fixtures)
    with (
        staged_server(plan) as server,
        explaining_server_death(server),
        GatewayProcess(server.grpc_url) as gateway,
    ):
        return measure(server, gateway, config, fixtures.tiny_llama)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gateway_overhead",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = OverheadConfig()
    parser.add_argument(
        "--aiperf", type=Path, help="AIPerf's executable; without it (b) is skipped"
    )
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument(
        "--output-len", type=int, default=defaults.output_len, help="tokens per answer"
    )
    parser.add_argument("--prompt-words", type=int, default=defaults.prompt_words)
    parser.add_argument("--step-ms", type=float, default=defaults.step_ms, help="engine step")
    parser.add_argument(
        "--duration", type=float, default=defaults.duration_s, help="measured seconds of each path"
    )
    parser.add_argument(
        "--warmup", type=float, default=defaults.warmup_s, help="(a)'s warm-up seconds"
    )
    parser.add_argument("--name", default="gateway_overhead", help="file name of the results")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = OverheadConfig(
        concurrency=args.concurrency,
        output_len=args.output_len,
        prompt_words=args.prompt_words,
        step_ms=args.step_ms,
        duration_s=args.duration,
        warmup_s=args.warmup,
        aiperf=args.aiperf,
        progress=not args.no_progress,
    )
    try:
        result = run_overhead(config)
    except (StagingError, ServerStartError) as error:
        print(f"gateway_overhead: {error}", file=sys.stderr)
        return 2
    except (ServerDied, AIPerfFailed) as error:
        print(f"gateway_overhead: {error}", file=sys.stderr)
        return 1
    print(format_table(result.results, result.overhead))
    for warning in result.warnings:
        print(f"warning: {warning}")
    path = write_json(args.output_dir / f"{args.name}.json", result.to_json())
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
