"""How the CPU threads of an inference command wait: asleep, not spinning, unless the user chose.

Why: torch's CPU kernels run on GNU OpenMP threads, which spin (busy-wait) between parallel regions.
On a CPU shared with other jobs a spinning thread burns the core that another thread of the same
matmul needs, and every small op waits for the descheduled one. Measured on a 2-core CPU at load
average 3.5 to 5 (docs/speed.md): `hfllm predict` on 3,373 lines took 50 to 53 s with spinning
threads, 18 to 19 s with OMP_WAIT_POLICY=PASSIVE (2 threads) and 17 to 18 s with one thread. A
sleeping thread costs a wake-up (microseconds) per parallel region: a few per cent of an inference
batch on an idle CPU. Training is left alone: its steps run many more, smaller regions.
"""

from __future__ import annotations

import os
import sys

# Any of these set by the user (or a launcher) is their choice, kept as it is.
OPENMP_WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def sleep_while_waiting() -> bool:
    """Set OMP_WAIT_POLICY=PASSIVE for this process; return whether it was set.

    Only before torch is imported (OpenMP reads it when torch loads it) and only when the environment
    sets none of OPENMP_WAIT_SETTINGS.
    """
    if "torch" in sys.modules or any(name in os.environ for name in OPENMP_WAIT_SETTINGS):
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True
