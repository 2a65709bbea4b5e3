"""The postprocessing model's parameters and its shipped config.pbtxt."""

from __future__ import annotations

from pathlib import Path

import pytest

from local_triton.model_config import config_parameters, load_model_config, tensor_specs
from postprocessing.config import POSTPROCESSING_PARAMETERS, PostprocessingSettings
from postprocessing.handler import INPUT_NAMES, OUTPUT_NAMES
from serving_common.config import ConfigError

MODEL_DIR = Path(__file__).resolve().parents[2] / "model_repository" / "postprocessing"


def test_defaults_and_triton_form():
    assert PostprocessingSettings.from_parameters({}) == PostprocessingSettings(
        tokenizer_dir=Path("/engines/tokenizer"),
        skip_special_tokens=True,
        spaces_between_special_tokens=True,
        trust_remote_code=False,
    )
    settings = PostprocessingSettings.from_parameters(
        {
            "tokenizer_dir": {"string_value": "/t"},
            "skip_special_tokens": "False",
            "spaces_between_special_tokens": "0",
            "trust_remote_code": "yes",
        }
    )
    assert settings == PostprocessingSettings(Path("/t"), False, False, True)


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"skip_special_tokens": "maybe"}, 'skip_special_tokens must be "true" or "false"'),
        ({"trust_remote_code": ""}, 'trust_remote_code must be "true" or "false"'),
        ({"tokenizer_dir": ""}, "tokenizer_dir must name a tokenizer directory"),
        ({"tokenizer_dir": "${tokenizer_dir}"}, "unfilled template placeholder"),
        ({"tokenizer_type": "auto"}, "unknown parameter 'tokenizer_type'"),
    ],
)
def test_bad_parameters_name_the_parameter(parameters, message):
    with pytest.raises(ConfigError, match=message):
        PostprocessingSettings.from_parameters(parameters)


def test_shipped_config_matches_the_code():
    config = load_model_config(MODEL_DIR / "config.pbtxt")  # refuses ${...} placeholders
    assert config.name == "postprocessing" and config.backend == "python"
    assert config.max_batch_size > 0
    parameters = config_parameters(config)
    assert tuple(sorted(parameters)) == tuple(sorted(POSTPROCESSING_PARAMETERS))
    # The shipped values are the code's defaults, so a missing parameter changes nothing.
    assert PostprocessingSettings.from_parameters(parameters) == PostprocessingSettings()
    inputs, outputs = tensor_specs(config)
    assert set(inputs) == set(INPUT_NAMES)
    assert set(outputs) == set(OUTPUT_NAMES)
    assert inputs["TOKENS_BATCH"].dims == (-1, -1)
    assert inputs["SEQUENCE_LENGTH"].dims == (-1,)
    assert not inputs["TOKENS_BATCH"].optional and not inputs["SEQUENCE_LENGTH"].optional
    assert inputs["DETOKENIZER_STATE"].optional and inputs["FINISH"].optional


def test_every_parameter_is_commented_with_its_default():
    text = (MODEL_DIR / "config.pbtxt").read_text(encoding="utf-8")
    for name in POSTPROCESSING_PARAMETERS:
        key_line = text.index(f'key: "{name}"')
        comment = text[text.rindex("{", 0, key_line) : key_line]
        assert "#" in comment and "Default:" in comment, name
