"""bls.metrics updates as Triton custom metrics: the one pb_utils adapter of the BLS's own.

Only imported inside the Triton Python stub (by model.py), which passes in the
`triton_python_backend_utils` module: its classes exist only once the stub runs. The
response sink and the log handler are every model's (serving_common.triton_glue).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import ModuleType

from bls.metrics import COUNTER, GAUGE, HISTOGRAM, MetricSpec


class TritonMetricsExporter:
    """bls.metrics updates as Triton custom metrics (served on the metrics port)."""

    def __init__(self, pb_utils: ModuleType, specs: Iterable[MetricSpec]) -> None:
        family = pb_utils.MetricFamily
        kinds = {COUNTER: family.COUNTER, GAUGE: family.GAUGE, HISTOGRAM: family.HISTOGRAM}
        # Families must outlive their metrics: both are kept.
        self._families = {
            spec: family(name=spec.name, description=spec.description, kind=kinds[spec.kind])
            for spec in specs
        }
        self._metrics: dict[tuple[MetricSpec, tuple[tuple[str, str], ...]], object] = {}

    def _metric(self, spec: MetricSpec, labels: Mapping[str, str]):
        key = (spec, tuple(sorted(labels.items())))
        metric = self._metrics.get(key)
        if metric is None:
            if spec.kind == HISTOGRAM:
                metric = self._families[spec].Metric(
                    labels=dict(labels), buckets=list(spec.buckets)
                )
            else:
                metric = self._families[spec].Metric(labels=dict(labels))
            self._metrics[key] = metric
        return metric

    def increment(self, spec: MetricSpec, labels: Mapping[str, str], value: float) -> None:
        self._metric(spec, labels).increment(value)

    def set(self, spec: MetricSpec, labels: Mapping[str, str], value: float) -> None:
        self._metric(spec, labels).set(value)

    def observe(self, spec: MetricSpec, labels: Mapping[str, str], value: float) -> None:
        self._metric(spec, labels).observe(value)
