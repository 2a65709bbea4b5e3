"""Responses leave the scheduler thread through a few sender threads.

In the Python backend every `send` is a synchronous round trip to the server process (the
stub waits until the server has taken the response). Sent from the scheduler thread, 256
streams would cost 256 round trips per iteration, one after the other, and the engine's
pace would be set by IPC latency rather than by its step time. The C++ backend sends from
its own threads without waiting; this module gives the stand-in the same shape: the
scheduler only queues a response, and `lanes` threads send them, several round trips in
flight at once.

Order: every response of one request goes through one lane (chosen when the request is
wrapped), and a lane sends in the order it was given, so a request's FINAL always comes
last. A send that fails marks the request lost; the scheduler sees that through
`is_cancelled()` and ends the request, as it does for a client that went away.

Cancellation polls go through the lanes too. Asking Triton whether a client cancelled is
also a round trip; made on the scheduler thread, 256 requests polled every 100 ms cost
2 560 blocking round trips a second there, and each iteration waited for its share of
them (measured: the step stretched from 20 ms to over 40 ms at 256 streams).
`QueuedSink.is_cancelled()` therefore answers at once with the last reading and queues a
fresh one on the request's lane, so a cancellation is seen at the scheduler's next poll
after the lane read it: one poll period (and a lane's queue) later than a blocking poll.

Backlog: the scheduler waits before a step while more than one step's worth of work is
still queued (`wait_for_backlog`). Without it, an engine that steps faster than the
lanes can send builds queues without bound, and each new request's first response
waits behind them (measured: TTFT p50 from 150 ms to 300-770 ms at 256 streams).
"""

from __future__ import annotations

import functools
import itertools
import logging
import queue
import threading
from collections.abc import Callable, Mapping

import numpy as np

from reference_engine.sink import ResponseSink

logger = logging.getLogger(__name__)

_CLOSE = None  # a lane's end-of-work marker
Job = Callable[[], None]  # one send or poll, run on a lane


class QueuedSink:
    """A ResponseSink whose sends and cancellation polls are queued on one lane of a
    `ResponseDelivery`."""

    def __init__(self, inner: ResponseSink, enqueue: Callable[[QueuedSink, Job], None]) -> None:
        self._inner = inner
        self._enqueue = enqueue
        self._lost = False
        self._cancelled = False  # the last reading of the client's cancellation
        self._poll_queued = False

    def send(self, tensors: Mapping[str, np.ndarray] | None, *, final: bool) -> None:
        self._enqueue(self, lambda: self._inner.send(tensors, final=final))

    def send_error(self, message: str, code: str) -> None:
        self._enqueue(self, lambda: self._inner.send_error(message, code))

    def is_cancelled(self) -> bool:
        """The last reading (never waits); queues a fresh one unless one is pending."""
        if self._lost or self._cancelled:
            return True
        if not self._poll_queued:
            self._poll_queued = True
            self._enqueue(self, self._poll)
        return False

    def _poll(self) -> None:
        try:
            self._cancelled = self._inner.is_cancelled()
        except Exception:  # a failed poll is not a lost client: the next one may work
            logger.exception("is_cancelled() failed")
        finally:
            self._poll_queued = False

    def mark_lost(self) -> None:
        self._lost = True


class ResponseDelivery:
    """`lanes` sender threads; `wrap` gives a request's sink its lane."""

    def __init__(self, lanes: int = 8) -> None:
        if lanes < 1:
            raise ValueError(f"lanes must be at least 1, got {lanes}")
        self._lanes: list[queue.SimpleQueue] = [queue.SimpleQueue() for _ in range(lanes)]
        self._next_lane = itertools.cycle(range(lanes))
        self._backlog = 0  # jobs queued or running, on all lanes
        self._backlog_changed = threading.Condition()
        self._threads = [
            threading.Thread(
                target=self._run, args=(lane,), name=f"reference-engine-send-{index}", daemon=True
            )
            for index, lane in enumerate(self._lanes)
        ]
        for thread in self._threads:
            thread.start()

    def wrap(self, sink: ResponseSink) -> QueuedSink:
        lane = self._lanes[next(self._next_lane)]
        return QueuedSink(sink, functools.partial(self._enqueue, lane))

    @property
    def backlog(self) -> int:
        return self._backlog

    def wait_for_backlog(self, at_most: int, timeout_s: float = 1.0) -> bool:
        """Block until at most `at_most` jobs are queued or running (False: timed out)."""
        with self._backlog_changed:
            return self._backlog_changed.wait_for(lambda: self._backlog <= at_most, timeout_s)

    def close(self, timeout_s: float = 30.0) -> None:
        """Send everything queued so far, then stop the threads."""
        for lane in self._lanes:
            lane.put(_CLOSE)
        for thread in self._threads:
            thread.join(timeout_s)

    def _enqueue(self, lane: queue.SimpleQueue, sink: QueuedSink, job: Job) -> None:
        with self._backlog_changed:
            self._backlog += 1
        lane.put((sink, job))

    def _run(self, lane: queue.SimpleQueue) -> None:
        while True:
            item: tuple[QueuedSink, Job] | None = lane.get()
            if item is _CLOSE:
                return
            sink, job = item
            try:
                job()
            except Exception:
                logger.exception("sending a response failed")
                sink.mark_lost()
            finally:
                with self._backlog_changed:
                    self._backlog -= 1
                    self._backlog_changed.notify_all()
