"""Stage a model repository for a local server: same models, local paths, chosen engine.

`staged_server` stages a plan into a scratch directory and serves it (the tests and the
benchmarks use it); `synthetic_plan` is the pipeline over the synthetic engine.

The shipped `model_repository/` is the production one (its `tensorrt_llm` is the C++
backend). Staging writes a fresh directory whose configs point at local tokenizer and
model paths and, on request, puts the reference engine in place of `tensorrt_llm`.
Version directories are symlinked, not copied, so a model.py resolves its real path
(and finds the checkout's packages) and edits show up on the next start.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from local_triton.model_config import (
    ModelConfigError,
    config_parameters,
    load_model_config,
    parse_model_config,
    set_instance_count,
    set_parameters,
)
from local_triton.server import ServerOptions, TritonServer

ENGINE_MODEL = "tensorrt_llm"


class EngineKind(str, Enum):
    NATIVE = "native"  # whatever `tensorrt_llm` the repository holds (the C++ backend)
    REFERENCE = "reference"  # our Python engine on a Hugging Face checkpoint
    SYNTHETIC = "synthetic"  # our Python engine emitting tokens at a set pace, no model


class StagingError(ValueError):
    pass


def checkout_root() -> Path:
    return Path(__file__).resolve().parents[1]


def default_model_repository() -> Path:
    return checkout_root() / "model_repository"


def reference_engine_model_dir() -> Path:
    import reference_engine

    return Path(reference_engine.__file__).resolve().parent / "triton_model"


@dataclass(frozen=True)
class StagingPlan:
    source: Path
    engine: EngineKind = EngineKind.NATIVE
    model_dir: Path | None = None  # Hugging Face checkpoint for the reference engine
    tokenizer_dir: Path | None = None  # set as tokenizer_dir of every model that has one
    # Extra parameter values, by model name then parameter name.
    overrides: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Stage only these models (None: all), e.g. just the engine for engine tests.
    only: frozenset[str] | None = None
    # instance_group count, by model name (each instance of a Python model is a process).
    instance_counts: Mapping[str, int] = field(default_factory=dict)


def _vocab_size(model_dir: Path) -> int | None:
    config_file = model_dir / "config.json"
    if not config_file.is_file():
        return None
    return json.loads(config_file.read_text(encoding="utf-8")).get("vocab_size")


def _engine_parameters(plan: StagingPlan) -> dict[str, str]:
    values = {"generation_backend": plan.engine.value}
    if plan.engine is EngineKind.REFERENCE and plan.model_dir is None:
        raise StagingError("the reference engine needs a Hugging Face checkpoint: --model-dir")
    if plan.model_dir is not None:
        values["model_dir"] = str(Path(plan.model_dir).resolve())
        vocab_size = _vocab_size(Path(plan.model_dir))
        if plan.engine is EngineKind.SYNTHETIC and vocab_size:
            # Synthetic ids must be ids the tokenizer can decode.
            values["synthetic_vocab_size"] = str(vocab_size)
    return values


def _link_versions(source_model: Path, staged_model: Path) -> None:
    for entry in source_model.iterdir():
        if entry.is_dir() and entry.name.isdigit():
            (staged_model / entry.name).symlink_to(entry.resolve(), target_is_directory=True)


def _write_config(
    text: str, destination: Path, values: Mapping[str, str], instance_count: int | None
) -> None:
    declared = config_parameters(parse_model_config(text, str(destination)))
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise StagingError(
            f"{destination}: no parameter(s) {unknown}; it declares {sorted(declared)}"
        )
    text = set_parameters(text, values)
    if instance_count is not None:
        if instance_count < 1:
            raise StagingError(f"{destination}: instance count must be at least 1")
        try:
            text = set_instance_count(text, instance_count)
        except ModelConfigError as error:
            raise StagingError(f"{destination}: {error}") from None
    parse_model_config(text, str(destination))
    destination.write_text(text, encoding="utf-8")


def stage_repository(plan: StagingPlan, destination: Path) -> Path:
    """Write the staged repository into `destination` (created; must not exist)."""
    source = Path(plan.source)
    if not source.is_dir():
        raise StagingError(f"model repository {source} does not exist")
    models = sorted(p for p in source.iterdir() if (p / "config.pbtxt").is_file())
    if plan.engine is not EngineKind.NATIVE and ENGINE_MODEL not in {p.name for p in models}:
        models.append(source / ENGINE_MODEL)  # our engine needs no config in the source
    if plan.only is not None:
        missing = sorted(plan.only - {p.name for p in models})
        if missing:
            raise StagingError(f"{source} has no model(s) {missing}")
        models = [p for p in models if p.name in plan.only]
    if not models:
        raise StagingError(f"{source} holds no model (no */config.pbtxt)")
    for what, named in (("overrides", plan.overrides), ("instance counts", plan.instance_counts)):
        unknown_models = sorted(set(named) - {p.name for p in models})
        if unknown_models:
            raise StagingError(f"{what} name models not in {source}: {unknown_models}")
    destination.mkdir(parents=True)
    for model in models:
        staged = destination / model.name
        staged.mkdir()
        swap_engine = model.name == ENGINE_MODEL and plan.engine is not EngineKind.NATIVE
        origin = reference_engine_model_dir() if swap_engine else model
        text = (origin / "config.pbtxt").read_text(encoding="utf-8")
        declared = config_parameters(load_model_config(origin / "config.pbtxt"))
        values: dict[str, str] = {}
        if plan.tokenizer_dir is not None and "tokenizer_dir" in declared:
            values["tokenizer_dir"] = str(Path(plan.tokenizer_dir).resolve())
        if swap_engine:
            values.update(_engine_parameters(plan))
        values.update(plan.overrides.get(model.name, {}))
        _write_config(text, staged / "config.pbtxt", values, plan.instance_counts.get(model.name))
        _link_versions(origin, staged)
    return destination


def remove_staged(destination: Path) -> None:
    shutil.rmtree(destination, ignore_errors=True)


def synthetic_plan(
    fixture_paths, step_ms: float, only: frozenset[str] | None = None
) -> StagingPlan:
    """The pipeline with the synthetic engine (tokens at a fixed pace, no model)."""
    return StagingPlan(
        source=default_model_repository(),
        engine=EngineKind.SYNTHETIC,
        model_dir=fixture_paths.tiny_llama,
        tokenizer_dir=fixture_paths.tiny_llama,
        overrides={
            "tensorrt_llm": {
                "synthetic_step_ms": str(step_ms),
                # The C++ backend's default; the BLS stops what it abandons explicitly.
                "cancellation_check_period_ms": "100",
            }
        },
        only=only,
    )


@contextmanager
def staged_server(plan: StagingPlan, **options: object) -> Iterator[TritonServer]:
    """Stage `plan` into a scratch directory and serve it until the block ends."""
    with tempfile.TemporaryDirectory(prefix="llm-bls-test-") as scratch:
        repository = stage_repository(plan, Path(scratch) / "model_repository")
        with TritonServer(ServerOptions(model_repository=repository, **options)) as server:  # type: ignore[arg-type]
            yield server
