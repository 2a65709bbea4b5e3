"""Closed loop keeps N in flight; open loop sends at seeded Poisson arrival times."""

import asyncio
import itertools
import time

import pytest

from benchmarks.load_shapes import closed_loop, open_loop, poisson_arrivals
from benchmarks.stats import RequestRecord
from benchmarks.workload import Lengths, Workload


class Server:
    """Fake sessions sharing one view of what is in flight."""

    def __init__(self, service_s: float, fail_every: int = 0) -> None:
        self.service_s = service_s
        self.fail_every = fail_every
        self.in_flight = 0
        self.most_in_flight = 0
        self.sent: list[tuple[float, str]] = []
        self.sessions: list[Session] = []

    def open(self) -> "Session":
        session = Session(self)
        self.sessions.append(session)
        return session


class Session:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.busy = False
        self.closed = False
        self.broken = False

    async def run(self, item, request_id) -> RequestRecord:
        assert not self.busy, "two requests at once on one stream"
        assert not self.closed
        server = self.server
        self.busy = True
        server.in_flight += 1
        server.most_in_flight = max(server.most_in_flight, server.in_flight)
        start = time.perf_counter()
        server.sent.append((start, request_id))
        failed = server.fail_every and len(server.sent) % server.fail_every == 0
        try:
            await asyncio.sleep(server.service_s)
        finally:
            server.in_flight -= 1
            self.busy = False
        return RequestRecord(
            start_s=start,
            end_s=time.perf_counter(),
            tokens=item.output_len,
            responses=item.output_len,
            error="refused" if failed else None,
        )

    def close(self) -> None:
        self.closed = True


def workload() -> Workload:
    return Workload(Lengths.fixed(4), Lengths.fixed(8))


async def stop_after(stop: asyncio.Event, seconds: float) -> None:
    await asyncio.sleep(seconds)
    stop.set()


def drive(shape, seconds: float):
    async def main():
        stop = asyncio.Event()
        records = []
        timer = asyncio.create_task(stop_after(stop, seconds))
        outcome = await shape(stop, records.append)
        await timer
        return outcome, records

    return asyncio.run(main())


def test_closed_loop_keeps_exactly_n_requests_in_flight():
    server = Server(service_s=0.02)
    outcome, records = drive(
        lambda stop, sink: closed_loop(server.open, workload(), 8, stop, sink), 0.3
    )
    assert server.most_in_flight == 8
    # Each client sends its next request as soon as the previous ended: about
    # 0.3 / 0.02 = 15 rounds of 8, less scheduling slack.
    assert 8 * 5 <= len(records) <= 8 * 15
    assert outcome.unfinished == 8  # cut off at the stop, not counted as records
    assert outcome.streams_opened == 8
    assert all(session.closed for session in server.sessions)


def test_closed_loop_ramp_up_spreads_the_first_requests():
    server = Server(service_s=0.5)
    drive(
        lambda stop, sink: closed_loop(server.open, workload(), 4, stop, sink, ramp_up_s=0.2), 0.3
    )
    firsts = sorted(when for when, _ in server.sent)
    gaps = [b - a for a, b in itertools.pairwise(firsts)]
    assert len(firsts) == 4
    assert all(gap == pytest.approx(0.05, abs=0.03) for gap in gaps)


def test_closed_loop_replaces_a_broken_stream():
    server = Server(service_s=0.01)

    def open_session():
        session = server.open()
        session.broken = len(server.sessions) == 1  # the first stream breaks at once
        return session

    outcome, _ = drive(lambda stop, sink: closed_loop(open_session, workload(), 1, stop, sink), 0.1)
    assert outcome.streams_opened >= 2
    assert server.sessions[0].closed


def test_poisson_arrivals_repeat_with_a_seed_and_have_the_right_rate():
    first = poisson_arrivals(50.0, seed=3)
    again = poisson_arrivals(50.0, seed=3)
    times = [next(first) for _ in range(20000)]
    assert times[:100] == [next(again) for _ in range(100)]
    assert times[:100] != [
        t for t, _ in zip(poisson_arrivals(50.0, seed=4), range(100), strict=False)
    ]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap > 0 for gap in gaps)
    assert sum(gaps) / len(gaps) == pytest.approx(1 / 50.0, rel=0.03)
    # Exponential gaps: the standard deviation equals the mean.
    mean = sum(gaps) / len(gaps)
    std = (sum((g - mean) ** 2 for g in gaps) / len(gaps)) ** 0.5
    assert std == pytest.approx(mean, rel=0.05)
    with pytest.raises(ValueError, match="positive"):
        next(poisson_arrivals(0, seed=0))


def test_open_loop_sends_at_the_seeded_arrival_times_and_reuses_idle_streams():
    rate, seconds = 100.0, 0.5
    server = Server(service_s=0.002)
    outcome, _ = drive(
        lambda stop, sink: open_loop(server.open, workload(), rate, stop, sink, seed=5), seconds
    )
    expected = [
        t for t, _ in zip(poisson_arrivals(rate, seed=5), range(1000), strict=False) if t < seconds
    ]
    sent = sorted(when for when, _ in server.sent)
    assert abs(len(sent) - len(expected)) <= 2
    offsets = [when - sent[0] for when in sent]
    for offset, due in zip(offsets, [t - expected[0] for t in expected], strict=False):
        assert offset == pytest.approx(due, abs=0.05)
    # Requests are short next to the gaps: a few streams serve them all.
    assert outcome.streams_opened < len(sent) / 3
    assert max(outcome.send_lags_s) < 0.05


def test_open_loop_does_not_wait_for_the_server_but_respects_max_in_flight():
    server = Server(service_s=0.2)
    outcome, _ = drive(
        lambda stop, sink: open_loop(
            server.open, workload(), 200.0, stop, sink, seed=1, max_in_flight=5
        ),
        0.5,
    )
    assert server.most_in_flight == 5
    assert max(outcome.send_lags_s) > 0.1  # arrivals waited for a free slot
    assert outcome.unfinished == 5


def test_failed_requests_are_recorded_and_the_loop_goes_on():
    server = Server(service_s=0.005, fail_every=2)
    _, records = drive(lambda stop, sink: closed_loop(server.open, workload(), 2, stop, sink), 0.2)
    errors = [r for r in records if not r.ok]
    assert errors and len(errors) < len(records)
