"""The side-by-side run: the engine alone against `tensorrt_llm_bls` over it, one server.

One tritonserver serves the synthetic engine (a token per step for every active
request, no model compute) as `tensorrt_llm`, and the BLS over it. For each
concurrency the same closed-loop load runs on (a) `tensorrt_llm` alone (token ids in and
out) and then (b) `tensorrt_llm_bls` (text in and out), one right after the other, so
both see the same machine. Anything (b) loses against (a) is the BLS's cost.

Between cells the run waits until the engine has no active sequence (its
`reference_engine_active_sequences` gauge), so a cell never inherits the cancelled
tail of the one before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace

from benchmarks.report import markdown_table
from benchmarks.resources import TreeSampler, TreeUsage
from benchmarks.run import CellResult, LoadSpec, Timing, WindowHooks, run_cell
from benchmarks.stats import Distribution
from benchmarks.targets import BLS_MODEL, ENGINE_MODEL, BlsTarget, EngineTarget, Target
from benchmarks.workload import Lengths, Workload
from local_triton.server import TritonServer, read_metric
from local_triton.staging import StagingPlan, staged_server, synthetic_plan

ACTIVE_SEQUENCES = "reference_engine_active_sequences"
# One observation per engine iteration: its count over the window gives steps per
# second, which shows whether the engine kept its pace (1000 / step_ms) in the cell.
ENGINE_STEPS = "reference_engine_batch_size_count"


@dataclass(frozen=True)
class SideBySideConfig:
    concurrencies: tuple[int, ...] = (1, 16, 64, 256)
    duration_s: float = 20.0
    warmup_s: float = 3.0
    ramp_up_s: float = 0.0
    output_len: int = 64
    prompt_words: int = 8  # the BLS's prompt in words; the engine gets as many ids
    step_ms: float = 20.0
    # Staging of the server: config parameters by model, instance counts by model,
    # and extra tritonserver arguments (e.g. --backend-config=python,...).
    overrides: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    instance_counts: Mapping[str, int] = field(default_factory=dict)
    server_args: tuple[str, ...] = ()
    settle_timeout_s: float = 60.0
    progress: bool = True

    def staging_plan(self, fixture_paths) -> StagingPlan:
        plan = synthetic_plan(
            fixture_paths, self.step_ms, only=frozenset({ENGINE_MODEL, BLS_MODEL})
        )
        overrides: dict[str, dict[str, str]] = {
            model: dict(values) for model, values in plan.overrides.items()
        }
        for model, values in self.overrides.items():
            overrides.setdefault(model, {}).update(values)
        return replace(plan, overrides=overrides, instance_counts=dict(self.instance_counts))

    def describe(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Side:
    """One cell's numbers that the comparison uses."""

    requests_per_s: float
    output_tokens_per_s: float
    ttft: Distribution | None
    itl: Distribution | None
    stall: Distribution | None
    errors: int
    tokens_per_request_mean: float | None
    rss_max_mib: float
    pss_max_mib: float
    server_cpu_cores: float
    client_cpu_us_per_response: float | None
    engine_steps_per_s: float | None

    @classmethod
    def of(cls, cell: CellResult, usage: TreeUsage, engine_steps_per_s: float | None) -> Side:
        summary = cell.summary
        return cls(
            requests_per_s=summary.requests_per_s,
            output_tokens_per_s=summary.output_tokens_per_s,
            ttft=summary.ttft,
            itl=summary.itl,
            stall=summary.stall,
            errors=summary.errors,
            tokens_per_request_mean=summary.tokens_per_request_mean,
            rss_max_mib=usage.rss_max_mib,
            pss_max_mib=usage.pss_max_mib,
            server_cpu_cores=usage.cpu_cores,
            client_cpu_us_per_response=summary.client_cpu_us_per_response,
            engine_steps_per_s=engine_steps_per_s,
        )

    @property
    def cpu_us_per_token(self) -> float | None:
        """CPU of all model processes (server and stubs) per output token: on a machine
        whose cores are all busy, throughput is what the cores can carry at this cost."""
        if self.output_tokens_per_s <= 0:
            return None
        return self.server_cpu_cores * 1e6 / self.output_tokens_per_s


def ratio(over: float, under: float) -> float | None:
    return over / under if under > 0 else None


def _added(bls: Distribution | None, engine: Distribution | None, key: str) -> float | None:
    if bls is None or engine is None:
        return None
    return getattr(bls, key) - getattr(engine, key)


@dataclass(frozen=True)
class Comparison:
    """(b) the BLS against (a) the engine alone at one concurrency."""

    concurrency: int
    engine: Side
    bls: Side
    requests_ratio: float | None
    tokens_ratio: float | None
    added_ttft_p50_ms: float | None
    added_ttft_p99_ms: float | None
    added_itl_p50_ms: float | None
    added_itl_p99_ms: float | None

    @classmethod
    def of(cls, concurrency: int, engine: Side, bls: Side) -> Comparison:
        return cls(
            concurrency=concurrency,
            engine=engine,
            bls=bls,
            requests_ratio=ratio(bls.requests_per_s, engine.requests_per_s),
            tokens_ratio=ratio(bls.output_tokens_per_s, engine.output_tokens_per_s),
            added_ttft_p50_ms=_added(bls.ttft, engine.ttft, "p50_ms"),
            added_ttft_p99_ms=_added(bls.ttft, engine.ttft, "p99_ms"),
            added_itl_p50_ms=_added(bls.itl, engine.itl, "p50_ms"),
            added_itl_p99_ms=_added(bls.itl, engine.itl, "p99_ms"),
        )


@dataclass
class SideBySideResult:
    config: SideBySideConfig
    comparisons: list[Comparison]
    cells: list[dict]  # every cell's full summary and its processes' usage
    warnings: list[str]

    def to_json(self) -> dict:
        return {
            "config": self.config.describe(),
            "comparisons": [
                {
                    **asdict(c),
                    "engine_cpu_us_per_token": c.engine.cpu_us_per_token,
                    "bls_cpu_us_per_token": c.bls.cpu_us_per_token,
                }
                for c in self.comparisons
            ],
            "cells": self.cells,
            "warnings": self.warnings,
        }


class _CellHooks(WindowHooks):
    """At the window's edges: the processes' CPU, and the engine's step counter."""

    def __init__(self, sampler: TreeSampler, metrics_url: str) -> None:
        self._sampler = sampler
        self._metrics_url = metrics_url
        self._steps_at_open = 0.0
        self._opened_at = 0.0
        self.engine_steps_per_s: float | None = None

    def on_open(self) -> None:
        self._sampler.begin_cpu()
        self._steps_at_open = read_metric(self._metrics_url, ENGINE_STEPS)
        self._opened_at = time.monotonic()

    def on_close(self) -> None:
        self._sampler.end_cpu()
        steps = read_metric(self._metrics_url, ENGINE_STEPS) - self._steps_at_open
        self.engine_steps_per_s = steps / (time.monotonic() - self._opened_at)


def wait_until_engine_idle(server: TritonServer, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if read_metric(server.metrics_url, ACTIVE_SEQUENCES) == 0:
            return True
        time.sleep(0.1)
    return False


def measure_cell(
    server: TritonServer, target: Target, concurrency: int, config: SideBySideConfig
) -> tuple[CellResult, Side, dict]:
    """The cell, its side of the comparison, and its JSON (with the processes' usage)."""
    assert server.pid is not None
    workload = Workload(Lengths.fixed(config.prompt_words), Lengths.fixed(config.output_len))
    sampler = TreeSampler(server.pid)
    hooks = _CellHooks(sampler, server.metrics_url)
    sampler.start()
    try:
        cell = asyncio.run(
            run_cell(
                server.grpc_url,
                target,
                workload,
                LoadSpec(concurrency=concurrency, ramp_up_s=config.ramp_up_s),
                Timing(duration_s=config.duration_s, warmup_s=config.warmup_s),
                progress=config.progress,
                hooks=hooks,
            )
        )
    finally:
        usage = sampler.stop()
    record = {
        **cell.to_json(),
        "engine_steps_per_s": hooks.engine_steps_per_s,
        "server": asdict(usage),
    }
    return cell, Side.of(cell, usage, hooks.engine_steps_per_s), record


def _warm_up(server: TritonServer, config: SideBySideConfig) -> None:
    """A few requests through each path: first requests pay for lazy initialisation."""
    quick = replace(config, duration_s=0.5, warmup_s=0.0, ramp_up_s=0.0, progress=False)
    for target in (EngineTarget(), BlsTarget()):
        measure_cell(server, target, 2, quick)


def measure(server: TritonServer, config: SideBySideConfig) -> SideBySideResult:
    """Every concurrency of `config`, (a) then (b), on a server that is already up."""
    warnings: list[str] = []
    _warm_up(server, config)
    comparisons: list[Comparison] = []
    cells: list[dict] = []
    for concurrency in config.concurrencies:
        sides: dict[str, Side] = {}
        for target in (EngineTarget(), BlsTarget()):
            if not wait_until_engine_idle(server, config.settle_timeout_s):
                warnings.append(
                    f"concurrency {concurrency}, {target.model}: the engine still had active "
                    f"sequences after {config.settle_timeout_s:.0f} s; measured anyway"
                )
            cell, side, record = measure_cell(server, target, concurrency, config)
            sides[target.model] = side
            cells.append(record)
            warnings.extend(_token_warnings(cell, config.output_len))
        comparisons.append(Comparison.of(concurrency, sides[ENGINE_MODEL], sides[BLS_MODEL]))
    return SideBySideResult(config, comparisons, cells, warnings)


def _token_warnings(cell: CellResult, expected: int) -> list[str]:
    """Every request of this run asks for exactly `expected` tokens, and the synthetic
    engine never ends one early: any other count is a counting or serving problem."""
    summary = cell.summary
    low, high = summary.tokens_per_request_min, summary.tokens_per_request_max
    if low is None or (low == expected and high == expected):
        return []
    hint = (
        " (does the BLS report num_output_tokens per response, not cumulatively?)"
        if cell.model == BLS_MODEL and high is not None and high > expected
        else ""
    )
    return [
        f"{cell.model} {cell.load.label}: {low}..{high} tokens per request, "
        f"expected {expected}{hint}"
    ]


class ServerDied(RuntimeError):
    """The server under test exited during the measurement."""


@contextmanager
def explaining_server_death(server: TritonServer) -> Iterator[None]:
    """Turns a failure during the block into ServerDied when the server has exited.

    A server that died mid-run shows up as refused connections: say so, with what it
    logged last, instead of leaving a client traceback to decode."""
    try:
        yield
    except Exception as error:
        code = server.exit_code()
        if code is None:
            raise
        tail = "\n".join(server.log_text().splitlines()[-40:])
        raise ServerDied(
            f"tritonserver exited with code {code} during the run ({error}); "
            f"its last log lines:\n{tail}"
        ) from error


def run_side_by_side(config: SideBySideConfig) -> SideBySideResult:
    """Stage and start the server, measure, stop it."""
    from offline_fixtures import ensure_fixtures

    plan = config.staging_plan(ensure_fixtures())
    with (
        staged_server(plan, extra_args=tuple(config.server_args)) as server,
        explaining_server_death(server),
    ):
        return measure(server, config)


# --- the table ------------------------------------------------------------------------


def fmt(value: float | None, spec: str = ".1f", signed: bool = False) -> str:
    if value is None:
        return "-"
    return format(value, ("+" if signed else "") + spec)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _ms(distribution: Distribution | None, key: str) -> str:
    return "-" if distribution is None else f"{getattr(distribution, key):.1f}"


TABLE_HEADER = (
    "conc",
    "req/s engine",
    "req/s BLS",
    "ratio",
    "TTFT p50 engine/BLS",
    "+TTFT p50",
    "+TTFT p99",
    "+ITL p50",
    "+ITL p99",
    "stall p99 BLS",
    "RSS MiB engine/BLS",
    "steps/s engine/BLS",
    "CPU µs/token engine/BLS",
    "errors",
)


def table_rows(comparisons: Sequence[Comparison]) -> list[tuple[str, ...]]:
    rows = []
    for c in comparisons:
        rows.append(
            (
                str(c.concurrency),
                fmt(c.engine.requests_per_s, ".2f"),
                fmt(c.bls.requests_per_s, ".2f"),
                _pct(c.requests_ratio),
                f"{_ms(c.engine.ttft, 'p50_ms')}/{_ms(c.bls.ttft, 'p50_ms')}",
                fmt(c.added_ttft_p50_ms, signed=True),
                fmt(c.added_ttft_p99_ms, signed=True),
                fmt(c.added_itl_p50_ms, ".2f", signed=True),
                fmt(c.added_itl_p99_ms, ".2f", signed=True),
                _ms(c.bls.stall, "p99_ms"),
                f"{c.engine.rss_max_mib:.0f}/{c.bls.rss_max_mib:.0f}",
                f"{fmt(c.engine.engine_steps_per_s)}/{fmt(c.bls.engine_steps_per_s)}",
                f"{fmt(c.engine.cpu_us_per_token, '.0f')}/{fmt(c.bls.cpu_us_per_token, '.0f')}",
                f"{c.engine.errors}/{c.bls.errors}",
            )
        )
    return rows


def format_table(comparisons: Sequence[Comparison]) -> str:
    """Times in ms; RSS of all model processes, the most seen during each cell."""
    return markdown_table(TABLE_HEADER, table_rows(comparisons))
