"""The Triton glue (`triton_glue.TritonEngineModel`) against a stand-in for pb_utils that
records what a real stub would receive: responses, flags, errors and metrics."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pytest

from reference_engine.triton_glue import TritonEngineModel

FINAL = 1


class FakeTensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name = name
        self._array = np.asarray(array)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class FakeResponse:
    def __init__(self, output_tensors=None, error=None) -> None:
        self.tensors = {t.name(): t.as_numpy() for t in (output_tensors or [])}
        self.error = error


class FakeError:
    UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG = "UNKNOWN", "INTERNAL", "NOT_FOUND", "INVALID_ARG"
    UNAVAILABLE, UNSUPPORTED, ALREADY_EXISTS, CANCELLED = (
        "UNAVAILABLE",
        "UNSUPPORTED",
        "ALREADY_EXISTS",
        "CANCELLED",
    )

    def __init__(self, message: str, code: str = "UNKNOWN") -> None:
        self.message = message
        self.code = code


class FakeMetric:
    def __init__(self, family, labels, buckets=None) -> None:
        self.family, self.labels, self.buckets = family, labels, buckets
        self.value = 0.0
        self.observations: list[float] = []

    def increment(self, v) -> None:
        self.value += v

    def set(self, v) -> None:
        self.value = v

    def observe(self, v) -> None:
        self.observations.append(v)


class FakeMetricFamily:
    COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"
    registry: ClassVar[dict[str, FakeMetricFamily]] = {}

    def __init__(self, name, description, kind) -> None:
        self.name, self.kind = name, kind
        self.metrics: list[FakeMetric] = []
        FakeMetricFamily.registry[name] = self

    def Metric(self, labels, buckets=None):
        if self.kind == self.HISTOGRAM and buckets is None:
            raise ValueError("Missing required buckets")
        metric = FakeMetric(self, labels, buckets)
        self.metrics.append(metric)
        return metric


class FakeSender:
    def __init__(self) -> None:
        self.sent: list[tuple[FakeResponse | None, int]] = []
        self.cancelled = False
        self.event = threading.Event()

    def send(self, response=None, flags=0) -> None:
        self.sent.append((response, flags))
        if flags & FINAL:
            self.event.set()

    def is_cancelled(self) -> bool:
        return self.cancelled


class FakeRequest:
    def __init__(
        self, inputs: dict[str, np.ndarray], request_id: str = "", outputs: tuple[str, ...] = ()
    ) -> None:
        self.inputs = inputs
        self._id = request_id
        self._outputs = list(outputs)
        self.sender = FakeSender()

    def request_id(self) -> str:
        return self._id

    def requested_output_names(self) -> list[str]:
        return self._outputs

    def get_response_sender(self) -> FakeSender:
        return self.sender

    def is_cancelled(self) -> bool:
        return self.sender.cancelled


LOG: list[str] = []

pb_utils = SimpleNamespace(
    Tensor=FakeTensor,
    InferenceResponse=FakeResponse,
    TritonError=FakeError,
    MetricFamily=FakeMetricFamily,
    TRITONSERVER_RESPONSE_COMPLETE_FINAL=FINAL,
    Logger=SimpleNamespace(log_info=LOG.append, log_warn=LOG.append, log_error=LOG.append),
    get_input_tensor_by_name=lambda req, name: (
        FakeTensor(name, req.inputs[name]) if name in req.inputs else None
    ),
    using_decoupled_model_transaction_policy=lambda cfg: cfg.get(
        "model_transaction_policy", {}
    ).get("decoupled", False),
)


def model_args(**params: str) -> dict[str, str]:
    config = {
        "name": "tensorrt_llm",
        "model_transaction_policy": {"decoupled": True},
        "parameters": {k: {"string_value": v} for k, v in params.items()},
    }
    return {"model_config": json.dumps(config), "model_name": "tensorrt_llm"}


@pytest.fixture
def engine():
    FakeMetricFamily.registry.clear()
    model = TritonEngineModel(
        pb_utils,
        model_args(
            generation_backend="synthetic", synthetic_step_ms="1", synthetic_vocab_size="50"
        ),
    )
    yield model
    model.finalize()


def gen_inputs(n=4, streaming=True, **extra):
    inputs = {
        "input_ids": np.array([[1, 2, 3]], np.int32),
        "input_lengths": np.array([3], np.int32),  # reshape: { shape: [ ] } gives [B]
        "request_output_len": np.array([[n]], np.int32),
        "streaming": np.array([streaming]),
    }
    inputs.update(extra)
    return inputs


def metric(name: str, **labels) -> FakeMetric:
    family = FakeMetricFamily.registry[name]
    for m in family.metrics:
        if all(m.labels.get(k) == v for k, v in labels.items()):
            return m
    raise KeyError(labels)


def test_streaming_request_gets_tokens_then_final(engine):
    req = FakeRequest(gen_inputs(4))
    assert engine.execute([req]) is None  # decoupled: returns at once
    assert req.sender.event.wait(5)
    sent = req.sender.sent
    assert len(sent) == 4
    assert [flags for _, flags in sent] == [0, 0, 0, FINAL]
    for response, _ in sent:
        assert response.tensors["output_ids"].shape == (1, 1, 1)
        assert response.tensors["output_ids"].dtype == np.int32
    assert metric("reference_engine_requests_total").value == 1
    assert metric("reference_engine_generated_tokens_total").value == 4


def test_only_requested_outputs_are_built(engine):
    req = FakeRequest(gen_inputs(2), outputs=("output_ids", "sequence_length"))
    engine.execute([req])
    assert req.sender.event.wait(5)
    for response, _ in req.sender.sent:
        assert set(response.tensors) == {"output_ids", "sequence_length"}


def test_bad_request_gets_one_error_with_final(engine):
    req = FakeRequest(gen_inputs(4, beam_width=np.array([[4]], np.int32)))
    engine.execute([req])
    ((response, flags),) = req.sender.sent
    assert flags == FINAL
    assert response.error.code == "UNSUPPORTED"
    assert "beam_width" in response.error.message


def test_stop_request_ends_stream_and_counts_cancel(engine):
    target = FakeRequest(gen_inputs(100_000), request_id="abc")
    engine.execute([target])
    deadline = time.monotonic() + 5
    while not target.sender.sent and time.monotonic() < deadline:
        time.sleep(0.005)
    stop = FakeRequest(
        {
            "input_ids": np.zeros((1, 1), np.int32),
            "input_lengths": np.zeros((1, 1), np.int32),
            "request_output_len": np.zeros((1, 1), np.int32),
            "stop": np.array([[True]]),
        },
        request_id="abc",
    )
    engine.execute([stop])
    assert target.sender.event.wait(5) and stop.sender.event.wait(5)
    last_response, last_flags = target.sender.sent[-1]
    assert last_flags == FINAL and last_response.tensors["output_ids"].shape == (1, 1, 0)
    ((stop_response, stop_flags),) = stop.sender.sent
    assert stop_flags == FINAL and stop_response.tensors == {} and stop_response.error is None
    assert metric("reference_engine_cancelled_total", reason="stop_request").value == 1
    assert metric("reference_engine_cancelled_total", reason="client").value == 0
    assert metric("reference_engine_stop_requests_total", matched="true").value == 1
    assert metric("reference_engine_stop_requests_total", matched="false").value == 0
    assert any("cancelled request id='abc'" in line for line in LOG)


def test_client_cancel_is_seen_and_answered(engine):
    req = FakeRequest(gen_inputs(100_000, streaming=False))
    engine.execute([req])
    time.sleep(0.02)
    req.sender.cancelled = True
    assert req.sender.event.wait(5)
    response, flags = req.sender.sent[-1]
    assert flags == FINAL and response.error.code == "CANCELLED"
    assert metric("reference_engine_cancelled_total", reason="client").value == 1


def test_batch_size_histogram_and_active_gauge(engine):
    reqs = [FakeRequest(gen_inputs(5)) for _ in range(3)]
    engine.execute(reqs)
    for r in reqs:
        assert r.sender.event.wait(5)
    hist = metric("reference_engine_batch_size")
    assert hist.buckets and max(hist.observations) >= 1
    time.sleep(0.05)
    assert metric("reference_engine_active_sequences").value == 0


def test_finalize_ends_open_requests():
    FakeMetricFamily.registry.clear()
    model = TritonEngineModel(
        pb_utils, model_args(generation_backend="synthetic", synthetic_step_ms="5")
    )
    req = FakeRequest(gen_inputs(100_000))
    model.execute([req])
    time.sleep(0.02)
    model.finalize()
    response, flags = req.sender.sent[-1]
    assert flags == FINAL and response.error.code == "UNAVAILABLE"


def test_not_decoupled_is_refused():
    args = model_args(generation_backend="synthetic")
    config = json.loads(args["model_config"])
    config["model_transaction_policy"] = {"decoupled": False}
    args["model_config"] = json.dumps(config)
    with pytest.raises(ValueError, match="decoupled"):
        TritonEngineModel(pb_utils, args)


def test_model_py_finds_the_package_from_a_symlinked_version_dir(tmp_path):
    """The launcher symlinks `1/` into a staged repository; model.py must find the
    checkout's package from its resolved path when `reference_engine` is not installed.
    Run without `site` (so the editable install's finder is absent) and from a
    directory outside the checkout."""
    import subprocess
    import sys
    import sysconfig

    version_dir = Path(__file__).resolve().parents[2] / "reference_engine/triton_model/1"
    staged = tmp_path / "repo" / "tensorrt_llm"
    staged.mkdir(parents=True)
    (staged / "1").symlink_to(version_dir, target_is_directory=True)
    stub = tmp_path / "stubs"
    stub.mkdir()
    (stub / "triton_python_backend_utils.py").write_text("")
    site_packages = sysconfig.get_paths()["purelib"]
    model_py = staged / "1" / "model.py"
    code = (
        "import importlib.util, sys\n"
        f"sys.path.append({site_packages!r})  # packages, but no .pth editable finder\n"
        f"sys.path.insert(0, {str(stub)!r})\n"
        "try:\n"
        "    import reference_engine\n"
        "    print('installed')\n"
        "except ImportError:\n"
        "    print('not installed')\n"
        "    sys.modules.pop('reference_engine', None)\n"
        f"spec = importlib.util.spec_from_file_location('m', {str(model_py)!r})\n"
        "m = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(m)\n"
        "print(m.TritonPythonModel.__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["not", "installed", "TritonPythonModel"]
