"""Data-parallel launching: `--num-processes N` re-runs the same command under torchrun.

Accelerate's own launcher on a machine without GPUs silently starts ONE process whatever
`--num_processes` says; torchrun starts exactly N (gloo on CPUs, NCCL on GPUs), and the Trainer
(through Accelerate) picks the process group up from its environment. torchrun also ends every
rank when one fails, so a dead rank never leaves the others hanging in a collective.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from hfllm.errors import (
    EXIT_INPUT,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_UNEXPECTED,
    EXIT_USAGE,
    ConfigError,
    Interrupted,
)
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
    """Run the current command again on `num_processes` workers per machine; return the exit code.

    This process becomes torchrun's elastic agent (torch.distributed.run, in-process), so that a
    failed worker is reported by rank, and a SIGTERM/SIGINT sent to this process reaches every
    worker exactly once (the workers run in their own session; each saves a checkpoint and exits).
    """
    if num_processes < 1:
        raise ConfigError(f"--num-processes must be at least 1, got {num_processes}")
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    cmd = torchrun_command(sys.argv[1:], num_processes, **machines)
    log.info("launching %d processes: torchrun %s", num_processes, " ".join(cmd[3:]))
    os.environ["HFLLM_REQUESTED_WORLD_SIZE"] = str(num_processes * machines.get("num_machines", 1))
    try:
        torchrun.run(torchrun.parse_args(cmd[3:]))
    except ChildFailedError as failed:
        return _report_failure(failed.failures)
    except SignalException as stopped:
        code = EXIT_SIGTERM if stopped.sigval == signal.SIGTERM else EXIT_SIGINT
        error = Interrupted(
            f"interrupted by {signal.Signals(stopped.sigval).name}; every rank was asked to save a "
            "checkpoint and stop",
            code,
        )
        error.hint = "rerun the same command to resume from the newest complete checkpoint"
        raise error from None
    return 0


def _effect_rank(exitcode: int) -> int:
    """Order failures of the same second from cause to effect: a rank killed by a signal (SIGKILL from
    the OOM killer, SIGSEGV) first, then an error exit (often "peer gone"), then the SIGTERM/SIGINT
    with which the agent stopped the survivors."""
    stopped = (-signal.SIGTERM, -signal.SIGINT, EXIT_SIGTERM, EXIT_SIGINT)
    return 2 if exitcode in stopped else 0 if exitcode < 0 else 1


def _report_failure(failures: dict) -> int:
    """Log which rank failed first and how; return the exit code the whole command ends with."""
    rank = min(failures, key=lambda r: (failures[r].timestamp, _effect_rank(failures[r].exitcode), r))
    failure = failures[rank]
    if failure.exitcode < 0:
        how = f"was killed by {failure.signal_name()}"
    else:
        how = f"exited with code {failure.exitcode}"
    others = sorted(set(failures) - {rank})
    log.error(
        "rank %d (local rank %d, pid %d) %s; %s",
        rank,
        failure.local_rank,
        failure.pid,
        how,
        f"ranks {others} failed too" if others else "the other ranks were stopped",
    )
    if failure.exitcode in (EXIT_USAGE, EXIT_INPUT, EXIT_SIGINT, EXIT_SIGTERM):
        return failure.exitcode  # the rank printed its own message (config, input, interrupted)
    log.error(
        "its log lines above start with [rank %d]; rerun the same command to resume from "
        "the last complete checkpoint",
        rank,
    )
    return EXIT_UNEXPECTED


def check_world_size() -> None:
    """Refuse to run with a world size other than the one asked for.

    `accelerate launch --num_processes 2` on a CPU-only machine starts a single process with no
    distributed environment at all; we look at the launcher's own command line to notice that.
    """
    requested = os.environ.get("HFLLM_REQUESTED_WORLD_SIZE") or _accelerate_requested()
    if requested and int(requested) != world_size():
        raise ConfigError(
            f"asked for {requested} processes but this run has world size {world_size()}",
            "without GPUs `accelerate launch` needs --multi_gpu to start N processes (gloo is used); or use "
            "`hfllm pretrain --num-processes N`, or `torchrun --nproc_per_node N -m hfllm ...`",
        )


def check_launch(training: dict) -> None:
    """Refuse a run whose world size, machine or launcher cannot do what its config asks (ConfigError)."""
    from hfllm.config.distributed import check_runtime

    check_world_size()
    check_runtime(training)


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
    needs_launcher: bool = False,
    num_machines: int = 1,
    machine_rank: int = 0,
    main_process_ip: str | None = None,
    main_process_port: int | None = None,
) -> int | None:
    """Return torchrun's exit code when this command must run under torchrun, else None.

    That is on several processes or machines, or when `needs_launcher` (FSDP runs only in a
    distributed process group, even on one GPU).
    """
    if in_worker() or ((num_processes or 1) <= 1 and num_machines <= 1 and not needs_launcher):
        return None
    return relaunch(
        num_processes or 1,
        num_machines=num_machines,
        machine_rank=machine_rank,
        main_process_ip=main_process_ip,
        main_process_port=main_process_port,
    )
