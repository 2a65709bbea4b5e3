"""Launch commands for a tensor/pipeline-parallel engine: one tritonserver per rank.

The C++ `tensorrtllm` backend in leader mode expects an MPI world of tp × pp processes,
one per GPU, each a tritonserver on the same repository. As TensorRT-LLM's own
`launch_triton_server.py` does: rank 0 loads every model and serves the endpoints;
the other ranks load only `tensorrt_llm` (explicit model control), which never returns
from loading on them, so they never bind the ports they are given; each rank gets its
own Python-backend shared-memory prefix so their stubs do not collide; and
auto-complete of configs is off, the configs being complete.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from engine_build.layout import ENGINE_MODEL
from engine_build.options import ServerPorts
from engine_build.versions import CONTAINER_IMAGE

TRITONSERVER = "/opt/tritonserver/bin/tritonserver"


def server_arguments(repository: Path, ports: ServerPorts) -> list[str]:
    # Every rank gets the same ports, as in TensorRT-LLM's launcher: only rank 0 ever
    # gets past loading and binds them.
    return [
        f"--model-repository={repository}",
        f"--grpc-port={ports.grpc}",
        f"--http-port={ports.http}",
        f"--metrics-port={ports.metrics}",
    ]


def rank_arguments(rank: int, repository: Path, ports: ServerPorts) -> list[str]:
    """tritonserver's arguments for one rank."""
    arguments = server_arguments(repository, ports)
    if rank != 0:
        arguments += ["--model-control-mode=explicit", f"--load-model={ENGINE_MODEL}"]
    arguments += [
        "--disable-auto-complete-config",
        f"--backend-config=python,shm-region-prefix-name=prefix{rank}_",
    ]
    return arguments


def mpirun_command(world_size: int, repository: Path, ports: ServerPorts) -> list[str]:
    command = ["mpirun", "--allow-run-as-root"]
    for rank in range(world_size):
        if rank:
            command.append(":")
        command += ["-n", "1", TRITONSERVER, *rank_arguments(rank, repository, ports)]
    return command


def launch_script(world_size: int, repository: Path, ports: ServerPorts) -> str:
    command = mpirun_command(world_size, repository, ports)
    # One rank per line: "-n 1 tritonserver ... :".
    lines: list[str] = [shlex.join(command[:2])]
    current: list[str] = []
    for word in command[2:]:
        if word == ":":
            lines.append(shlex.join(current) + " :")
            current = []
        else:
            current.append(word)
    lines.append(shlex.join(current))
    body = " \\\n    ".join(lines)
    return f"""#!/usr/bin/env bash
# Start Triton for a {world_size}-rank TensorRT-LLM engine: {world_size} tritonserver
# processes started together by MPI, one per GPU. Written by llm-bls-build.
#
# Rank 0 serves all four models and the HTTP ({ports.http}), gRPC ({ports.grpc}) and
# metrics ({ports.metrics}) ports; the other ranks load only `{ENGINE_MODEL}`, whose C++
# backend joins them into one engine. Run it inside {CONTAINER_IMAGE}
# with the output directory mounted where the configs expect it:
#   {repository.parent}
set -euo pipefail
exec {body}
"""


def slurm_script(
    world_size: int, repository: Path, ports: ServerPorts, host_output_dir: Path
) -> str:
    rank_command = shlex.join([TRITONSERVER, *server_arguments(repository, ports)])
    deploy_root = repository.parent
    return f"""#!/bin/bash
# Example Slurm job: one node, {world_size} GPUs, one tritonserver per GPU (one Slurm task
# per rank). Written by llm-bls-build as a starting point: set the partition, account
# and time for your cluster. Needs the pyxis/enroot plugin for --container-image and
# PMIx for --mpi=pmix; adapt those two flags if your cluster differs.
#SBATCH --job-name=triton-llm-bls
#SBATCH --nodes=1
#SBATCH --ntasks-per-node={world_size}
#SBATCH --gpus-per-node={world_size}
#SBATCH --time=04:00:00

CONTAINER_IMAGE="${{CONTAINER_IMAGE:-{CONTAINER_IMAGE}}}"
# The build's output directory on the cluster's file system.
OUTPUT_DIR="${{OUTPUT_DIR:-{host_output_dir}}}"

srun --mpi=pmix \\
    --container-image="$CONTAINER_IMAGE" \\
    --container-mounts="$OUTPUT_DIR:{deploy_root}" \\
    bash -c '
        # Rank 0 serves every model and the endpoints; the other ranks load only
        # {ENGINE_MODEL}, whose C++ backend joins them into one engine.
        if [ "$SLURM_PROCID" -eq 0 ]; then
            ONLY_ENGINE=""
        else
            ONLY_ENGINE="--model-control-mode=explicit --load-model={ENGINE_MODEL}"
        fi
        exec {rank_command} $ONLY_ENGINE \\
            --disable-auto-complete-config \\
            --backend-config=python,shm-region-prefix-name=prefix${{SLURM_PROCID}}_
    '
"""
