"""Client cancellation, checked on a timer.

In the Python backend `is_cancelled()` is a round trip to the server process. Asked
once per engine response it cost a round trip per token; the C++ TensorRT-LLM backend
instead polls every `cancellation_check_period_ms` (default 100). So does this: one
thread looks at every request (waiting or active) once per period and reports the
cancelled ones. A client that leaves is noticed within one period.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from bls.admission import Ticket

logger = logging.getLogger(__name__)


class CancellationWatcher:
    def __init__(self, period_s: float, on_cancelled: Callable[[Ticket], None]) -> None:
        if not period_s > 0:
            raise ValueError(f"cancellation_check_period_ms must be above 0, got {period_s}")
        self._period_s = period_s
        self._on_cancelled = on_cancelled
        self._tickets: dict[int, Ticket] = {}
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="bls-cancellation-watcher", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stopped.set()
        self._thread.join(5.0)

    def __len__(self) -> int:
        """Requests watched now (waiting or active)."""
        return len(self._tickets)

    def watch(self, ticket: Ticket) -> None:
        self._tickets[id(ticket)] = ticket

    def unwatch(self, ticket: Ticket) -> None:
        self._tickets.pop(id(ticket), None)

    def check_once(self) -> None:
        """One pass over every watched request (the timer calls this)."""
        for ticket in list(self._tickets.values()):
            if ticket.cancelled:
                continue
            try:
                cancelled = ticket.sink.is_cancelled()
            except Exception:
                logger.exception("tensorrt_llm_bls: is_cancelled() failed")
                continue
            if cancelled:
                ticket.cancelled = True
                self._on_cancelled(ticket)

    def _run(self) -> None:
        while not self._stopped.wait(self._period_s):
            try:
                self.check_once()
            except Exception:  # never lose the watcher
                logger.exception("tensorrt_llm_bls: the cancellation check failed")
