"""Many concurrent streams through ONE tensorrt_llm_bls instance, on the synthetic engine.

The synthetic engine emits a token per step at a fixed pace with no model compute, so
anything above the engine's own pace is our overhead (BLS, detokenization, Triton, gRPC).
Measured side by side in one run:
  - one stream of N tokens through the BLS, and the same through the engine directly;
  - C concurrent streams of N tokens through the BLS: wall time, ratio to one stream,
    and whether every stream had its first token before any finished.

    .venv/bin/python benchmarks/bls_concurrency.py [--streams 64] [--tokens 100] [--step-ms 20]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from local_triton.load import BatchTiming, timed_streams
from local_triton.staging import staged_server, synthetic_plan
from offline_fixtures import ensure_fixtures

RESULTS = Path(__file__).resolve().parent / "results" / "bls_concurrency.json"


def engine_inputs(tokens: int) -> dict[str, object]:
    return {
        "input_ids": np.array([[1, 100, 200, 300]], dtype=np.int32),
        "input_lengths": np.array([[4]], dtype=np.int32),
        "request_output_len": np.array([[tokens]], dtype=np.int32),
        "streaming": np.array([[True]], dtype=bool),
    }


def summary(batch: BatchTiming) -> dict[str, float]:
    finished = [s.finished_s for s in batch.streams]
    first = [s.first_response_s for s in batch.streams]
    return {
        "wall_s": round(batch.wall_s, 3),
        "finish_median_s": round(statistics.median(finished), 3),
        "first_response_max_s": round(max(first), 3),
        "earliest_finish_s": round(min(finished), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--step-ms", type=float, default=20.0)
    args = parser.parse_args(argv)

    fixtures = ensure_fixtures()
    plan = synthetic_plan(
        fixtures, args.step_ms, only=frozenset({"tensorrt_llm", "tensorrt_llm_bls"})
    )
    bls_inputs = {"text_input": "Hello 世界", "max_tokens": args.tokens, "stream": True}
    with staged_server(plan) as server:
        url = server.grpc_url
        # Warm up both paths once (first requests pay for lazy initialisation).
        timed_streams(url, {**bls_inputs, "max_tokens": 4}, 1)
        timed_streams(url, engine_inputs(4), 1, model="tensorrt_llm")

        engine_one = timed_streams(url, engine_inputs(args.tokens), 1, model="tensorrt_llm")
        bls_one = timed_streams(url, bls_inputs, 1)
        bls_many = timed_streams(url, bls_inputs, args.streams)

    ideal = args.tokens * args.step_ms / 1000
    ratio = bls_many.wall_s / bls_one.wall_s
    all_started_before_any_finished = bls_many.latest_first_response_s < bls_many.earliest_finish_s
    result = {
        "streams": args.streams,
        "tokens_per_stream": args.tokens,
        "step_ms": args.step_ms,
        "engine_pace_s": ideal,
        "engine_direct_one_stream": summary(engine_one),
        "bls_one_stream": summary(bls_one),
        "bls_concurrent": summary(bls_many),
        "concurrent_over_one_ratio": round(ratio, 3),
        "bls_one_over_engine_one_ratio": round(bls_one.wall_s / engine_one.wall_s, 3),
        "all_started_before_any_finished": all_started_before_any_finished,
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(f"engine pace: {args.tokens} tokens x {args.step_ms} ms = {ideal:.2f} s")
    print(f"engine directly, 1 stream:      {engine_one.wall_s:.2f} s")
    print(
        f"through the BLS, 1 stream:      {bls_one.wall_s:.2f} s  ({result['bls_one_over_engine_one_ratio']}x the engine alone)"
    )
    print(
        f"through the BLS, {args.streams} streams:    {bls_many.wall_s:.2f} s  ({ratio:.2f}x one stream)"
    )
    print(f"every stream started before any finished: {all_started_before_any_finished}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
