"""Where the BLS's CPU goes under load: a profile that anyone can rerun.

One server with the synthetic engine (as in the side-by-side run), one closed-loop load
on `tensorrt_llm_bls`, and during the measured window:

- the CPU time of every model process (tritonserver and each stub), per output token;
- the CPU time of every thread of the BLS's stub, per output token, by thread name
  (`bls-send-0..N` counted together as `bls-send-*`), read from /proc through psutil:
  py-spy counts a thread that waits inside a send round trip as busy, so only the
  threads' own CPU time tells work from waiting;
- py-spy samples of the BLS's stub (`--threads`), summarised as the functions where each
  thread spends its samples (self) and the calls they sit under (inclusive).

    .venv/bin/python -m benchmarks.profile_bls --concurrency 64 --duration 20

writes benchmarks/results/profile_bls.json and the py-spy samples beside it
(profile_bls.raw, py-spy's "raw" format, which flamegraph.pl and speedscope read).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.cli import parse_instance_counts
from benchmarks.resources import TreeSampler, process_label, process_tree
from benchmarks.run import LoadSpec, Timing, WindowHooks, run_cell
from benchmarks.side_by_side import SideBySideConfig, wait_until_engine_idle
from benchmarks.targets import BLS_MODEL, BlsTarget
from benchmarks.workload import Lengths, Workload
from local_triton.cli import parse_overrides
from local_triton.staging import staged_server

RESULTS = Path(__file__).resolve().parent / "results"
THREAD_FRAME = re.compile(r"^thread \((?:0x)?([0-9a-fA-F]+)\): ?(.*)$")
NUMBERED = re.compile(r"-\d+$")


@dataclass
class ThreadProfile:
    """py-spy samples of one thread group: total, and by function (self and inclusive)."""

    samples: int = 0
    own: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)

    def top(self, counter: Counter[str], n: int) -> list[tuple[str, float]]:
        return [(name, count / self.samples) for name, count in counter.most_common(n)]


def thread_group(name: str) -> str:
    """`bls-send-3` -> `bls-send-*`: the sender threads are one pool."""
    return NUMBERED.sub("-*", name) if name.startswith("bls-send") else name


def summarise_samples(raw_lines: list[str]) -> tuple[dict[str, ThreadProfile], dict[int, str]]:
    """py-spy raw lines ("frame;frame;... count", the first frame naming the thread) by
    thread group; also the OS thread id -> name seen in them."""
    groups: dict[str, ThreadProfile] = defaultdict(ThreadProfile)
    names: dict[int, str] = {}
    for line in raw_lines:
        stack, _, count_text = line.rstrip("\n").rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        match = THREAD_FRAME.match(frames[0])
        if match is None:
            continue
        tid_text, name = match.groups()
        tid = int(tid_text, 16) if frames[0].startswith("thread (0x") else int(tid_text)
        name = name or str(tid)
        names[tid] = name
        profile = groups[thread_group(name)]
        count = int(count_text)
        profile.samples += count
        calls = frames[1:]
        if calls:
            profile.own[calls[-1]] += count
            for call in set(calls):
                profile.inclusive[call] += count
    return dict(groups), names


class ProfileHooks(WindowHooks):
    """Starts py-spy and reads CPU times when the window opens; reads them again when it
    closes."""

    def __init__(self, server_pid: int, duration_s: float, raw_path: Path) -> None:
        self.sampler = TreeSampler(server_pid)
        self.bls = next(
            p for p in process_tree(server_pid) if process_label(p) == f"stub:{BLS_MODEL}"
        )
        self._duration_s = duration_s
        self._raw_path = raw_path
        self._threads_at_open: dict[int, float] = {}
        self.thread_cpu_s: dict[int, float] = {}
        self._spy: subprocess.Popen | None = None

    def _thread_times(self) -> dict[int, float]:
        return {t.id: t.user_time + t.system_time for t in self.bls.threads()}

    def on_open(self) -> None:
        self.sampler.begin_cpu()
        self._threads_at_open = self._thread_times()
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        # --nonblocking: never pause the stub (a paused stub would change what we measure).
        self._spy = subprocess.Popen(
            [spy, "record", "--pid", str(self.bls.pid), "--duration", str(int(self._duration_s)),
             "--rate", "100", "--format", "raw", "--threads", "--nonblocking",
             "--output", str(self._raw_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def on_close(self) -> None:
        self.sampler.end_cpu()
        now = self._thread_times()
        self.thread_cpu_s = {
            tid: seconds - self._threads_at_open.get(tid, 0.0) for tid, seconds in now.items()
        }

    def wait_for_samples(self) -> bool:
        if self._spy is None:
            return False
        try:
            return self._spy.wait(timeout=self._duration_s + 30) == 0
        except subprocess.TimeoutExpired:
            self._spy.kill()
            return False


def profile(config: SideBySideConfig, concurrency: int, output_dir: Path, name: str) -> dict:
    from offline_fixtures import ensure_fixtures

    output_dir.mkdir(parents=True, exist_ok=True)
    raw_path = output_dir / f"{name}.raw"
    workload = Workload(Lengths.fixed(config.prompt_words), Lengths.fixed(config.output_len))
    with staged_server(
        config.staging_plan(ensure_fixtures()), extra_args=config.server_args
    ) as server:
        assert server.pid is not None
        # Warm up (lazy initialisation of every path), then let the engine drain.
        asyncio.run(
            run_cell(server.grpc_url, BlsTarget(), workload, LoadSpec(concurrency=2),
                     Timing(duration_s=1.0), progress=False)
        )  # fmt: skip
        wait_until_engine_idle(server, config.settle_timeout_s)
        hooks = ProfileHooks(server.pid, config.duration_s, raw_path)
        cell = asyncio.run(
            run_cell(server.grpc_url, BlsTarget(), workload, LoadSpec(concurrency=concurrency),
                     Timing(duration_s=config.duration_s, warmup_s=config.warmup_s),
                     progress=config.progress, hooks=hooks)
        )  # fmt: skip
        sampled = hooks.wait_for_samples()
    tokens = cell.summary.output_tokens_per_s * hooks.sampler.usage.wall_s
    per_token = 1e6 / tokens if tokens > 0 else 0.0
    groups, names = summarise_samples(raw_path.read_text().splitlines() if sampled else [])
    thread_cpu: Counter[str] = Counter()
    for tid, seconds in hooks.thread_cpu_s.items():
        thread_cpu[thread_group(names.get(tid, "(unnamed native)"))] += seconds
    return {
        "concurrency": concurrency,
        "config": config.describe(),
        "requests_per_s": cell.summary.requests_per_s,
        "output_tokens_per_s": cell.summary.output_tokens_per_s,
        "cpu_us_per_token_by_process": {
            label: usage.cpu_s * per_token
            for label, usage in sorted(hooks.sampler.usage.processes.items())
        },
        "bls_cpu_us_per_token_by_thread": {
            group: seconds * per_token for group, seconds in thread_cpu.most_common()
        },
        "bls_samples_by_thread": {
            group: {
                "samples": p.samples,
                "self": p.top(p.own, 12),
                "inclusive": p.top(p.inclusive, 25),
            }
            for group, p in sorted(groups.items(), key=lambda item: -item[1].samples)
        },
        "py_spy_raw": raw_path.name if sampled else None,
    }


def report(result: dict) -> str:
    lines = [
        f"concurrency {result['concurrency']}: {result['requests_per_s']:.1f} req/s, "
        f"{result['output_tokens_per_s']:.0f} tokens/s",
        "CPU µs per output token, by process:",
    ]
    by_process = result["cpu_us_per_token_by_process"]
    lines += [f"  {label:32s} {value:7.1f}" for label, value in by_process.items()]
    lines.append(f"  {'all':32s} {sum(by_process.values()):7.1f}")
    lines.append(f"CPU µs per output token, by thread of stub:{BLS_MODEL}:")
    lines += [
        f"  {group:32s} {value:7.1f}"
        for group, value in result["bls_cpu_us_per_token_by_thread"].items()
        if value >= 0.5
    ]
    for group, summary in result["bls_samples_by_thread"].items():
        lines.append(f"py-spy, {group} ({summary['samples']} samples), self:")
        lines += [f"  {share:6.1%} {frame}" for frame, share in summary["self"][:6]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.profile_bls", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds profiled")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--output-len", type=int, default=64)
    parser.add_argument("--step-ms", type=float, default=20.0)
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="MODEL.PARAM=VALUE"
    )
    parser.add_argument("--instances", action="append", default=[], metavar="MODEL=N")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    parser.add_argument("--name", default="profile_bls")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    config = SideBySideConfig(
        concurrencies=(args.concurrency,),
        duration_s=args.duration,
        warmup_s=args.warmup,
        output_len=args.output_len,
        step_ms=args.step_ms,
        overrides=parse_overrides(args.overrides),
        instance_counts=parse_instance_counts(args.instances),
        progress=not args.no_progress,
    )
    result = profile(config, args.concurrency, args.output_dir, args.name)
    path = args.output_dir / f"{args.name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(report(result))
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
