"""Fast fault tests of training (issue 8), in-process on a tiny BERT: NaN loss, disk full, out of memory,
exact resume and checkpoint rotation (a sequence's masks: test_mlm_collator.py)."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_pretrain import corpus_lines, group_texts, train_wordpiece

from hfllm.errors import HfllmError
from hfllm.train.checkpoints import TMP_PREFIX, complete_checkpoints

MASKING = SimpleNamespace(
    mlm_probability=0.15, whole_word_mask=False, mask_replace_prob=0.8, random_replace_prob=0.1
)


@pytest.fixture(scope="module")
def tiny():
    """A WordPiece tokenizer and 40 train blocks of 32 tokens (5 steps per epoch at batch 8)."""
    from datasets import Dataset

    lines = corpus_lines(120)
    tokenizer = train_wordpiece(lines, vocab_size=300)
    data = Dataset.from_dict(group_texts(tokenizer, lines, 32)).select(range(40))
    return tokenizer, data


def make_trainer(tiny, out: Path, **settings):
    """Return (trainer, run dir) for a fresh 2-layer, 32-wide BERT trained with hfllm's Trainer."""
    from transformers import BertConfig, BertForMaskedLM, TrainingArguments, set_seed

    from hfllm.tasks.mlm_collator import make_mlm_collator
    from hfllm.train.callbacks import CollatorEpochCallback
    from hfllm.train.rundir import RunDir
    from hfllm.train.trainer import HfllmTrainer

    tokenizer, data = tiny
    set_seed(0)
    model = BertForMaskedLM(
        BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        )
    )
    run = RunDir(out)
    options = dict(
        output_dir=str(run.checkpoints),
        max_steps=6,
        per_device_train_batch_size=8,
        learning_rate=3e-3,
        save_steps=2,
        logging_steps=1,
        save_total_limit=None,
        use_cpu=True,
        report_to=[],
        disable_tqdm=True,
        remove_unused_columns=False,
        seed=0,
    )
    options.update(settings)
    collator = make_mlm_collator(tokenizer, MASKING, seed=0)
    trainer = HfllmTrainer(
        model=model,
        args=TrainingArguments(**options),
        train_dataset=data,
        data_collator=collator,
        callbacks=[CollatorEpochCallback(collator)],
    )
    return trainer, run


def run_training(trainer, run):
    from hfllm.train.trainer import train

    return train(trainer, run)


def names(checkpoints: Path) -> list[str]:
    return sorted(p.name for p in checkpoints.iterdir()) if checkpoints.is_dir() else []


@pytest.mark.parametrize("every_step", [True, False], ids=["every-step", "on-flagged-steps"])
def test_nan_loss_stops_at_the_first_bad_step_and_keeps_the_last_good_checkpoint(
    tiny, tmp_path, monkeypatch, every_step
):
    import torch

    from hfllm.train.callbacks import NonFiniteLossCallback

    monkeypatch.setattr(NonFiniteLossCallback, "every_step", staticmethod(lambda args: every_step))
    trainer, run = make_trainer(tiny, tmp_path / "run", max_steps=8, logging_steps=5)

    def poison(module, args, output):  # the loss of step 3 (and, through the update, all later) is NaN
        if trainer.state.global_step == 2:
            output.loss = output.loss * torch.tensor(float("nan"))
        return output

    trainer.model.register_forward_hook(poison)
    with pytest.raises(HfllmError) as caught:
        run_training(trainer, run)
    message = str(caught.value)
    assert "NaN or infinite at step 3" in message and "checkpoint-2" in message
    # Step 3 is neither a logging nor a saving step: checked every step (CPU), training stops there; else
    # (as on a GPU) the record is read at step 4, about to save, and the save is skipped.
    assert trainer.state.global_step == (3 if every_step else 4)
    assert names(run.checkpoints) == ["checkpoint-2"]
    state = json.loads((run.checkpoints / "checkpoint-2" / "trainer_state.json").read_text())
    assert all(torch.isfinite(torch.tensor(e["loss"])) for e in state["log_history"] if "loss" in e)


def test_disk_full_during_a_save_removes_it_and_keeps_the_previous_checkpoint(tiny, tmp_path, monkeypatch):
    import torch

    trainer, run = make_trainer(tiny, tmp_path / "run")
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        if f"{TMP_PREFIX}4" in str(f):
            real_save(obj, f, *args, **kwargs)  # a file half written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(HfllmError) as caught:
        run_training(trainer, run)
    message = str(caught.value)
    assert "no space left on the device while saving checkpoint-4" in message
    assert f"{TMP_PREFIX}4" in message and "save_total_limit" in message
    assert "checkpoint-2 is intact" in message
    assert names(run.checkpoints) == ["checkpoint-2"]  # the partial save is gone
    assert complete_checkpoints(run.checkpoints) == [run.checkpoints / "checkpoint-2"]


def test_out_of_memory_suggests_settings_that_keep_the_global_batch(tiny, tmp_path, monkeypatch):
    import torch

    trainer, run = make_trainer(tiny, tmp_path / "run", per_device_train_batch_size=32)

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(trainer.model, "forward", oom)
    with pytest.raises(HfllmError) as caught:
        run_training(trainer, run)
    message = str(caught.value)
    assert "out of memory during training" in message and "global batch 32" in message
    assert "training.per_device_train_batch_size=16" in message
    assert "training.gradient_accumulation_steps=2" in message
    assert "training.activation_checkpointing=true" in message
    assert caught.value.exit_code == 1
    with pytest.raises(HfllmError, match="per_device_eval_batch_size=4"):
        trainer.evaluate(eval_dataset=tiny[1])


def test_out_of_memory_advice_for_odd_and_minimal_batches():
    from hfllm.train.trainer import out_of_memory_error

    def args(size, accumulation, checkpointing=False):
        return SimpleNamespace(
            per_device_train_batch_size=size,
            gradient_accumulation_steps=accumulation,
            activation_checkpointing=checkpointing,
            world_size=2,
        )

    text = str(out_of_memory_error(args(12, 3), "training"))
    assert "global batch 72" in text and "batch_size=6 " in text and "accumulation_steps=6 " in text
    assert "batch_size=1 --set training.gradient_accumulation_steps=14" in str(
        out_of_memory_error(args(7, 2), "training")
    )
    minimal = str(out_of_memory_error(args(1, 1, checkpointing=True), "training"))
    assert "per_device_train_batch_size=" not in minimal and "smaller model" in minimal


def test_resume_after_a_crash_is_bitwise_exact(tiny, tmp_path):
    """In-process variant of the slow SIGKILL test: crash after checkpoint-3 (mid-epoch 1), resume across
    the end of epoch 1 (5 steps) to step 6: per-step losses and weights equal the uninterrupted run's."""
    crash_and_resume(lambda out: make_trainer(tiny, out, max_steps=6, save_steps=3), run_training, tmp_path)


def crash_and_resume(make, train, tmp_path: Path):
    """Train `make(dir)` (a (trainer, run) pair saving every 3 steps to step 6) straight through, and
    again crashing right after checkpoint-3 is saved, then resumed from it; assert the losses of steps
    4-6 and the checkpoint-6 weights are bitwise equal. Return (straight, resumed) trainers."""
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from hfllm.train.rundir import RunDir

    straight, run = make(tmp_path / "straight")
    train(straight, run)

    class Crash(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            raise KeyboardInterrupt  # as abrupt as it gets in-process: nothing after the save runs

    crashed, run = make(tmp_path / "crashed")
    crashed.add_callback(Crash())
    with pytest.raises(KeyboardInterrupt):
        crashed.train()
    resumed, _ = make(tmp_path / "crashed")
    train(resumed, RunDir(run.path, resume_from=run.checkpoints / "checkpoint-3"))

    def losses(trainer):
        return {e["step"]: e["loss"] for e in trainer.state.log_history if "loss" in e}

    expected, got = losses(straight), losses(resumed)
    assert [got[s] for s in range(4, 7)] == [expected[s] for s in range(4, 7)]
    a = load_file(str(tmp_path / "straight" / "checkpoints" / "checkpoint-6" / "model.safetensors"))
    b = load_file(str(tmp_path / "crashed" / "checkpoints" / "checkpoint-6" / "model.safetensors"))
    assert all((a[k] == b[k]).all() for k in a)
    return straight, resumed


def test_training_workers_are_not_persistent_when_masks_depend_on_the_epoch(tiny, tmp_path):
    trainer, _ = make_trainer(tiny, tmp_path, dataloader_num_workers=2, dataloader_persistent_workers=True)
    assert trainer.get_train_dataloader().persistent_workers is False
    assert trainer.args.dataloader_persistent_workers is True  # evaluation keeps its workers
