"""Text to token ids for the pipeline: prompts, chat conversations, word lists.

Used in-process by the BLS and behind the standalone `preprocessing` Triton model.
Importing this package does not import transformers (only `load_tokenizer` does).
"""

from preprocessing.config import ConfigError, PreprocessingLimits, PreprocessingSettings
from preprocessing.encoding import PromptEncoder
from preprocessing.errors import RequestError
from preprocessing.tokenizer_loading import TokenizerLoadError, load_tokenizer
from preprocessing.word_lists import batch_word_lists, decode_word_list, encode_word_list

__all__ = [
    "ConfigError",
    "PreprocessingLimits",
    "PreprocessingSettings",
    "PromptEncoder",
    "RequestError",
    "TokenizerLoadError",
    "batch_word_lists",
    "decode_word_list",
    "encode_word_list",
    "load_tokenizer",
]
