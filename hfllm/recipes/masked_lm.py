"""`hfllm pretrain` as a library call: data dir -> masked-LM training -> run dir with model and metrics."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from hfllm.config import to_yaml
from hfllm.config.schemas.pretrain import PretrainConfig
from hfllm.config.training_args import build_training_arguments
from hfllm.data.datadir import DataDir, open_data_dir, tokenizer_fingerprint
from hfllm.output import log
from hfllm.train.rundir import (
    RunDir,
    check_resume_facts,
    planned_global_batch,
    prepare_run_dir,
    run_facts,
    stdout_to_stderr,
)

# Settings a resumed run may not change: the checkpoints were made with them.
RESUME_MUST_MATCH = (
    "data_dir",
    "model",
    "masking",
    "training.per_device_train_batch_size",
    "training.gradient_accumulation_steps",
    "training.seed",
)
COLUMNS = ("input_ids", "attention_mask", "special_tokens_mask", "token_type_ids")


def run_pretrain(
    config: PretrainConfig, resume: str = "auto", overwrite: bool = False, resume_force: bool = False
) -> dict[str, Any]:
    """Return the JSON summary of a pretraining run (or of the finished run already in output_dir).

    `resume_force`: resume even when the checkpoints were made with another tokenizer, model size,
    max_length, world size or RESUME_MUST_MATCH setting (warn instead of refusing)."""
    with stdout_to_stderr():
        # A finished run is reported before anything heavy is loaded: a rerun does no work.
        run = prepare_run_dir(
            Path(config.output_dir),
            resume,
            overwrite,
            to_yaml(config),
            RESUME_MUST_MATCH,
            start=False,
            force=resume_force,
        )
        if run.finished:
            log.info(
                "%s already holds a finished run; nothing to do (pass --overwrite to train again)", run.path
            )
            return summary(
                run, json.loads(run.metrics.read_text(encoding="utf-8")), status="already_finished"
            )
        data = open_data_dir(Path(config.data_dir))
        if run.resume_from is not None:
            log.info("resuming from %s", run.resume_from)
        return summary(run, _train(config, data, run, resume_force), status="finished")


def _train(config: PretrainConfig, data: DataDir, run: RunDir, resume_force: bool = False) -> dict[str, Any]:
    from transformers import set_seed

    from hfllm.launch import check_launch
    from hfllm.models.scratch import restore_dropout
    from hfllm.precision import apply_precision
    from hfllm.tasks.masked_lm import mlm_eval_outputs, mlm_loss, mlm_metrics
    from hfllm.tasks.mlm_collator import make_mlm_collator
    from hfllm.tasks.sparse_mlm import enable_sparse_head
    from hfllm.train.callbacks import CollatorEpochCallback
    from hfllm.train.export import full_state_dict
    from hfllm.train.trainer import HfllmTrainer, train

    check_launch(config.training)
    started = time.time()
    # The Trainer seeds itself only after the model exists; a new model's weights must be seeded too.
    set_seed(int(config.training.get("seed", 42)))
    splits, tokenizer, model, model_info = prepare_inputs(config, data)
    fingerprint = data.manifest.get("tokenizer", {}).get("fingerprint")
    facts = run_facts(
        fingerprint, model_info["max_length"], model.config, planned_global_batch(config.training)
    )
    check_resume_facts(run, facts, resume_force)
    run.start()  # the inputs passed their checks: now the run dir may change
    has_eval = "validation" in splits and len(splits["validation"]) > 0
    settings, precision = apply_precision(training_settings(config, run, has_eval), model.config)
    args = build_training_arguments(settings, "training")
    model_info["precision"] = precision.path
    collator = make_mlm_collator(tokenizer, config.masking, _masking_seed(config))
    trainer = HfllmTrainer(
        model=model,
        args=args,
        train_dataset=splits["train"],
        eval_dataset=splits["validation"] if has_eval else None,
        data_collator=collator,
        processing_class=tokenizer,
        compute_loss_func=mlm_loss,
        compute_metrics=mlm_metrics,
        preprocess_logits_for_metrics=mlm_eval_outputs,
        callbacks=[CollatorEpochCallback(collator)],
    )
    enable_sparse_head(trainer)
    tokens_before = tokens_seen_at(run.resume_from)
    output = train(trainer, run)
    with stdout_to_stderr():
        final_eval = trainer.evaluate() if has_eval else {}
    metrics = collect_metrics(
        config, trainer, output, final_eval, splits, tokenizer, model_info, started, tokens_before
    )
    if not config.model.name_or_path:
        restore_dropout(model.config, config.model.config)  # fine-tuning gets the usual dropout
    state_dict = full_state_dict(trainer)  # every rank takes part under FSDP / DeepSpeed
    if trainer.is_world_process_zero():
        write_outputs(config, data, run, trainer, tokenizer, metrics, state_dict)
    return metrics


def tokens_seen_at(checkpoint: Path | None) -> int:
    """Return the tokens seen before `checkpoint` was saved (0 for a fresh run)."""
    if checkpoint is None:
        return 0
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))
    return int(state.get("num_input_tokens_seen") or 0)


def prepare_inputs(config: PretrainConfig, data: DataDir):
    """Return (splits, tokenizer, model, model info) after every preflight check passed."""
    from hfllm.models.builders import build_new_model, count_parameters, load_pretrained, position_offset
    from hfllm.models.preflight import (
        check_fits_model,
        check_splits,
        check_tokenizer_match,
        column_stats,
        load_splits,
    )
    from hfllm.models.scratch import without_dropout

    splits = load_splits(data)
    check_splits(splits, str(data.path))
    splits = {
        name: s.select_columns([c for c in COLUMNS if c in s.column_names]) for name, s in splits.items()
    }
    tokenizer = data.load_tokenizer()
    if tokenizer.mask_token is None:
        from hfllm.errors import InputError

        raise InputError(
            f"{data.tokenizer_path}: the tokenizer has no mask token; masked-LM pretraining needs one"
        )
    max_length = int(data.manifest.get("max_length") or column_stats(splits["train"])["max_length"])
    if config.model.name_or_path:
        model, model_tokenizer = load_pretrained(
            config.model.name_or_path, config.model.trust_remote_code, config.model.allow_pickle
        )
        check_tokenizer_match(
            tokenizer_fingerprint(model_tokenizer),
            data.manifest.get("tokenizer", {}).get("fingerprint"),
            config.model.name_or_path,
            str(data.path),
        )
        if config.model.config:
            log.warning("model.config is ignored when model.name_or_path is set")
    else:
        overrides = without_dropout(config.model.type, config.model.config)
        model = build_new_model(config.model.type, overrides, tokenizer, max_length)
        if config.model.output_bias_init == "unigram":
            _unigram_bias(model, splits["train"], tokenizer)
    positions = getattr(model.config, "max_position_embeddings", None)
    usable = positions - position_offset(model.config) if positions else None
    check_fits_model(splits, model.get_input_embeddings().num_embeddings, usable, str(data.path))
    info = {**count_parameters(model), "model_type": model.config.model_type, "max_length": max_length}
    info.update(hidden_size=model.config.hidden_size, num_hidden_layers=model.config.num_hidden_layers)
    log.info(
        "model: %s, %.2fM parameters (%.2fM outside embeddings)",
        info["model_type"],
        info["parameters"] / 1e6,
        info["non_embedding_parameters"] / 1e6,
    )
    return splits, tokenizer, model, info


def _unigram_bias(model: Any, train: Any, tokenizer: Any) -> None:
    from hfllm.models.builders import init_output_bias
    from hfllm.tasks.masked_lm import unigram_log_probs

    log_probs = unigram_log_probs(train, model.config.vocab_size, tokenizer.all_special_ids)
    if init_output_bias(model, log_probs):
        log.info("output bias set to the train split's log token frequencies")
    else:
        log.warning("model.output_bias_init: unigram: this model has no output bias; left as it is")


def training_settings(config: PretrainConfig, run: RunDir, has_eval: bool) -> dict[str, Any]:
    """Return the TrainingArguments settings: the config's, with the paths and columns hfllm owns."""
    # YAML reads a bare `no` as false: `eval_strategy: no` means the strategy "no".
    settings = {k: "no" if k.endswith("_strategy") and v is False else v for k, v in config.training.items()}
    if settings.get("output_dir") not in (None, str(run.checkpoints)):
        log.warning("training.output_dir is ignored: checkpoints go to %s", run.checkpoints)
    # The collator needs special_tokens_mask, which no model's forward() takes; columns are chosen above.
    settings.update(output_dir=str(run.checkpoints), remove_unused_columns=False)
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(run.tensorboard)
    if not has_eval:
        log.warning("the data dir has no validation split: no evaluation, best-model selection is off")
        settings.update(eval_strategy="no", eval_on_start=False, load_best_model_at_end=False)
    return settings


def _masking_seed(config: PretrainConfig) -> int:
    return config.masking.seed if config.masking.seed is not None else int(config.training.get("seed", 42))


def collect_metrics(
    config, trainer, output, final_eval, splits, tokenizer, model_info, started, tokens_before
):
    """Return metrics.json's content: losses, perplexities, accuracy, throughput, sizes."""
    from hfllm.tasks.masked_lm import eval_loss, perplexity, unigram_perplexity
    from hfllm.train.trainer import global_batch_size

    state = trainer.state
    history = state.log_history
    train_losses = [e["loss"] for e in history if "loss" in e]
    # The final evaluate() of the kept model repeats the last step: keep the first eval per step.
    evals = list({e["step"]: e for e in reversed([e for e in history if "eval_loss" in e])}.values())[::-1]
    runtime = float(output.metrics.get("train_runtime", 0.0)) or 1e-9
    tokens_this_run = state.num_input_tokens_seen - tokens_before
    metrics: dict[str, Any] = {
        "global_step": state.global_step,
        "epoch": state.epoch,
        "train_loss": train_losses[-1] if train_losses else None,
        "train_loss_mean": output.metrics.get("train_loss"),
        "eval_loss": eval_loss(final_eval),
        "perplexity": perplexity(eval_loss(final_eval)),
        "masked_accuracy": final_eval.get("eval_masked_accuracy"),
        "eval_loss_at_start": eval_loss(evals[0]) if evals and evals[0].get("step") == 0 else None,
        "best_checkpoint": state.best_model_checkpoint,
        "tokens_seen": state.num_input_tokens_seen,
        "tokens_per_second": tokens_this_run / runtime,
        "train_runtime_s": runtime,
        "wall_time_s": time.time() - started,
        "global_batch_size": global_batch_size(trainer.args),
        "world_size": trainer.args.world_size,
        **model_info,
    }
    if "validation" in splits and len(splits["validation"]):
        metrics["unigram_perplexity"] = unigram_perplexity(
            splits["train"], splits["validation"], len(tokenizer), tokenizer.all_special_ids
        )
    metrics["eval_history"] = [
        {
            "step": e["step"],
            "eval_loss": eval_loss(e),
            "perplexity": perplexity(eval_loss(e)),
            "masked_accuracy": e.get("eval_masked_accuracy"),
        }
        for e in evals
    ]
    return metrics


def write_outputs(config, data, run, trainer, tokenizer, metrics, state_dict=None) -> None:
    """Write model/ (with its card), metrics.json and loss.png; metrics.json last marks the run finished."""
    from hfllm.train.export import export_model, model_card, plot_losses, write_metrics

    base = config.model.name_or_path or f"a new {config.model.type} model"
    card = model_card(
        title=f"{Path(config.output_dir).name}: masked language model",
        summary=f"Pretrained with `hfllm pretrain` (masked LM, mlm_probability {config.masking.mlm_probability}) "
        f"from {base} on the data dir `{config.data_dir}`.",
        data={
            "data_dir": config.data_dir,
            **{k: v for k, v in data.manifest.items() if k in ("counts", "mode", "max_length", "tokenizer")},
        },
        config_yaml=to_yaml(config),
        metrics={k: v for k, v in metrics.items() if k != "eval_history"},
    )
    export_model(trainer.model, tokenizer, run.model, card, state_dict)
    unigram = metrics.get("unigram_perplexity")
    baselines = {"unigram baseline (validation)": math.log(unigram)} if unigram and unigram > 0 else None
    plot_losses(trainer.state.log_history, run.loss_plot, f"{run.path.name}: masked-LM loss", baselines)
    write_metrics(run.metrics, metrics)


def summary(run: RunDir, metrics: dict[str, Any], status: str) -> dict[str, Any]:
    """Return the one JSON object `hfllm pretrain` prints."""
    keys = (
        "global_step",
        "eval_loss",
        "perplexity",
        "masked_accuracy",
        "unigram_perplexity",
        "train_loss",
        "tokens_seen",
        "tokens_per_second",
        "train_runtime_s",
        "wall_time_s",
        "global_batch_size",
        "parameters",
    )
    return {
        "status": status,
        "output_dir": str(run.path),
        "model_dir": str(run.model),
        "metrics": str(run.metrics),
        "resumed_from": str(run.resume_from) if run.resume_from else None,
        **{key: metrics.get(key) for key in keys},
    }
