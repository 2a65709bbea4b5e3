"""The gRPC engine client's pure parts: where the engine is, and what goes on the wire.

Its stream handling runs against a scripted gRPC server in test_bls_engine_grpc_streams.py
and against real tritonservers in the integration tests."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from bls.engine_grpc import EngineEndpointError, GrpcEngineClient, _tensors, resolve_engine_url
from bls.engine_io import cancel_inputs


@pytest.mark.parametrize(
    ("cmdline", "expected"),
    [
        (["tritonserver", "--model-repository=/m"], "127.0.0.1:8001"),
        (["tritonserver", "--grpc-port=9101"], "127.0.0.1:9101"),
        (["tritonserver", "--grpc-port", "9102", "--http-port=1"], "127.0.0.1:9102"),
        (["tritonserver", "--grpc-address=10.0.0.5", "--grpc-port=9103"], "10.0.0.5:9103"),
        (["tritonserver", "--grpc-address", "0.0.0.0"], "127.0.0.1:8001"),
        ([], "127.0.0.1:8001"),  # not started by tritonserver: its default
    ],
)
def test_auto_finds_the_servers_own_grpc_endpoint(cmdline, expected):
    assert resolve_engine_url("auto", cmdline) == expected


def test_an_explicit_url_is_used_as_given():
    assert resolve_engine_url("engine-host:8001", ["tritonserver", "--grpc-port=1"]) == (
        "engine-host:8001"
    )


@pytest.mark.parametrize(
    ("setting", "cmdline", "message"),
    [
        ("engine-host", [], "engine_grpc_url must be host:port"),
        ("host:port", [], "engine_grpc_url must be host:port"),
        ("auto", ["tritonserver", "--allow-grpc=false"], "--allow-grpc=false"),
        ("auto", ["tritonserver", "--grpc-use-ssl=true"], "SSL"),
    ],
)
def test_an_unusable_endpoint_is_a_clear_error(setting, cmdline, message):
    with pytest.raises(EngineEndpointError, match=message):
        resolve_engine_url(setting, cmdline)


def test_a_request_carries_exactly_its_tensors_and_asks_for_a_final_response():
    client = GrpcEngineClient("127.0.0.1:1", "tensorrt_llm", asyncio.new_event_loop())
    inputs = {
        "input_ids": np.array([[1, 2, 3]], dtype=np.int32),
        "streaming": np.array([[True]]),
        "seed": np.array([[7]], dtype=np.uint64),
        "guided_decoding_guide_type": np.array([[b"json"]], dtype=object),
    }
    message = client._message("42", inputs, ("output_ids", "sequence_length"))
    assert message.model_name == "tensorrt_llm" and message.id == "42"
    assert message.parameters["triton_enable_empty_final_response"].bool_param
    assert [(t.name, t.datatype, list(t.shape)) for t in message.inputs] == [
        ("input_ids", "INT32", [1, 3]),
        ("streaming", "BOOL", [1, 1]),
        ("seed", "UINT64", [1, 1]),
        ("guided_decoding_guide_type", "BYTES", [1, 1]),
    ]
    assert np.frombuffer(message.raw_input_contents[0], np.int32).tolist() == [1, 2, 3]
    # BYTES elements go length-prefixed (4 bytes, little-endian), as Triton reads them.
    assert message.raw_input_contents[3] == (4).to_bytes(4, "little") + b"json"
    assert [o.name for o in message.outputs] == ["output_ids", "sequence_length"]
    stop = client._message("42", cancel_inputs(), ("output_ids",))
    assert {t.name for t in stop.inputs} >= {"stop", "input_ids"}


def test_response_tensors_are_read_by_dtype_and_shape():
    response = service_pb2.ModelInferResponse(id="1")
    for name, array, dtype in (
        ("output_ids", np.array([[[5, 6]]], np.int32), "INT32"),
        ("output_log_probs", np.array([[[-0.5, -1.0]]], np.float32), "FP32"),
    ):
        tensor = response.outputs.add(name=name, datatype=dtype)
        tensor.shape.extend(array.shape)
        response.raw_output_contents.append(array.tobytes())
    tensors = _tensors(response)
    assert tensors["output_ids"].tolist() == [[[5, 6]]]
    assert tensors["output_log_probs"].dtype == np.float32
    response.outputs.add(name="x", datatype="BYTES")
    response.raw_output_contents.append(b"")
    with pytest.raises(ValueError, match="unsupported datatype BYTES"):
        _tensors(response)


def _response(*outputs):
    response = service_pb2.ModelInferResponse(id="1")
    for name, array, dtype in outputs:
        tensor = response.outputs.add(name=name, datatype=dtype)
        tensor.shape.extend(array.shape)
        response.raw_output_contents.append(array.tobytes())
    return response


@pytest.mark.parametrize(
    "response",
    [
        _response(
            ("output_ids", np.array([[[7, 8, 9]]], np.int32), "INT32"),
            ("sequence_length", np.array([[2]], np.int32), "INT32"),
        ),
        _response(
            ("output_ids", np.array([[[7, 8]], [[5, 6]]], np.int32), "INT32"),
            ("sequence_length", np.array([[2], [1]], np.int32), "INT32"),
            ("batch_index", np.array([[0], [1]], np.int32), "INT32"),
            ("sequence_index", np.array([[0], [0]], np.int32), "INT32"),
        ),
        _response(("output_ids", np.array([[[]]], np.int32).reshape(1, 1, 0), "INT32")),
    ],
)
def test_the_fast_path_reads_what_the_generic_one_does(response):
    from bls.engine_grpc import _single_row
    from bls.engine_io import engine_rows

    generic = engine_rows(_tensors(response))
    fast = _single_row(response)
    assert fast is None or fast == generic
    if len(response.outputs) == 2:
        assert fast == generic and fast[0].token_ids == (7, 8)


def test_a_length_beyond_the_ids_is_refused():
    from bls.engine_grpc import _single_row

    response = _response(
        ("output_ids", np.array([[[7]]], np.int32), "INT32"),
        ("sequence_length", np.array([[3]], np.int32), "INT32"),
    )
    with pytest.raises(ValueError, match="sequence_length 3"):
        _single_row(response)
