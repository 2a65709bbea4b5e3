"""Reading the preprocessing parameters, and loading tokenizers with clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from local_triton.model_config import config_parameters, load_model_config
from offline_fixtures import ensure_fixtures
from preprocessing import PreprocessingLimits, PreprocessingSettings
from serving_common.config import ConfigError
from serving_common.tokenizer_loading import TokenizerLoadError, load_tokenizer

CONFIG = Path(__file__).resolve().parents[2] / "model_repository" / "preprocessing" / "config.pbtxt"


def test_limits_from_strings_and_triton_form():
    assert PreprocessingLimits.from_parameters(
        {"max_input_len": "100", "max_words": {"string_value": "3"}, "other": "x"}
    ) == PreprocessingLimits(max_input_len=100, max_words=3, max_word_tokens=32)
    assert PreprocessingLimits.from_parameters({}) == PreprocessingLimits()


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"max_input_len": "abc"}, "max_input_len must be a positive integer, got 'abc'"),
        ({"max_words": "0"}, "max_words must be a positive integer, got '0'"),
        ({"max_word_tokens": "-4"}, "max_word_tokens must be a positive integer, got '-4'"),
        ({"max_words": {"string_value": 7}}, "parameter max_words must be a string"),
    ],
)
def test_bad_limits_name_the_parameter(parameters, message):
    with pytest.raises(ConfigError, match=message):
        PreprocessingLimits.from_parameters(parameters)


def test_limits_refuse_bad_values_directly():
    with pytest.raises(ConfigError, match="max_input_len must be a positive integer"):
        PreprocessingLimits(max_input_len=0)
    with pytest.raises(ConfigError, match="max_words"):
        PreprocessingLimits(max_words=True)


def test_settings_defaults_and_booleans():
    settings = PreprocessingSettings.from_parameters({"tokenizer_dir": "/t"})
    assert settings == PreprocessingSettings(tokenizer_dir=Path("/t"))
    assert settings.add_special_tokens is True and settings.trust_remote_code is False
    flipped = PreprocessingSettings.from_parameters(
        {"tokenizer_dir": "/t", "add_special_tokens": "False", "trust_remote_code": "1"}
    )
    assert flipped.add_special_tokens is False and flipped.trust_remote_code is True
    with pytest.raises(ConfigError, match='add_special_tokens must be "true" or "false"'):
        PreprocessingSettings.from_parameters({"add_special_tokens": "maybe"})
    with pytest.raises(ConfigError, match="unfilled template placeholder"):
        PreprocessingSettings.from_parameters({"tokenizer_dir": "${tokenizer_dir}"})


def test_shipped_config_is_finished_and_parses_to_the_defaults():
    text = CONFIG.read_text(encoding="utf-8")
    assert "${" not in text
    parameters = config_parameters(load_model_config(CONFIG))
    settings = PreprocessingSettings.from_parameters(parameters)
    assert settings == PreprocessingSettings(tokenizer_dir=Path("/engines/tokenizer"))
    # Every parameter is documented with its default right above it.
    for key, value in parameters.items():
        block = text[: text.index(f'key: "{key}"')].rsplit("{", 1)[1]
        assert f'Default: "{value}"' in block, key


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(TokenizerLoadError, match="does not exist"):
        load_tokenizer(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(TokenizerLoadError, match="is not a directory"):
        load_tokenizer(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TokenizerLoadError, match="is not a tokenizer directory"):
        load_tokenizer(tmp_path / "empty")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerLoadError, match="could not load a tokenizer from"):
        load_tokenizer(broken)


def test_load_tokenizer_from_checkpoint_dir_and_copies(tmp_path):
    paths = ensure_fixtures()
    tok = load_tokenizer(paths.tiny_llama)
    assert tok.is_fast and tok.bos_token_id == 1
    copy = tmp_path / "bpe"
    shutil.copytree(paths.bpe_tokenizer, copy)
    assert load_tokenizer(str(copy)).is_fast


def test_the_shipped_parameters_are_exactly_those_preprocessing_reads():
    from local_triton.model_config import load_model_config
    from local_triton.staging import default_model_repository
    from preprocessing.config import PREPROCESSING_PARAMETERS

    config = load_model_config(default_model_repository() / "preprocessing" / "config.pbtxt")
    assert sorted(config.parameters) == sorted(PREPROCESSING_PARAMETERS)
