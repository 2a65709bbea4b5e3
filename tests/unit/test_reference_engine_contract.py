"""The reference engine's contract adapter: request tensors -> typed requests, and
typed results -> response tensors, with TensorRT-LLM's names, shapes and semantics.

The parsing tests run for both engines that use this adapter: the reference engine and
the LLM-API model, whose requests must also map to tensorrt_llm.SamplingParams keyword
arguments (llm_api_engine.sampling) for every input the adapter accepts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from llm_api_engine.release import SAMPLING_PARAMS_FIELDS
from llm_api_engine.sampling import generation_call
from llm_api_engine.triton_glue import ENGINE_NAME as LLM_API_ENGINE_NAME
from reference_engine.config import EngineConfig, parameters_from_model_config
from reference_engine.contract import (
    ContractDefaults,
    EngineLimits,
    parse_request,
    response_tensors,
)
from reference_engine.types import GenerationRequest, LiveSequence, SequenceSpec, StopRequest
from reference_engine.words import banned_next_tokens, matched_stop_word
from serving_common.errors import RequestError

LIMITS = EngineLimits(max_seq_len=64, vocab_size=100)


def i32(rows) -> np.ndarray:
    return np.array(rows, dtype=np.int32)


def base_inputs(**extra) -> dict[str, np.ndarray]:
    inputs = {"input_ids": i32([[5, 6, 7]]), "request_output_len": i32([[4]])}
    inputs.update(extra)
    return inputs


DEFAULTS = ContractDefaults()


def parser_for(engine: str):
    """`parse(inputs, ...)` as the given engine's model does it."""

    def parse(inputs, request_id="req-1", limits=LIMITS, defaults=DEFAULTS):
        if engine == "llm_api":
            limits = dataclasses.replace(limits, engine_name=LLM_API_ENGINE_NAME)
        parsed = parse_request(inputs, request_id, limits, defaults)
        if engine == "llm_api" and isinstance(parsed, GenerationRequest):
            for spec in parsed.sequences:
                call = generation_call(spec, seed=spec.sequence_index)
                assert call.prompt_token_ids == spec.prompt
                assert set(call.sampling_params) <= SAMPLING_PARAMS_FIELDS
        return parsed

    return parse


@pytest.fixture(params=["reference", "llm_api"])
def parse(request):
    return parser_for(request.param)


def word_list(words: list[list[int]], width: int | None = None) -> np.ndarray:
    tokens = [t for w in words for t in w]
    offsets = list(np.cumsum([len(w) for w in words])) if words else []
    n = max(width or 0, len(tokens), len(offsets), 1)
    row0 = tokens + [0] * (n - len(tokens))
    row1 = offsets + [-1] * (n - len(offsets))
    return i32([row0, row1])


# --- parsing ---------------------------------------------------------------------------


def test_minimal_request_gets_tensorrt_llm_defaults(parse):
    parsed = parse(base_inputs())
    assert isinstance(parsed, GenerationRequest)
    assert parsed.request_id == "req-1"
    assert parsed.streaming is False
    (spec,) = parsed.sequences
    assert spec.prompt == (5, 6, 7)
    assert spec.max_new_tokens == 4
    assert spec.end_id is None and spec.stop_words == () and spec.bad_words == ()
    # TensorRT-LLM: top_k = 0 and top_p = 0 (the defaults) mean greedy.
    assert spec.sampling.greedy
    assert spec.sampling.seed is None
    assert spec.exclude_input_in_output is True  # model default
    assert spec.return_log_probs is False


def test_scalars_accepted_as_b_or_b_by_1(parse):
    a = parse(base_inputs(temperature=np.array([0.5], np.float32), runtime_top_k=i32([[7]])))
    b = parse(base_inputs(temperature=np.array([[0.5]], np.float32), runtime_top_k=i32([7])))
    assert a.sequences[0].sampling == b.sequences[0].sampling
    assert a.sequences[0].sampling.top_k == 7
    assert not a.sequences[0].sampling.greedy


def test_ragged_prompts_use_input_lengths_and_make_one_sequence_per_prompt_and_sample(parse):
    inputs = {
        "input_ids": i32([[1, 2, 3, 4], [9, 8, 0, 0]]),
        "input_lengths": i32([[4], [2]]),
        "request_output_len": i32([[3], [5]]),
        "num_return_sequences": i32([[1], [2]]),
        "end_id": i32([[2], [3]]),
    }
    parsed = parse(inputs)
    got = [
        (s.batch_index, s.sequence_index, s.prompt, s.max_new_tokens, s.end_id)
        for s in parsed.sequences
    ]
    assert got == [
        (0, 0, (1, 2, 3, 4), 3, 2),
        (1, 0, (9, 8), 5, 3),
        (1, 1, (9, 8), 5, 3),
    ]


def test_word_lists_are_decoded_per_prompt(parse):
    stop = np.stack([word_list([[5, 6], [7]], width=4), word_list([[9]], width=4)])
    bad = np.stack([word_list([], width=3), word_list([[11, 12, 13]], width=3)])
    inputs = {
        "input_ids": i32([[1, 2], [3, 4]]),
        "request_output_len": i32([[2], [2]]),
        "stop_words_list": stop,
        "bad_words_list": bad,
    }
    parsed = parse(inputs)
    assert parsed.sequences[0].stop_words == ((5, 6), (7,))
    assert parsed.sequences[1].stop_words == ((9,),)
    assert parsed.sequences[0].bad_words == ()
    assert parsed.sequences[1].bad_words == ((11, 12, 13),)


def test_request_exclude_input_in_output_overrides_model_default(parse):
    parsed = parse(
        base_inputs(exclude_input_in_output=np.array([[False]])),
        defaults=ContractDefaults(exclude_input_in_output=True),
    )
    assert parsed.sequences[0].exclude_input_in_output is False
    parsed = parse(base_inputs(), defaults=ContractDefaults(exclude_input_in_output=False))
    assert parsed.sequences[0].exclude_input_in_output is False


def test_stop_request_needs_request_id(parse):
    stop_inputs = {
        "input_ids": i32([[0]]),
        "input_lengths": i32([[0]]),
        "request_output_len": i32([[0]]),
        "stop": np.array([[True]]),
    }
    assert parse(stop_inputs, request_id="abc") == StopRequest("abc")
    with pytest.raises(RequestError) as err:
        parse(stop_inputs, request_id="")
    assert err.value.field == "stop"


def test_embedding_bias_rows(parse):
    bias = np.zeros((1, 100), np.float32)
    bias[0, 3] = 2.5
    spec = parse(base_inputs(embedding_bias=bias)).sequences[0]
    assert spec.embedding_bias is not None and spec.embedding_bias[3] == 2.5
    # all-zero or empty bias is "no bias"
    assert (
        parse(base_inputs(embedding_bias=np.zeros((1, 100), np.float32)))
        .sequences[0]
        .embedding_bias
        is None
    )
    assert (
        parse(base_inputs(embedding_bias=np.zeros((1, 0), np.float32))).sequences[0].embedding_bias
        is None
    )


def test_seed_uint64_full_range(parse):
    seed = np.array([[2**64 - 1]], dtype=np.uint64)
    spec = parse(base_inputs(seed=seed, runtime_top_k=i32([[5]]))).sequences[0]
    assert spec.sampling.seed == 2**64 - 1


# --- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "field", "code", "needle"),
    [
        ({"beam_width": i32([[2]])}, "beam_width", "UNSUPPORTED", "max_beam_width 1"),
        (
            {"request_output_len": i32([[62]])},
            "request_output_len",
            "INVALID_ARG",
            "exceeds max_seq_len 64",
        ),
        ({"request_output_len": i32([[0]])}, "request_output_len", "INVALID_ARG", "at least 1"),
        ({"input_lengths": i32([[4]])}, "input_lengths", "INVALID_ARG", "between 1 and"),
        ({"input_lengths": i32([[0]])}, "input_lengths", "INVALID_ARG", "between 1 and"),
        ({"runtime_top_k": i32([[2000]])}, "runtime_top_k", "INVALID_ARG", "1024"),
        ({"runtime_top_p": np.array([[1.5]], np.float32)}, "runtime_top_p", "INVALID_ARG", "1.0"),
        ({"temperature": np.array([[-1.0]], np.float32)}, "temperature", "INVALID_ARG", "0.0"),
        (
            {"repetition_penalty": np.array([[0.0]], np.float32)},
            "repetition_penalty",
            "INVALID_ARG",
            "(0.0",
        ),
        ({"min_tokens": i32([[-1]])}, "min_tokens", "INVALID_ARG", "[0"),
        ({"end_id": i32([[100]])}, "end_id", "INVALID_ARG", "vocabulary"),
        ({"input_ids": i32([[5, 100]])}, "input_ids", "INVALID_ARG", "vocabulary"),
        (
            {"stop_words_list": i32([[[5, 6], [3, -1]]])},
            "stop_words_list",
            "INVALID_ARG",
            "malformed",
        ),
        ({"bad_words_list": i32([[[5, 6], [1, 0]]])}, "bad_words_list", "INVALID_ARG", "malformed"),
        ({"stop_words_list": i32([[5, 6]])}, "stop_words_list", "INVALID_ARG", "[1, 2, N]"),
        (
            {"embedding_bias": np.zeros((1, 7), np.float32) + 1},
            "embedding_bias",
            "INVALID_ARG",
            "100",
        ),
        (
            {"temperature": np.array([[1.0], [1.0]], np.float32)},
            "temperature",
            "INVALID_ARG",
            "one value per prompt",
        ),
        ({"draft_input_ids": i32([[1, 2]])}, "draft_input_ids", "UNSUPPORTED", "speculative"),
        ({"lora_task_id": np.array([[3]], np.uint64)}, "lora_task_id", "UNSUPPORTED", "LoRA"),
        (
            {"prompt_embedding_table": np.zeros((1, 2, 4), np.float16)},
            "prompt_embedding_table",
            "UNSUPPORTED",
            "prompt tuning",
        ),
        (
            {"guided_decoding_guide_type": np.array([[b"yaml"]], dtype=object)},
            "guided_decoding_guide_type",
            "INVALID_ARG",
            "json, json_schema, regex, ebnf_grammar",
        ),
        (
            {"guided_decoding_guide": np.array([[b"[a-z]+"]], dtype=object)},
            "guided_decoding_guide_type",
            "INVALID_ARG",
            "is required with guided_decoding_guide",
        ),
        (
            {
                "guided_decoding_guide_type": np.array([[b"regex"]], dtype=object),
                "guided_decoding_guide": np.array([[b"[a-z"]], dtype=object),
            },
            "guided_decoding_guide",
            "INVALID_ARG",
            "not a valid regular expression",
        ),
        (
            {"guided_decoding_guide_type": np.array([[1]], np.int32)},
            "guided_decoding_guide_type",
            "INVALID_ARG",
            "dtype",
        ),
        (
            {"return_generation_logits": np.array([[True]])},
            "return_generation_logits",
            "UNSUPPORTED",
            "false",
        ),
        ({"no_such_input": i32([[1]])}, "no_such_input", "INVALID_ARG", "not an input"),
        ({"temperature": i32([[1]])}, "temperature", "INVALID_ARG", "dtype"),
    ],
)
def test_refusals_name_the_field_and_the_limit(extra, field, code, needle, parse):
    with pytest.raises(RequestError) as err:
        parse(base_inputs(**extra))
    assert err.value.field == field
    assert err.value.code == code
    assert needle in str(err.value)


def test_false_logits_flags_and_beam_only_inputs_are_accepted(parse):
    parsed = parse(
        base_inputs(
            return_context_logits=np.array([[False]]),
            return_generation_logits=np.array([[False]]),
            len_penalty=np.array([[1.0]], np.float32),
            early_stopping=np.array([[True]]),
            beam_width=i32([[1]]),
        )
    )
    assert len(parsed.sequences) == 1


def test_streaming_must_agree_across_prompts(parse):
    inputs = {
        "input_ids": i32([[1], [2]]),
        "request_output_len": i32([[1], [1]]),
        "streaming": np.array([[True], [False]]),
    }
    with pytest.raises(RequestError) as err:
        parse(inputs)
    assert err.value.field == "streaming"


# --- response tensors ------------------------------------------------------------------


def spec_for(**kwargs) -> SequenceSpec:
    values = dict(
        batch_index=1,
        sequence_index=2,
        prompt=(5, 6),
        max_new_tokens=3,
        end_id=None,
        pad_id=None,
        stop_words=(),
        bad_words=(),
    )
    values.update(kwargs)
    return SequenceSpec(**values)


def test_response_tensors_shapes_and_dtypes():
    tensors = response_tensors(spec_for(), [10, 11, 12])
    assert tensors["output_ids"].dtype == np.int32
    assert tensors["output_ids"].tolist() == [[[10, 11, 12]]]
    assert tensors["sequence_length"].tolist() == [[3]]
    assert tensors["batch_index"].tolist() == [[1]]
    assert tensors["sequence_index"].tolist() == [[2]]
    assert "cum_log_probs" not in tensors and "output_log_probs" not in tensors


def test_response_tensors_with_log_probs():
    tensors = response_tensors(spec_for(return_log_probs=True), [10, 11], [-0.5, -1.0], -1.5)
    assert tensors["output_log_probs"].dtype == np.float32
    assert tensors["output_log_probs"].shape == (1, 1, 2)
    assert tensors["cum_log_probs"].tolist() == [[-1.5]]
    empty = response_tensors(spec_for(return_log_probs=True), [], [], -2.0)
    assert empty["output_ids"].shape == (1, 1, 0)
    assert empty["sequence_length"].tolist() == [[0]]
    assert empty["cum_log_probs"].tolist() == [[-2.0]]


# --- word lists --------------------------------------------------------------------------


def live(prompt, generated, **spec_kwargs) -> LiveSequence:
    seq = LiveSequence(spec=spec_for(prompt=tuple(prompt), **spec_kwargs), seed=0)
    seq.generated.extend(generated)
    return seq


def test_bad_words_ban_last_token_after_prefix_and_single_tokens_always():
    words = ((9,), (3, 4), (1, 2, 3))
    assert banned_next_tokens(live([7], []), words) == {9}
    assert banned_next_tokens(live([7], [3]), words) == {9, 4}
    assert banned_next_tokens(live([7, 1], [2]), words) == {9, 3}  # prefix spans prompt
    assert banned_next_tokens(live([7], [2, 1]), words) == {9}


def test_stop_word_matches_at_the_end_of_prompt_plus_generated():
    words = ((5, 6), (8,))
    assert matched_stop_word(live([1, 2], [5]), words) is None
    assert matched_stop_word(live([1, 2], [5, 6]), words) == (5, 6)
    assert matched_stop_word(live([1, 5], [6]), words) == (5, 6)
    assert matched_stop_word(live([1], [8, 2]), words) is None


def test_live_sequence_tail():
    seq = live([1, 2, 3], [4, 5])
    assert seq.tail(0) == []
    assert seq.tail(1) == [5]
    assert seq.tail(4) == [2, 3, 4, 5]
    assert seq.tail(10) == [1, 2, 3, 4, 5]


# --- config ------------------------------------------------------------------------------


def test_config_parameters_defaults_and_values():
    cfg = EngineConfig.from_parameters({"generation_backend": "synthetic", "model_dir": ""})
    assert cfg.generation_backend == "synthetic"
    assert cfg.max_active_sequences == 256
    assert cfg.synthetic_step_ms == 20.0
    assert cfg.synthetic_vocab_size == 32000
    assert cfg.synthetic_end_id == -1
    assert cfg.exclude_input_in_output is True
    assert cfg.max_seq_len is None
    cfg = EngineConfig.from_parameters(
        {
            "model_dir": "/m",
            "max_seq_len": "100",
            "exclude_input_in_output": "false",
            "random_seed": "7",
            "max_active_sequences": "3",
        }
    )
    assert (
        cfg.model_dir.as_posix(),
        cfg.max_seq_len,
        cfg.exclude_input_in_output,
        cfg.random_seed,
        cfg.max_active_sequences,
    ) == ("/m", 100, False, 7, 3)


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"generation_backend": "trt"}, "generation_backend"),
        ({"generation_backend": "reference"}, "model_dir"),
        ({"generation_backend": "synthetic", "max_active_sequences": "0"}, "max_active_sequences"),
        (
            {"generation_backend": "synthetic", "exclude_input_in_output": "maybe"},
            "exclude_input_in_output",
        ),
        ({"generation_backend": "synthetic", "max_beam_width": "4"}, "max_beam_width"),
        ({"generation_backend": "synthetic", "typo_param": "1"}, "typo_param"),
    ],
)
def test_config_rejects_bad_parameters(params, needle):
    with pytest.raises(ValueError, match=needle):
        EngineConfig.from_parameters(params)


def test_shipped_config_parameters_parse():
    from pathlib import Path

    from local_triton.model_config import config_parameters, load_model_config

    path = Path(__file__).resolve().parents[2] / "reference_engine/triton_model/config.pbtxt"
    params = config_parameters(load_model_config(path))
    params["model_dir"] = "/some/checkpoint"
    cfg = EngineConfig.from_parameters(params)
    assert cfg.generation_backend == "reference"
    assert parameters_from_model_config({"parameters": {"a": {"string_value": "1"}}}) == {"a": "1"}
