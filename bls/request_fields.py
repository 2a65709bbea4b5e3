"""The inputs `tensorrt_llm_bls` accepts: one table, shared by the parser and the config test.

Every input declared in `model_repository/tensorrt_llm_bls/config.pbtxt` appears here with
the same name, Triton dtype and per-row dims (the config's `dims`, without the batch
dimension). `tests/unit/test_bls_request_config.py` checks that the two agree, so the parser
never meets an input it does not know and the config never declares one it drops.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.Enum):
    """How the parser reads one row of an input."""

    STRING = "string"  # one UTF-8 string per row
    INT = "int"  # one signed integer per row (INT32)
    UINT = "uint"  # one unsigned integer per row (UINT64)
    FLOAT = "float"  # one float per row (FP32)
    BOOL = "bool"  # one bool per row
    STRING_LIST = "string_list"  # N UTF-8 strings per row
    FLOAT_LIST = "float_list"  # N floats per row
    MATRIX = "matrix"  # a 2-D array per row, passed to the engine as it is


#: Kinds that hold exactly one value per row; only these may also come as request parameters.
SCALAR_KINDS = frozenset({Kind.INT, Kind.UINT, Kind.FLOAT, Kind.BOOL})


@dataclass(frozen=True)
class InputSpec:
    name: str
    kind: Kind
    triton_dtype: str  # as written in config.pbtxt, e.g. "TYPE_INT32"
    dims: tuple[int, ...]  # per-row dims as written in config.pbtxt


def _spec(name: str, kind: Kind, triton_dtype: str, dims: tuple[int, ...] = (1,)) -> InputSpec:
    return InputSpec(name, kind, triton_dtype, dims)


INPUT_SPECS: tuple[InputSpec, ...] = (
    # The prompt: exactly one of these two.
    _spec("text_input", Kind.STRING, "TYPE_STRING"),
    _spec("messages", Kind.STRING, "TYPE_STRING"),  # a JSON array of chat messages
    # Length and streaming.
    _spec("max_tokens", Kind.INT, "TYPE_INT32"),
    _spec("stream", Kind.BOOL, "TYPE_BOOL"),
    # Word lists.
    _spec("stop_words", Kind.STRING_LIST, "TYPE_STRING", (-1,)),
    _spec("bad_words", Kind.STRING_LIST, "TYPE_STRING", (-1,)),
    _spec("embedding_bias_words", Kind.STRING_LIST, "TYPE_STRING", (-1,)),
    _spec("embedding_bias_weights", Kind.FLOAT_LIST, "TYPE_FP32", (-1,)),
    # Token ids.
    _spec("end_id", Kind.INT, "TYPE_INT32"),
    _spec("pad_id", Kind.INT, "TYPE_INT32"),
    # Sampling.
    _spec("top_k", Kind.INT, "TYPE_INT32"),
    _spec("top_p", Kind.FLOAT, "TYPE_FP32"),
    _spec("temperature", Kind.FLOAT, "TYPE_FP32"),
    _spec("length_penalty", Kind.FLOAT, "TYPE_FP32"),
    _spec("repetition_penalty", Kind.FLOAT, "TYPE_FP32"),
    _spec("presence_penalty", Kind.FLOAT, "TYPE_FP32"),
    _spec("frequency_penalty", Kind.FLOAT, "TYPE_FP32"),
    _spec("min_tokens", Kind.INT, "TYPE_INT32"),
    _spec("min_length", Kind.INT, "TYPE_INT32"),  # older name of min_tokens
    _spec("seed", Kind.UINT, "TYPE_UINT64"),
    _spec("random_seed", Kind.UINT, "TYPE_UINT64"),  # older name of seed
    _spec("beam_width", Kind.INT, "TYPE_INT32"),
    _spec("num_return_sequences", Kind.INT, "TYPE_INT32"),
    # Output shaping.
    _spec("return_log_probs", Kind.BOOL, "TYPE_BOOL"),
    _spec("exclude_input_in_output", Kind.BOOL, "TYPE_BOOL"),
    _spec("include_stop_str_in_output", Kind.BOOL, "TYPE_BOOL"),
    _spec("skip_special_tokens", Kind.BOOL, "TYPE_BOOL"),
    _spec("return_num_input_tokens", Kind.BOOL, "TYPE_BOOL"),
    _spec("return_num_output_tokens", Kind.BOOL, "TYPE_BOOL"),
    # Declared only so that the official clients, which may send them as false, keep
    # working; true is refused (UNSUPPORTED) because this BLS does not return logits or
    # the engine's performance metrics.
    _spec("return_context_logits", Kind.BOOL, "TYPE_BOOL"),
    _spec("return_generation_logits", Kind.BOOL, "TYPE_BOOL"),
    _spec("return_perf_metrics", Kind.BOOL, "TYPE_BOOL"),
    # Guided decoding (structured output): checked here, passed to the engine as it is.
    _spec("guided_decoding_guide_type", Kind.STRING, "TYPE_STRING"),
    _spec("guided_decoding_guide", Kind.STRING, "TYPE_STRING"),
    # LoRA, passed to the engine as it is.
    _spec("lora_task_id", Kind.UINT, "TYPE_UINT64"),
    _spec("lora_weights", Kind.MATRIX, "TYPE_FP16", (-1, -1)),
    _spec("lora_config", Kind.MATRIX, "TYPE_INT32", (-1, 3)),
)

INPUTS_BY_NAME: dict[str, InputSpec] = {spec.name: spec for spec in INPUT_SPECS}

#: Inputs that may also be given as request parameters (gRPC parameters, or JSON fields
#: of the HTTP generate endpoints that Triton turns into parameters). The prompt is not
#: among them: it must come as a tensor.
REQUEST_PARAMETER_NAMES: frozenset[str] = frozenset(
    spec.name for spec in INPUT_SPECS if spec.kind in SCALAR_KINDS
)

#: Older names kept for existing clients: alias -> canonical name.
ALIASES: dict[str, str] = {"min_length": "min_tokens", "random_seed": "seed"}
