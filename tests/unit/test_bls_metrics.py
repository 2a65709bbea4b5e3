"""Request records become the right observations, counters and log lines."""

from __future__ import annotations

import json
import threading

import pytest

from bls.metrics import (
    ACTIVE,
    E2E,
    ERRORS,
    INPUT_TOKENS_TOTAL,
    ITL,
    OUTPUT_TOKENS_TOTAL,
    QUEUE,
    REQUESTS,
    TTFT,
    WAITING,
    RequestRecord,
    RequestReporter,
    request_finish_reason,
)


def record(**changes) -> RequestRecord:
    fields = {
        "request_id": "req-1",
        "engine_request_id": "77",
        "received_s": 10.0,
        "started_s": 10.5,
        "first_token_s": 11.0,
        "last_token_s": 13.0,
        "finished_s": 13.25,
        "prompt_tokens": 12,
        "output_tokens": 5,
        "finish_reason": "length",
    }
    fields.update(changes)
    return RequestRecord(**fields)


def test_latencies_of_a_finished_request():
    seen = {spec: value for spec, value in record().observations()}
    assert seen[QUEUE] == pytest.approx(0.5)
    assert seen[TTFT] == pytest.approx(1.0)
    assert seen[ITL] == pytest.approx(0.5)  # 4 gaps over 2 s
    assert seen[E2E] == pytest.approx(3.25)


def test_a_refused_request_has_only_its_duration():
    refused = record(started_s=None, first_token_s=None, last_token_s=None, output_tokens=0)
    assert [spec for spec, _ in refused.observations()] == [E2E]


def test_one_token_has_no_inter_token_latency():
    assert ITL not in dict(record(output_tokens=1).observations())


def test_the_log_line_is_json_and_leaves_text_out_unless_given():
    prefix = "tensorrt_llm_bls request "
    line = record().log_line()
    assert line.startswith(prefix)
    fields = json.loads(line.removeprefix(prefix))
    assert fields == {
        "id": "req-1",
        "engine_id": "77",
        "finish_reason": "length",
        "prompt_tokens": 12,
        "output_tokens": 5,
        "queue_ms": 500.0,
        "ttft_ms": 1000.0,
        "duration_ms": 3250.0,
    }
    with_text = json.loads(record(prompt_text="Hi", output_text="héllo").log_line()[len(prefix) :])
    assert (with_text["prompt"], with_text["output"]) == ("Hi", "héllo")


@pytest.mark.parametrize(
    ("reasons", "expected"),
    [(["stop"], "stop"), (["stop", "length"], "length"), (["length", "cancelled"], "cancelled")],
)
def test_the_request_finish_reason_is_the_most_telling(reasons, expected):
    assert request_finish_reason(reasons) == expected


class RecordingExporter:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict, float]] = []
        self.flushed = threading.Event()

    def increment(self, spec, labels, value):
        self.calls.append(("increment", spec.name, dict(labels), value))

    def set(self, spec, labels, value):
        self.calls.append(("set", spec.name, dict(labels), value))
        self.flushed.set()

    def observe(self, spec, labels, value):
        self.calls.append(("observe", spec.name, dict(labels), value))


def test_counters_are_summed_and_gauges_set_on_the_reporters_thread():
    exporter = RecordingExporter()
    lines: list[str] = []
    reporter = RequestReporter(
        exporter, {"model": "bls"}, gauges=lambda: (3, 1), log=lines.append, period_s=60
    )
    reporter.record(record())
    reporter.record(record(finish_reason="error", error_kind="engine", output_tokens=2))
    reporter.close()
    increments = {
        (name, tuple(sorted(labels.items()))): value
        for kind, name, labels, value in exporter.calls
        if kind == "increment"
    }
    model = ("model", "bls")
    assert increments == {
        (REQUESTS.name, (("finish_reason", "length"), model)): 1,
        (REQUESTS.name, (("finish_reason", "error"), model)): 1,
        (INPUT_TOKENS_TOTAL.name, (model,)): 24,
        (OUTPUT_TOKENS_TOTAL.name, (model,)): 7,
        (ERRORS.name, (("kind", "engine"), model)): 1,
    }
    sets = [(name, value) for kind, name, _, value in exporter.calls if kind == "set"]
    assert (ACTIVE.name, 3) in sets and (WAITING.name, 1) in sets
    observed = [name for kind, name, _, _ in exporter.calls if kind == "observe"]
    assert observed.count(TTFT.name) == 2
    assert len(lines) == 2


def test_a_request_is_counted_only_after_its_tokens_and_errors():
    # A reader that sees llm_bls_requests_total go up sees the rest of those requests too.
    exporter = RecordingExporter()
    reporter = RequestReporter(exporter, {}, gauges=lambda: (0, 0), log=None, period_s=60)
    reporter.record(record(finish_reason="error", error_kind="engine"))
    reporter.close()
    increments = [name for kind, name, _, _ in exporter.calls if kind == "increment"]
    assert increments[-1] == REQUESTS.name
    assert {ERRORS.name, INPUT_TOKENS_TOTAL.name, OUTPUT_TOKENS_TOTAL.name} <= set(increments)


def test_a_failing_exporter_does_not_stop_the_reporter():
    class Broken(RecordingExporter):
        def observe(self, spec, labels, value):
            raise RuntimeError("metrics port gone")

    exporter = Broken()
    lines: list[str] = []
    reporter = RequestReporter(exporter, {}, gauges=lambda: (0, 0), log=lines.append, period_s=60)
    reporter.record(record())
    reporter.record(record())
    reporter.close()
    assert exporter.flushed.is_set()


def test_the_docs_and_the_dashboard_name_exactly_the_metrics_that_exist():
    import re
    from pathlib import Path

    from bls.metrics import METRICS

    docs = Path(__file__).resolve().parents[2] / "docs"
    names = {spec.name for spec in METRICS}
    operations = (docs / "operations.md").read_text(encoding="utf-8")
    assert {name for name in names if f"`{name}" not in operations} == set()
    dashboard = json.loads((docs / "grafana_dashboard.json").read_text(encoding="utf-8"))
    used = {
        re.sub(r"_(bucket|sum|count)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"llm_bls_\w+", target["expr"])
    }
    assert used and used <= names
