"""The reference engine's injected faults: an error, a malformed tensor or a stall at step k.

Driven step by step through the real scheduler with a scripted backend; the same knobs
are exercised end to end against the BLS in tests/integration/test_engine_faults.py.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from reference_engine.config import EngineConfig
from reference_engine.faults import Fault, FaultPlan
from reference_engine.metrics import InMemoryMetrics
from reference_engine.scheduler import Scheduler
from reference_engine.testing import RecordingSink
from tests.unit.test_reference_engine_scheduler import ScriptedBackend, b, drive, request


def scheduler(metrics: InMemoryMetrics | None = None, **steps: int) -> Scheduler:
    return Scheduler(ScriptedBackend(), faults=FaultPlan(**steps), metrics=metrics)


def test_the_knobs_are_off_by_default_and_read_from_the_config():
    assert not EngineConfig().faults.enabled
    config = EngineConfig.from_parameters(
        {
            "generation_backend": "synthetic",
            "fault_error_at_step": "7",
            "fault_malformed_at_step": "0",
            "fault_stall_at_step": "",
        }
    )
    assert config.faults == FaultPlan(error_at_step=7)
    assert config.faults.at(7) is Fault.ERROR and config.faults.at(6) is None
    with pytest.raises(ValueError, match="fault_stall_at_step"):
        EngineConfig.from_parameters(
            {"generation_backend": "synthetic", "fault_stall_at_step": "-1"}
        )


def test_error_at_step_ends_the_request_with_an_error_and_final():
    sched = scheduler(error_at_step=3)
    sink = RecordingSink()
    sched.submit(request([[1]], 10, streaming=b(True)), sink)
    drive(sched, [sink])
    assert [len(r.tokens) for r in sink.responses[:-1]] == [1, 1]  # steps 1 and 2
    assert sink.error == (
        "injected fault: generation failed at step 3 (fault_error_at_step)",
        "INTERNAL",
    )
    assert sink.finals == 1 and sched.active_count == 0


def test_a_request_that_ends_before_the_step_is_served_normally():
    sched = scheduler(error_at_step=3, stall_at_step=3)
    short = RecordingSink()
    sched.submit(request([[1]], 2, streaming=b(True)), short)
    drive(sched, [short])
    assert short.error is None and short.finals == 1
    assert [r.tokens for r in short.responses] == [[110], [111]]


def test_malformed_at_step_sends_an_output_ids_tensor_outside_the_contract():
    sched = scheduler(malformed_at_step=2)
    sink = RecordingSink()
    sched.submit(request([[1]], 3, streaming=b(True)), sink)
    drive(sched, [sink])
    output_ids = [r.tensors["output_ids"] for r in sink.responses]
    assert [(a.dtype, a.shape) for a in output_ids] == [
        (np.int32, (1, 1, 1)),
        (np.float32, (1,)),  # FP32 and one-dimensional
        (np.int32, (1, 1, 1)),
    ]
    assert sink.error is None and sink.responses[-1].final  # generation went on


def test_a_stalled_request_stays_silent_until_a_stop_request_ends_it():
    metrics = InMemoryMetrics()
    sched = scheduler(metrics, stall_at_step=3)
    sink, other = RecordingSink(), RecordingSink()
    sched.submit(request([[1]], 50, request_id="7", streaming=b(True)), sink)
    for _ in range(10):
        sched.run_once()
    assert len(sink.responses) == 2 and not sink.done  # steps 1 and 2, then nothing
    # It still holds its place, and the engine keeps serving others.
    assert metrics.active_sequences == 1
    sched.submit(request([[2]], 2, request_id="8", streaming=b(True)), other)
    drive(sched, [other])
    assert other.error is None and len(other.responses) == 2
    stop_sink = RecordingSink()
    sched.stop("7", stop_sink)
    drive(sched, [sink, stop_sink])
    assert sink.responses[-1].final and sink.error is None
    assert metrics.cancels["stop_request"] == 1 and metrics.active_sequences == 0


def test_a_stalled_request_ends_when_its_client_cancels():
    metrics = InMemoryMetrics()
    sched = scheduler(metrics, stall_at_step=1)
    sink = RecordingSink()
    sched.submit(request([[1]], 50, streaming=b(True)), sink)
    for _ in range(5):
        sched.run_once()
    assert sink.responses == [] and metrics.active_sequences == 1
    sink.cancelled = True
    drive(sched, [sink])
    assert sink.error == ("request cancelled by the client", "CANCELLED")
    assert metrics.cancels["client"] == 1 and metrics.active_sequences == 0


def test_the_scheduler_thread_keeps_checking_a_stalled_request_for_cancellation():
    # With nothing left to step, the thread must not sleep until new work arrives.
    sched = Scheduler(ScriptedBackend(), faults=FaultPlan(stall_at_step=2))
    sched.start()
    sink = RecordingSink()
    try:
        sched.submit(request([[1]], 50, streaming=b(True)), sink)
        assert sink.wait_responses(1)
        time.sleep(0.2)  # stalled, idle
        sink.cancelled = True
        assert sink.wait_done(5)
        assert sink.error == ("request cancelled by the client", "CANCELLED")
    finally:
        sched.shutdown()
