"""Fine-tuning: supervised data checks, the task heads, and the `hfllm finetune` run."""
