"""Fixture (b): a byte-level BPE tokenizer (GPT-2 / Llama-3 style).

Trained with the `tokenizers` library on the embedded corpus. Every byte is in the
alphabet, so any text encodes without an unknown token; spaces become part of the
following word ("Ġword"). Like Llama-3, the post-processor adds the BOS token, and the
chat template uses dedicated header special tokens.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from offline_fixtures.chat_templates import BPE_CHAT_TEMPLATE
from offline_fixtures.corpus import TRAINING_TEXTS
from offline_fixtures.hf_files import added_tokens_decoder, write_json

VOCAB_SIZE = 3000
BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
# Chat-template delimiters, special like Llama-3's.
HEADER_START, HEADER_END, END_OF_TURN = "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"
SPECIAL_TOKENS = (BOS, EOS, HEADER_START, HEADER_END, END_OF_TURN)
MODEL_MAX_LENGTH = 2048


def train_bpe_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=1,
        # Special tokens first, so BOS is id 0 and EOS id 1 on every run.
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(TRAINING_TEXTS, trainer=trainer)
    bos_id = tokenizer.token_to_id(BOS)
    tokenizer.post_processor = processors.Sequence(
        [
            # Offsets in terms of the original text, as GPT-2's tokenizer.json does.
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS}:0 $A:0",
                pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1",
                special_tokens=[(BOS, bos_id)],
            ),
        ]
    )
    return tokenizer


def build_bpe_tokenizer(out_dir: Path) -> None:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = train_bpe_tokenizer()
    tokenizer.save(str(out_dir / "tokenizer.json"))
    added = added_tokens_decoder({tokenizer.token_to_id(t): t for t in SPECIAL_TOKENS})
    config = {
        # The generic fast tokenizer: loads tokenizer.json as it is (Llama-3 does the same).
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": None,
        "clean_up_tokenization_spaces": False,
        "model_max_length": MODEL_MAX_LENGTH,
        "added_tokens_decoder": added,
        "chat_template": BPE_CHAT_TEMPLATE,
    }
    write_json(out_dir / "tokenizer_config.json", config)
    write_json(out_dir / "special_tokens_map.json", {"bos_token": BOS, "eos_token": EOS})
