"""The typed request of `tensorrt_llm_bls`: what a client asked for, once validated.

Built by `bls.request_rules.read_client_request`; the engine's own request (a different
thing: token ids and engine settings) is `bls.engine_io`'s tensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from serving_common.guided_decoding import Guide


@dataclass(frozen=True)
class TextPrompt:
    """A prompt given as text (`text_input`)."""

    text: str


@dataclass(frozen=True)
class ChatPrompt:
    """A prompt given as a conversation (`messages`), to render with the chat template."""

    # Checked messages: {"role": str, "content": str[, "name": str]}.
    messages: tuple[Mapping[str, str], ...]

    def as_dicts(self) -> list[dict[str, str]]:
        return [dict(message) for message in self.messages]


Prompt = TextPrompt | ChatPrompt


@dataclass(frozen=True)
class SamplingOptions:
    """Sampling settings. None means "not given": the engine's default applies."""

    top_k: int | None = None
    top_p: float | None = None
    temperature: float | None = None
    length_penalty: float | None = None
    repetition_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    min_tokens: int | None = None
    seed: int | None = None
    beam_width: int = 1
    num_return_sequences: int = 1


@dataclass(frozen=True)
class LoraOptions:
    """LoRA inputs, passed to the engine as they are (one prompt's rows, batch dim removed).

    `task_id` alone selects an adapter the engine has cached; the first request for a task
    also brings `weights` [N, M] and `config` [N, 3]. The arrays are read-only copies.
    """

    task_id: int
    weights: np.ndarray | None = field(default=None, compare=False)
    config: np.ndarray | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ClientRequest:
    """One validated client request: B prompts of one kind, settings shared by all rows."""

    prompts: tuple[Prompt, ...]
    max_tokens: int
    stream: bool = False
    stop_words: tuple[str, ...] = ()
    bad_words: tuple[str, ...] = ()
    end_id: int | None = None
    pad_id: int | None = None
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    return_log_probs: bool = False
    exclude_input_in_output: bool = True
    include_stop_str_in_output: bool = False
    skip_special_tokens: bool = True
    embedding_bias_words: tuple[str, ...] = ()
    embedding_bias_weights: tuple[float, ...] = ()
    return_num_input_tokens: bool = False
    return_num_output_tokens: bool = False
    lora: LoraOptions | None = None
    guide: Guide | None = None  # guided decoding: the output follows this guide

    @property
    def batch_size(self) -> int:
        return len(self.prompts)

    @property
    def is_chat(self) -> bool:
        return isinstance(self.prompts[0], ChatPrompt)
