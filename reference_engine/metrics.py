"""What the scheduler reports about itself; Triton-backed in `triton_glue.TritonMetrics`."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Protocol

CANCEL_REASONS = ("stop_request", "client")


class EngineMetrics(Protocol):
    def request_received(self) -> None: ...

    def cancelled(self, reason: str) -> None:
        """A request ended early; reason: one of CANCEL_REASONS."""

    def stop_request_received(self, matched: bool) -> None:
        """A stop=true request arrived; `matched`: it named a request still in flight
        (False when that request had already finished, a normal race)."""

    def tokens_generated(self, count: int) -> None: ...

    def set_active_sequences(self, count: int) -> None: ...

    def observe_batch_size(self, size: int) -> None:
        """Sequences advanced in one iteration."""


class NullMetrics:
    def request_received(self) -> None:
        pass

    def cancelled(self, reason: str) -> None:
        pass

    def stop_request_received(self, matched: bool) -> None:
        pass

    def tokens_generated(self, count: int) -> None:
        pass

    def set_active_sequences(self, count: int) -> None:
        pass

    def observe_batch_size(self, size: int) -> None:
        pass


class InMemoryMetrics:
    """Keeps the numbers in memory (for tests and for debugging without Triton)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.cancels: Counter[str] = Counter()
        self.stop_requests: Counter[bool] = Counter()
        self.tokens = 0
        self.active_sequences = 0
        self.batch_sizes: list[int] = []

    def request_received(self) -> None:
        with self._lock:
            self.requests += 1

    def cancelled(self, reason: str) -> None:
        with self._lock:
            self.cancels[reason] += 1

    def stop_request_received(self, matched: bool) -> None:
        with self._lock:
            self.stop_requests[matched] += 1

    def tokens_generated(self, count: int) -> None:
        with self._lock:
            self.tokens += count

    def set_active_sequences(self, count: int) -> None:
        with self._lock:
            self.active_sequences = count

    def observe_batch_size(self, size: int) -> None:
        with self._lock:
            self.batch_sizes.append(size)
