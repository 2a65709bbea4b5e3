"""Text to token ids for the pipeline: prompts, chat conversations, word lists.

Used in-process by the BLS and behind the standalone `preprocessing` Triton model.
Importing this package does not import transformers (only
`serving_common.tokenizer_loading.load_tokenizer` does).
"""

from preprocessing.config import PreprocessingLimits, PreprocessingSettings
from preprocessing.encoding import PromptEncoder

__all__ = ["PreprocessingLimits", "PreprocessingSettings", "PromptEncoder"]
