"""Memory and CPU of the server and its model processes, sampled during a cell.

The model processes are tritonserver and every process under it: each Python-backend
model instance is a `triton_python_backend_stub` process, labelled here by its model.
Two memory sums are kept: RSS, what the issue's goal is stated in (it counts the
shared-memory regions the server and its stubs both map once per process), and PSS,
which divides shared pages among the processes that map them (no double counting).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

MiB = 1024 * 1024
STUB = "triton_python_backend_stub"


def process_label(process: psutil.Process) -> str:
    """`tritonserver`, `stub:<model>` for a Python-backend stub, else the process name."""
    try:
        command = process.cmdline()
    except psutil.Error:
        return "gone"
    if command and Path(command[0]).name == STUB and len(command) > 1:
        # argv[1] is the model's file: <repository>/<model>/<version>/model.py
        return f"stub:{Path(command[1]).parents[1].name}"
    return process.name()


def process_tree(root_pid: int) -> list[psutil.Process]:
    root = psutil.Process(root_pid)
    return [root, *root.children(recursive=True)]


@dataclass
class ProcessUsage:
    rss_max_mib: float = 0.0
    pss_max_mib: float = 0.0
    cpu_s: float = 0.0  # user + system CPU between start() and stop() of the sampler


@dataclass
class TreeUsage:
    """The maxima of the sums over all processes, and each process's own numbers."""

    rss_max_mib: float = 0.0
    pss_max_mib: float = 0.0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    processes: dict[str, ProcessUsage] = field(default_factory=dict)

    @property
    def cpu_cores(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


class TreeSampler:
    """Samples the tree's memory every `interval_s` on a thread from `start` to `stop`;
    CPU is measured from `begin_cpu` to `end_cpu` (the measurement window)."""

    def __init__(self, root_pid: int, interval_s: float = 0.5) -> None:
        self._root_pid = root_pid
        self._interval_s = interval_s
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.usage = TreeUsage()
        self._cpu_at_start: dict[int, float] = {}
        self._labels: dict[int, str] = {}
        self._started_at = 0.0

    def _processes(self) -> list[psutil.Process]:
        processes = process_tree(self._root_pid)
        for process in processes:
            if process.pid not in self._labels:
                label = process_label(process)
                taken = set(self._labels.values())
                # Several instances of one model: stub:tensorrt_llm_bls, ...#2, ...
                unique, n = label, 1
                while unique in taken:
                    n += 1
                    unique = f"{label}#{n}"
                self._labels[process.pid] = unique
        return processes

    def _cpu(self) -> dict[int, float]:
        seconds: dict[int, float] = {}
        for process in self._processes():
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            seconds[process.pid] = times.user + times.system
        return seconds

    def sample_memory(self) -> None:
        rss = pss = 0.0
        for process in self._processes():
            try:
                memory = process.memory_full_info()
            except psutil.Error:
                continue
            own = self.usage.processes.setdefault(self._labels[process.pid], ProcessUsage())
            own.rss_max_mib = max(own.rss_max_mib, memory.rss / MiB)
            own.pss_max_mib = max(own.pss_max_mib, memory.pss / MiB)
            rss += memory.rss / MiB
            pss += memory.pss / MiB
        self.usage.rss_max_mib = max(self.usage.rss_max_mib, rss)
        self.usage.pss_max_mib = max(self.usage.pss_max_mib, pss)

    def start(self) -> None:
        self.sample_memory()
        self._thread = threading.Thread(target=self._loop, name="tree-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> TreeUsage:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        return self.usage

    def begin_cpu(self) -> None:
        self._started_at = time.monotonic()
        self._cpu_at_start = self._cpu()

    def end_cpu(self) -> None:
        self.usage.wall_s = time.monotonic() - self._started_at
        for pid, seconds in self._cpu().items():
            used = seconds - self._cpu_at_start.get(pid, 0.0)
            self.usage.processes.setdefault(self._labels[pid], ProcessUsage()).cpu_s = used
            self.usage.cpu_s += used

    def _loop(self) -> None:
        while not self._stopping.wait(self._interval_s):
            try:
                self.sample_memory()
            except psutil.Error:
                continue  # the server is going away; the cell reports what it had
