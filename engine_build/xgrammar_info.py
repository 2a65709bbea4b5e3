"""The xgrammar tokenizer-info JSON that the C++ backend's guided decoding reads.

The C++ `tensorrtllm` backend turns guided decoding on when its config has
`guided_decoding_backend` = "xgrammar" and `xgrammar_tokenizer_info_path` = this file
(tensorrtllm_backend v0.19.0, inflight_batcher_llm/src/model_instance_state.cc,
`getGuidedDecodingConfigFromParams`). It reads three keys and requires all of them:

- `encoded_vocab`: every token as the tokenizer stores it (e.g. "Ġthe", "<0x0A>"),
  position = token id;
- `tokenizer_str`: the fast tokenizer's serialized form (`backend_tokenizer.to_str()`),
  from which xgrammar detects how the vocabulary is encoded (byte-level, byte-fallback,
  raw) and whether a prefix space is added;
- `stop_token_ids`: [eos_token_id], the tokens the grammar allows once it is complete.

and hands them to `xgrammar::TokenizerInfo::FromHuggingFace(encoded_vocab, tokenizer_str,
vocab_size_padded, stop_token_ids)` (TensorRT-LLM cpp/tensorrt_llm/batch_manager/
guidedDecoder.cpp). TensorRT-LLM writes the file with
`examples/generate_xgrammar_tokenizer_info.py --model_dir HF_DIR --output_dir OUT`
(OUT/xgrammar_tokenizer_info.json), which dumps
`tensorrt_llm.llmapi.tokenizer._xgrammar_tokenizer_info(AutoTokenizer.from_pretrained(...))`:
the same three keys, the vocabulary sorted by id. This module writes the same file
without TensorRT-LLM, with one difference that only matters for a vocabulary with
holes: each token is placed at its id (a hole is ""), as xgrammar's own
`TokenizerInfo.from_huggingface` does, so ids never shift.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine_build.options import BuildError

TOKENIZER_INFO_FILE = "xgrammar_tokenizer_info.json"


def tokenizer_info(tokenizer: Any) -> dict[str, Any]:
    """The file's content for a loaded Hugging Face tokenizer (raises BuildError)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise BuildError(
            "--guided-decoding: the C++ backend needs a fast tokenizer (its tokenizer.json "
            f"serialized as tokenizer_str), and this one is {type(tokenizer).__name__}; give "
            "--tokenizer-dir a directory with tokenizer.json"
        )
    eos = tokenizer.eos_token_id
    if eos is None:
        raise BuildError(
            "--guided-decoding: the tokenizer has no EOS token, which a guide needs as its "
            "stop token; set eos_token in its tokenizer_config.json"
        )
    vocab: dict[str, int] = tokenizer.get_vocab()
    encoded_vocab = [""] * (max(vocab.values()) + 1)
    for token, token_id in vocab.items():
        encoded_vocab[token_id] = token
    return {
        "encoded_vocab": encoded_vocab,
        "tokenizer_str": backend.to_str(),
        "stop_token_ids": [int(eos)],
    }


def write_tokenizer_info(
    tokenizer_dir: Path, destination: Path, *, trust_remote_code: bool = False
) -> Path:
    """Write the file for the tokenizer in `tokenizer_dir` to `destination`."""
    from serving_common.tokenizer_loading import TokenizerLoadError, load_tokenizer

    try:
        tokenizer = load_tokenizer(tokenizer_dir, trust_remote_code)
    except TokenizerLoadError as error:
        raise BuildError(f"--guided-decoding: {error}") from None
    destination.write_text(json.dumps(tokenizer_info(tokenizer)), encoding="utf-8")
    return destination
