"""Fixture (a): a Llama-2 style SentencePiece BPE tokenizer with byte fallback.

Trained with the `sentencepiece` library on the embedded corpus, then written twice:
`tokenizer.model` (the SentencePiece model itself, as Llama-2 checkpoints ship it) and
`tokenizer.json` (the same vocabulary and merges as a `tokenizers` BPE model with byte
fallback), so `AutoTokenizer.from_pretrained(dir)` gives a fast tokenizer without
converting `tokenizer.model` (that conversion needs a protobuf runtime matching the
`sentencepiece` wheel, which is not guaranteed in every environment).
"""

from __future__ import annotations

import io
from pathlib import Path

import sentencepiece as spm
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

from offline_fixtures.chat_templates import SENTENCEPIECE_CHAT_TEMPLATE
from offline_fixtures.corpus import TRAINING_TEXTS
from offline_fixtures.hf_files import added_tokens_decoder, write_json

VOCAB_SIZE = 2000
UNK, BOS, EOS = "<unk>", "<s>", "</s>"
MODEL_MAX_LENGTH = 2048


def _training_lines() -> list[str]:
    # SentencePiece trains on lines; newlines themselves are left to byte fallback
    # (<0x0A>), exactly like the Llama-2 tokenizer.
    return [line for text in TRAINING_TEXTS for line in text.split("\n") if line.strip()]


def train_sentencepiece_model() -> bytes:
    """Train the SentencePiece model and return its serialized proto."""
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_training_lines()),
        model_writer=buffer,
        model_type="bpe",
        vocab_size=VOCAB_SIZE,
        byte_fallback=True,
        character_coverage=1.0,
        # Llama-2's settings: no normalization, keep whitespace runs, one digit per piece.
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        split_digits=True,
        add_dummy_prefix=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        # One thread keeps training deterministic.
        num_threads=1,
        minloglevel=2,
    )
    return buffer.getvalue()


def _vocab_and_merges(processor: spm.SentencePieceProcessor) -> tuple[dict[str, int], list]:
    """The SentencePiece vocabulary as a `tokenizers` BPE vocabulary plus merge list.

    SentencePiece BPE merges, at each step, the adjacent pair whose union has the best
    score; the union's id order is its score order. So every way of splitting a merged
    piece into two known pieces is a merge ranked by the merged piece's id.
    """
    vocab = {processor.id_to_piece(i): i for i in range(processor.get_piece_size())}
    ranked: list[tuple[int, int, int, str, str]] = []
    for piece_id in range(processor.get_piece_size()):
        if (
            processor.is_byte(piece_id)
            or processor.is_control(piece_id)
            or processor.is_unknown(piece_id)
        ):
            continue
        piece = processor.id_to_piece(piece_id)
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                ranked.append((piece_id, vocab[left], vocab[right], left, right))
    ranked.sort()
    return vocab, [(left, right) for _, _, _, left, right in ranked]


def _fast_tokenizer(processor: spm.SentencePieceProcessor) -> Tokenizer:
    vocab, merges = _vocab_and_merges(processor)
    tokenizer = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, unk_token=UNK, fuse_unk=True, byte_fallback=True)
    )
    # The pipeline transformers' LlamaTokenizer (legacy=False) builds: "▁" for spaces,
    # one "▁" prepended to the first section only.
    tokenizer.normalizer = None
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement="▁", prepend_scheme="first", split=False
    )
    tokenizer.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS}:0 $A:0",
        pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1",
        special_tokens=[(BOS, vocab[BOS])],
    )
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in (UNK, BOS, EOS)]
    )
    return tokenizer


def build_sentencepiece_tokenizer(out_dir: Path) -> None:
    """Write tokenizer.model, tokenizer.json, tokenizer_config.json, special_tokens_map.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    proto = train_sentencepiece_model()
    (out_dir / "tokenizer.model").write_bytes(proto)
    processor = spm.SentencePieceProcessor(model_proto=proto)
    _fast_tokenizer(processor).save(str(out_dir / "tokenizer.json"))
    config = {
        "tokenizer_class": "LlamaTokenizer",
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": UNK,
        "pad_token": None,
        "legacy": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": MODEL_MAX_LENGTH,
        "added_tokens_decoder": added_tokens_decoder(dict(enumerate((UNK, BOS, EOS)))),
        "chat_template": SENTENCEPIECE_CHAT_TEMPLATE,
    }
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": UNK}
    write_json(out_dir / "tokenizer_config.json", config)
    write_json(out_dir / "special_tokens_map.json", special)
