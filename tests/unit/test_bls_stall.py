"""`StallWatch`: which engine requests have been silent for the stall timeout, on a fake clock.

The watch driving a real server (an engine that goes silent is given up, a slow one is
not) is in test_bls_server.py; the option's parsing is here.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from bls.limits import ServingOptions
from bls.stall import StallWatch
from serving_common.config import ConfigError


@dataclass(eq=False)
class Request:
    """What the watch reads of an ActiveRequest."""

    engine_responses: int = 0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_watch(timeout_s: float = 10.0) -> tuple[StallWatch, Clock, list]:
    clock, reported = Clock(), []
    return StallWatch(timeout_s, reported.append, clock=clock), clock, reported


def test_a_request_silent_since_its_start_is_overdue_once():
    watch, clock, _ = make_watch()
    request = Request()
    watch.watch(request)
    clock.now += 9.9
    assert watch.overdue() == []
    clock.now += 0.1
    assert watch.overdue() == [request]
    clock.now += 100
    assert watch.overdue() == []  # reported once, then forgotten
    assert len(watch) == 0


def test_silence_counts_from_the_last_response_seen():
    watch, clock, _ = make_watch()
    request = Request()
    watch.watch(request)
    clock.now += 8
    request.engine_responses += 1  # a response
    assert watch.overdue() == []  # seen at 8 s: the silence restarts here
    clock.now += 9
    assert watch.overdue() == []
    clock.now += 1
    assert watch.overdue() == [request]


def test_a_request_whose_stream_ended_is_never_reported():
    watch, clock, _ = make_watch()
    done, silent = Request(), Request()
    watch.watch(done)
    watch.watch(silent)
    watch.forget(done)
    clock.now += 60
    assert watch.overdue() == [silent]


def test_the_timer_checks_on_the_event_loop_and_reports_each_stalled_request():
    reported: list = []
    watch = StallWatch(0.08, reported.append)  # the real clock
    assert watch.period_s == pytest.approx(0.02)  # a quarter of the timeout
    silent, busy = Request(), Request()

    async def scenario() -> None:
        watch.start(asyncio.get_running_loop())
        watch.watch(silent)
        watch.watch(busy)
        for _ in range(15):  # 0.15 s: `busy` answers every 10 ms
            busy.engine_responses += 1
            await asyncio.sleep(0.01)

    asyncio.run(scenario())
    assert reported == [silent]


def test_the_period_is_at_most_a_second():
    assert StallWatch(600, lambda active: None).period_s == 1.0


@pytest.mark.parametrize(
    ("value", "expected"), [("600", 600.0), ("0.5", 0.5), ("0", 0.0), (" 30 ", 30.0)]
)
def test_the_stall_timeout_parameter(value, expected):
    options = ServingOptions.from_parameters({"engine_stall_timeout_s": value})
    assert options.engine_stall_timeout_s == expected


@pytest.mark.parametrize("value", ["-1", "soon", "inf", "nan", ""])
def test_a_bad_stall_timeout_names_the_parameter(value):
    with pytest.raises(ConfigError, match="engine_stall_timeout_s"):
        ServingOptions.from_parameters({"engine_stall_timeout_s": value})


def test_the_shipped_default_is_ten_minutes():
    assert ServingOptions().engine_stall_timeout_s == 600.0
