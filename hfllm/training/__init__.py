"""Training library shared by `pretrain` and `finetune`.

- `run`: the run dir (config.yaml, checkpoints/, model/, metrics.json, loss.png, tensorboard/) and
  the resume decision (`prepare_run_dir`).
- `checkpoints`: atomic checkpoints (`AtomicCheckpointMixin`, `complete_checkpoints`, `rotate_checkpoints`).
- `callbacks`: Trainer callbacks (masking epoch, non-finite loss).
- `signals`: SIGINT/SIGTERM during training: save a checkpoint, exit 130/143.
- `loop`: `build_trainer_class`, `train` (runs Trainer.train with resume and stdout kept clean).
- `export`: `export_model` (safetensors + tokenizer + model card), `write_metrics`, `plot_losses`.
"""
