"""The torchrun command line that --num-processes / --num-machines build."""

from __future__ import annotations

import sys

import pytest

from hfllm.errors import ConfigError
from hfllm.launch import launch_if_asked, strip_launch_options, torchrun_command


def test_strip_launch_options_both_forms():
    argv = ["pretrain", "--config", "c.yaml", "--num-processes", "2", "--num-machines=2", "--set", "a=1"]
    assert strip_launch_options(argv) == ["pretrain", "--config", "c.yaml", "--set", "a=1"]


def test_single_machine_is_standalone():
    cmd = torchrun_command(["pretrain", "--num-processes", "4", "-c", "x.yaml"], 4)
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc_per_node=4" in cmd and "--standalone" in cmd
    assert cmd[-5:] == ["-m", "hfllm", "pretrain", "-c", "x.yaml"]


def test_two_machines_pass_rendezvous_flags():
    cmd = torchrun_command(["finetune"], 8, num_machines=2, machine_rank=1, main_process_ip="10.0.0.1")
    assert {"--nnodes=2", "--node_rank=1", "--master_addr=10.0.0.1", "--master_port=29500"} <= set(cmd)
    assert "--standalone" not in cmd
    with pytest.raises(ConfigError, match="--main-process-ip"):
        torchrun_command(["finetune"], 8, num_machines=2)


def test_one_process_runs_in_place(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert launch_if_asked(None) is None and launch_if_asked(1) is None
