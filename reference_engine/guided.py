"""Guided decoding in the engine: xgrammar masks what each guided sequence may produce.

As TensorRT-LLM's C++ guided decoder does (cpp/tensorrt_llm/batch_manager/
guidedDecoder.cpp): one `GrammarCompiler` over the tokenizer, a compiled grammar per guide
(kept in an LRU cache, so a schema sent again is not compiled again), and one
`GrammarMatcher` per sequence that fills a token bitmask before every step and accepts
the token chosen. The matcher's stop token is the sequence's end_id, so end_id is
allowed exactly where the guide is complete. Each sequence has its own matcher, so
guided and unguided sequences share an iteration of the scheduler freely.

Needs xgrammar and torch (xgrammar's bitmask functions take torch tensors), and a
tokenizer: the engine's `tokenizer_dir`, else its `model_dir`. They are loaded when the
first guided request arrives, so an engine that never sees one never pays for them.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reference_engine.types import SequenceSpec
from serving_common.errors import RequestError
from serving_common.guided_decoding import (
    GUIDE_CACHE_SIZE,
    GUIDE_INPUT,
    GUIDE_TYPE_INPUT,
    Guide,
    guide_grammar,
)

logger = logging.getLogger(__name__)

# Threads xgrammar may use to compile one grammar (its default is 8, too many here).
COMPILER_THREADS = 2


class GuideState:
    """One sequence's matcher and bitmask."""

    def __init__(self, matcher: Any, vocab_size: int) -> None:
        import xgrammar

        self._xgrammar = xgrammar
        self._matcher = matcher
        self._vocab_size = vocab_size
        self._bitmask = xgrammar.allocate_token_bitmask(1, vocab_size)

    def allows(self, token_id: int) -> bool:
        """Whether the guide allows `token_id` next (after `mask_logits` or
        `allowed_tokens`, which fill the bitmask for this step)."""
        if not 0 <= token_id < self._vocab_size:
            return False
        word = int(self._bitmask[0, token_id // 32])
        return bool((word >> (token_id % 32)) & 1)

    def mask_logits(self, logits: Any) -> None:
        """Set every token the guide does not allow next to -inf (logits: float [vocab])."""
        self._matcher.fill_next_token_bitmask(self._bitmask)
        bitmask = self._bitmask.to(logits.device)
        self._xgrammar.apply_token_bitmask_inplace(logits.view(1, -1), bitmask)

    def allowed_tokens(self) -> list[int]:
        """Token ids the guide allows next (for backends that have no logits)."""
        import torch

        self._matcher.fill_next_token_bitmask(self._bitmask)
        logits = torch.zeros(self._vocab_size, dtype=torch.float32)
        self._xgrammar.apply_token_bitmask_inplace(logits.view(1, -1), self._bitmask)
        return torch.nonzero(torch.isfinite(logits)).flatten().tolist()

    def accept(self, token_id: int) -> None:
        if not self._matcher.accept_token(token_id):
            # Cannot happen when the token was chosen from the masked logits.
            raise RuntimeError(f"guided decoding: token {token_id} does not follow the guide")

    @property
    def is_terminated(self) -> bool:
        return bool(self._matcher.is_terminated())


class GuidedDecoder:
    """Compiled guides for one engine, and a fresh `GuideState` for each guided sequence.

    Used from the scheduler thread only; the lock covers the lazy start anyway, so that a
    test calling it from several threads stays correct.
    """

    def __init__(
        self,
        tokenizer_dir: Path | None,
        vocab_size: int,
        *,
        load_tokenizer: Callable[[Path], Any] | None = None,
        cache_size: int = GUIDE_CACHE_SIZE,
    ) -> None:
        self._tokenizer_dir = tokenizer_dir
        self._vocab_size = vocab_size
        self._load_tokenizer = load_tokenizer or _load_tokenizer
        self._cache_size = cache_size
        self._compiled: OrderedDict[Guide, Any] = OrderedDict()
        self._compiler: Any = None
        self._lock = threading.Lock()
        self.compilations = 0  # grammars compiled so far (cache misses), for tests and logs

    def start(self, spec: SequenceSpec) -> GuideState | None:
        """The guide state of a new sequence, or None when it has no guide."""
        if spec.guide is None:
            return None
        import xgrammar

        compiled = self.compiled(spec.guide)
        stop = None if spec.end_id is None else [spec.end_id]
        return GuideState(
            xgrammar.GrammarMatcher(compiled, override_stop_tokens=stop), self._vocab_size
        )

    def compiled(self, guide: Guide) -> Any:
        """The guide compiled against the tokenizer (from the cache when it was seen)."""
        with self._lock:
            if guide in self._compiled:
                self._compiled.move_to_end(guide)
                return self._compiled[guide]
            compiler = self._compiler_locked()
            compiled = compiler.compile_grammar(guide_grammar(guide))
            self.compilations += 1
            self._compiled[guide] = compiled
            if len(self._compiled) > self._cache_size:
                self._compiled.popitem(last=False)
            return compiled

    def _compiler_locked(self) -> Any:
        if self._compiler is not None:
            return self._compiler
        if self._tokenizer_dir is None:
            raise RequestError(
                GUIDE_TYPE_INPUT,
                "guided decoding needs the model's tokenizer: set the engine's tokenizer_dir "
                "(or model_dir) parameter",
                code="UNSUPPORTED",
            )
        try:
            import xgrammar
        except ImportError:
            raise RequestError(
                GUIDE_TYPE_INPUT,
                "guided decoding needs the xgrammar package, which is not installed here",
                code="UNSUPPORTED",
            ) from None
        tokenizer = self._load_tokenizer(self._tokenizer_dir)
        info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=self._vocab_size)
        self._compiler = xgrammar.GrammarCompiler(info, max_threads=COMPILER_THREADS)
        logger.info(
            "guided decoding: tokenizer %s, vocabulary %d (%s)",
            self._tokenizer_dir,
            self._vocab_size,
            info.vocab_type.name,
        )
        return self._compiler


def guide_ends_early(guide: GuideState, end_id: int | None) -> bool:
    """Whether the guide is complete and allows nothing but end_id, which min_tokens still
    holds back: then the guide wins and the sequence ends (a guided output never grows
    past its end to reach min_tokens)."""
    return end_id is not None and guide.allows(end_id)


def raise_no_token_left() -> None:
    """The guide allows only tokens the request itself bans: the request contradicts itself."""
    raise RequestError(
        GUIDE_INPUT,
        "the guide allows no token that the request's bad_words leave",
    )


def _load_tokenizer(tokenizer_dir: Path) -> Any:
    from serving_common.tokenizer_loading import load_tokenizer

    return load_tokenizer(tokenizer_dir)
