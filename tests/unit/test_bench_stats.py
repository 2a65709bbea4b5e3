import numpy as np
import pytest

from benchmarks.stats import (
    ClientCost,
    Meter,
    RequestRecord,
    Window,
    distribution,
    summarize,
    timed_requests,
)


def record(start, end, tokens=4, first=None, last=None, gap=0.0, error=None) -> RequestRecord:
    return RequestRecord(
        start_s=start,
        end_s=end,
        tokens=tokens,
        responses=tokens + 1,
        first_token_s=first,
        last_token_s=last,
        max_gap_s=gap,
        error=error,
    )


def test_percentiles_interpolate_linearly_and_are_in_milliseconds():
    seconds = [v / 1000 for v in range(1, 101)]  # 1..100 ms
    result = distribution(seconds)
    assert result is not None
    assert result.count == 100
    assert result.p50_ms == pytest.approx(50.5)
    assert result.p90_ms == pytest.approx(90.1)
    assert result.p99_ms == pytest.approx(99.01)
    assert result.mean_ms == pytest.approx(50.5)
    assert result.max_ms == pytest.approx(100.0)
    assert result.p99_ms == pytest.approx(float(np.percentile(np.arange(1, 101), 99)))


def test_unset_values_are_left_out_and_nothing_gives_none():
    assert distribution([None, 0.002, None]).count == 1
    assert distribution([None, None]) is None
    assert distribution([]) is None


def test_itl_is_the_mean_gap_between_first_and_last_token():
    r = record(start=10.0, end=10.9, tokens=4, first=10.1, last=10.7)
    assert r.ttft_s == pytest.approx(0.1)
    assert r.itl_s == pytest.approx(0.2)  # (10.7 - 10.1) / (4 - 1)
    assert r.e2e_s == pytest.approx(0.9)


def test_itl_needs_two_tokens_and_ttft_needs_one():
    assert record(0, 1, tokens=1, first=0.5, last=0.5).itl_s is None
    silent = record(0, 1, tokens=0)
    assert silent.ttft_s is None and silent.itl_s is None


def test_window_is_closed_until_opened_and_half_open():
    window = Window()
    assert not window.is_open and 5.0 not in window
    window.open(10.0, 5.0)
    assert 10.0 in window and 14.999 in window
    assert 15.0 not in window and 9.999 not in window


def test_meter_counts_only_what_arrives_inside_the_window():
    window = Window()
    meter = Meter(window)
    meter.on_response(1.0, 1)  # before the window opened
    window.open(10.0, 5.0)
    meter.on_response(9.0, 1)
    meter.on_response(10.0, 2)
    meter.on_response(14.0, 3)
    meter.on_response(15.0, 4)
    assert (meter.responses, meter.tokens) == (2, 5)


def test_summary_counts_the_window_and_times_only_requests_wholly_inside():
    window = Window()
    window.open(10.0, 10.0)  # [10, 20)
    meter = Meter(window)
    meter.tokens, meter.responses = 500, 520
    records = [
        record(1.0, 9.0, first=2.0, last=8.0),  # ended before: not counted at all
        record(8.0, 12.0, first=9.0, last=11.0),  # started in warm-up: counted, not timed
        record(11.0, 13.0, first=11.5, last=12.5, gap=0.6),  # timed
        record(12.0, 15.0, first=12.1, last=14.5, gap=0.9),  # timed
        record(13.0, 14.0, error="boom"),  # an error inside the window
        record(13.0, 14.5, error="boom"),
        record(18.0, 21.0, first=18.5, last=20.5),  # ended after: not counted
    ]
    summary = summarize(records, window, meter, ClientCost(cpu_s=0.26, responses=520))
    assert summary.requests_completed == 3  # ended inside, whenever they started
    assert summary.requests_per_s == pytest.approx(0.3)
    assert summary.output_tokens_per_s == pytest.approx(50.0)
    assert summary.responses_per_s == pytest.approx(52.0)
    assert summary.errors == 2
    assert summary.error_samples == ("boom",)
    assert summary.latency_requests == 2
    assert summary.ttft.p50_ms == pytest.approx(300.0)  # 0.5 s and 0.1 s
    assert summary.e2e.max_ms == pytest.approx(3000.0)
    assert summary.stall.max_ms == pytest.approx(900.0)
    assert summary.client_cpu_us_per_response == pytest.approx(500.0)
    assert summary.client_cpu_cores == pytest.approx(0.026)
    assert (summary.tokens_per_request_min, summary.tokens_per_request_max) == (4, 4)
    assert [r.start_s for r in timed_requests(records, window)] == [11.0, 12.0]


def test_summary_refuses_a_window_that_never_opened():
    window = Window()
    with pytest.raises(ValueError, match="never opened"):
        summarize([], window, Meter(window), ClientCost(0.0, 0))
