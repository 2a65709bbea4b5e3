"""Write the model repository: the shipped configs with this build's values, checked.

Configs are edited in place with `local_triton.model_config` (values rewritten, comments
kept) and every result is parsed as Triton's ModelConfig before it is written. The
`model.py` files and the packages they import are copied next to it, so the directory
works when handed straight to `tritonserver --model-repository`.
"""

from __future__ import annotations

import ast
import importlib.util
import shutil
from collections.abc import Iterable
from pathlib import Path

from engine_build.layout import ENGINE_MODEL, MODEL_NAMES, OutputLayout
from engine_build.options import BuildError, BuildOptions, EngineKind
from engine_build.pytorch_backend import llm_api_model_dir
from engine_build.values import ModelEdits
from local_triton.model_config import (
    ModelConfigError,
    config_parameters,
    find_placeholders,
    parse_model_config,
    set_instance_count,
    set_model_name,
    set_parameters,
    set_top_level_int,
)

# Packages of this project; a copied package that imports one of these pulls it in too.
FIRST_PARTY_PACKAGES = frozenset(
    {
        "bls",
        "serving_common",
        "preprocessing",
        "postprocessing",
        "reference_engine",
        "llm_api_engine",
        "local_triton",
    }
)
_COPY_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")


def checkout_root() -> Path:
    return Path(__file__).resolve().parents[1]


def default_template_repository() -> Path:
    return checkout_root() / "model_repository"


def reference_engine_model_dir() -> Path:
    spec = importlib.util.find_spec("reference_engine")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("the reference_engine package is not importable here")
    return Path(next(iter(spec.submodule_search_locations))) / "triton_model"


def template_dir(model: str, engine: EngineKind, templates: Path) -> Path:
    if model == ENGINE_MODEL and engine is EngineKind.REFERENCE:
        return reference_engine_model_dir()
    if model == ENGINE_MODEL and engine is EngineKind.PYTORCH:
        return llm_api_model_dir()
    return templates / model


def edit_config(text: str, model: str, edits: ModelEdits, source: str) -> str:
    """Apply `edits` to config text; the result is parsed and has no placeholders."""
    try:
        config = parse_model_config(text, source)
        declared = config_parameters(config)
        missing = sorted(set(edits.parameters) - set(declared))
        if missing:
            raise BuildError(
                f"{source} does not declare parameter(s) {missing} that this build sets; "
                f"it declares {sorted(declared)}"
            )
        values = dict(edits.parameters)
        values.update({k: v for k, v in edits.optional_parameters.items() if k in declared})
        for key, cap in edits.caps.items():
            current = _int_or_none(declared.get(key, ""))
            if current is not None and current > cap:
                values[key] = str(cap)
        text = set_parameters(text, values)
        for key, (value, comment) in edits.added_parameters.items():
            if key in declared:
                text = set_parameters(text, {key: value})
                continue
            comment_lines = "".join(f"# {line}\n" for line in _wrap(comment))
            text = text.rstrip("\n") + "\n\n" + comment_lines
            text = set_parameters(text, {key: value}, add_missing=True)
        text = set_model_name(text, model)
        if edits.max_batch_size is not None and config.max_batch_size > 0:
            text = set_top_level_int(text, "max_batch_size", edits.max_batch_size)
        if edits.instance_count is not None:
            text = set_instance_count(text, edits.instance_count)
        parse_model_config(text, source)
    except ModelConfigError as error:
        raise BuildError(str(error)) from None
    if "${" in text or find_placeholders(text):
        raise BuildError(f"{source}: a template placeholder is left in the written config")
    return text


def _int_or_none(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def _wrap(text: str, width: int = 86) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        lines.append(current)
    return lines


def write_repository(
    options: BuildOptions,
    layout: OutputLayout,
    edits: dict[str, ModelEdits],
    templates: Path,
) -> list[Path]:
    """Write OUT/model_repository; return the config files written."""
    if not templates.is_dir():
        raise BuildError(
            f"model repository templates not found at {templates}: run llm-bls-build from "
            "a checkout of this project or pass --template-repository"
        )
    written: list[Path] = []
    layout.repository.mkdir(parents=True, exist_ok=True)
    for model in MODEL_NAMES:
        source = template_dir(model, options.engine, templates)
        config_file = source / "config.pbtxt"
        if not config_file.is_file():
            raise BuildError(f"no template config for model {model!r}: {config_file} is missing")
        text = edit_config(
            config_file.read_text(encoding="utf-8"), model, edits[model], str(config_file)
        )
        target = layout.repository / model
        target.mkdir(parents=True, exist_ok=True)
        for entry in source.iterdir():
            if entry.is_dir() and entry.name.isdigit():
                shutil.copytree(entry, target / entry.name, ignore=_COPY_IGNORE)
        if not (target / "1").is_dir():
            raise BuildError(f"template {source} has no version directory 1/")
        (target / "config.pbtxt").write_text(text, encoding="utf-8")
        written.append(target / "config.pbtxt")
    return written


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise BuildError(f"package {name!r} is not importable here; cannot copy it")
    return Path(next(iter(spec.submodule_search_locations)))


def first_party_imports(files: Iterable[Path]) -> set[str]:
    """Top-level first-party packages imported by these Python files."""
    found: set[str] = set()
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found.update(
                name.split(".")[0] for name in names if name.split(".")[0] in FIRST_PARTY_PACKAGES
            )
    return found


def packages_to_copy(roots: Iterable[str], model_files: Iterable[Path]) -> list[str]:
    """`roots` plus every first-party package they or the model files import."""
    wanted = set(roots) | first_party_imports(model_files)
    done: set[str] = set()
    while wanted - done:
        name = sorted(wanted - done)[0]
        done.add(name)
        wanted |= first_party_imports(package_dir(name).rglob("*.py"))
    return sorted(done)


def copy_packages(names: Iterable[str], destination: Path) -> list[Path]:
    copied = []
    for name in names:
        target = destination / name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(package_dir(name), target, ignore=_COPY_IGNORE)
        copied.append(target)
    return copied
