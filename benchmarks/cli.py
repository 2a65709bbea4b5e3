"""`llm-bls-bench`: load a running server over gRPC streaming, or run the side-by-side.

    llm-bls-bench run --url 127.0.0.1:8001 --concurrency 1,16,64 --duration 20
    llm-bls-bench run --url 127.0.0.1:8001 --model tensorrt_llm --rate 50 --output-len normal:64:16
    llm-bls-bench side-by-side                      # stages and starts its own server
    llm-bls-bench side-by-side --duration 5 --concurrency 16,64 \\
        --instances tensorrt_llm_bls=2 --set tensorrt_llm.response_sender_threads=16

Each prints a table and writes JSON and a PNG chart under benchmarks/results/ (or
--output-dir). docs/performance.md defines every number.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import asdict
from pathlib import Path

from benchmarks.report import RESULTS_DIR, markdown_table, run_chart, side_by_side_chart, write_json
from benchmarks.run import CellResult, LoadSpec, Timing, run_cell
from benchmarks.side_by_side import SideBySideConfig, format_table, run_side_by_side
from benchmarks.stats import Distribution
from benchmarks.targets import BLS_MODEL, make_target
from benchmarks.workload import Lengths, Workload
from local_triton.cli import parse_overrides
from local_triton.server import ServerStartError
from local_triton.staging import StagingError


def _numbers(kind: type, text: str, flag: str) -> tuple:
    try:
        values = tuple(kind(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{flag}: expected numbers separated by commas") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"{flag}: every value must be positive")
    return values


def _lengths(text: str) -> Lengths:
    try:
        return Lengths.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_instance_counts(items: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        model, separator, value = item.partition("=")
        if not separator or not model or not value.isdigit() or int(value) < 1:
            raise SystemExit(f"--instances {item!r}: expected MODEL=COUNT with COUNT >= 1")
        counts[model] = int(value)
    return counts


def _common(parser: argparse.ArgumentParser, default_name: str) -> None:
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per cell")
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="seconds per cell before measuring (default 3)"
    )
    parser.add_argument(
        "--ramp-up",
        type=float,
        default=0.0,
        help="closed loop: spread the clients' first requests over this many seconds "
        "(inside the warm-up; default 0, all at once)",
    )
    parser.add_argument("--name", default=default_name, help="file name of the results")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llm-bls-bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="load a running server (one cell per load level)")
    run.add_argument("--url", required=True, help="the server's gRPC address, HOST:PORT")
    run.add_argument(
        "--model",
        default=BLS_MODEL,
        help="tensorrt_llm_bls (text in; default) or tensorrt_llm (the engine, ids in)",
    )
    shape = run.add_mutually_exclusive_group(required=True)
    shape.add_argument(
        "--concurrency",
        type=lambda t: _numbers(int, t, "--concurrency"),
        help="closed loop: clients, e.g. 1,16,64",
    )
    shape.add_argument(
        "--rate",
        type=lambda t: _numbers(float, t, "--rate"),
        help="open loop: Poisson arrivals per second, e.g. 10,20",
    )
    run.add_argument(
        "--warmup-requests",
        type=int,
        help="instead of --warmup: measure once this many requests have completed",
    )
    run.add_argument(
        "--prompt-len",
        type=_lengths,
        default=Lengths.fixed(8),
        help="words (BLS) or ids (engine): N, uniform:LOW:HIGH or normal:MEAN:STDDEV",
    )
    run.add_argument("--output-len", type=_lengths, default=Lengths.fixed(64), help="as above")
    run.add_argument("--prompt", help="BLS only: this text as every prompt")
    run.add_argument("--seed", type=int, default=0, help="lengths and arrivals (default 0)")
    run.add_argument("--max-in-flight", type=int, default=1024, help="open loop (default 1024)")
    _common(run, "llm_bls_bench")

    side = commands.add_parser(
        "side-by-side",
        help="stage a server with the synthetic engine; engine alone vs BLS per concurrency",
    )
    side.add_argument(
        "--concurrency",
        type=lambda t: _numbers(int, t, "--concurrency"),
        default=(1, 16, 64, 256),
        help="default 1,16,64,256",
    )
    side.add_argument("--output-len", type=int, default=64, help="tokens per answer (64)")
    side.add_argument("--prompt-words", type=int, default=8, help="prompt length (8)")
    side.add_argument("--step-ms", type=float, default=20.0, help="engine step (20 ms)")
    side.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="MODEL.PARAM=VALUE",
        help="a config parameter of a staged model (repeatable)",
    )
    side.add_argument(
        "--instances",
        action="append",
        default=[],
        metavar="MODEL=COUNT",
        help="instance_group count of a staged model (repeatable)",
    )
    side.add_argument(
        "--server-arg",
        dest="server_args",
        action="append",
        default=[],
        metavar="ARG",
        help="pass ARG to tritonserver (repeatable), e.g. "
        "--server-arg=--backend-config=python,thread-pool-size=64",
    )
    _common(side, "side_by_side")
    return parser


def _ms(distribution: Distribution | None, key: str) -> str:
    return "-" if distribution is None else f"{getattr(distribution, key):.1f}"


def _percentiles(distribution: Distribution | None) -> str:
    return "/".join(_ms(distribution, key) for key in ("p50_ms", "p90_ms", "p99_ms"))


RUN_HEADER = (
    "model",
    "load",
    "req/s",
    "tok/s",
    "TTFT p50/p90/p99",
    "ITL p50/p90/p99",
    "E2E p50/p90/p99",
    "stall p99",
    "errors",
    "client us/resp",
)


def run_table(cells: list[CellResult]) -> str:
    rows = []
    for cell in cells:
        s = cell.summary
        rows.append(
            (
                cell.model,
                cell.load.label,
                f"{s.requests_per_s:.2f}",
                f"{s.output_tokens_per_s:.0f}",
                _percentiles(s.ttft),
                _percentiles(s.itl),
                _percentiles(s.e2e),
                _ms(s.stall, "p99_ms"),
                str(s.errors),
                "-"
                if s.client_cpu_us_per_response is None
                else f"{s.client_cpu_us_per_response:.0f}",
            )
        )
    return markdown_table(RUN_HEADER, rows)


def command_run(args: argparse.Namespace) -> int:
    try:
        target = make_target(args.model, args.prompt)
    except ValueError as error:
        print(f"llm-bls-bench: {error}", file=sys.stderr)
        return 2
    timing = Timing(
        duration_s=args.duration, warmup_s=args.warmup, warmup_requests=args.warmup_requests
    )
    if args.concurrency:
        loads = [LoadSpec(concurrency=c, ramp_up_s=args.ramp_up) for c in args.concurrency]
    else:
        loads = [
            LoadSpec(rate_per_s=r, seed=args.seed, max_in_flight=args.max_in_flight)
            for r in args.rate
        ]
    cells = []
    for load in loads:
        workload = Workload(args.prompt_len, args.output_len, seed=args.seed)
        cells.append(
            asyncio.run(
                run_cell(args.url, target, workload, load, timing, progress=not args.no_progress)
            )
        )
    print(run_table(cells))
    for cell in cells:
        for sample in cell.summary.error_samples:
            print(f"{cell.model} {cell.load.label}: error: {sample}")
    payload = {
        "url": args.url,
        "workload": Workload(args.prompt_len, args.output_len, seed=args.seed).describe(),
        "timing": asdict(timing),
        "cells": [cell.to_json() for cell in cells],
    }
    json_path = write_json(args.output_dir / f"{args.name}.json", payload)
    chart = run_chart(cells, args.output_dir / f"{args.name}.png")
    print(f"saved {json_path} and {chart}")
    return 0


def command_side_by_side(args: argparse.Namespace) -> int:
    config = SideBySideConfig(
        concurrencies=tuple(args.concurrency),
        duration_s=args.duration,
        warmup_s=args.warmup,
        ramp_up_s=args.ramp_up,
        output_len=args.output_len,
        prompt_words=args.prompt_words,
        step_ms=args.step_ms,
        overrides=parse_overrides(args.overrides),
        instance_counts=parse_instance_counts(args.instances),
        server_args=tuple(args.server_args),
        progress=not args.no_progress,
    )
    try:
        result = run_side_by_side(config)
    except (StagingError, ServerStartError) as error:
        print(f"llm-bls-bench: {error}", file=sys.stderr)
        return 2
    print(format_table(result.comparisons))
    for warning in result.warnings:
        print(f"warning: {warning}")
    json_path = write_json(args.output_dir / f"{args.name}.json", result.to_json())
    title = (
        f"synthetic engine at {config.step_ms:g} ms/step, {config.output_len}-token answers, "
        f"{config.duration_s:g} s per cell"
    )
    chart = side_by_side_chart(result.comparisons, args.output_dir / f"{args.name}.png", title)
    print(f"saved {json_path} and {chart}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return command_run(args)
    return command_side_by_side(args)


if __name__ == "__main__":
    sys.exit(main())
