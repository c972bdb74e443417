#!/usr/bin/env bash
# One-GPU check, at most 5 minutes: the speed levers of issue 15 (sparse masked-LM head, no dropout, bf16,
# SDPA) on BERT-base at sequence length 512 against the plain Trainer script, and an FSDP run (torchrun, one
# process) of a BERT-base-sized model on the bundled sample corpus. Prints one JSON object per run,
# then a summary with tokens/s and MFU (measured and nominal bf16 peak). Details: bench/gpu_check.py.
#   bash bench/gpu_check.sh [--steps 100] [--batch 32]
#   PYTHON=/path/to/venv/bin/python bash bench/gpu_check.sh    # default: python3; no `pip install -e .` needed
# Exit 0: no run failed (a run may be skipped, with its reason); 1: a run failed; 2: no GPU or a missing package.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
    echo "gpu_check: no Python interpreter '$python' (set PYTHON=/path/to/python)" >&2
    exit 2
fi
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1
exec "$python" "$repo/bench/gpu_check.py" "$@"
