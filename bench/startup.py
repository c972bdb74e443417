"""Start-up cost of the CLI: median wall time of `hfllm --help` against a bare interpreter, as JSON.

Usage: python bench/startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def median_wall(argv: list[str], runs: int) -> float:
    """Return the median wall time in seconds of running `argv` `runs` times."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    script = str(Path(sys.executable).parent / "hfllm")
    result = {
        "bench": "startup",
        "runs": args.runs,
        "baseline_python_s": round(median_wall([sys.executable, "-c", "pass"], args.runs), 4),
        "hfllm_help_s": round(median_wall([script, "--help"], args.runs), 4),
        "hfllm_config_help_s": round(median_wall([script, "config", "--help"], args.runs), 4),
        "import_transformers_s": round(
            median_wall([sys.executable, "-c", "import transformers.trainer"], 3), 4
        ),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
