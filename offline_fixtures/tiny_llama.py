"""Fixture (c): a tiny, randomly initialised LlamaForCausalLM with tokenizer (a).

Small enough (about 1.5 MB of float32 safetensors) to load and run in milliseconds on a
CPU, real enough that the reference engine exercises the genuine Hugging Face model
code: rotary positions, grouped-query attention (4 heads, 2 KV heads), KV cache.
"""

from __future__ import annotations

import shutil
from pathlib import Path

SEED = 1234
HIDDEN_SIZE = 64
NUM_LAYERS = 2
NUM_HEADS = 4
NUM_KV_HEADS = 2
INTERMEDIATE_SIZE = 128
MAX_POSITION_EMBEDDINGS = 2048
# Wider than Llama's 0.02 so that logits are clearly separated: greedy decoding then
# picks the same token on every machine instead of flipping on rounding noise.
INITIALIZER_RANGE = 0.25

TOKENIZER_FILES = (
    "tokenizer.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def build_tiny_llama(out_dir: Path, tokenizer_dir: Path) -> None:
    """Save the model (safetensors), its generation config and tokenizer (a)'s files."""
    # Imported here: torch is only needed for this fixture, and importing it is slow.
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    eos_id = tokenizer.eos_token_id
    # Tokenizer (a) has no pad token; like the pipeline, pad falls back to EOS.
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN_SIZE,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS,
        num_key_value_heads=NUM_KV_HEADS,
        intermediate_size=INTERMEDIATE_SIZE,
        max_position_embeddings=MAX_POSITION_EMBEDDINGS,
        initializer_range=INITIALIZER_RANGE,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        do_sample=False,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copyfile(tokenizer_dir / name, out_dir / name)
