"""Load shapes: when requests are sent.

- Closed loop: N clients, each with its own stream, each sending its next request as
  soon as the previous one ended; N requests are always in flight. With a ramp-up,
  client i sends its first request at i/N of it, so fixed-length requests do not stay
  in lockstep waves that all start (and compete for their first token) together.
- Open loop: requests arrive as a Poisson process at a given rate (exponential gaps
  drawn from `random.Random(seed)`), whatever the server's pace. Each goes out on an
  idle stream, or a new one when none is idle; at most `max_in_flight` at once (an
  arrival beyond that waits, and the wait is reported as send lag).

Both run until `stop` is set, then cancel what is still in flight (closing its stream
cancels the request on the server) and report how many were cut off. Every finished
request, failed or not, goes to `on_record` as it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from benchmarks.stats import RequestRecord
from benchmarks.workload import WorkItem, Workload

# After a failed request a client waits this long before its next one, so a server that
# refuses everything at once is not hammered in a tight loop for the whole run.
ERROR_BACKOFF_S = 0.01


class Session(Protocol):
    broken: bool

    async def run(self, item: WorkItem, request_id: str) -> RequestRecord: ...

    def close(self) -> None: ...


SessionFactory = Callable[[], Session]
RecordSink = Callable[[RequestRecord], None]


@dataclass
class LoadOutcome:
    unfinished: int = 0  # in flight when stopped, cancelled
    streams_opened: int = 0
    send_lags_s: list[float] = field(default_factory=list)  # open loop: sent after due


class _InFlight:
    def __init__(self) -> None:
        self.now = 0
        self.most = 0

    def enter(self) -> None:
        self.now += 1
        self.most = max(self.most, self.now)

    def leave(self) -> None:
        self.now -= 1


async def closed_loop(
    open_session: SessionFactory,
    workload: Workload,
    concurrency: int,
    stop: asyncio.Event,
    on_record: RecordSink,
    *,
    ramp_up_s: float = 0.0,
) -> LoadOutcome:
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if ramp_up_s < 0:
        raise ValueError(f"ramp-up must be >= 0 s, got {ramp_up_s}")
    outcome = LoadOutcome()
    in_flight = _InFlight()

    async def client(index: int) -> None:
        if ramp_up_s:
            await asyncio.sleep(ramp_up_s * index / concurrency)
        session = open_session()
        outcome.streams_opened += 1
        sent = 0
        try:
            while not stop.is_set():
                item = workload.next_item()
                in_flight.enter()
                record = await session.run(item, f"c{index}-{sent}")
                in_flight.leave()
                sent += 1
                on_record(record)
                if session.broken:
                    session.close()
                    session = open_session()
                    outcome.streams_opened += 1
                if not record.ok:
                    await asyncio.sleep(ERROR_BACKOFF_S)
        finally:
            session.close()

    clients = [asyncio.create_task(client(i)) for i in range(concurrency)]
    await _until_stopped(stop, clients)
    outcome.unfinished = in_flight.now
    await _cancel(clients)
    return outcome


def poisson_arrivals(rate_per_s: float, seed: int) -> Iterator[float]:
    """Arrival times (seconds from the start) of a Poisson process: exponential gaps."""
    if rate_per_s <= 0:
        raise ValueError(f"request rate must be positive, got {rate_per_s}")
    rng = random.Random(seed)
    when = 0.0
    while True:
        when += rng.expovariate(rate_per_s)
        yield when


async def open_loop(
    open_session: SessionFactory,
    workload: Workload,
    rate_per_s: float,
    stop: asyncio.Event,
    on_record: RecordSink,
    *,
    seed: int = 0,
    max_in_flight: int = 1024,
    clock: Callable[[], float] = time.perf_counter,
) -> LoadOutcome:
    if max_in_flight < 1:
        raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
    outcome = LoadOutcome()
    idle: list[Session] = []
    slots = asyncio.Semaphore(max_in_flight)
    in_flight = _InFlight()
    requests: set[asyncio.Task] = set()

    async def one(session: Session, item: WorkItem, request_id: str) -> None:
        in_flight.enter()
        try:
            record = await session.run(item, request_id)
        except asyncio.CancelledError:
            session.close()
            raise
        finally:
            in_flight.leave()
            slots.release()
        on_record(record)
        if session.broken:
            session.close()
        else:
            idle.append(session)

    async def arrivals() -> None:
        start = clock()
        for sent, offset in enumerate(poisson_arrivals(rate_per_s, seed)):
            due = start + offset
            delay = due - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()
            outcome.send_lags_s.append(max(0.0, clock() - due))
            if idle:
                session = idle.pop()
            else:
                session = open_session()
                outcome.streams_opened += 1
            task = asyncio.create_task(one(session, workload.next_item(), f"o{sent}"))
            requests.add(task)
            task.add_done_callback(requests.discard)

    sender = asyncio.create_task(arrivals())
    await _until_stopped(stop, [sender])
    outcome.unfinished = in_flight.now
    await _cancel([sender, *requests])
    for session in idle:
        session.close()
    return outcome


async def _until_stopped(stop: asyncio.Event, tasks: list[asyncio.Task]) -> None:
    """Wait for `stop`; a task that fails before then fails the run (a bug, not load)."""
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        if task is not stopper and task.exception() is not None:
            stopper.cancel()
            raise task.exception()  # type: ignore[misc]
    stopper.cancel()


async def _cancel(tasks: list[asyncio.Task]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
