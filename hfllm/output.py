"""The output contract: data (JSON) on stdout, logs and progress on stderr."""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

log = logging.getLogger("hfllm")


def emit(result: dict[str, Any]) -> None:
    """Print one JSON object on stdout (the only thing a run prints there)."""
    sys.stdout.write(json.dumps(result, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def rank_prefix() -> str:
    """Return "[rank N] " when this process is one of several, else ""."""
    rank = os.environ.get("RANK")
    return f"[rank {rank}] " if rank is not None and os.environ.get("WORLD_SIZE", "1") != "1" else ""


def setup_logging(quiet: bool = False, debug: bool = False) -> None:
    """Send hfllm's log lines to stderr, with the process rank when there is more than one."""
    prefix = rank_prefix()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{prefix}hfllm: %(message)s"))
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)
    if quiet:
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("TQDM_DISABLE", "1")
