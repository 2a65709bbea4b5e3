"""Faults the engine can be told to inject, to test how its callers cope (off by default).

Each fault is a config parameter (see triton_model/config.pbtxt) naming a generation
step k: step 1 is a sequence's first generated token. When a sequence reaches step k:

- `fault_error_at_step`: its request ends with an error response (INTERNAL) and FINAL,
  as an engine that fails mid-generation answers;
- `fault_malformed_at_step`: that step's streamed response carries an `output_ids`
  tensor the contract does not allow (FP32 and one-dimensional instead of INT32
  [1, 1, T]); generation goes on as if nothing happened;
- `fault_stall_at_step`: its request goes silent, with no more responses and no FINAL,
  and keeps its place in the engine until a stop request or its client's cancellation
  ends it, as a hung sequence would.

A request that ends before step k never meets the fault, so short requests keep being
served next to faulted ones on the same engine. 0 turns a fault off. Non-streaming
requests send no per-step responses: only the error and the stall apply to them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


class Fault(enum.Enum):
    ERROR = "fault_error_at_step"
    MALFORMED = "fault_malformed_at_step"
    STALL = "fault_stall_at_step"


@dataclass(frozen=True)
class FaultPlan:
    """At which generation step each fault strikes; 0: never."""

    error_at_step: int = 0
    malformed_at_step: int = 0
    stall_at_step: int = 0

    def __post_init__(self) -> None:
        steps = {
            Fault.ERROR: self.error_at_step,
            Fault.STALL: self.stall_at_step,
            Fault.MALFORMED: self.malformed_at_step,
        }
        for fault, step in steps.items():
            if isinstance(step, bool) or not isinstance(step, int) or step < 0:
                raise ValueError(f"{fault.value}: must be 0 (off) or a step >= 1, got {step!r}")
        # Looked up for every generated token: one dict lookup. Two faults at the same
        # step: the first listed above wins.
        by_step: dict[int, Fault] = {}
        for fault, step in steps.items():
            if step:
                by_step.setdefault(step, fault)
        object.__setattr__(self, "_by_step", by_step)

    @property
    def enabled(self) -> bool:
        return bool(self._by_step)

    def at(self, step: int) -> Fault | None:
        """The fault that strikes a sequence at its `step`-th generated token, if any."""
        return self._by_step.get(step)


def malformed(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`tensors` with `output_ids` made unreadable under the contract: FP32 and 1-D."""
    damaged = dict(tensors)
    damaged["output_ids"] = np.asarray(tensors["output_ids"], dtype=np.float32).reshape(-1)
    return damaged
