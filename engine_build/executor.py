"""Run a planned build: external commands as subprocesses, local steps in process.

Progress: every step is announced with its number and timed; the output of the long
external commands (conversion, engine build) is streamed line by line, with a note every
`heartbeat_s` seconds while a command prints nothing, so a quiet 20-minute engine build
still shows it is alive.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engine_build import steps as step_names
from engine_build.checkpoint import (
    CheckpointInfo,
    check_tokenizer_dir,
    inspect_checkpoint,
    tokenizer_files,
)
from engine_build.gpus import count_gpus
from engine_build.launch import launch_script, slurm_script
from engine_build.layout import OutputLayout
from engine_build.model_support import validate_conversion
from engine_build.options import (
    BuildError,
    BuildOptions,
    EngineKind,
    resolve_lengths,
    validate_options,
)
from engine_build.pytorch_backend import start_command, validate_pytorch_options
from engine_build.repository import (
    checkout_root,
    copy_packages,
    default_template_repository,
    packages_to_copy,
    write_repository,
)
from engine_build.steps import (
    BuildStep,
    StepKind,
    engine_packages,
    layout_for,
    plan_build,
    render_plan,
)
from engine_build.values import repository_edits
from engine_build.verify import (
    check_engine_agreement,
    check_tokenizer_loads,
    load_engine_config,
    verify_repository,
)
from engine_build.versions import TENSORRT_LLM_MISSING, TRTLLM_BUILD_MISSING
from engine_build.xgrammar_info import write_tokenizer_info

Echo = Callable[[str], None]


@dataclass
class BuildContext:
    options: BuildOptions
    checkpoint: CheckpointInfo
    layout: OutputLayout
    templates: Path
    echo: Echo
    heartbeat_s: float = 30.0
    copied_packages: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BuildResult:
    steps: list[BuildStep]
    layout: OutputLayout
    engine_built: bool


def resolve_gpus(options: BuildOptions, counter: Callable[[], int] = count_gpus) -> BuildOptions:
    """Fill in `gpus`: the user's number, else tp*pp in a dry run, else the GPUs here."""
    if options.gpus is not None or options.engine is EngineKind.REFERENCE:
        return options
    gpus = options.world_size if options.dry_run else counter()
    return dataclasses.replace(options, gpus=gpus)


def prepare(options: BuildOptions) -> tuple[BuildOptions, CheckpointInfo, list[BuildStep]]:
    """Every check that needs no GPU, then the plan; raises BuildError.

    Returns the options with the lengths filled from the checkpoint."""
    checkpoint = inspect_checkpoint(options.checkpoint)
    options = resolve_lengths(options, checkpoint.max_position_embeddings)
    validate_options(options, checkpoint.max_position_embeddings)
    if options.engine is EngineKind.TENSORRT_LLM:
        validate_conversion(
            checkpoint.architecture,
            options.quantization,
            options.kv_cache_quantization,
            trust_remote_code=options.trust_remote_code,
            has_custom_code=checkpoint.has_custom_code,
        )
    if options.engine is EngineKind.PYTORCH:
        validate_pytorch_options(options)
    check_tokenizer_dir(options.resolved_tokenizer_dir, given=options.tokenizer_dir is not None)
    return options, checkpoint, plan_build(options, checkpoint)


def _outputs(layout: OutputLayout, options: BuildOptions) -> list[Path]:
    """What this build writes under OUT (the engine only when it is really built)."""
    paths = [layout.repository, layout.tokenizer, layout.launch_script, layout.slurm_script]
    paths.append(layout.xgrammar_tokenizer_info)
    paths += [
        layout.root / name for name in ("bls", "serving_common", "preprocessing", "postprocessing")
    ]
    paths += [layout.root / "reference_engine", layout.root / "llm_api_engine"]
    if options.engine is EngineKind.TENSORRT_LLM and not options.dry_run:
        paths += [layout.engine, layout.trtllm_checkpoint]
    return paths


def prepare_output_dir(layout: OutputLayout, options: BuildOptions) -> None:
    existing = [path for path in _outputs(layout, options) if path.exists()]
    if existing and not options.overwrite:
        names = ", ".join(path.name for path in existing)
        raise BuildError(
            f"{layout.root} already holds {names}: pass --overwrite to replace them, or "
            "choose another --output-dir"
        )
    for path in existing:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    layout.root.mkdir(parents=True, exist_ok=True)


def preflight_toolchain() -> None:
    """Fail before hours of work when the TensorRT-LLM toolchain is not here."""
    if importlib.util.find_spec("tensorrt_llm") is None:
        raise BuildError(TENSORRT_LLM_MISSING)
    if shutil.which("trtllm-build") is None:
        raise BuildError(TRTLLM_BUILD_MISSING)


def run_build(
    options: BuildOptions,
    *,
    echo: Echo = print,
    templates: Path | None = None,
    heartbeat_s: float = 30.0,
) -> BuildResult:
    options = resolve_gpus(options)
    options, checkpoint, plan = prepare(options)
    layout = layout_for(options)
    mode = " (dry run: external steps are printed, not run)" if options.dry_run else ""
    echo(f"llm-bls-build: {len(plan)} steps{mode}")
    echo(render_plan(plan, dry_run=options.dry_run))
    if options.engine is EngineKind.TENSORRT_LLM and not options.dry_run:
        preflight_toolchain()
    prepare_output_dir(layout, options)
    context = BuildContext(
        options=options,
        checkpoint=checkpoint,
        layout=layout,
        templates=templates or default_template_repository(),
        echo=echo,
        heartbeat_s=heartbeat_s,
    )
    engine_built = False
    echo("")
    for number, step in enumerate(plan, start=1):
        prefix = f"[{number}/{len(plan)}] {step.name}"
        if step.kind is StepKind.EXTERNAL and options.dry_run:
            echo(f"{prefix}: skipped (dry run)")
            continue
        echo(f"{prefix}: {step.summary} ...")
        started = time.monotonic()
        if step.kind is StepKind.EXTERNAL:
            run_command(step, context)
            engine_built = engine_built or step.name == step_names.BUILD_ENGINE
        else:
            LOCAL_STEPS[step.name](context, engine_built)
        echo(f"{prefix}: done in {_duration(time.monotonic() - started)}")
    _summary(context, engine_built)
    return BuildResult(steps=plan, layout=layout, engine_built=engine_built)


def run_command(step: BuildStep, context: BuildContext) -> None:
    env = dict(os.environ)
    # `python -m engine_build.convert` must import this package even when it is not
    # pip-installed (running from a checkout); last on the path, so it shadows nothing.
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (env.get("PYTHONPATH", ""), str(checkout_root())) if part
    )
    try:
        process = subprocess.Popen(
            list(step.command),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env=env,
        )
    except FileNotFoundError:
        raise BuildError(f"{step.name}: {step.command[0]} not found") from None
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    started = time.monotonic()
    tail: list[str] = []
    while True:
        try:
            line = lines.get(timeout=context.heartbeat_s)
        except queue.Empty:
            context.echo(
                f"    ... {step.name} still running ({_duration(time.monotonic() - started)})"
            )
            continue
        if line is None:
            break
        tail = [*tail, line][-20:]
        context.echo(f"    | {line}")
    code = process.wait()
    if code != 0:
        raise BuildError(
            f"{step.name} failed (exit code {code}); its last output:\n"
            + "\n".join(f"    {line}" for line in tail)
        )


def _copy_tokenizer(context: BuildContext, engine_built: bool) -> None:
    source = context.options.resolved_tokenizer_dir
    target = context.layout.tokenizer
    target.mkdir(parents=True, exist_ok=True)
    for path in tokenizer_files(source):
        shutil.copy2(path, target / path.name)


def _write_tokenizer_info(context: BuildContext, engine_built: bool) -> None:
    write_tokenizer_info(
        context.layout.tokenizer,
        context.layout.xgrammar_tokenizer_info,
        trust_remote_code=context.options.trust_remote_code,
    )


def _write_repository(context: BuildContext, engine_built: bool) -> None:
    edits = repository_edits(context.options, context.layout)
    write_repository(context.options, context.layout, edits, context.templates)


def _copy_packages(context: BuildContext, engine_built: bool) -> None:
    roots = engine_packages(context.options.engine)
    model_files = list(context.layout.repository.glob("*/1/*.py"))
    names = packages_to_copy(roots, model_files)
    copy_packages(names, context.layout.root)
    context.copied_packages = names
    context.echo(f"    copied packages: {', '.join(names)}")


def _write_launch_scripts(context: BuildContext, engine_built: bool) -> None:
    options, layout = context.options, context.layout
    layout.launch_script.write_text(
        launch_script(options.world_size, layout.deployed_repository, options.ports),
        encoding="utf-8",
    )
    layout.launch_script.chmod(0o755)
    layout.slurm_script.write_text(
        slurm_script(
            options.world_size, layout.deployed_repository, options.ports, layout.root.resolve()
        ),
        encoding="utf-8",
    )


def _verify(context: BuildContext, engine_built: bool) -> None:
    options, layout = context.options, context.layout
    models = verify_repository(layout, engine_built=engine_built)
    context.echo(f"    {len(models)} configs parse as Triton ModelConfig, no placeholders")
    vocab = check_tokenizer_loads(layout.tokenizer, trust_remote_code=options.trust_remote_code)
    context.echo(f"    tokenizer loads ({vocab} tokens)")
    if options.engine is EngineKind.TENSORRT_LLM:
        if not engine_built:
            context.echo("    engine check skipped: no engine was built (dry run)")
            return
        check_engine_agreement(
            load_engine_config(layout.engine),
            models,
            world_size=options.world_size,
            lora_rank=options.lora.max_rank if options.lora else None,
            engine_dir=layout.engine,
        )
        context.echo("    the engine's config.json agrees with the repository")


LOCAL_STEPS: dict[str, Callable[[BuildContext, bool], None]] = {
    step_names.COPY_TOKENIZER: _copy_tokenizer,
    step_names.WRITE_TOKENIZER_INFO: _write_tokenizer_info,
    step_names.WRITE_REPOSITORY: _write_repository,
    step_names.COPY_PACKAGES: _copy_packages,
    step_names.WRITE_LAUNCH_SCRIPTS: _write_launch_scripts,
    step_names.VERIFY: _verify,
}


def _summary(context: BuildContext, engine_built: bool) -> None:
    options, layout = context.options, context.layout
    echo = context.echo
    echo("")
    echo(f"repository: {layout.repository}")
    if options.engine is EngineKind.REFERENCE:
        echo(f"serve it here:  llm-bls-serve --model-repository {layout.repository}")
        return
    if options.engine is EngineKind.PYTORCH:
        echo("no engine build: TensorRT-LLM loads the checkpoint when the server starts")
        echo(
            "start it (in the container): "
            + start_command(layout.deployed_repository, options.world_size)
        )
        return
    if not engine_built:
        echo(
            "no engine was built (dry run); run again without --dry-run in the "
            "TensorRT-LLM container to build it"
        )
    if options.world_size > 1:
        echo(f"start it (in the container): {layout.deploy_root / layout.launch_script.name}")
    else:
        echo(
            "start it (in the container): tritonserver "
            f"--model-repository={layout.deployed_repository} --disable-auto-complete-config"
        )


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest:02d} s"
