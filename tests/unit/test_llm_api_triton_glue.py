"""The LLM-API model's Triton glue (`llm_api_engine.triton_glue.TritonLlmApiModel`)
against the pb_utils stand-in of the reference engine's glue tests, with the scripted
LlmEngine of the behaviour tests in place of TensorRT-LLM."""

from __future__ import annotations

import numpy as np
import pytest

from llm_api_engine.config import LlmApiConfig
from llm_api_engine.triton_glue import TritonLlmApiModel, create_engine
from offline_fixtures import ensure_fixtures
from tests.unit.test_engine_contract_behaviour import ScriptedLlmEngine, wait_for
from tests.unit.test_reference_engine_triton_glue import (
    FINAL,
    FakeRequest,
    gen_inputs,
    model_args,
    pb_utils,
)


def make_model(**parameters: str) -> TritonLlmApiModel:
    engines: list[ScriptedLlmEngine] = []

    def factory(config: LlmApiConfig) -> ScriptedLlmEngine:
        engines.append(ScriptedLlmEngine())
        return engines[-1]

    checkpoint = str(ensure_fixtures().tiny_llama)
    made = TritonLlmApiModel(
        pb_utils,
        model_args(model_dir=checkpoint, max_seq_len="64", **parameters),
        engine_factory=factory,
    )
    made.engines = engines
    return made


@pytest.fixture
def model():
    made = make_model()
    yield made
    made.finalize()


def test_streaming_request_gets_tokens_then_final(model):
    req = FakeRequest(gen_inputs(3))
    assert model.execute([req]) is None
    assert req.sender.event.wait(10)
    assert [flags for _, flags in req.sender.sent] == [0, 0, FINAL]
    tokens = [int(r.tensors["output_ids"].reshape(-1)[0]) for r, _ in req.sender.sent]
    assert tokens == [110, 111, 112]
    (stream,) = model.engines[0].streams
    assert stream.call.sampling_params["max_tokens"] == 3


def test_limits_come_from_the_parameters_and_the_checkpoint(model):
    assert model.limits.max_seq_len == 64
    assert model.limits.vocab_size == 2000
    req = FakeRequest(gen_inputs(62))  # 3 prompt tokens + 62 > 64
    model.execute([req])
    ((response, flags),) = req.sender.sent
    assert flags == FINAL and response.error.code == "INVALID_ARG"
    assert "max_seq_len 64" in response.error.message


def test_refusals_name_the_llm_api_model(model):
    req = FakeRequest(gen_inputs(2, lora_task_id=np.array([[1]], np.uint64)))
    model.execute([req])
    ((response, flags),) = req.sender.sent
    assert flags == FINAL and response.error.code == "UNSUPPORTED"
    assert "LoRA is not supported by the tensorrt_llm LLM-API model" in response.error.message


SCHEMA_GUIDE = {
    "guided_decoding_guide_type": np.array([[b"json_schema"]], dtype=object),
    "guided_decoding_guide": np.array([[b'{"type": "object"}']], dtype=object),
}


def test_guided_decoding_backend_parameter_lets_guides_through():
    pytest.importorskip("xgrammar")
    guided = make_model(guided_decoding_backend="xgrammar")
    try:
        req = FakeRequest(gen_inputs(2, **SCHEMA_GUIDE))
        guided.execute([req])
        assert req.sender.event.wait(10)
        assert req.sender.sent[-1][1] == FINAL and req.sender.sent[-1][0].error is None
        (stream,) = guided.engines[0].streams
        assert stream.call.guided_decoding == {"json": '{"type": "object"}'}
    finally:
        guided.finalize()


def test_without_guided_decoding_backend_a_guide_is_refused(model):
    pytest.importorskip("xgrammar")
    req = FakeRequest(gen_inputs(2, **SCHEMA_GUIDE))
    model.execute([req])
    assert req.sender.event.wait(10)
    ((response, flags),) = req.sender.sent
    assert flags == FINAL and response.error.code == "UNSUPPORTED"
    assert "guided_decoding_guide_type" in response.error.message
    assert "guided_decoding_backend" in response.error.message
    assert model.engines[0].streams == []


def test_stop_request_by_id(model):
    target = FakeRequest(gen_inputs(50), request_id="7")
    model.engines[0].hold_after = 2
    model.execute([target])
    stop = FakeRequest(
        {
            "input_ids": np.array([[0]], np.int32),
            "input_lengths": np.array([0], np.int32),
            "request_output_len": np.array([[0]], np.int32),
            "stop": np.array([True]),
        },
        request_id="7",
    )
    wait_for(lambda: model.engines[0].held)
    model.execute([stop])
    assert target.sender.event.wait(10) and stop.sender.event.wait(10)
    assert (target.sender.sent[-1][1] == FINAL and stop.sender.sent == [(None, FINAL)]) or (
        stop.sender.sent[-1][1] == FINAL
    )


def test_without_tensorrt_llm_the_model_fails_to_load_naming_it():
    config = LlmApiConfig(model_dir=ensure_fixtures().tiny_llama)
    with pytest.raises(ImportError, match="tensorrt_llm"):
        create_engine(config)
