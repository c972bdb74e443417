"""`--num-processes N` for the training commands: the shared launcher in `hfllm.launch`, re-exported."""

from __future__ import annotations

from hfllm.launch import check_world_size, in_worker, relaunch

__all__ = ["check_world_size", "in_worker", "relaunch"]
