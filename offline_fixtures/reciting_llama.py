"""Fixture (d): a tiny Llama trained, for a few seconds, to recite a few multilingual texts.

The random fixture (c) produces arbitrary ids, so its greedy text is full of stray
byte-fallback pieces. This one, given the first words of a recital, continues it token
for token: real text whose CJK characters and emoji are split over several
byte-fallback tokens, real words to use as stop strings, and an EOS at the end. It uses
tokenizer (a), the same architecture family as (c) and plain teacher-forced training.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from offline_fixtures.tiny_llama import TOKENIZER_FILES

SEED = 7
TRAINING_STEPS = 200
LEARNING_RATE = 3e-3


@dataclass(frozen=True)
class Recital:
    """A prompt and the continuation the model learnt to produce for it."""

    prompt: str
    continuation: str

    @property
    def text(self) -> str:
        return self.prompt + self.continuation


# Prompts end on a character boundary; the continuations mix scripts, emoji (ZWJ and
# flags), combining accents, code and whitespace runs.
RECITALS: tuple[Recital, ...] = (
    Recital("The quick brown", " fox jumps over the lazy dog 🦊 and says 你好世界 to everyone."),
    Recital(
        "Weather report:",
        " 今天天气很好，我们一起去公园散步吧。Let's walk 🚶 in the park, naïve café.",
    ),
    Recital(
        "Once upon a time,", " in a small village by the sea 🌊, there lived an old fisherman."
    ),
    Recital(
        "Streaming responses",
        " show words 👩‍💻 as soon as they are produced: 東京は日本の首都です。",
    ),
    Recital(
        "Combining marks:",
        " Cafe\u0301 and re\u0301sume\u0301; Korean: 안녕하세요, 반갑습니다. 🇯🇵🇰🇷",
    ),
    Recital("def greet(name):", '\n    return f"Hello, {name}!"  # 👋\n\n\tprint(greet("世界"))'),
)


def build_reciting_llama(out_dir: Path, tokenizer_dir: Path) -> None:
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    eos_id = tokenizer.eos_token_id
    sequences = [[*tokenizer.encode(recital.text), eos_id] for recital in RECITALS]
    longest = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), longest), eos_id)
    attention = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, ids in enumerate(sequences):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention[row, : len(ids)] = 1
    labels = input_ids.masked_fill(attention == 0, -100)

    torch.manual_seed(SEED)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=256,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).to(torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)
    model.train()
    for _ in range(TRAINING_STEPS):
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        do_sample=False,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copyfile(tokenizer_dir / name, out_dir / name)
