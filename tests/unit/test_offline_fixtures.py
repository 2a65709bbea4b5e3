"""The offline fixtures: what they contain, that they load, and how they are cached."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import sentencepiece as spm
from transformers import AutoTokenizer

import offline_fixtures
from offline_fixtures import FixturePaths, ensure_fixtures, fixtures, store
from offline_fixtures.corpus import TRAINING_TEXTS

CHAT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello."},
]


@pytest.fixture(scope="module")
def paths() -> FixturePaths:
    return ensure_fixtures()


@pytest.fixture(scope="module")
def sp_tok(paths):
    return AutoTokenizer.from_pretrained(paths.sentencepiece_tokenizer)


@pytest.fixture(scope="module")
def bpe_tok(paths):
    return AutoTokenizer.from_pretrained(paths.bpe_tokenizer)


def test_corpus_covers_the_hard_cases():
    text = "\n".join(TRAINING_TEXTS)
    scripts = {
        "CJK": any("CJK UNIFIED" in unicodedata.name(c, "") for c in text),
        "HIRAGANA": any("HIRAGANA" in unicodedata.name(c, "") for c in text),
        "HANGUL": any("HANGUL" in unicodedata.name(c, "") for c in text),
    }
    assert all(scripts.values()), scripts
    assert "\u200d" in text  # emoji ZWJ sequences
    assert any(0x1F1E6 <= ord(c) <= 0x1F1FF for c in text)  # regional indicators (flags)
    assert "e\u0301" in text and "é" in text  # combining and precomposed accents
    assert "\n    return" in text  # indented code
    assert "\t" in text and "   " in text and "\n\n" in text


def test_sentencepiece_tokenizer_is_llama2_like(paths, sp_tok):
    directory = paths.sentencepiece_tokenizer
    assert (directory / "tokenizer.model").is_file()
    assert (directory / "tokenizer.json").is_file()
    assert sp_tok.is_fast
    assert (sp_tok.unk_token_id, sp_tok.bos_token_id, sp_tok.eos_token_id) == (0, 1, 2)
    assert sp_tok.pad_token_id is None
    assert 2000 <= len(sp_tok) <= 4000
    config = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["add_bos_token"] is True
    ids = sp_tok("Hello world").input_ids
    assert ids[0] == 1 and ids.count(1) == 1
    assert sp_tok.convert_ids_to_tokens(ids)[1].startswith("▁")


def test_sentencepiece_json_and_model_agree(paths, sp_tok):
    # tokenizer.json was derived from tokenizer.model: same pieces for the same text.
    # (Text starting with whitespace is the one known difference: transformers'
    # Metaspace does not add a second "▁" in front of a leading space.)
    processor = spm.SentencePieceProcessor(
        model_file=str(paths.sentencepiece_tokenizer / "tokenizer.model")
    )
    assert processor.get_piece_size() == len(sp_tok)
    samples = [t for t in TRAINING_TEXTS if not t[0].isspace()]
    samples += ["An unseen word: floccinaucinihilipilification 🫠 𝔘𝔫𝔦"]
    for text in samples:
        assert sp_tok(text, add_special_tokens=False).input_ids == processor.encode(text), text


def test_sentencepiece_byte_fallback_round_trips(sp_tok):
    text = "Unseen: 🫠 𝔘 ꙮ"
    tokens = sp_tok.tokenize(text)
    assert any(t.startswith("<0x") for t in tokens)
    assert "<unk>" not in tokens
    for sample in [text, *(t for t in TRAINING_TEXTS if not t[0].isspace())]:
        ids = sp_tok(sample).input_ids
        assert sp_tok.decode(ids, skip_special_tokens=True) == sample


def test_bpe_tokenizer_is_byte_level(paths, bpe_tok):
    assert bpe_tok.is_fast
    assert not (paths.bpe_tokenizer / "tokenizer.model").exists()
    assert bpe_tok.bos_token == "<|begin_of_text|>" and bpe_tok.eos_token == "<|end_of_text|>"
    assert bpe_tok.bos_token_id != bpe_tok.eos_token_id
    tokens = bpe_tok.tokenize("hello hello")
    assert tokens[-1].startswith("Ġ") and not tokens[0].startswith("Ġ")
    ids = bpe_tok("hello").input_ids
    assert ids[0] == bpe_tok.bos_token_id and ids.count(bpe_tok.bos_token_id) == 1
    for sample in [*TRAINING_TEXTS, "   leading", "🫠 unseen"]:
        ids = bpe_tok(sample).input_ids
        assert bpe_tok.unk_token_id not in ids
        assert bpe_tok.decode(ids, skip_special_tokens=True) == sample


@pytest.mark.parametrize("which", ["sp_tok", "bpe_tok"])
def test_chat_templates_render(which, request):
    tok = request.getfixturevalue(which)
    plain = tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=False)
    prompted = tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert plain.startswith(tok.bos_token)
    assert "You are terse." in plain and "Say hello." in plain
    assert prompted.startswith(plain) and len(prompted) > len(plain)
    assert "assistant" in prompted[len(plain) :]


def test_tiny_llama_loads_and_runs(paths, sp_tok):
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    directory = paths.tiny_llama
    assert (directory / "model.safetensors").is_file()
    total = sum(f.stat().st_size for f in directory.iterdir())
    assert total < 5 * 1024 * 1024
    model = AutoModelForCausalLM.from_pretrained(directory)
    config = model.config
    assert config.model_type == "llama"
    assert config.vocab_size == len(sp_tok)
    assert (config.bos_token_id, config.eos_token_id) == (1, 2)
    assert config.num_key_value_heads < config.num_attention_heads
    assert GenerationConfig.from_pretrained(directory).eos_token_id == 2
    # The checkpoint dir doubles as a tokenizer dir (tokenizer (a)).
    tok = AutoTokenizer.from_pretrained(directory)
    assert tok("Hello").input_ids == sp_tok("Hello").input_ids
    assert (directory / "tokenizer.model").is_file()
    with torch.no_grad():
        logits = model(torch.tensor([tok("Hello world").input_ids])).logits
    assert logits.shape[-1] == len(sp_tok)
    assert torch.isfinite(logits).all()


def test_second_call_rebuilds_nothing(paths):
    markers = {d: (d / store.MARKER).stat().st_mtime_ns for d in _dirs(paths)}
    inodes = {d: d.stat().st_ino for d in _dirs(paths)}
    assert ensure_fixtures() == paths
    assert {d: (d / store.MARKER).stat().st_mtime_ns for d in _dirs(paths)} == markers
    assert {d: d.stat().st_ino for d in _dirs(paths)} == inodes


def test_recipe_and_library_versions_are_in_the_key(paths, monkeypatch):
    key = fixtures._key("sentencepiece_tokenizer.py", ("sentencepiece", "tokenizers"))
    # The built directory carries exactly this key...
    assert store.is_current(paths.sentencepiece_tokenizer, key)
    # ...and any change of recipe version or library version gives another one.
    monkeypatch.setattr(fixtures, "RECIPE_VERSION", fixtures.RECIPE_VERSION + "-changed")
    changed = fixtures._key("sentencepiece_tokenizer.py", ("sentencepiece", "tokenizers"))
    assert changed != key
    assert not store.is_current(paths.sentencepiece_tokenizer, changed)
    monkeypatch.undo()
    monkeypatch.setattr(fixtures, "_version", lambda dist: "999")
    assert fixtures._key("sentencepiece_tokenizer.py", ("sentencepiece", "tokenizers")) != key


def test_builds_are_deterministic(tmp_path, paths):
    from offline_fixtures.bpe_tokenizer import build_bpe_tokenizer
    from offline_fixtures.sentencepiece_tokenizer import build_sentencepiece_tokenizer
    from offline_fixtures.tiny_llama import build_tiny_llama

    build_sentencepiece_tokenizer(tmp_path / "sp")
    build_bpe_tokenizer(tmp_path / "bpe")
    build_tiny_llama(tmp_path / "llama", tmp_path / "sp")
    for fresh, cached in [
        (tmp_path / "sp", paths.sentencepiece_tokenizer),
        (tmp_path / "bpe", paths.bpe_tokenizer),
        (tmp_path / "llama", paths.tiny_llama),
    ]:
        names = sorted(p.name for p in cached.iterdir() if p.name != store.MARKER)
        assert sorted(p.name for p in fresh.iterdir()) == names
        for name in names:
            assert (fresh / name).read_bytes() == (cached / name).read_bytes(), name


CONCURRENT_BUILDER = """
import sys, time
from pathlib import Path
from offline_fixtures import store

root, log = Path(sys.argv[1]), Path(sys.argv[2])

def build(out):
    with open(log, "a") as f:
        f.write("built\\n")
    time.sleep(0.5)  # long enough for the other process to arrive while we build
    (out / "data.txt").write_text("done")

with store.root_lock(root):
    target = store.ensure_built(root, "thing", "k1", build)
print((target / "data.txt").read_text())
"""


def test_concurrent_callers_build_once(tmp_path):
    log = tmp_path / "log"
    root = tmp_path / "root"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_BUILDER, str(root), str(log)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [p.communicate(timeout=60) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == "done"
    assert log.read_text().splitlines() == ["built"]
    assert sorted(p.name for p in root.iterdir()) == [".lock", "thing"]


def test_default_root(monkeypatch, tmp_path):
    monkeypatch.setenv(fixtures.ENV_ROOT, str(tmp_path / "elsewhere"))
    assert fixtures.default_root() == tmp_path / "elsewhere"
    monkeypatch.delenv(fixtures.ENV_ROOT)
    checkout = Path(offline_fixtures.__file__).resolve().parents[1]
    assert (checkout / "pyproject.toml").is_file()
    assert fixtures.default_root() == checkout / ".fixtures"


def test_cli_prints_paths(paths, capsys):
    from offline_fixtures.cli import main

    assert main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{f.name}={getattr(paths, f.name)}" for f in dataclasses.fields(paths)]
    assert lines[:3] == [
        f"sentencepiece_tokenizer={paths.sentencepiece_tokenizer}",
        f"bpe_tokenizer={paths.bpe_tokenizer}",
        f"tiny_llama={paths.tiny_llama}",
    ]


def test_store_replaces_incomplete_and_survives_failed_builds(tmp_path):
    calls: list[Path] = []

    def build(out: Path) -> None:
        calls.append(out)
        (out / "data.txt").write_text(f"build {len(calls)}")

    # A directory without a marker (e.g. copied by hand, or a crash mid-way) is rebuilt.
    (tmp_path / "thing").mkdir()
    (tmp_path / "thing" / "junk").write_text("junk")
    (tmp_path / ".thing.tmp-crashed").mkdir()
    target = store.ensure_built(tmp_path, "thing", "k1", build)
    assert sorted(p.name for p in target.iterdir()) == [store.MARKER, "data.txt"]
    assert not (tmp_path / ".thing.tmp-crashed").exists()
    # Same key: no build.
    store.ensure_built(tmp_path, "thing", "k1", build)
    assert len(calls) == 1

    def failing(out: Path) -> None:
        (out / "partial").write_text("x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        store.ensure_built(tmp_path, "thing", "k2", failing)
    # The old, complete build is untouched and no staging directory is left.
    assert (target / "data.txt").read_text() == "build 1"
    assert store.is_current(target, "k1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thing"]


def _dirs(paths: FixturePaths) -> list[Path]:
    return [getattr(paths, f.name) for f in dataclasses.fields(paths)]
