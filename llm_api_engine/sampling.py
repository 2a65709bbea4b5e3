"""One contract sequence (`SequenceSpec`) -> one LLM-API call: prompt + SamplingParams.

The contract layer (`reference_engine.contract.parse_request`) has already validated the
request and expanded it into one `SequenceSpec` per (prompt, sample); this module only
translates each spec into the keyword arguments of `tensorrt_llm.SamplingParams`
(names: `llm_api_engine.release`). The result is a plain dict, so it is tested here
without TensorRT-LLM; the driver builds the real object from it.

Decisions (each keeps the C++ backend's behaviour, which the BLS relies on):
- One LLM-API request per sample, never `n > 1`: each sample can then be ended on its
  own (a stop word, end_id, a cancel) and gets its own seed, exactly the seeds the
  reference engine uses (`reference_engine.scheduler.sample_seed`).
- Greedy, in TensorRT-LLM's C++ sense (top_k = 0 and top_p = 0, or top_k = 1, or
  temperature = 0), is sent as `top_k=1`: the LLM API treats top_p = 0 as invalid and
  all-unset as greedy only by default.
- Stop words: single-token words go to `stop_token_ids` (the engine stops at once, the
  token kept: `include_stop_str_in_output=True`); every stop word is also matched by the
  driver on the streamed tokens, which aborts the request for multi-token words.
- end_id: passed as is; without one, `ignore_eos=True` (nothing but length and stop
  words ends generation, as in the contract).
- Bad words and embedding_bias: one `ContractLogitsProcessor` (see `logits.py`).
- log probs: `logprobs=1` (the sampled token's log probability is always included).
- Tokens only (`detokenize=False`): the BLS detokenizes; and the prompt is never echoed
  (`exclude_input_from_output=True`): the driver adds it for exclude_input_in_output=false.
- Guided decoding: the contract layer has parsed and checked the guide
  (`serving_common.guided_decoding`); it becomes SamplingParams' `guided_decoding`, a
  `GuidedDecodingParams` with the one field that carries its type. The LLM needs its
  `guided_decoding_backend` for that (the model parameter of the same name); a model
  without one refuses guided requests with UNSUPPORTED, as the C++ backend without its
  guided-decoding parameters fails them, instead of generating unguided text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_api_engine.logits import ContractLogitsProcessor
from reference_engine.types import (
    DEFAULT_TOP_P_DECAY,
    DEFAULT_TOP_P_MIN,
    DEFAULT_TOP_P_RESET_ID,
    SequenceSpec,
)
from serving_common.errors import RequestError
from serving_common.guided_decoding import GUIDE_TYPE_INPUT, Guide, GuideType

# The contract's guide types (the C++ backend's guided_decoding_guide_type values) ->
# the GuidedDecodingParams field that carries each (llm_api_engine.release).
GUIDE_TYPE_FIELDS: dict[GuideType, str] = {
    GuideType.JSON: "json_object",
    GuideType.JSON_SCHEMA: "json",
    GuideType.REGEX: "regex",
    GuideType.EBNF_GRAMMAR: "grammar",
}


@dataclass(frozen=True)
class GenerationCall:
    """What `LLM.generate_async` gets for one sequence."""

    prompt_token_ids: tuple[int, ...]
    sampling_params: dict[str, Any]  # keyword arguments of tensorrt_llm.SamplingParams
    # GuidedDecodingParams keyword arguments, or None (see guided_decoding_kwargs).
    guided_decoding: dict[str, Any] | None = None


def generation_call(
    spec: SequenceSpec, seed: int, *, guided_decoding_backend: str | None = None
) -> GenerationCall:
    """The LLM-API call for one contract sequence; `seed` is this sample's seed and
    `guided_decoding_backend` the LLM's (None: it has none, so guides are refused)."""
    guided = None
    if spec.guide is not None:
        guided = guided_decoding_kwargs(spec.guide, guided_decoding_backend)
    return GenerationCall(
        prompt_token_ids=spec.prompt,
        sampling_params=sampling_params_kwargs(spec, seed),
        guided_decoding=guided,
    )


def sampling_params_kwargs(spec: SequenceSpec, seed: int) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "max_tokens": spec.max_new_tokens,
        "seed": seed,
        "detokenize": False,
        "exclude_input_from_output": True,
    }
    if spec.end_id is None:
        kwargs["ignore_eos"] = True
    else:
        kwargs["end_id"] = spec.end_id
    if spec.pad_id is not None and spec.pad_id >= 0:
        kwargs["pad_id"] = spec.pad_id
    kwargs.update(_sampling_kwargs(spec))
    single_token_stops = sorted({word[0] for word in spec.stop_words if len(word) == 1})
    if single_token_stops:
        kwargs["stop_token_ids"] = single_token_stops
        kwargs["include_stop_str_in_output"] = True
    if spec.bad_words or spec.embedding_bias is not None:
        kwargs["logits_processor"] = ContractLogitsProcessor(spec.bad_words, spec.embedding_bias)
    if spec.return_log_probs:
        kwargs["logprobs"] = 1
    return kwargs


def _sampling_kwargs(spec: SequenceSpec) -> dict[str, Any]:
    sampling = spec.sampling
    kwargs: dict[str, Any] = {}
    if sampling.greedy:
        kwargs["top_k"] = 1
    else:
        # Not greedy, so temperature > 0 and top_k > 1 or top_p > 0: send what is set
        # (top_k = 0 means "all tokens" in both APIs; top_p = 0 means "off" in C++).
        kwargs["temperature"] = sampling.temperature
        if sampling.top_k > 0:
            kwargs["top_k"] = sampling.top_k
        if sampling.top_p > 0.0:
            kwargs["top_p"] = sampling.top_p
        if sampling.top_p_min != DEFAULT_TOP_P_MIN:
            kwargs["top_p_min"] = sampling.top_p_min
        if sampling.top_p_decay != DEFAULT_TOP_P_DECAY:
            kwargs["top_p_decay"] = sampling.top_p_decay
        if sampling.top_p_reset_id != DEFAULT_TOP_P_RESET_ID:
            kwargs["top_p_reset_ids"] = sampling.top_p_reset_id
    if sampling.repetition_penalty != 1.0:
        kwargs["repetition_penalty"] = sampling.repetition_penalty
    if sampling.presence_penalty != 0.0:
        kwargs["presence_penalty"] = sampling.presence_penalty
    if sampling.frequency_penalty != 0.0:
        kwargs["frequency_penalty"] = sampling.frequency_penalty
    if sampling.min_length > 0:
        kwargs["min_tokens"] = sampling.min_length
    return kwargs


def guided_decoding_kwargs(guide: Guide, guided_decoding_backend: str | None) -> dict[str, Any]:
    """GuidedDecodingParams keyword arguments for a checked guide; RequestError
    (UNSUPPORTED, naming guided_decoding_guide_type) when the LLM has no guided decoding."""
    if guided_decoding_backend is None:
        raise RequestError(
            GUIDE_TYPE_INPUT,
            "guided decoding is off in this tensorrt_llm model: set its "
            "guided_decoding_backend parameter to xgrammar (llm-bls-build --guided-decoding)",
            code="UNSUPPORTED",
        )
    field_name = GUIDE_TYPE_FIELDS[guide.guide_type]
    if guide.guide_type is GuideType.JSON:
        return {field_name: True}  # any JSON value: a flag, no guide text
    return {field_name: guide.text}
