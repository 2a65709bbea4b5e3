"""ResponseDelivery: the scheduler queues responses, sender threads send them in order."""

from __future__ import annotations

import threading
import time

import pytest

from reference_engine.delivery import ResponseDelivery
from reference_engine.testing import RecordingSink


class SlowSink(RecordingSink):
    """Each send takes a while, as a round trip to the server does."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s
        self.threads: set[str] = set()

    def send(self, tensors, *, final):
        time.sleep(self.delay_s)
        self.threads.add(threading.current_thread().name)
        super().send(tensors, final=final)


def test_each_sink_keeps_its_order_and_final_comes_last():
    delivery = ResponseDelivery(lanes=4)
    sinks = [RecordingSink() for _ in range(10)]
    wrapped = [delivery.wrap(sink) for sink in sinks]
    for step in range(20):
        for queued in wrapped:
            queued.send({"step": step}, final=step == 19)
    delivery.close()
    for sink in sinks:
        assert [int(r.tensors["step"]) for r in sink.responses] == list(range(20))
        assert [r.final for r in sink.responses] == [False] * 19 + [True]


def test_sends_of_different_requests_overlap():
    # 8 requests x 5 sends x 20 ms: one after the other that is 0.8 s; on 8 lanes, 0.1 s.
    delivery = ResponseDelivery(lanes=8)
    sinks = [SlowSink(0.02) for _ in range(8)]
    started = time.monotonic()
    for queued in [delivery.wrap(sink) for sink in sinks]:
        for step in range(5):
            queued.send({"step": step}, final=step == 4)
    delivery.close()
    assert time.monotonic() - started < 0.5
    assert all(len(sink.responses) == 5 for sink in sinks)
    # One request's sends all go through one lane.
    assert all(len(sink.threads) == 1 for sink in sinks)


def test_a_failed_send_reads_as_cancelled():
    delivery = ResponseDelivery(lanes=2)
    broken = RecordingSink()
    broken.fail_sends = True
    queued = delivery.wrap(broken)
    assert not queued.is_cancelled()
    queued.send({"step": 0}, final=False)
    delivery.close()
    assert queued.is_cancelled()


def test_errors_are_queued_behind_responses():
    delivery = ResponseDelivery(lanes=1)
    sink = SlowSink(0.01)
    queued = delivery.wrap(sink)
    queued.send({"step": 0}, final=False)
    queued.send_error("engine failed", "INTERNAL")
    delivery.close()
    assert [r.error for r in sink.responses] == [None, ("engine failed", "INTERNAL")]


def test_lanes_must_be_positive():
    with pytest.raises(ValueError, match="lanes"):
        ResponseDelivery(lanes=0)


class PolledSink(RecordingSink):
    """Counts cancellation polls and where they ran; a poll can be made to block."""

    def __init__(self) -> None:
        super().__init__()
        self.polls: list[str] = []
        self.gate = threading.Event()
        self.gate.set()
        self.poll_fails = False

    def is_cancelled(self) -> bool:
        self.gate.wait(5)
        self.polls.append(threading.current_thread().name)
        if self.poll_fails:
            raise RuntimeError("server gone")
        return super().is_cancelled()


def wait_until(condition, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return False


def test_cancellation_polls_run_on_the_lane_and_never_block_the_caller():
    delivery = ResponseDelivery(lanes=1)
    sink = PolledSink()
    sink.gate.clear()  # the round trip hangs until released
    queued = delivery.wrap(sink)
    sink.cancelled = True
    started = time.monotonic()
    for _ in range(100):  # the scheduler polls while the first poll is still out
        assert not queued.is_cancelled()
    assert time.monotonic() - started < 0.5
    sink.gate.set()
    assert wait_until(lambda: len(sink.polls) == 1)
    assert sink.polls == ["reference-engine-send-0"]  # one poll in flight at a time
    # The reading arrives with the next poll.
    assert wait_until(queued.is_cancelled)
    delivery.close()


def test_a_failed_poll_is_not_a_lost_client():
    delivery = ResponseDelivery(lanes=1)
    sink = PolledSink()
    sink.poll_fails = True
    queued = delivery.wrap(sink)
    assert not queued.is_cancelled()
    assert wait_until(lambda: len(sink.polls) == 1)
    sink.poll_fails = False
    assert wait_until(lambda: not queued.is_cancelled() and len(sink.polls) >= 2)
    queued.send({"step": 0}, final=True)
    delivery.close()
    assert len(sink.responses) == 1


def test_wait_for_backlog_blocks_until_the_lanes_catch_up():
    delivery = ResponseDelivery(lanes=2)
    sinks = [SlowSink(0.02) for _ in range(2)]
    wrapped = [delivery.wrap(sink) for sink in sinks]
    for step in range(5):
        for queued in wrapped:
            queued.send({"step": step}, final=step == 4)
    assert delivery.backlog >= 8  # 10 sends of 20 ms on 2 lanes: 100 ms of work
    started = time.monotonic()
    assert delivery.wait_for_backlog(2)
    assert time.monotonic() - started >= 0.04  # at least 3 sends per lane had to go
    assert delivery.backlog <= 2
    assert delivery.wait_for_backlog(0)
    assert all(len(sink.responses) == 5 for sink in sinks)
    delivery.close()


def test_wait_for_backlog_gives_up_after_its_timeout():
    delivery = ResponseDelivery(lanes=1)
    sink = PolledSink()
    sink.gate.clear()  # a poll that hangs
    queued = delivery.wrap(sink)
    queued.is_cancelled()
    queued.send({"step": 0}, final=True)
    assert not delivery.wait_for_backlog(0, timeout_s=0.05)
    sink.gate.set()
    assert delivery.wait_for_backlog(0)
    delivery.close()
