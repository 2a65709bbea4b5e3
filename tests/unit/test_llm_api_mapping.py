"""The LLM-API model's mapping layer: contract sequences -> tensorrt_llm.SamplingParams
keyword arguments, LLM-API step outputs -> contract tokens, and the model parameters ->
tensorrt_llm.LLM arguments.

Checked at the level of argument names and values, against the names of TensorRT-LLM
1.2.1's API recorded (with their sources) in llm_api_engine/release.py. Where
`tensorrt_llm` imports, the real objects are also built from them; elsewhere those tests
are skipped, with the import error as the reason.
"""

from __future__ import annotations

import inspect
import pickle
from types import SimpleNamespace

import numpy as np
import pytest

from llm_api_engine.config import LlmApiConfig, read_checkpoint_shape
from llm_api_engine.engine import worker_pythonpath
from llm_api_engine.logits import ContractLogitsProcessor
from llm_api_engine.outputs import CompletionSnapshot, SequenceProgress, sampled_log_probs
from llm_api_engine.release import (
    GUIDED_DECODING_FIELDS,
    KV_CACHE_CONFIG_FIELDS,
    LLM_ARGS,
    SAMPLING_PARAMS_FIELDS,
    tensorrt_llm_importable,
)
from llm_api_engine.sampling import (
    GUIDE_TYPE_FIELDS,
    generation_call,
    sampling_params_kwargs,
)
from offline_fixtures import ensure_fixtures
from reference_engine.contract import EngineLimits, parse_request
from serving_common.errors import RequestError
from serving_common.guided_decoding import GuideType
from serving_common.word_lists import encode_word_list

LIMITS = EngineLimits(max_seq_len=64, vocab_size=100)
IMPORTABLE, WHY_NOT = tensorrt_llm_importable()
needs_tensorrt_llm = pytest.mark.skipif(not IMPORTABLE, reason=WHY_NOT)


def i32(rows) -> np.ndarray:
    return np.array(rows, dtype=np.int32)


def f32(value: float) -> np.ndarray:
    return np.array([[value]], dtype=np.float32)


def spec_of(**extra):
    inputs = {"input_ids": i32([[5, 6, 7]]), "request_output_len": i32([[4]])}
    inputs.update(extra)
    return parse_request(inputs, "r", LIMITS).sequences[0]


def kwargs_of(**extra) -> dict:
    return sampling_params_kwargs(spec_of(**extra), 11)  # 11: this sample's seed


def word_list(words: list[list[int]]) -> np.ndarray:
    return encode_word_list(words)[None, ...]


# Requests that between them set every input the mapping reads.
CASES = {
    "minimal": {},
    "sampling": {
        "temperature": f32(0.7),
        "runtime_top_k": i32([[5]]),
        "runtime_top_p": f32(0.9),
        "runtime_top_p_min": f32(0.1),
        "runtime_top_p_decay": f32(0.5),
        "runtime_top_p_reset_ids": i32([[3]]),
    },
    "penalties": {
        "repetition_penalty": f32(1.2),
        "presence_penalty": f32(0.3),
        "frequency_penalty": f32(-0.4),
        "min_tokens": i32([[2]]),
        "seed": np.array([[9]], np.uint64),
    },
    "ids_and_words": {
        "end_id": i32([[2]]),
        "pad_id": i32([[0]]),
        "stop_words_list": word_list([[8], [9, 10]]),
        "bad_words_list": word_list([[11], [12, 13]]),
        "embedding_bias": np.ones((1, 100), np.float32),
        "return_log_probs": np.array([[True]]),
    },
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_keyword_is_a_sampling_params_field_of_the_cited_release(case):
    kwargs = kwargs_of(**CASES[case])
    assert set(kwargs) <= SAMPLING_PARAMS_FIELDS, set(kwargs) - SAMPLING_PARAMS_FIELDS
    assert kwargs["max_tokens"] == 4
    assert kwargs["seed"] == 11
    assert kwargs["detokenize"] is False
    assert kwargs["exclude_input_from_output"] is True


def test_contract_default_is_greedy_sent_as_top_k_1():
    kwargs = kwargs_of()
    assert kwargs["top_k"] == 1
    assert "temperature" not in kwargs and "top_p" not in kwargs
    # TensorRT-LLM C++: temperature 0, or top_k 1, is greedy whatever else is set.
    assert kwargs_of(temperature=f32(0.0), runtime_top_k=i32([[5]]))["top_k"] == 1
    assert kwargs_of(runtime_top_k=i32([[1]]), runtime_top_p=f32(0.9))["top_k"] == 1


def test_sampling_values_pass_through_and_c_plus_plus_off_values_are_left_out():
    kwargs = kwargs_of(**CASES["sampling"])
    assert kwargs["temperature"] == pytest.approx(0.7)
    assert kwargs["top_k"] == 5
    assert kwargs["top_p"] == pytest.approx(0.9)
    assert kwargs["top_p_min"] == pytest.approx(0.1)
    assert kwargs["top_p_decay"] == pytest.approx(0.5)
    assert kwargs["top_p_reset_ids"] == 3
    # top_p = 0 means "off" in C++ and is invalid in the LLM API: not sent.
    top_k_only = kwargs_of(temperature=f32(1.0), runtime_top_k=i32([[40]]))
    assert top_k_only["top_k"] == 40 and "top_p" not in top_k_only
    # top_k = 0 means "every token" in both: not sent.
    top_p_only = kwargs_of(runtime_top_p=f32(0.5))
    assert top_p_only["top_p"] == pytest.approx(0.5) and "top_k" not in top_p_only
    assert top_p_only["temperature"] == pytest.approx(1.0)


def test_penalties_and_min_tokens_only_when_set():
    kwargs = kwargs_of(**CASES["penalties"])
    assert kwargs["repetition_penalty"] == pytest.approx(1.2)
    assert kwargs["presence_penalty"] == pytest.approx(0.3)
    assert kwargs["frequency_penalty"] == pytest.approx(-0.4)
    assert kwargs["min_tokens"] == 2
    neutral = kwargs_of(repetition_penalty=f32(1.0), presence_penalty=f32(0.0))
    assert not {"repetition_penalty", "presence_penalty", "min_tokens"} & set(neutral)


def test_end_id_or_ignore_eos():
    assert kwargs_of(end_id=i32([[2]]))["end_id"] == 2
    without = kwargs_of()
    assert without["ignore_eos"] is True and "end_id" not in without
    # A negative end id is "no end id" in the contract.
    assert kwargs_of(end_id=i32([[-1]]))["ignore_eos"] is True


def test_single_token_stop_words_go_to_the_engine_and_stay_in_the_output():
    kwargs = kwargs_of(stop_words_list=word_list([[9], [8], [20, 21]]))
    assert kwargs["stop_token_ids"] == [8, 9]
    assert kwargs["include_stop_str_in_output"] is True
    multi_only = kwargs_of(stop_words_list=word_list([[20, 21]]))
    assert "stop_token_ids" not in multi_only  # matched by the driver instead


def test_bad_words_and_bias_become_one_logits_processor():
    kwargs = kwargs_of(**CASES["ids_and_words"])
    processor = kwargs["logits_processor"]
    assert isinstance(processor, ContractLogitsProcessor)
    assert processor.bad_words == ((11,), (12, 13))
    assert processor.embedding_bias is not None and processor.embedding_bias.shape == (100,)
    assert kwargs["logprobs"] == 1
    assert "logits_processor" not in kwargs_of()


def test_generation_call_is_one_request_per_sample_with_the_prompt_tokens():
    spec = spec_of(num_return_sequences=i32([[3]]), runtime_top_k=i32([[5]]))
    call = generation_call(spec, seed=5)
    assert call.prompt_token_ids == (5, 6, 7)
    assert "n" not in call.sampling_params and "best_of" not in call.sampling_params
    assert call.guided_decoding is None


def strings(value: str) -> np.ndarray:
    return np.array([[value.encode("utf-8")]], dtype=object)


SCHEMA = '{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}'

# The contract's guide inputs -> the GuidedDecodingParams keyword arguments they become:
# one field per guide type (tensorrt_llm/sampling_params.py, GuidedDecodingParams).
GUIDES = {
    "json": ({"guided_decoding_guide_type": strings("json")}, {"json_object": True}),
    "json_schema": (
        {
            "guided_decoding_guide_type": strings("json_schema"),
            "guided_decoding_guide": strings(SCHEMA),
        },
        {"json": SCHEMA},
    ),
    "regex": (
        {
            "guided_decoding_guide_type": strings("regex"),
            "guided_decoding_guide": strings("[a-z]+"),
        },
        {"regex": "[a-z]+"},
    ),
    "ebnf_grammar": (
        {
            "guided_decoding_guide_type": strings("ebnf_grammar"),
            "guided_decoding_guide": strings('root ::= "yes" | "no"'),
        },
        {"grammar": 'root ::= "yes" | "no"'},
    ),
}


@pytest.mark.parametrize("case", sorted(GUIDES))
def test_a_guide_becomes_the_guided_decoding_params_of_the_cited_release(case):
    pytest.importorskip("xgrammar")  # the contract layer checks the guide with it
    inputs, expected = GUIDES[case]
    call = generation_call(spec_of(**inputs), 11, guided_decoding_backend="xgrammar")
    assert call.guided_decoding == expected
    assert set(call.guided_decoding) <= GUIDED_DECODING_FIELDS
    # The engine passes it as SamplingParams(guided_decoding=GuidedDecodingParams(...)).
    assert "guided_decoding" in SAMPLING_PARAMS_FIELDS
    # The rest of the call is the unguided one.
    assert call.sampling_params.keys() == kwargs_of().keys()


def test_every_contract_guide_type_has_a_guided_decoding_params_field():
    assert set(GUIDE_TYPE_FIELDS) == set(GuideType)
    assert set(GUIDE_TYPE_FIELDS.values()) <= GUIDED_DECODING_FIELDS
    assert len(set(GUIDE_TYPE_FIELDS.values())) == len(GUIDE_TYPE_FIELDS)


def test_an_unguided_request_has_no_guided_decoding_whatever_the_backend():
    assert (
        generation_call(spec_of(), 11, guided_decoding_backend="xgrammar").guided_decoding is None
    )
    assert generation_call(spec_of(), 11).guided_decoding is None


def test_a_guide_without_a_guided_decoding_backend_is_refused_naming_the_parameter():
    pytest.importorskip("xgrammar")
    inputs, _ = GUIDES["json_schema"]
    with pytest.raises(RequestError) as err:
        generation_call(spec_of(**inputs), 11, guided_decoding_backend=None)
    assert err.value.field == "guided_decoding_guide_type"
    assert err.value.code == "UNSUPPORTED"
    assert "guided_decoding_backend" in err.value.message


# --- the logits processor -------------------------------------------------------------


def test_logits_processor_bans_bad_word_tokens_and_adds_the_bias():
    torch = pytest.importorskip("torch")
    bias = np.zeros(10, np.float32)
    bias[4] = 2.0
    processor = ContractLogitsProcessor(((7,), (1, 2, 3)), bias)
    logits = torch.zeros((1, 2, 10))
    # beam 0 ends with the prefix (1, 2) of a bad word; beam 1 does not
    processor(0, logits, [[5, 1, 2], [5, 2, 1]], None, None)
    assert logits[0, 0, 3] == float("-inf") and logits[0, 0, 7] == float("-inf")
    assert logits[0, 1, 3] == 0.0 and logits[0, 1, 7] == float("-inf")
    assert logits[0, 0, 4] == 2.0 and logits[0, 1, 4] == 2.0
    single = torch.zeros(10)
    processor(0, single, [[1, 2]], None, None)
    assert single[3] == float("-inf") and single[4] == 2.0


def test_logits_processor_pickles_without_its_device_cache():
    torch = pytest.importorskip("torch")
    processor = ContractLogitsProcessor(((3,),), np.ones(4, np.float32))
    processor(0, torch.zeros(4), [[1]], None, None)  # fills the cache
    copy = pickle.loads(pickle.dumps(processor))
    logits = torch.zeros(4)
    copy(0, logits, [[1]], None, None)
    assert logits.tolist() == [1.0, 1.0, 1.0, float("-inf")]


# --- step outputs -> contract ---------------------------------------------------------


def snap(tokens, *, finished=False, log_probs=None) -> CompletionSnapshot:
    return CompletionSnapshot(tuple(tokens), log_probs, finished)


def test_progress_drops_end_id_and_asks_to_abort_when_the_engine_goes_on():
    progress = SequenceProgress(spec_of(end_id=i32([[2]]), request_output_len=i32([[10]])), 0)
    step = progress.advance(snap([40, 41]))
    assert step.tokens == (40, 41) and not step.ended
    step = progress.advance(snap([40, 41, 2]))
    assert step.tokens == () and step.ended and step.needs_abort
    assert progress.output_tokens() == [40, 41]
    # Engine reported end_id itself and finished: nothing to abort.
    progress = SequenceProgress(spec_of(end_id=i32([[2]])), 0)
    step = progress.advance(snap([40, 2], finished=True))
    assert step.tokens == (40,) and step.ended and not step.needs_abort


def test_progress_ends_on_multi_token_stop_words_even_across_the_prompt():
    words = word_list([[41, 42]])
    progress = SequenceProgress(spec_of(stop_words_list=words, request_output_len=i32([[9]])), 0)
    assert not progress.advance(snap([40, 41])).ended
    step = progress.advance(snap([40, 41, 42, 43]))  # 43 came after the stop word: dropped
    assert step.tokens == (42,) and step.ended and step.needs_abort
    assert progress.output_tokens() == [40, 41, 42]
    across = SequenceProgress(spec_of(stop_words_list=word_list([[7, 50]])), 0)  # prompt ends 7
    assert across.advance(snap([50])).ended


def test_progress_caps_at_request_output_len_and_sums_log_probs():
    spec = spec_of(request_output_len=i32([[2]]), return_log_probs=np.array([[True]]))
    progress = SequenceProgress(spec, 0)
    step = progress.advance(snap([40, 41, 42], log_probs=(-0.5, -1.0, -2.0)))
    assert step.tokens == (40, 41) and step.log_probs == (-0.5, -1.0)
    assert step.ended and step.needs_abort
    assert progress.cum_log_prob == pytest.approx(-1.5)


def test_progress_prepends_the_prompt_when_not_excluded():
    spec = spec_of(exclude_input_in_output=np.array([[False]]))
    progress = SequenceProgress(spec, 0)
    progress.advance(snap([40], finished=True))
    assert progress.output_tokens() == [5, 6, 7, 40]


def test_progress_takes_log_probs_reported_per_step_or_cumulative():
    spec = spec_of(request_output_len=i32([[3]]), return_log_probs=np.array([[True]]))
    per_step, cumulative = SequenceProgress(spec, 0), SequenceProgress(spec, 0)
    per_step.advance(snap([40], log_probs=(-0.5,)))
    cumulative.advance(snap([40], log_probs=(-0.5,)))
    step = per_step.advance(snap([40, 41, 42], log_probs=(-1.0, -2.0)))
    assert step.log_probs == (-1.0, -2.0)
    step = cumulative.advance(snap([40, 41, 42], log_probs=(-0.5, -1.0, -2.0)))
    assert step.log_probs == (-1.0, -2.0)
    assert per_step.cum_log_prob == cumulative.cum_log_prob == pytest.approx(-3.5)


def test_sampled_log_probs_reads_both_formats():
    assert sampled_log_probs(None, [1]) is None
    assert sampled_log_probs([], [1]) is None
    assert sampled_log_probs([-0.5, -0.25], [1, 2]) == (-0.5, -0.25)
    top = [{1: -0.5, 9: -1.0}, {2: -0.25}]  # {token_id: log prob} per position
    assert sampled_log_probs(top, [1, 2]) == (-0.5, -0.25)
    # Only the newest token's entry (a release that reports them per step).
    assert sampled_log_probs([{2: -0.25}], [1, 2]) == (-0.25,)


# --- model parameters -----------------------------------------------------------------


def test_config_defaults_and_llm_arguments():
    config = LlmApiConfig.from_parameters({"model_dir": {"string_value": "/m"}})
    kwargs = config.llm_kwargs()
    assert set(kwargs) <= LLM_ARGS
    assert set(kwargs["kv_cache_config"]) <= KV_CACHE_CONFIG_FIELDS
    assert kwargs["model"] == "/m" and kwargs["backend"] == "pytorch"
    assert kwargs["trust_remote_code"] is False
    assert kwargs["kv_cache_config"] == {
        "free_gpu_memory_fraction": 0.9,
        "enable_block_reuse": True,
    }
    assert "max_batch_size" not in kwargs  # unset: the LLM API's default
    config = LlmApiConfig.from_parameters(
        {
            "model_dir": "/m",
            "tensor_parallel_size": "4",
            "pipeline_parallel_size": "2",
            "max_batch_size": "32",
            "max_num_tokens": "4096",
            "max_seq_len": "8192",
            "guided_decoding_backend": "xgrammar",
            "kv_cache_free_gpu_mem_fraction": "0.5",
            "trust_remote_code": "true",
        }
    )
    kwargs = config.llm_kwargs()
    assert set(kwargs) <= LLM_ARGS
    assert (kwargs["tensor_parallel_size"], kwargs["pipeline_parallel_size"]) == (4, 2)
    assert (kwargs["max_batch_size"], kwargs["max_num_tokens"], kwargs["max_seq_len"]) == (
        32,
        4096,
        8192,
    )
    assert kwargs["guided_decoding_backend"] == "xgrammar"
    assert kwargs["kv_cache_config"]["free_gpu_memory_fraction"] == 0.5
    assert kwargs["trust_remote_code"] is True


@pytest.mark.parametrize(
    ("parameters", "needle"),
    [
        ({}, "model_dir"),
        ({"model_dir": "/m", "tensor_parallel_size": "0"}, "tensor_parallel_size"),
        ({"model_dir": "/m", "kv_cache_free_gpu_mem_fraction": "1.5"}, "free_gpu_mem"),
        ({"model_dir": "/m", "guided_decoding_backend": "outlines"}, "guided_decoding_backend"),
        ({"model_dir": "/m", "trust_remote_code": "maybe"}, "trust_remote_code"),
        ({"model_dir": "/m", "cancellation_check_period_ms": "0"}, "cancellation_check"),
        ({"model_dir": "/m", "gpt_model_path": "/e"}, "gpt_model_path"),
    ],
)
def test_config_refusals_name_the_parameter(parameters, needle):
    with pytest.raises(ValueError, match=needle):
        LlmApiConfig.from_parameters(parameters)


def test_checkpoint_shape_from_the_fixture():
    shape = read_checkpoint_shape(ensure_fixtures().tiny_llama)
    assert shape.vocab_size and shape.vocab_size > 0
    assert shape.max_position_embeddings and shape.max_position_embeddings > 0


def test_worker_pythonpath_adds_the_package_root_once():
    path = worker_pythonpath({"PYTHONPATH": "/a"})
    parts = path.split(":")
    assert parts[0] == "/a" and len(parts) == 2
    assert worker_pythonpath({"PYTHONPATH": path}) == path


# --- with the real TensorRT-LLM (skipped where it does not import) -----------------------


@needs_tensorrt_llm
@pytest.mark.parametrize("case", sorted(CASES))
def test_real_sampling_params_accept_the_keywords(case):
    from tensorrt_llm import SamplingParams

    kwargs = kwargs_of(**CASES[case])
    params = SamplingParams(**kwargs)
    for name, value in kwargs.items():
        if name != "logits_processor":
            assert getattr(params, name) == value, name


@needs_tensorrt_llm
@pytest.mark.parametrize("case", sorted(GUIDES))
def test_real_sampling_params_accept_the_guided_decoding_params(case):
    from tensorrt_llm import SamplingParams
    from tensorrt_llm.llmapi import GuidedDecodingParams

    inputs, expected = GUIDES[case]
    call = generation_call(spec_of(**inputs), 11, guided_decoding_backend="xgrammar")
    params = SamplingParams(
        **call.sampling_params, guided_decoding=GuidedDecodingParams(**call.guided_decoding)
    )
    for name, value in expected.items():
        assert getattr(params.guided_decoding, name) == value, name


@needs_tensorrt_llm
def test_real_llm_api_signatures_have_the_recorded_names():
    from tensorrt_llm import LLM, SamplingParams
    from tensorrt_llm.llmapi import GuidedDecodingParams, KvCacheConfig

    assert set(inspect.signature(SamplingParams).parameters) >= SAMPLING_PARAMS_FIELDS
    assert set(inspect.signature(GuidedDecodingParams).parameters) >= GUIDED_DECODING_FIELDS
    assert set(KvCacheConfig.model_fields) >= KV_CACHE_CONFIG_FIELDS
    KvCacheConfig(**LlmApiConfig(model_dir="/m").llm_kwargs()["kv_cache_config"])
    llm_parameters = set(inspect.signature(LLM).parameters)
    accepts_any = any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(LLM).parameters.values()
    )
    assert accepts_any or llm_parameters >= LLM_ARGS


@needs_tensorrt_llm
def test_real_completion_output_converts():
    from tensorrt_llm.executor.result import CompletionOutput, Logprob

    from llm_api_engine.outputs import snapshot_of

    completion = CompletionOutput(index=0, token_ids=[4, 5], finish_reason="length")
    completion.logprobs = [{4: Logprob(logprob=-0.5, rank=1)}, {5: Logprob(logprob=-1.0)}]

    # The two RequestOutput fields snapshot_of reads, around a real CompletionOutput.
    snapshot = snapshot_of(SimpleNamespace(outputs=[completion], finished=True))
    assert snapshot.token_ids == (4, 5) and snapshot.log_probs == (-0.5, -1.0)
    assert snapshot.finished and snapshot.finish_reason == "length"
