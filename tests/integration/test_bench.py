"""llm-bls-bench against a real server: the side-by-side machinery for a couple of
seconds at concurrency 2, and the `run` command on the same server."""

from __future__ import annotations

import json

import pytest

from benchmarks.cli import main as bench_main
from benchmarks.report import side_by_side_chart, write_json
from benchmarks.side_by_side import SideBySideConfig, format_table, measure
from benchmarks.targets import prompt_text
from bls.client import stream_generate
from local_triton.staging import staged_server

pytestmark = pytest.mark.integration

OUTPUT_LEN = 8  # 8 steps of 20 ms: about 6 requests per client and second


def bls_token_counts_seen_by_tritonclient(url: str, prompt_words: int) -> list[int]:
    """num_output_tokens of each response to one request, read through tritonclient:
    an independent reading of what the bench sums."""
    inputs = {
        "text_input": prompt_text(prompt_words),
        "max_tokens": OUTPUT_LEN,
        "stream": True,
        "return_num_output_tokens": True,
    }
    return [
        response.scalar("num_output_tokens")
        for response in stream_generate(url, inputs)
        if "num_output_tokens" in response.outputs
    ]


def test_side_by_side_and_run_at_concurrency_2(fixture_paths, tmp_path):
    config = SideBySideConfig(
        concurrencies=(2,), duration_s=2.0, warmup_s=0.5, output_len=OUTPUT_LEN, progress=False
    )
    with staged_server(config.staging_plan(fixture_paths)) as server:
        result = measure(server, config)
        bls_counts = bls_token_counts_seen_by_tritonclient(server.grpc_url, config.prompt_words)
        code = bench_main(
            [
                "run",
                "--url",
                server.grpc_url,
                "--model",
                "tensorrt_llm",
                "--concurrency",
                "1,2",
                "--duration",
                "1",
                "--warmup-requests",  # the other warm-up: a count of completed requests
                "2",
                "--output-len",
                "4",
                "--output-dir",
                str(tmp_path),
                "--name",
                "run",
                "--no-progress",
            ]
        )

    (comparison,) = result.comparisons
    engine_cell, bls_cell = result.cells
    assert (engine_cell["model"], bls_cell["model"]) == ("tensorrt_llm", "tensorrt_llm_bls")
    for cell in (engine_cell, bls_cell):
        assert cell["errors"] == 0
        assert cell["requests_completed"] >= 4
        assert cell["latency_requests"] >= 2
        assert 0 < cell["client_cpu_us_per_response"] < 5000
        processes = cell["server"]["processes"]
        assert {"tritonserver", "stub:tensorrt_llm", "stub:tensorrt_llm_bls"} <= set(processes)
        assert cell["server"]["rss_max_mib"] >= sum(p["rss_max_mib"] for p in processes.values())
        # The engine steps at most once per 20 ms, and was busy during the window.
        assert 10 < cell["engine_steps_per_s"] <= 55
    # The engine streams one token per response: exactly the requested count.
    assert engine_cell["tokens_per_request_min"] == engine_cell["tokens_per_request_max"] == 8
    assert engine_cell["responses"] >= engine_cell["output_tokens"]
    # Two streams at a 20 ms step: the engine alone is far from any limit; 1.28 s of
    # load per request pair means the BLS must not lose half of it.
    assert comparison.requests_ratio is not None and comparison.requests_ratio > 0.5
    assert comparison.engine.ttft is not None and comparison.engine.ttft.p50_ms >= 15
    assert comparison.added_ttft_p50_ms is not None
    header, _, row = format_table(result.comparisons).splitlines()
    assert header.split("|")[1].strip() == "conc" and row.split("|")[1].strip() == "2"

    saved = write_json(tmp_path / "side.json", result.to_json())
    assert json.loads(saved.read_text())["comparisons"][0]["concurrency"] == 2
    chart = side_by_side_chart(result.comparisons, tmp_path / "side.png", "test")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert code == 0
    ran = json.loads((tmp_path / "run.json").read_text())
    assert [c["load"]["concurrency"] for c in ran["cells"]] == [1, 2]
    assert all(c["errors"] == 0 and c["tokens_per_request_max"] == 4 for c in ran["cells"])
    assert (tmp_path / "run.png").read_bytes()[:4] == b"\x89PNG"

    # The BLS's num_output_tokens is per response (the tokens each response adds), so
    # its sum over a stream is the requested length, read by either client.
    assert sum(bls_counts) == OUTPUT_LEN, bls_counts
    assert bls_cell["tokens_per_request_min"] == bls_cell["tokens_per_request_max"] == OUTPUT_LEN
