"""The gateway-overhead run's own logic: AIPerf's export read, the busy span, the table."""

from pathlib import Path

import pytest

from benchmarks.gateway_overhead import (
    AIPERF,
    GATEWAY,
    CpuSample,
    GatewayRun,
    Overhead,
    OverheadConfig,
    PathResult,
    aiperf_command,
    aiperf_result,
    busy_span,
    format_table,
    length_warnings,
)


def stat(**values: float) -> dict:
    return {"unit": "ms", **values}


# The shape of AIPerf 0.13's profile_export_aiperf.json (only the keys read).
EXPORT = {
    "request_throughput": {"unit": "requests/sec", "avg": 25.0},
    "output_token_throughput": {"unit": "tokens/sec", "avg": 2500.0},
    "time_to_first_token": stat(avg=300.0, p50=280.0, p99=590.0),
    "inter_token_latency": stat(avg=19.8, p50=19.75, p99=23.25),
    "output_sequence_length": {"unit": "tokens", "min": 100.0, "max": 100.0},
    "completed_request_count": {"unit": "requests", "avg": 800.0},
    "request_error_rate": {"unit": "%", "avg": 0.5},
}


def direct(**changes) -> PathResult:
    values = dict(
        label="(a) gRPC, llm-bls-bench",
        requests_per_s=28.0,
        output_tokens_per_s=2800.0,
        ttft_p50_ms=140.0,
        ttft_p99_ms=500.0,
        itl_p50_ms=20.5,
        itl_p99_ms=23.0,
        errors=0,
        tokens_per_request_min=100,
        tokens_per_request_max=100,
        server_cpu_us_per_token=500.0,
        gateway_cpu_us_per_token=None,
        load_generator_cpu_cores=0.18,
    )
    return PathResult(**{**values, **changes})


def test_aiperf_export_and_the_cpu_around_it_make_row_b():
    run = GatewayRun(
        wall_s=40.0, tokens=80_000, gateway_cpu_s=10.0, server_cpu_s=40.0, aiperf_cpu_s=12.0
    )
    row = aiperf_result(EXPORT, run)
    assert (row.requests_per_s, row.output_tokens_per_s) == (25.0, 2500.0)
    assert (row.ttft_p50_ms, row.ttft_p99_ms) == (280.0, 590.0)
    assert (row.itl_p50_ms, row.itl_p99_ms) == (19.75, 23.25)
    assert row.errors == 4  # 0.5% of 800
    assert row.gateway_cpu_us_per_token == pytest.approx(125.0)  # 10 s / 80 000 tokens
    assert row.server_cpu_us_per_token == pytest.approx(500.0)
    assert row.load_generator_cpu_cores == pytest.approx(0.3)


def test_a_run_without_tokens_has_no_cost_per_token():
    run = GatewayRun(wall_s=1.0, tokens=0, gateway_cpu_s=1.0, server_cpu_s=1.0, aiperf_cpu_s=1.0)
    assert aiperf_result(EXPORT, run).gateway_cpu_us_per_token is None


def test_overhead_is_b_minus_a_and_b_over_a():
    gateway = aiperf_result(EXPORT, GatewayRun(40.0, 80_000, 10.0, 40.0, 12.0))
    overhead = Overhead.of(direct(), gateway)
    assert overhead.requests_ratio == pytest.approx(25 / 28)
    assert overhead.tokens_ratio == pytest.approx(2500 / 2800)
    assert overhead.added_ttft_p50_ms == pytest.approx(140.0)
    assert overhead.added_ttft_p99_ms == pytest.approx(90.0)
    assert overhead.added_itl_p50_ms == pytest.approx(-0.75)
    assert overhead.added_itl_p99_ms == pytest.approx(0.25)
    table = format_table([direct(), gateway], overhead)
    assert "| (b) - (a) |" in table.replace("  ", "")
    assert "+140.0/+90.0" in table
    assert "x0.893" in table  # 25 / 28
    assert table.count("\n") == 4  # header, separator, three rows


def test_a_missing_latency_is_a_dash_not_an_error():
    overhead = Overhead.of(direct(ttft_p50_ms=None), direct(label="b"))
    assert overhead.added_ttft_p50_ms is None
    assert "-/+0.0" in format_table([direct()], overhead)


def test_lengths_other_than_the_asked_one_are_reported():
    assert length_warnings([direct()], 100) == []
    warnings = length_warnings([direct(tokens_per_request_min=97)], 100)
    assert warnings == ["(a) gRPC, llm-bls-bench: 97..100 tokens per request, expected 100"]


def sample(
    at: float, busy: bool, gateway: dict[int, float], aiperf: dict[int, float] | None = None
) -> CpuSample:
    trees = {GATEWAY: gateway}
    if aiperf is not None:
        trees[AIPERF] = aiperf
    return CpuSample(at_s=at, busy=busy, cpu_s=trees)


def test_busy_span_runs_from_the_idle_sample_before_to_the_idle_sample_after():
    samples = [
        sample(0.0, False, {1: 5.0}),  # start-up, left out
        sample(1.0, False, {1: 6.0}, {9: 3.0}),  # AIPerf has started, no request yet
        sample(2.0, True, {1: 7.0}, {9: 4.0, 10: 1.0}),
        sample(3.0, True, {1: 9.0}, {9: 5.0}),  # worker 10 ended after 1.5 s of CPU
        sample(4.0, False, {1: 9.5}, {9: 5.5, 10: 1.5}),
        sample(5.0, False, {1: 20.0}, {9: 9.0}),  # AIPerf's export, left out
    ]
    span = busy_span(samples)
    assert span is not None
    wall_s, cpu_s = span
    assert wall_s == pytest.approx(3.0)  # 1.0 .. 4.0
    assert cpu_s[GATEWAY] == pytest.approx(3.5)  # 9.5 - 6.0
    assert cpu_s[AIPERF] == pytest.approx(2.5 + 1.5)  # pid 9: 5.5 - 3.0; pid 10 new: 1.5


def test_no_busy_sample_is_no_span():
    assert busy_span([sample(0.0, False, {1: 1.0}), sample(1.0, False, {1: 2.0})]) is None


def test_aiperf_is_asked_for_fixed_lengths_at_the_concurrency():
    config = OverheadConfig(concurrency=64, output_len=100, prompt_words=8, duration_s=30)
    command = aiperf_command(
        config, Path("/x/aiperf"), "http://127.0.0.1:9", Path("/tok"), Path("/out")
    )

    def value(flag: str) -> str:
        return command[command.index(flag) + 1]

    assert command[:2] == ["/x/aiperf", "profile"]
    assert value("--endpoint-type") == "completions"
    assert "--streaming" in command and "--use-server-token-count" in command
    assert value("--prompt-output-tokens-mean") == "100"
    assert value("--prompt-output-tokens-stddev") == "0"
    assert value("--prompt-input-tokens-mean") == "8"
    assert value("--concurrency") == "64"
    assert value("--benchmark-duration") == "30"
    assert value("--url") == "http://127.0.0.1:9"
    assert value("--tokenizer") == "/tok"
