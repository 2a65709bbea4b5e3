"""Checks of a written repository, of the engine against it, and of the tokenizer.

Each check collects every problem it finds and raises one `VerificationError` listing
them, so a user fixes everything in one round instead of one error per run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine_build.layout import ENGINE_MODEL, MODEL_NAMES, OutputLayout
from engine_build.options import BuildError
from local_triton.model_config import (
    ModelConfigError,
    config_parameters,
    find_placeholders,
    load_model_config,
)

# Models that must be decoupled: the BLS streams, and it reads the engine's responses
# as a stream (one per generated step).
DECOUPLED_MODELS = ("tensorrt_llm_bls", ENGINE_MODEL)


class VerificationError(BuildError):
    def __init__(self, what: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"{what}:\n" + "\n".join(f"  - {problem}" for problem in problems))


@dataclass(frozen=True)
class ModelView:
    """What the checks read from one parsed config."""

    name: str
    backend: str
    max_batch_size: int
    decoupled: bool
    parameters: dict[str, str]


def read_repository(repository: Path) -> dict[str, ModelView]:
    """Parse every model's config.pbtxt; raise VerificationError on any that fails."""
    problems: list[str] = []
    models: dict[str, ModelView] = {}
    for model in MODEL_NAMES:
        config_file = repository / model / "config.pbtxt"
        if not config_file.is_file():
            problems.append(f"{config_file} is missing")
            continue
        text = config_file.read_text(encoding="utf-8")
        if "${" in text or find_placeholders(text):
            problems.append(f"{config_file} still holds a template placeholder")
            continue
        try:
            config = load_model_config(config_file)
        except ModelConfigError as error:
            problems.append(str(error))
            continue
        if config.name != model:
            problems.append(f"{config_file} names the model {config.name!r}, not {model!r}")
        models[model] = ModelView(
            name=model,
            backend=config.backend,
            max_batch_size=config.max_batch_size,
            decoupled=config.model_transaction_policy.decoupled,
            parameters=config_parameters(config),
        )
    if problems:
        raise VerificationError(f"the repository {repository} is not servable", problems)
    return models


def verify_repository(layout: OutputLayout, *, engine_built: bool) -> dict[str, ModelView]:
    """Check the written repository as a whole; return what was read."""
    models = read_repository(layout.repository)
    problems: list[str] = []
    for model, view in models.items():
        if (
            view.backend == "python"
            and not (layout.repository / model / "1" / "model.py").is_file()
        ):
            problems.append(f"{model}: Python backend model without 1/model.py")
    for model in DECOUPLED_MODELS:
        if not models[model].decoupled:
            problems.append(f"{model}: model_transaction_policy.decoupled must be true")
    bls = models["tensorrt_llm_bls"].parameters
    engine_name = bls.get("tensorrt_llm_model_name", ENGINE_MODEL)
    if engine_name not in models:
        problems.append(f"tensorrt_llm_bls calls model {engine_name!r}, not in the repository")
    pre_len = models["preprocessing"].parameters.get("max_input_len")
    if pre_len != bls.get("max_input_len"):
        problems.append(
            f"max_input_len differs: preprocessing {pre_len}, tensorrt_llm_bls "
            f"{bls.get('max_input_len')}"
        )
    for model, view in models.items():
        tokenizer_dir = view.parameters.get("tokenizer_dir")
        if tokenizer_dir and not _local(layout, tokenizer_dir).is_dir():
            problems.append(f"{model}: tokenizer_dir {tokenizer_dir} does not exist")
    engine = models[ENGINE_MODEL]
    if engine.backend == "tensorrtllm":
        engine_path = engine.parameters.get("gpt_model_path", "")
        if engine_built and not _local(layout, engine_path).is_dir():
            problems.append(f"tensorrt_llm: gpt_model_path {engine_path} does not exist")
    elif "model_dir" in engine.parameters:
        model_dir = Path(engine.parameters["model_dir"])
        if not (model_dir / "config.json").is_file():
            problems.append(f"tensorrt_llm: model_dir {model_dir} holds no config.json")
    if problems:
        raise VerificationError(f"the repository {layout.repository} is not servable", problems)
    return models


def _local(layout: OutputLayout, deployed: str) -> Path:
    """A path as written in a config, as seen on this machine."""
    path = Path(deployed)
    try:
        return layout.root / path.relative_to(layout.deploy_root)
    except ValueError:
        return path


def load_engine_config(engine_dir: Path) -> dict[str, Any]:
    config_file = engine_dir / "config.json"
    if not config_file.is_file():
        raise BuildError(f"the engine directory {engine_dir} has no config.json")
    try:
        return json.loads(config_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise BuildError(f"{config_file} is not valid JSON: {error}") from None


def check_engine_agreement(
    engine_config: Mapping[str, Any],
    models: Mapping[str, ModelView],
    *,
    world_size: int,
    lora_rank: int | None = None,
    engine_dir: Path | None = None,
) -> None:
    """The engine's config.json against the repository and the launch's world size."""
    build = engine_config.get("build_config")
    pretrained = engine_config.get("pretrained_config")
    if not isinstance(build, Mapping) or not isinstance(pretrained, Mapping):
        raise VerificationError(
            "the engine's config.json is not in the format this tool reads",
            ["expected top-level 'build_config' and 'pretrained_config' (TensorRT-LLM >= 0.9)"],
        )
    problems: list[str] = []

    def engine_int(key: str) -> int | None:
        value = build.get(key)
        return int(value) if isinstance(value, int) else None

    engine = models[ENGINE_MODEL]
    bls = models["tensorrt_llm_bls"].parameters
    pre = models["preprocessing"].parameters

    batch = engine_int("max_batch_size")
    if batch is None:
        problems.append("engine config.json has no build_config.max_batch_size")
    elif engine.max_batch_size > batch:
        problems.append(
            f"tensorrt_llm max_batch_size {engine.max_batch_size} exceeds the engine's "
            f"max_batch_size {batch}"
        )
    input_len = engine_int("max_input_len")
    for model, params in (("preprocessing", pre), ("tensorrt_llm_bls", bls)):
        value = _int(params.get("max_input_len"))
        if input_len is None:
            problems.append("engine config.json has no build_config.max_input_len")
            break
        if value is None or value > input_len:
            problems.append(
                f"{model} max_input_len {params.get('max_input_len')} exceeds the engine's "
                f"max_input_len {input_len}"
            )
    seq_len = engine_int("max_seq_len")
    bls_in, bls_out = _int(bls.get("max_input_len")), _int(bls.get("max_output_len"))
    if (
        seq_len is not None
        and bls_in is not None
        and bls_out is not None
        and bls_in + bls_out > seq_len
    ):
        problems.append(
            f"tensorrt_llm_bls max_input_len + max_output_len = {bls_in + bls_out} exceeds "
            f"the engine's max_seq_len {seq_len}"
        )
    beams = engine_int("max_beam_width")
    config_beams = _int(engine.parameters.get("max_beam_width", "1"))
    if beams is not None and config_beams is not None and config_beams > beams:
        problems.append(f"tensorrt_llm max_beam_width {config_beams} exceeds the engine's {beams}")
    mapping = pretrained.get("mapping") or {}
    tp, pp = int(mapping.get("tp_size", 1)), int(mapping.get("pp_size", 1))
    engine_world = int(mapping.get("world_size", tp * pp))
    if engine_world != world_size:
        problems.append(
            f"the engine was built for {engine_world} rank(s) (tp {tp} × pp {pp}) but the "
            f"repository is launched with {world_size}"
        )
    if engine_dir is not None:
        rank_files = sorted(engine_dir.glob("rank*.engine"))
        if len(rank_files) != engine_world:
            problems.append(
                f"{engine_dir} holds {len(rank_files)} rank*.engine file(s), expected "
                f"{engine_world}"
            )
    plugins = build.get("plugin_config") or {}
    kv_type = str(build.get("kv_cache_type", "")).lower()
    if plugins.get("paged_kv_cache") is False or kv_type in ("continuous", "disabled"):
        problems.append("the engine has no paged KV cache, which in-flight batching needs")
    if plugins.get("remove_input_padding") is False:
        problems.append("the engine pads its inputs; in-flight batching needs remove_input_padding")
    if lora_rank is not None:
        lora_config = build.get("lora_config") or {}
        if not plugins.get("lora_plugin"):
            problems.append("LoRA was asked for but the engine has no lora_plugin")
        elif int(lora_config.get("max_lora_rank", 0)) < lora_rank:
            problems.append(
                f"the engine's max_lora_rank {lora_config.get('max_lora_rank')} is below "
                f"{lora_rank}"
            )
    if problems:
        raise VerificationError("the engine does not agree with the repository", problems)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def check_tokenizer_loads(path: Path, *, trust_remote_code: bool) -> int:
    """Load the tokenizer with the models' own loader and encode a word; return its size."""
    from serving_common.tokenizer_loading import TokenizerLoadError, load_tokenizer

    try:
        tokenizer = load_tokenizer(path, trust_remote_code)
        ids = tokenizer.encode("hello world", add_special_tokens=False)
    except TokenizerLoadError as error:
        raise BuildError(f"the tokenizer does not load: {error}") from None
    if not ids:
        raise BuildError(f"the tokenizer in {path} encodes 'hello world' to no tokens")
    return len(tokenizer)
