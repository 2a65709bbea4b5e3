"""Engine stall timeout: an engine request that stays silent too long is given up.

An engine that stops answering one request (a hung sequence, a response lost on the way)
would otherwise hold its client, and its admission slot, forever: nothing else ends it.
So every `period_s` the generation loop's thread asks which engine requests have sent
nothing for `engine_stall_timeout_s` (`StallWatch.overdue`) and hands each to
`on_stalled` once; the server answers its client with an error and FINAL and cancels
its engine call (`bls.server`).

Silence is counted from the engine call (so the wait for the first response counts too:
a request queued behind a full engine is silent as well, which is why the shipped
timeout is generous) and from then on from the last response. Progress is read from
`ActiveRequest.engine_responses`, a counter the loop bumps per response, so no clock is
read per token: a stall is seen between `timeout_s` and `timeout_s + period_s` after
the last response. Only the loop's thread touches a `StallWatch`: no locks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bls.loop import ActiveRequest

logger = logging.getLogger(__name__)

# Checks per timeout, and the longest gap between two checks.
_CHECKS_PER_TIMEOUT = 4
_MAX_PERIOD_S = 1.0


class StallWatch:
    def __init__(
        self,
        timeout_s: float,
        on_stalled: Callable[[ActiveRequest], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError(f"engine_stall_timeout_s must be above 0, got {timeout_s}")
        self.timeout_s = timeout_s
        self.period_s = min(_MAX_PERIOD_S, timeout_s / _CHECKS_PER_TIMEOUT)
        self._on_stalled = on_stalled
        self._clock = clock
        # id -> (request, its response count when last seen to change, when that was)
        self._watched: dict[int, tuple[ActiveRequest, int, float]] = {}

    def __len__(self) -> int:
        return len(self._watched)

    def watch(self, active: ActiveRequest) -> None:
        """`active`'s engine call starts now."""
        self._watched[id(active)] = (active, active.engine_responses, self._clock())

    def forget(self, active: ActiveRequest) -> None:
        """`active`'s engine stream has ended."""
        self._watched.pop(id(active), None)

    def overdue(self) -> list[ActiveRequest]:
        """The requests silent for `timeout_s` or more; each is reported once."""
        now = self._clock()
        late = []
        for key, (active, seen, since) in list(self._watched.items()):
            if active.engine_responses != seen:
                self._watched[key] = (active, active.engine_responses, now)
            elif now - since >= self.timeout_s:
                del self._watched[key]
                late.append(active)
        return late

    def start(self, event_loop: asyncio.AbstractEventLoop) -> None:
        """Check every `period_s` on `event_loop` (call on its thread) while it runs."""
        event_loop.call_later(self.period_s, self._check, event_loop)

    def _check(self, event_loop: asyncio.AbstractEventLoop) -> None:
        for active in self.overdue():
            try:
                self._on_stalled(active)
            except Exception:  # never lose the timer
                logger.exception("tensorrt_llm_bls: giving up a stalled engine request failed")
        event_loop.call_later(self.period_s, self._check, event_loop)
