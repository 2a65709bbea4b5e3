"""The sustained-load script (benchmarks/soak.py) for 60 s in CI, at concurrency 64.

The 10-minute run is `python -m benchmarks.soak`; this is the same code, shorter: 10 s
of warm-up, then 50 s measured. No request may be lost, hung or answered with an error,
no model process may crash or restart, and each one's RSS must grow less than 10%.
"""

from __future__ import annotations

import asyncio

import pytest

from benchmarks.soak import MAX_MEMORY_GROWTH, SoakOptions, run_soak
from tests.integration.clients import bls_open_requests, engine_is_idle, metric, wait_for

pytestmark = pytest.mark.integration


def test_sixty_seconds_at_concurrency_64_lose_nothing(synthetic_server):
    options = SoakOptions(concurrency=64, duration_s=50, warmup_s=10)
    report = asyncio.run(run_soak(synthetic_server.grpc_url, synthetic_server.pid, options))
    print(f"\nsoak: {report.to_json()}")
    assert report.sent > 64 * 10  # every client finished many requests
    assert report.completed + report.cut_at_end == report.sent
    assert (dict(report.errors), report.lost, report.hung) == ({}, [], 0)
    assert report.processes_gone == []
    labels = {label.split(" (pid")[0] for label in report.memory_mib}
    assert {"tritonserver", "stub:tensorrt_llm", "stub:tensorrt_llm_bls"} <= labels
    for label in report.memory_mib:
        assert report.growth(label) < MAX_MEMORY_GROWTH, (label, report.memory_mib[label])
    # The 64 requests cut off at the end were cancelled: nothing is left running. (The
    # 2 s bound on ending dropped streams is test_reliability's; here 64 end at once on
    # a machine still busy with the load, so the wait is longer.)
    assert wait_for(lambda: engine_is_idle(synthetic_server), 10.0), metric(
        synthetic_server.metrics_url, "reference_engine_active_sequences"
    )
    assert wait_for(lambda: bls_open_requests(synthetic_server) == (0, 0), 10.0), bls_open_requests(
        synthetic_server
    )
