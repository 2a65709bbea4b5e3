from pathlib import Path

import pytest

from local_triton.cli import parse_overrides
from local_triton.model_config import config_parameters, load_model_config
from local_triton.staging import (
    EngineKind,
    StagingError,
    StagingPlan,
    default_model_repository,
    stage_repository,
)

ENGINE_CONFIG = """\
name: "tensorrt_llm"
backend: "tensorrtllm"
max_batch_size: 8
# The engine directory.
parameters { key: "gpt_model_path" value: { string_value: "/engines/engine" } }
"""

PRE_CONFIG = """\
name: "preprocessing"
backend: "python"
max_batch_size: 8
parameters {
  key: "tokenizer_dir"
  # Where the tokenizer files are.
  value: { string_value: "/engines/tokenizer" }
}
parameters { key: "max_input_len" value: { string_value: "16" } }
"""


@pytest.fixture
def source(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    for name, text in {"tensorrt_llm": ENGINE_CONFIG, "preprocessing": PRE_CONFIG}.items():
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(text)
        (repo / name / "1" / "model.py").write_text("# model\n")
    return repo


def test_native_staging_sets_tokenizer_dir_and_keeps_comments(source: Path, tmp_path: Path):
    staged = stage_repository(
        StagingPlan(source=source, tokenizer_dir=tmp_path / "tok"), tmp_path / "out"
    )
    text = (staged / "preprocessing" / "config.pbtxt").read_text()
    assert "# Where the tokenizer files are." in text
    params = config_parameters(load_model_config(staged / "preprocessing" / "config.pbtxt"))
    assert params["tokenizer_dir"] == str((tmp_path / "tok").resolve())
    assert params["max_input_len"] == "16"
    # The engine keeps its C++ backend config; version dirs are links to the source.
    engine = load_model_config(staged / "tensorrt_llm" / "config.pbtxt")
    assert engine.backend == "tensorrtllm"
    assert (staged / "preprocessing" / "1").resolve() == (source / "preprocessing" / "1").resolve()


def test_reference_staging_swaps_the_engine(source: Path, tmp_path: Path):
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    staged = stage_repository(
        StagingPlan(source=source, engine=EngineKind.REFERENCE, model_dir=checkpoint),
        tmp_path / "out",
    )
    engine = load_model_config(staged / "tensorrt_llm" / "config.pbtxt")
    assert engine.backend == "python"
    assert engine.name == "tensorrt_llm"
    params = config_parameters(engine)
    assert params["generation_backend"] == "reference"
    assert params["model_dir"] == str(checkpoint.resolve())
    assert (staged / "tensorrt_llm" / "1" / "model.py").is_file()


def test_synthetic_staging_takes_vocab_size_from_checkpoint(source: Path, tmp_path: Path):
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text('{"vocab_size": 1234}')
    staged = stage_repository(
        StagingPlan(source=source, engine=EngineKind.SYNTHETIC, model_dir=checkpoint),
        tmp_path / "out",
    )
    params = config_parameters(load_model_config(staged / "tensorrt_llm" / "config.pbtxt"))
    assert params["generation_backend"] == "synthetic"
    assert params["synthetic_vocab_size"] == "1234"


def test_reference_engine_without_checkpoint_is_an_error(source: Path, tmp_path: Path):
    with pytest.raises(StagingError, match="--model-dir"):
        stage_repository(StagingPlan(source=source, engine=EngineKind.REFERENCE), tmp_path / "o")


def test_unknown_override_parameter_is_an_error(source: Path, tmp_path: Path):
    plan = StagingPlan(source=source, overrides={"preprocessing": {"max_input_length": "9"}})
    with pytest.raises(StagingError, match=r"max_input_length.*declares"):
        stage_repository(plan, tmp_path / "out")


def test_unknown_override_model_is_an_error(source: Path, tmp_path: Path):
    plan = StagingPlan(source=source, overrides={"postprocesing": {"x": "1"}})
    with pytest.raises(StagingError, match="postprocesing"):
        stage_repository(plan, tmp_path / "out")


def test_only_stages_the_named_models(source: Path, tmp_path: Path):
    staged = stage_repository(
        StagingPlan(source=source, only=frozenset({"preprocessing"})), tmp_path / "out"
    )
    assert sorted(p.name for p in staged.iterdir()) == ["preprocessing"]


def test_instance_counts_are_written_into_the_staged_configs(tmp_path: Path):
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    plan = StagingPlan(
        source=default_model_repository(),
        engine=EngineKind.SYNTHETIC,
        model_dir=checkpoint,
        only=frozenset({"tensorrt_llm", "tensorrt_llm_bls"}),
        instance_counts={"tensorrt_llm_bls": 3},
    )
    staged = stage_repository(plan, tmp_path / "out")
    bls = load_model_config(staged / "tensorrt_llm_bls" / "config.pbtxt")
    engine = load_model_config(staged / "tensorrt_llm" / "config.pbtxt")
    assert [group.count for group in bls.instance_group] == [3]
    assert [group.count for group in engine.instance_group] == [1]  # as shipped


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ({"postprocesing": 2}, "instance counts name models not in .*postprocesing"),
        ({"preprocessing": 2}, "no instance_group with a count"),  # its config has none
        ({"tensorrt_llm": 0}, "instance count must be at least 1"),
    ],
)
def test_bad_instance_counts_are_clear_errors(source: Path, tmp_path: Path, counts, message):
    plan = StagingPlan(source=source, instance_counts=counts)
    with pytest.raises(StagingError, match=message):
        stage_repository(plan, tmp_path / "out")


def test_parse_overrides():
    assert parse_overrides(["a.b=1", "a.c=x=y"]) == {"a": {"b": "1", "c": "x=y"}}
    with pytest.raises(SystemExit, match=r"MODEL\.PARAMETER=VALUE"):
        parse_overrides(["novalue"])


def test_reference_engine_is_added_when_the_source_has_no_engine(source: Path, tmp_path: Path):
    import shutil

    shutil.rmtree(source / "tensorrt_llm")
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    staged = stage_repository(
        StagingPlan(source=source, engine=EngineKind.REFERENCE, model_dir=checkpoint),
        tmp_path / "out",
    )
    assert load_model_config(staged / "tensorrt_llm" / "config.pbtxt").backend == "python"
