"""Data-parallel launching: `--num-processes N` re-runs the same command under torchrun.

Accelerate's own launcher on a machine without GPUs silently starts ONE process whatever
`--num_processes` says; torchrun starts exactly N (gloo on CPUs, NCCL on GPUs), and the Trainer
(through Accelerate) picks the process group up from its environment. torchrun also ends every
rank when one fails, so a dead rank never leaves the others hanging in a collective.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hfllm.errors import ConfigError
from hfllm.output import log

# The options that describe the launch itself; the workers must not see them again.
LAUNCH_OPTIONS = (
    "--num-processes",
    "--num-machines",
    "--machine-rank",
    "--main-process-ip",
    "--main-process-port",
)


def in_worker() -> bool:
    """Whether this process was started by a distributed launcher (torchrun, accelerate)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """Whether this process writes shared outputs (manifest checks, model/, metrics.json, stdout)."""
    return rank() == 0


def strip_launch_options(argv: list[str]) -> list[str]:
    """Return argv without the launch options (`--num-processes 2` and `--num-processes=2` forms)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in LAUNCH_OPTIONS:
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


def torchrun_command(
    argv: list[str],
    num_processes: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    main_process_ip: str | None = None,
    main_process_port: int | None = None,
) -> list[str]:
    """Return the torchrun command line that runs `hfllm ARGV` on `num_processes` processes per machine."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={num_processes}"]
    if num_machines == 1 and main_process_ip is None:
        cmd.append("--standalone")  # picks a free local port; no rendezvous server to configure
    else:
        if main_process_ip is None:
            raise ConfigError("--num-machines > 1 needs --main-process-ip (the address of machine rank 0)")
        cmd += [
            f"--nnodes={num_machines}",
            f"--node_rank={machine_rank}",
            f"--master_addr={main_process_ip}",
            f"--master_port={main_process_port or 29500}",
        ]
    return [*cmd, "-m", "hfllm", *strip_launch_options(argv)]


def relaunch(num_processes: int, **machines) -> int:
    """Run the current command again under torchrun and return its exit code."""
    if num_processes < 1:
        raise ConfigError(f"--num-processes must be at least 1, got {num_processes}")
    cmd = torchrun_command(sys.argv[1:], num_processes, **machines)
    log.info("launching %d processes: %s", num_processes, " ".join(cmd[2:]))
    env = {**os.environ, "HFLLM_REQUESTED_WORLD_SIZE": str(num_processes * machines.get("num_machines", 1))}
    return subprocess.call(cmd, env=env)


def check_world_size() -> None:
    """Refuse to run with a world size other than the one asked for.

    `accelerate launch --num_processes 2` on a CPU-only machine starts a single process with no
    distributed environment at all; we look at the launcher's own command line to notice that.
    """
    requested = os.environ.get("HFLLM_REQUESTED_WORLD_SIZE") or _accelerate_requested()
    if requested and int(requested) != world_size():
        raise ConfigError(
            f"asked for {requested} processes but this run has world size {world_size()}",
            "on machines without GPUs `accelerate launch` starts one process; use "
            "`hfllm pretrain --num-processes N` or `torchrun --nproc_per_node N -m hfllm ...`",
        )


def _accelerate_requested() -> str | None:
    try:
        parent = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    if not any(part.endswith("accelerate") or part == "launch" for part in parent[:3]):
        return None
    for i, part in enumerate(parent):
        for name in ("--num_processes", "--num-processes"):
            if part == name and i + 1 < len(parent):
                return parent[i + 1]
            if part.startswith(name + "="):
                return part.split("=", 1)[1]
    return None


def launch_if_asked(
    num_processes: int | None,
    num_machines: int = 1,
    machine_rank: int = 0,
    main_process_ip: str | None = None,
    main_process_port: int | None = None,
) -> int | None:
    """Return torchrun's exit code when this command must run on several processes, else None."""
    if in_worker() or ((num_processes or 1) <= 1 and num_machines <= 1):
        return None
    return relaunch(
        num_processes or 1,
        num_machines=num_machines,
        machine_rank=machine_rank,
        main_process_ip=main_process_ip,
        main_process_port=main_process_port,
    )
