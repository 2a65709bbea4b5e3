"""`PromptEncoder`: text, conversations and word lists to token ids, with every limit.

The one implementation of tokenization for the pipeline: the standalone `preprocessing`
Triton model and the BLS (in-process) both use it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from preprocessing.chat import parse_messages, render_chat
from preprocessing.config import PreprocessingLimits
from preprocessing.word_variants import word_token_variants
from serving_common.errors import RequestError
from serving_common.text import decode_utf8

_WORD_CACHE_SIZE = 4096
# A prompt longer than max_input_len x this many characters is first judged by its head
# (see _tokenize_prompt). Real text averages 3 to 5 characters a token; a prompt above 8
# on average (long runs of whitespace, say) is tokenized whole.
_HEAD_CHARS_PER_TOKEN = 8
# Tokens the cut at the end of the head may add (a word split in two tokenizes longer).
_HEAD_CUT_TOKENS = 64


class PromptEncoder:
    """Tokenizes prompts and words for one tokenizer, enforcing `limits`.

    Thread-safe: Hugging Face fast tokenizers can fail with "Already borrowed" when one
    instance is used from several threads at once, so calls into the tokenizer are
    serialized (they take microseconds to a few milliseconds).
    """

    def __init__(
        self, tokenizer, limits: PreprocessingLimits, add_special_tokens: bool = True
    ) -> None:
        self.tokenizer = tokenizer
        self.limits = limits
        self.add_special_tokens = add_special_tokens
        self._lock = threading.Lock()
        self._vocab_size = len(tokenizer)  # len() of a tokenizer is not free: keep it
        # Words repeat across requests (stop words especially): keep their variants.
        self._word_cache: OrderedDict[str, list[list[int]]] = OrderedDict()
        self._single_tokens = frozenset(tokenizer.all_special_tokens) | frozenset(
            tokenizer.get_added_vocab()
        )

    # ---- ids the engine needs ----------------------------------------------------------

    @property
    def end_id(self) -> int | None:
        """The EOS id (None if the tokenizer has none: the client must send END_ID)."""
        return self.tokenizer.eos_token_id

    @property
    def pad_id(self) -> int | None:
        """The pad id; tokenizers without one (Llama) pad with EOS."""
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else self.end_id

    @property
    def vocab_size(self) -> int:
        """Number of ids the tokenizer can produce (its vocabulary plus added tokens)."""
        return self._vocab_size

    # ---- prompts -----------------------------------------------------------------------

    def encode_text(self, text: str | bytes, field: str = "text_input") -> list[int]:
        """Prompt text to ids, with special tokens as configured and never two BOS."""
        prompt = decode_utf8(field, text)
        if not prompt:
            raise RequestError(field, "is empty; send a non-empty prompt")
        ids = self._tokenize_prompt(prompt, field, self.add_special_tokens)
        ids = self._drop_doubled_bos(prompt, ids)
        return self._check_prompt_length(ids, field)

    def encode_messages(self, messages_json: str | bytes, field: str = "messages") -> list[int]:
        """A JSON conversation to ids, through the tokenizer's chat template."""
        text = decode_utf8(field, messages_json)
        return self.encode_conversation(parse_messages(text, field), field)

    def encode_conversation(
        self, messages: Sequence[Mapping[str, str]], field: str = "messages"
    ) -> list[int]:
        """Checked messages (`chat.parse_messages` checked them) to ids, through the chat
        template.

        The rendered template already holds the special tokens where the template puts
        them (BOS first, usually), so it is encoded without adding any again.
        """
        checked = [dict(message) for message in messages]
        with self._lock:
            rendered = render_chat(self.tokenizer, checked, field)
        ids = self._tokenize_prompt(rendered, field, add_special_tokens=False)
        if not ids:
            raise RequestError(field, "renders to an empty prompt with this chat template")
        return self._check_prompt_length(ids, field)

    def _tokenize_prompt(self, text: str, field: str, add_special_tokens: bool) -> list[int]:
        """The prompt's ids. One far over max_input_len is refused after tokenizing only
        its head: tokenizing a megabyte takes seconds, and the tokenizer is shared by
        every request of this model."""
        limit = self.limits.max_input_len
        head_chars = limit * _HEAD_CHARS_PER_TOKEN
        if len(text) > head_chars:
            with self._lock:
                head = len(self.tokenizer.encode(text[:head_chars], add_special_tokens=False))
            if head > limit + _HEAD_CUT_TOKENS:
                raise RequestError(
                    field,
                    f"the prompt is over {limit} tokens (its first {head_chars} characters "
                    f"alone are {head} tokens), over the limit of {limit} tokens "
                    "(max_input_len)",
                )
        with self._lock:
            return list(self.tokenizer.encode(text, add_special_tokens=add_special_tokens))

    def _drop_doubled_bos(self, prompt: str, ids: list[int]) -> list[int]:
        # The tokenizer adds BOS even when the text starts with the BOS text itself
        # (e.g. a prompt rendered by a chat template elsewhere); keep only one.
        bos_token, bos_id = self.tokenizer.bos_token, self.tokenizer.bos_token_id
        if (
            self.add_special_tokens
            and bos_token
            and bos_id is not None
            and prompt.startswith(bos_token)
            and ids[:2] == [bos_id, bos_id]
        ):
            return ids[1:]
        return ids

    def _check_prompt_length(self, ids: list[int], field: str) -> list[int]:
        limit = self.limits.max_input_len
        if not ids:
            raise RequestError(field, "tokenizes to no tokens; send a non-empty prompt")
        if len(ids) > limit:
            raise RequestError(
                field,
                f"the prompt is {len(ids)} tokens, over the limit of {limit} tokens "
                "(max_input_len)",
            )
        return ids

    # ---- stop words, bad words, embedding bias ---------------------------------------

    def single_token_id(self, word: str) -> int | None:
        """The id of `word` when it is one special or added token (e.g. "<|eot_id|>")."""
        if word not in self._single_tokens:
            return None
        return self.tokenizer.convert_tokens_to_ids(word)

    def word_lists(self, words: Sequence[str | bytes], field: str) -> list[list[int]]:
        """Every running-text tokenization of every word, duplicates removed.

        Empty words are skipped (they pad ragged batches). Returns token sequences ready
        for `word_lists.encode_word_list`.
        """
        texts = self._word_texts(words, field)
        sequences: list[list[int]] = []
        for text in texts:
            for variant in self._variants(text, field):
                if variant not in sequences:
                    sequences.append(variant)
        return sequences

    def embedding_bias(
        self, pairs: Iterable[tuple[str | bytes, float]], field: str = "embedding_bias_words"
    ) -> np.ndarray:
        """A float32 [vocab_size] bias: each token of each word (every form) gets its weight.

        `pairs` are a client's words and weights as `embedding_bias_pairs` checked them. A
        token shared by several words gets the sum of their weights.
        """
        pairs = list(pairs)
        texts = self._word_texts([word for word, _ in pairs], field)
        bias = np.zeros(self._vocab_size, dtype=np.float32)
        for text, (_, weight) in zip(texts, pairs, strict=True):
            tokens = {t for variant in self._variants(text, field) for t in variant}
            bias[sorted(tokens)] += np.float32(weight)
        return bias

    def _word_texts(self, words: Sequence[str | bytes], field: str) -> list[str]:
        texts = []
        for index, word in enumerate(words):
            texts.append(decode_utf8(f"{field}[{index}]", word))
        present = sum(1 for t in texts if t)
        limit = self.limits.max_words
        if present > limit:
            raise RequestError(
                field, f"has {present} words, over the limit of {limit} words (max_words)"
            )
        # Before any is tokenized: a word's cost (several tokenizations, a place in the
        # word cache) grows with its length.
        chars = self.limits.max_word_chars
        for text in texts:
            if len(text) > chars:
                raise RequestError(
                    field,
                    f"the word {_preview(text)} is {len(text)} characters, over the limit of "
                    f"{chars} characters per word (max_word_chars)",
                )
        return [t for t in texts if t]

    def _variants(self, word: str, field: str) -> list[list[int]]:
        with self._lock:
            cached = self._word_cache.get(word)
            if cached is None:
                cached = word_token_variants(self._encode_plain, word, self._single_tokens)
                self._word_cache[word] = cached
                if len(self._word_cache) > _WORD_CACHE_SIZE:
                    self._word_cache.popitem(last=False)
            else:
                self._word_cache.move_to_end(word)
        limit = self.limits.max_word_tokens
        longest = max((len(v) for v in cached), default=0)
        if longest > limit:
            raise RequestError(
                field,
                f"the word {_preview(word)} is {longest} tokens, over the limit of {limit} "
                "tokens per word (max_word_tokens)",
            )
        if not cached:
            raise RequestError(field, f"the word {_preview(word)} tokenizes to nothing")
        return [list(v) for v in cached]

    def _encode_plain(self, text: str) -> list[int]:
        # Called with self._lock held.
        return list(self.tokenizer.encode(text, add_special_tokens=False))


def embedding_bias_pairs(
    words: Sequence[str | bytes],
    weights: Sequence[float] | np.ndarray,
    words_field: str = "embedding_bias_words",
    weights_field: str = "embedding_bias_weights",
) -> list[tuple[str | bytes, float]]:
    """One list of bias words and their weights as a client sent it, checked: one finite
    weight per word. Returns the (word, weight) pairs without padding: an empty word goes,
    with its weight."""
    weight_values = np.asarray(weights, dtype=np.float64).reshape(-1)
    if len(words) != len(weight_values):
        raise RequestError(
            words_field,
            f"has {len(words)} words but {weights_field} has {len(weight_values)} "
            "weights; send one weight per word",
        )
    if not np.all(np.isfinite(weight_values)):
        raise RequestError(weights_field, "must be finite numbers (no NaN or infinity)")
    return [
        (word, float(weight)) for word, weight in zip(words, weight_values, strict=True) if word
    ]


def _preview(word: str, limit: int = 40) -> str:
    return repr(word if len(word) <= limit else word[:limit] + "...")
