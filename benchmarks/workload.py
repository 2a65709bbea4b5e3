"""What each request asks for: prompt and output lengths, fixed or drawn with a seed.

A length is given on the command line as `64` (fixed), `uniform:32:128` (every integer
from 32 to 128 equally likely) or `normal:64:16` (mean 64, standard deviation 16,
rounded, at least 1). Draws come from one `random.Random(seed)`, so a run's sequence of
requests is the same every time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum


class LengthKind(str, Enum):
    FIXED = "fixed"
    UNIFORM = "uniform"
    NORMAL = "normal"


@dataclass(frozen=True)
class Lengths:
    kind: LengthKind
    first: float  # fixed: the length; uniform: the lowest; normal: the mean
    second: float = 0.0  # uniform: the highest; normal: the standard deviation

    @classmethod
    def fixed(cls, length: int) -> Lengths:
        return cls(LengthKind.FIXED, length)

    @classmethod
    def parse(cls, spec: str) -> Lengths:
        """`64`, `uniform:LOW:HIGH` or `normal:MEAN:STDDEV`; a clear error otherwise."""
        parts = spec.split(":")
        try:
            if len(parts) == 1:
                lengths = cls(LengthKind.FIXED, int(parts[0]))
            elif len(parts) == 3 and parts[0] == LengthKind.UNIFORM.value:
                lengths = cls(LengthKind.UNIFORM, int(parts[1]), int(parts[2]))
            elif len(parts) == 3 and parts[0] == LengthKind.NORMAL.value:
                lengths = cls(LengthKind.NORMAL, float(parts[1]), float(parts[2]))
            else:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"length {spec!r}: expected N, uniform:LOW:HIGH or normal:MEAN:STDDEV"
            ) from None
        lengths.check(spec)
        return lengths

    def check(self, spec: str) -> None:
        if self.kind is LengthKind.FIXED and self.first < 1:
            raise ValueError(f"length {spec!r}: must be at least 1")
        if self.kind is LengthKind.UNIFORM and not 1 <= self.first <= self.second:
            raise ValueError(f"length {spec!r}: needs 1 <= LOW <= HIGH")
        if self.kind is LengthKind.NORMAL and (self.first < 1 or self.second < 0):
            raise ValueError(f"length {spec!r}: needs MEAN >= 1 and STDDEV >= 0")

    def draw(self, rng: random.Random) -> int:
        if self.kind is LengthKind.FIXED:
            return int(self.first)
        if self.kind is LengthKind.UNIFORM:
            return rng.randint(int(self.first), int(self.second))
        return max(1, round(rng.gauss(self.first, self.second)))

    def describe(self) -> str:
        if self.kind is LengthKind.FIXED:
            return str(int(self.first))
        if self.kind is LengthKind.UNIFORM:
            return f"uniform:{int(self.first)}:{int(self.second)}"
        return f"normal:{self.first:g}:{self.second:g}"


@dataclass(frozen=True)
class WorkItem:
    """One request's shape: prompt length (words for text models, ids for the engine)."""

    prompt_len: int
    output_len: int


class Workload:
    """The stream of WorkItems of one run."""

    def __init__(self, prompt: Lengths, output: Lengths, seed: int = 0) -> None:
        self.prompt = prompt
        self.output = output
        self.seed = seed
        self._rng = random.Random(seed)

    def next_item(self) -> WorkItem:
        return WorkItem(self.prompt.draw(self._rng), self.output.draw(self._rng))

    def describe(self) -> dict[str, object]:
        return {
            "prompt_len": self.prompt.describe(),
            "output_len": self.output.describe(),
            "seed": self.seed,
        }
