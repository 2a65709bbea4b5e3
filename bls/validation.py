"""Validate and encode a request in one pass: tensors in, a request ready for the engine out.

`RequestValidator.validate` turns what Triton hands the model (input tensors and request
parameters) into a `ValidatedRequest` (the typed request and its token ids, word lists
and every length checked), or raises one `RequestError` naming the field and the limit.
Nothing is started before it returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from bls.engine_io import EncodedPrompts
from bls.limits import BlsLimits
from bls.request_rules import read_client_request
from bls.request_types import ChatPrompt, ClientRequest, TextPrompt
from preprocessing.encoding import PromptEncoder
from preprocessing.request_size import check_request_size
from serving_common.errors import RequestError

# Left out of max_request_bytes: LoRA weights are large by design (tens of MB for one
# adapter of an 8B model) and are only copied here, never decoded.
SIZE_EXEMPT_INPUTS = frozenset({"lora_weights"})


@dataclass(frozen=True)
class ValidatedRequest:
    request: ClientRequest
    prompts: EncodedPrompts


class RequestValidator:
    def __init__(self, encoder: PromptEncoder, limits: BlsLimits) -> None:
        self.encoder = encoder
        self.limits = limits

    def validate(
        self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, object]
    ) -> ValidatedRequest:
        check_request_size(inputs, self.encoder.limits.max_request_bytes, SIZE_EXEMPT_INPUTS)
        request = read_client_request(inputs, parameters, self.limits)
        return ValidatedRequest(request, self._encode(request))

    def _encode(self, request: ClientRequest) -> EncodedPrompts:
        encoder = self.encoder
        input_ids = []
        for row, prompt in enumerate(request.prompts):
            if isinstance(prompt, TextPrompt):
                field = "text_input" if request.batch_size == 1 else f"text_input[{row}]"
                input_ids.append(tuple(encoder.encode_text(prompt.text, field)))
            else:
                assert isinstance(prompt, ChatPrompt)
                field = "messages" if request.batch_size == 1 else f"messages[{row}]"
                input_ids.append(tuple(encoder.encode_conversation(prompt.messages, field)))
        self._check_fits_the_engine(request, input_ids)
        end_id = request.end_id if request.end_id is not None else encoder.end_id
        if end_id is None:
            raise RequestError("end_id", "the tokenizer has no EOS token; send end_id")
        pad_id = request.pad_id if request.pad_id is not None else encoder.pad_id
        bias = None
        if request.embedding_bias_words:
            bias = encoder.embedding_bias(
                zip(request.embedding_bias_words, request.embedding_bias_weights, strict=True)
            )
        return EncodedPrompts(
            input_ids=tuple(input_ids),
            end_id=end_id,
            pad_id=end_id if pad_id is None else pad_id,
            stop_words=tuple(map(tuple, encoder.word_lists(request.stop_words, "stop_words"))),
            bad_words=tuple(map(tuple, encoder.word_lists(request.bad_words, "bad_words"))),
            embedding_bias=bias,
            special_stop_words={
                token_id: word
                for word in request.stop_words
                if (token_id := encoder.single_token_id(word)) is not None
            },
        )

    def _check_fits_the_engine(
        self, request: ClientRequest, input_ids: list[tuple[int, ...]]
    ) -> None:
        limit = self.limits.max_seq_len
        longest = max(len(ids) for ids in input_ids)
        if limit and longest + request.max_tokens > limit:
            room = max(limit - longest, 0)
            raise RequestError(
                "max_tokens",
                f"the prompt is {longest} tokens and max_tokens is {request.max_tokens}: "
                f"{longest + request.max_tokens} is over the engine's limit of {limit} tokens "
                f"(max_seq_len); ask for at most {room} tokens or shorten the prompt",
            )
