"""A server stopped after traffic stops cleanly: no model process crashes on the way out.

A Python-backend stub that crashes while the server shuts down leaves no trace that the
server reports (tritonserver reaps its stubs, exits 0 and logs every model as unloaded);
only the kernel log has it ("triton_python_b[PID]: segfault at 60 ..."). The reference
engine's stub did that on every shutdown after any request, until its finalize freed what
holds Triton requests (reference_engine/triton_glue.py). So this test reads the kernel
log for the stub processes of the server it stops, and is skipped where the kernel log
cannot be read.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from benchmarks.resources import process_label, process_tree
from local_triton.testing import staged_server, synthetic_plan
from tests.integration.clients import grpc_generate, grpc_text

pytestmark = pytest.mark.integration


def kernel_log() -> str | None:
    """The kernel ring buffer, or None where this user may not read it."""
    try:
        done = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 and done.stdout.strip() else None


def crashed(kernel_lines: str, pid: int) -> list[str]:
    """The kernel's lines about process `pid` dying of a fatal signal.

    The kernel writes "NAME[PID]: segfault at ..." and "traps: NAME[PID] general protection
    ..." or "traps: NAME[PID] trap invalid opcode ...".
    """
    pattern = re.compile(rf"\[{pid}\]:? (segfault|general protection|trap)")
    return [line for line in kernel_lines.splitlines() if pattern.search(line)]


def test_a_server_stopped_after_traffic_has_no_crashed_model_process(fixture_paths):
    before = kernel_log()
    if before is None:
        pytest.skip("the kernel log (dmesg) cannot be read here")
    with staged_server(synthetic_plan(fixture_paths, step_ms=5)) as server:
        for _ in range(3):
            responses = grpc_generate(
                server.grpc_url, {"text_input": "Hello there", "max_tokens": 8, "stream": True}
            )
            assert grpc_text(responses)
        assert server.pid is not None
        stubs = {
            process.pid: process_label(process)
            for process in process_tree(server.pid)
            if process_label(process).startswith("stub:")
        }
        assert {"stub:tensorrt_llm", "stub:tensorrt_llm_bls"} <= set(stubs.values())
        assert server.stop(timeout_s=60) == 0  # SIGTERM, as an operator stops it
    # Only lines logged since: an earlier process may have had one of these pids.
    seen = set(before.splitlines())
    new_lines = "\n".join(line for line in (kernel_log() or "").splitlines() if line not in seen)
    crashes = {label: crashed(new_lines, pid) for pid, label in stubs.items()}
    assert {label: lines for label, lines in crashes.items() if lines} == {}
