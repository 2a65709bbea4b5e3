"""Admission: at most `limit` requests of one instance are served at once; the rest wait.

A request holds its slot from validation until the engine's stream for it has ended.
Waiting requests start in arrival order. Waiting is never silent: the first request to
wait, and then the queue's depth every few seconds while requests wait, are logged (the
queue time of each request is measured too: `Ticket.received_s`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bls.responses import ResponseSink
from bls.validation import ValidatedRequest

if TYPE_CHECKING:
    from bls.loop import ActiveRequest

logger = logging.getLogger(__name__)

# While requests wait, how often the queue's depth is logged.
WAITING_LOG_PERIOD_S = 5.0


@dataclass(eq=False)
class Ticket:
    """A request from its arrival to its end, as admission and cancellation see it."""

    validated: ValidatedRequest
    sink: ResponseSink
    request_id: str = ""  # the client's
    received_s: float = field(default_factory=time.monotonic)
    started_s: float | None = None  # when it got its slot
    active: ActiveRequest | None = None  # once its engine request starts
    cancelled: bool = False  # the client cancelled (seen by the watcher)


class Admission:
    def __init__(
        self,
        limit: int,
        start: Callable[[Ticket], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1:
            raise ValueError(f"max_concurrent_requests must be at least 1, got {limit}")
        self.limit = limit
        self._start = start
        self._clock = clock
        self._lock = threading.Lock()
        self._active = 0
        self._waiting: deque[Ticket] = deque()
        self._next_log_s = 0.0

    @property
    def active_count(self) -> int:
        return self._active

    @property
    def waiting_count(self) -> int:
        return len(self._waiting)

    def submit(self, ticket: Ticket) -> None:
        """Start `ticket` now if a slot is free, else queue it."""
        with self._lock:
            if self._active < self.limit:
                self._active += 1
                start_now = True
            else:
                self._waiting.append(ticket)
                start_now = False
                depth = len(self._waiting)
        if start_now:
            self._begin(ticket)
        else:
            self._log_waiting(depth)

    def release(self) -> None:
        """A started request ended: its slot goes to the oldest waiting one, if any."""
        with self._lock:
            if self._waiting:
                ticket = self._waiting.popleft()
            else:
                self._active -= 1
                return
        self._begin(ticket)

    def withdraw(self, ticket: Ticket) -> bool:
        """Take a waiting request out of the queue; False if it is not waiting."""
        with self._lock:
            try:
                self._waiting.remove(ticket)
            except ValueError:
                return False
            return True

    def take_waiting(self) -> list[Ticket]:
        """Empty the queue (at shutdown); the caller answers the tickets."""
        with self._lock:
            tickets = list(self._waiting)
            self._waiting.clear()
        return tickets

    def _begin(self, ticket: Ticket) -> None:
        ticket.started_s = self._clock()
        self._start(ticket)

    def _log_waiting(self, depth: int) -> None:
        now = self._clock()
        if depth == 1 or now >= self._next_log_s:
            self._next_log_s = now + WAITING_LOG_PERIOD_S
            logger.info(
                "tensorrt_llm_bls: %d request(s) waiting for a slot: all %d "
                "(max_concurrent_requests) are busy",
                depth,
                self.limit,
            )
