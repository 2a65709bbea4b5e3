"""The `preprocessing` Triton model's request handling, on plain numpy arrays.

Tensor names follow TensorRT-LLM's own preprocessing model, so our model drops into its
ensemble; MESSAGES is our addition. `model.py` only moves tensors in and out of
`pb_utils`; everything here is unit-tested without a server.

Shapes carry the batch dimension B (max_batch_size > 0): QUERY [B, 1], word inputs
[B, k] (rows of different length are padded with empty strings, which are skipped).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from preprocessing.encoding import PromptEncoder, embedding_bias_pairs
from preprocessing.request_size import check_request_size
from serving_common.errors import RequestError
from serving_common.triton_parameters import refuse_parameters
from serving_common.word_lists import batch_word_lists, encode_word_list

INPUT_NAMES = (
    "QUERY",
    "MESSAGES",
    "REQUEST_OUTPUT_LEN",
    "BAD_WORDS_DICT",
    "STOP_WORDS_DICT",
    "EMBEDDING_BIAS_WORDS",
    "EMBEDDING_BIAS_WEIGHTS",
    "END_ID",
    "PAD_ID",
)
OUTPUT_NAMES = (
    "INPUT_ID",
    "REQUEST_INPUT_LEN",
    "BAD_WORDS_IDS",
    "STOP_WORDS_IDS",
    "EMBEDDING_BIAS",
    "REQUEST_OUTPUT_LEN",
    "OUT_END_ID",
    "OUT_PAD_ID",
)


def preprocess(
    encoder: PromptEncoder,
    inputs: Mapping[str, np.ndarray],
    parameters: Mapping[str, object] | None = None,
) -> dict[str, np.ndarray]:
    """One request's input tensors (absent optional ones left out) to its output tensors.

    `parameters` are the request's parameters (JSON-decoded); this model takes none.
    REQUEST_OUTPUT_LEN is passed through when given and left out of the outputs when not.
    Raises RequestError for anything a client got wrong.
    """
    check_request_size(inputs, encoder.limits.max_request_bytes)
    unknown = sorted(set(inputs) - set(INPUT_NAMES))
    if unknown:
        raise RequestError(unknown[0], f"is not an input of this model; inputs: {INPUT_NAMES}")
    refuse_parameters(parameters, INPUT_NAMES)
    prompt_name = _prompt_input(inputs)
    prompts = _rows(inputs[prompt_name], prompt_name)
    batch = len(prompts)
    if batch == 0:
        raise RequestError(prompt_name, "has no rows; send one prompt per row")
    for name in INPUT_NAMES:
        if name in inputs and name != prompt_name and len(inputs[name]) != batch:
            raise RequestError(name, f"has {len(inputs[name])} rows but {prompt_name} has {batch}")

    end_ids = _ids_per_row(inputs.get("END_ID"), "END_ID", batch, encoder.end_id)
    pad_ids = _ids_per_row(inputs.get("PAD_ID"), "PAD_ID", batch, encoder.pad_id)

    token_rows = []
    for row, prompt in enumerate(prompts):
        field = _row_field(prompt_name, row, batch)
        if len(prompt) != 1:
            raise RequestError(field, f"must hold exactly one string per row, got {len(prompt)}")
        if prompt_name == "MESSAGES":
            token_rows.append(encoder.encode_messages(prompt[0], field))
        else:
            token_rows.append(encoder.encode_text(prompt[0], field))

    lengths = np.array([[len(ids)] for ids in token_rows], dtype=np.int32)
    input_ids = np.empty((batch, int(lengths.max())), dtype=np.int32)
    for row, ids in enumerate(token_rows):
        input_ids[row, :] = pad_ids[row]
        input_ids[row, : len(ids)] = ids

    outputs = {
        "INPUT_ID": input_ids,
        "REQUEST_INPUT_LEN": lengths,
        "BAD_WORDS_IDS": _word_list_tensor(
            encoder, inputs.get("BAD_WORDS_DICT"), "BAD_WORDS_DICT", batch
        ),
        "STOP_WORDS_IDS": _word_list_tensor(
            encoder, inputs.get("STOP_WORDS_DICT"), "STOP_WORDS_DICT", batch
        ),
        "EMBEDDING_BIAS": _embedding_bias_tensor(encoder, inputs, batch),
        "OUT_END_ID": np.array(end_ids, dtype=np.int32).reshape(batch, 1),
        "OUT_PAD_ID": np.array(pad_ids, dtype=np.int32).reshape(batch, 1),
    }
    if "REQUEST_OUTPUT_LEN" in inputs:
        outputs["REQUEST_OUTPUT_LEN"] = _request_output_len(inputs["REQUEST_OUTPUT_LEN"], batch)
    return outputs


def _prompt_input(inputs: Mapping[str, np.ndarray]) -> str:
    has_query, has_messages = "QUERY" in inputs, "MESSAGES" in inputs
    if has_query and has_messages:
        raise RequestError(
            "MESSAGES", "send either QUERY (prompt text) or MESSAGES (a conversation), not both"
        )
    if not has_query and not has_messages:
        raise RequestError(
            "QUERY", "is required: send QUERY (prompt text) or MESSAGES (a JSON conversation)"
        )
    return "QUERY" if has_query else "MESSAGES"


def _rows(array: np.ndarray, name: str) -> list[list[object]]:
    values = np.asarray(array, dtype=object)
    if values.ndim == 0:
        raise RequestError(name, "must have a batch dimension")
    return [list(np.asarray(row, dtype=object).reshape(-1)) for row in values]


def _row_field(name: str, row: int, batch: int) -> str:
    return name if batch == 1 else f"{name}[{row}]"


def _ids_per_row(array: np.ndarray | None, name: str, batch: int, default: int | None) -> list[int]:
    if array is None:
        if default is None:
            raise RequestError(
                name, "is required: this model's tokenizer defines no end-of-sequence token"
            )
        return [default] * batch
    values = np.asarray(array)
    if values.size != batch:
        raise RequestError(name, f"must hold one id per row, got shape {list(values.shape)}")
    ids = [int(v) for v in values.reshape(-1)]
    for row, value in enumerate(ids):
        if value < 0:
            raise RequestError(
                _row_field(name, row, batch), f"must be a token id >= 0, got {value}"
            )
    return ids


def _request_output_len(array: np.ndarray, batch: int) -> np.ndarray:
    values = np.asarray(array)
    if values.size != batch:
        raise RequestError(
            "REQUEST_OUTPUT_LEN", f"must hold one value per row, got shape {list(values.shape)}"
        )
    values = values.astype(np.int64).reshape(batch, 1)
    for row, value in enumerate(values[:, 0]):
        if value < 1:
            raise RequestError(
                _row_field("REQUEST_OUTPUT_LEN", row, batch), f"must be at least 1, got {value}"
            )
    return values.astype(np.int32)


def _word_list_tensor(
    encoder: PromptEncoder, array: np.ndarray | None, name: str, batch: int
) -> np.ndarray:
    if array is None:
        # As TensorRT-LLM's own preprocessing: an absent input gives [B, 2, 0].
        return np.empty((batch, 2, 0), dtype=np.int32)
    rows = _rows(array, name)
    lists = [
        encode_word_list(encoder.word_lists(words, _row_field(name, row, len(rows))))
        for row, words in enumerate(rows)
    ]
    return batch_word_lists(lists)


def _embedding_bias_tensor(
    encoder: PromptEncoder, inputs: Mapping[str, np.ndarray], batch: int
) -> np.ndarray:
    words, weights = inputs.get("EMBEDDING_BIAS_WORDS"), inputs.get("EMBEDDING_BIAS_WEIGHTS")
    if words is None and weights is None:
        return np.empty((batch, 0), dtype=np.float32)
    if words is None or weights is None:
        missing = "EMBEDDING_BIAS_WORDS" if words is None else "EMBEDDING_BIAS_WEIGHTS"
        given = "EMBEDDING_BIAS_WEIGHTS" if words is None else "EMBEDDING_BIAS_WORDS"
        raise RequestError(missing, f"is required when {given} is given (one weight per word)")
    word_rows = _rows(words, "EMBEDDING_BIAS_WORDS")
    weight_rows = [np.asarray(row, dtype=np.float32).reshape(-1) for row in weights]
    return np.stack(
        [
            encoder.embedding_bias(
                embedding_bias_pairs(
                    word_row,
                    weight_row,
                    _row_field("EMBEDDING_BIAS_WORDS", row, batch),
                    _row_field("EMBEDDING_BIAS_WEIGHTS", row, batch),
                ),
                _row_field("EMBEDDING_BIAS_WORDS", row, batch),
            )
            for row, (word_row, weight_row) in enumerate(zip(word_rows, weight_rows, strict=True))
        ]
    )
