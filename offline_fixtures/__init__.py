"""Offline test fixtures: two trained tokenizers and a tiny Llama, built once and cached.

`ensure_fixtures()` returns their directories; `offline_fixtures.corpus.TRAINING_TEXTS`
is the multilingual text they were trained on (reused as sample text by tests).
"""

from offline_fixtures.fixtures import FixturePaths, default_root, ensure_fixtures

__all__ = ["FixturePaths", "default_root", "ensure_fixtures"]
