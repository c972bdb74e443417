"""The one training runner: every training command (pretrain, finetune) is a recipe run through here.

The order of a run, owned here and nowhere else:
  run dir (ownership, lock, finished / resume / fresh) -> launch and world-size checks -> seed ->
  recipe.setup (load and preflight; nothing written yet) -> resume facts -> TrainingArguments ->
  run.start (now the dir may change) -> train -> evaluate every split -> export -> result JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from hfllm.config import to_yaml
from hfllm.models.adapters import adapter_facts
from hfllm.output import log
from hfllm.train.facts import check_resume_facts, planned_global_batch, run_facts
from hfllm.train.recipe import Inputs, Recipe
from hfllm.train.rundir import RunDir, prepare_run_dir, stdout_to_stderr

SPLITS = ("train", "validation", "test")


def run(
    config: Any,
    resume: str = "auto",
    overwrite: bool = False,
    resume_force: bool = False,
    callbacks: tuple[Any, ...] = (),
    recipe: Recipe | None = None,
) -> dict[str, Any]:
    """Return the result JSON of training `config` (or of the finished run already in its output dir).

    `recipe`: default, the one the config asks for (hfllm.recipes.recipe_for).

    `resume_force`: resume even when the checkpoints were made with another tokenizer, model size,
    max_length, label set, world size or `recipe.must_match` setting (warn instead of refusing).
    `callbacks`: extra TrainerCallbacks (e.g. a sweep's pruning).
    """
    from hfllm.recipes import recipe_for
    from hfllm.train import hub_push

    started = time.time()
    recipe = recipe or recipe_for(config)
    with stdout_to_stderr():
        rundir = open_run(recipe, config, resume, overwrite, resume_force)
        try:
            if rundir.finished:
                log.info("%s already holds this finished run; nothing to do", rundir.path)
                push_if_pending(config, rundir)  # an upload that failed last time is retried
                return result(rundir, read_metrics(rundir), "already_finished", started)
            hub_push.check_push(config)  # offline or no token: refused before any training
            if rundir.resume_from is not None:
                log.info("resuming from %s", rundir.resume_from)
            metrics = _train(recipe, config, rundir, resume_force, callbacks, started)
            push_if_pending(config, rundir)
            return result(rundir, metrics, "finished", started)
        finally:
            rundir.close()


def push_if_pending(config: Any, rundir: RunDir) -> None:
    """Upload the finished model/ (rank 0, once) when training.push_to_hub asks and it is not yet pushed."""
    from hfllm.launch import is_main_process
    from hfllm.train import hub_push

    if is_main_process() and hub_push.pending(config, rundir.path):
        hub_push.check_push(config)
        hub_push.push_model(config, rundir.path, rundir.model)


def open_run(recipe: Recipe, config: Any, resume: str, overwrite: bool, resume_force: bool) -> RunDir:
    """Return the prepared, locked run dir of `config` (nothing written yet)."""
    return prepare_run_dir(
        Path(config.output_dir),
        resume,
        overwrite,
        to_yaml(config),
        recipe.must_match,
        start=False,
        force=resume_force,
        command=recipe.command,
        recipe=recipe.name,
        reads=tuple(Path(p) for p in recipe.reads(config)),
        lock=True,
    )


def _train(recipe, config, rundir: RunDir, resume_force: bool, callbacks, started: float) -> dict[str, Any]:
    from transformers import set_seed

    from hfllm.config.training_args import build_training_arguments
    from hfllm.launch import check_launch
    from hfllm.train.progress import use_progress
    from hfllm.train.trainer import HfllmTrainer, train

    check_launch(config.training)
    # The Trainer seeds itself only once the model exists; new weights (a model, a head) must be seeded too.
    set_seed(int(config.training.get("seed", 42)))
    inputs = recipe.setup(config)
    if getattr(config, "peft", None) is not None:  # every recipe's model trains an adapter the same way
        from hfllm.models.adapters import apply_peft

        inputs.model = apply_peft(inputs.model, config.peft, inputs.model_name)
    fingerprint = (inputs.data.manifest.get("tokenizer") or {}).get("fingerprint")
    facts = run_facts(
        fingerprint,
        inputs.max_length,
        inputs.model.config,
        planned_global_batch(config.training),
        **inputs.facts,
        peft=adapter_facts(inputs.model),
    )
    check_resume_facts(rundir, facts, resume_force)
    args = build_training_arguments(training_settings(recipe, config, inputs, rundir), "training")
    rundir.start()  # every check passed: now the run dir may change
    parts = recipe.trainer_parts(config, inputs)
    trainer = HfllmTrainer(
        model=inputs.model,
        args=args,
        train_dataset=inputs.splits["train"],
        eval_dataset=inputs.validation,
        processing_class=inputs.tokenizer,
        **{**parts, "callbacks": [*parts.get("callbacks", []), *callbacks]},
    )
    use_progress(trainer)  # bars on a terminal, step/rate/ETA log lines otherwise
    recipe.prepare_trainer(trainer, inputs)
    tokens_before = tokens_seen_at(rundir.resume_from)
    output = train(trainer, rundir)
    metrics = collect_metrics(recipe, trainer, inputs, output, tokens_before)
    metrics["seconds"] = round(time.time() - started, 2)
    export(recipe, config, rundir, trainer, inputs, metrics)
    return metrics


def training_settings(recipe: Recipe, config: Any, inputs: Inputs, rundir: RunDir) -> dict[str, Any]:
    """Return the TrainingArguments settings: the config's, with the paths hfllm owns and the recipe's own."""
    settings = dict(config.training)
    if settings.get("output_dir") not in (None, str(rundir.checkpoints)):
        log.warning("training.output_dir is ignored: checkpoints go to %s", rundir.checkpoints)
    settings["output_dir"] = str(rundir.checkpoints)
    # hfllm pushes the final model/ itself, once (hfllm.train.hub_push says why); the token stays out
    # of the Trainer, so it is in no checkpoint's training_args.bin.
    settings.update(push_to_hub=False, hub_token=None)
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(rundir.tensorboard)
    if inputs.validation is None:
        log.warning(
            "the data has no validation split: no evaluation during training, the last step is the model"
        )
        settings.update(eval_strategy="no", eval_on_start=False, load_best_model_at_end=False)
    return recipe.training_settings(config, inputs, settings)


def tokens_seen_at(checkpoint: Path | None) -> int:
    """Return the tokens seen before `checkpoint` was saved (0 for a fresh run)."""
    if checkpoint is None:
        return 0
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))
    return int(state.get("num_input_tokens_seen") or 0)


def collect_metrics(recipe: Recipe, trainer: Any, inputs: Inputs, output: Any, tokens_before: int) -> dict:
    """Return metrics.json's content: training figures, every split evaluated with the final model, sizes."""
    from transformers import EarlyStoppingCallback

    from hfllm.models.builders import count_parameters
    from hfllm.tasks.classification import clean
    from hfllm.train.trainer import global_batch_size

    state, args = trainer.state, trainer.args
    # The final evaluations are reports, not training decisions: early stopping must not watch them.
    trainer.remove_callback(EarlyStoppingCallback)
    metrics: dict[str, Any] = {
        "command": recipe.command,
        "recipe": recipe.name,
        "data_dir": str(inputs.data.path),
        "global_step": state.global_step,
        "epoch": state.epoch,
        "train": train_figures(state, output, tokens_before),
    }
    with stdout_to_stderr():
        for name in ("validation", "test"):
            split = inputs.splits.get(name)
            if split is not None and len(split):
                values = trainer.evaluate(eval_dataset=split, metric_key_prefix=name)
                values = {k.removeprefix(f"{name}_"): v for k, v in values.items()}
                metrics[name] = recipe.split_metrics(name, values, inputs)
    metrics["best_metric"] = {
        "name": args.metric_for_best_model,
        "value": state.best_metric,
        "checkpoint": state.best_model_checkpoint,
    }
    metrics["global_batch_size"] = global_batch_size(args)
    metrics["world_size"] = args.world_size
    model = inputs.model.config
    metrics["model"] = {
        **count_parameters(trainer.model),
        "model_type": model.model_type,
        "max_length": inputs.max_length,
        **{k: getattr(model, k) for k in ("hidden_size", "num_hidden_layers") if hasattr(model, k)},
    }
    if adapter_facts(trainer.model) is not None:
        metrics["peft"] = adapter_facts(trainer.model)
    metrics.update(inputs.info)
    metrics.update(recipe.extra_metrics(trainer, inputs, metrics))
    return clean(metrics)


def train_figures(state: Any, output: Any, tokens_before: int) -> dict[str, Any]:
    """Return the train split's figures: last and mean loss, throughput, tokens."""
    losses = [e["loss"] for e in state.log_history if "loss" in e]
    runtime = float(output.metrics.get("train_runtime", 0.0)) or 1e-9
    figures = {
        "loss": losses[-1] if losses else None,
        "loss_mean": output.metrics.get("train_loss"),
        "runtime_s": runtime,
        "samples_per_second": output.metrics.get("train_samples_per_second"),
    }
    if state.num_input_tokens_seen:
        figures["tokens_seen"] = state.num_input_tokens_seen
        figures["tokens_per_second"] = (state.num_input_tokens_seen - tokens_before) / runtime
    return figures


def export(recipe: Recipe, config: Any, rundir: RunDir, trainer: Any, inputs: Inputs, metrics: dict) -> None:
    """Write model/ (with its card), loss.png and metrics.json; metrics.json last marks the run finished."""
    import math

    from hfllm.data.cleaning import CLEANING_FILE, cleaning_record
    from hfllm.launch import is_main_process
    from hfllm.models.adapters import adapter_metrics, card_note
    from hfllm.train.export import export_model, full_state_dict, model_card, plot_losses, write_metrics

    state_dict = full_state_dict(trainer)  # every rank takes part under FSDP / DeepSpeed
    if not is_main_process():
        return
    card = recipe.card(config, inputs, metrics)
    adapter = adapter_facts(trainer.model) is not None
    if adapter:
        card = dataclasses.replace(card, summary=f"{card.summary}\n\n{card_note(trainer.model)}")
    split = "test" if metrics.get("test") else "validation"
    text = model_card(
        card,
        to_yaml(config),
        metrics.get(split) or {},
        split,
        name=rundir.path.resolve().name,
        base_model=inputs.base_model,
        data_dir=str(inputs.data.path),
        inputs=inputs.data.manifest.get("inputs"),
        license=getattr(config, "license", None),
        language=getattr(config, "language", None),
        library_name="peft" if adapter else "transformers",
    )
    recipe.before_export(inputs)
    record = cleaning_record(inputs.data.path, inputs.data.manifest)  # predict and generate repeat it
    files = {CLEANING_FILE: json.dumps(record, indent=2) + "\n"} if record else {}
    export_model(trainer.model, inputs.tokenizer, rundir.model, text, state_dict, files)
    if adapter:
        metrics["model"].update(adapter_metrics(trainer.model, rundir.model))
        log.info("adapter saved to %s: %d bytes", rundir.model, metrics["model"]["adapter_bytes"])
    unigram = (metrics.get("validation") or {}).get("unigram_perplexity")
    baselines = {"unigram baseline (validation)": math.log(unigram)} if unigram and unigram > 0 else None
    plot_losses(trainer.state.log_history, rundir.loss_plot, f"{rundir.path.name}: {card.title}", baselines)
    write_metrics(rundir.metrics, metrics)


def read_metrics(rundir: RunDir) -> dict[str, Any]:
    """Return a finished run's metrics.json."""
    return json.loads(rundir.metrics.read_text(encoding="utf-8"))


def result(rundir: RunDir, metrics: dict[str, Any], status: str, started: float) -> dict[str, Any]:
    """Return the one JSON object every training command prints: the same keys, fresh or already finished."""
    from hfllm.recipes import recipe_named

    recipe = recipe_named(metrics.get("recipe"))
    headline = recipe.headline if recipe else ()
    return {
        "status": status,
        "command": metrics.get("command"),
        "recipe": metrics.get("recipe"),
        "run_dir": str(rundir.path),
        "model_dir": str(rundir.model),
        "data_dir": metrics.get("data_dir"),
        "resumed_from": str(rundir.resume_from) if rundir.resume_from else None,
        "global_step": metrics.get("global_step"),
        "metrics": {
            name: {k: metrics[name][k] for k in headline if k in metrics[name]}
            for name in SPLITS
            if isinstance(metrics.get(name), dict)
        },
        "best_metric": metrics.get("best_metric"),
        "seconds": round(time.time() - started, 2),
    }


def run_command(
    command: str,
    config_path: Path | None,
    sets: list[str] | None,
    output_dir: Path | None,
    resume: str,
    overwrite: bool,
    resume_force: bool = False,
    **launch: Any,
) -> None:
    """Run a training command as the CLI does: load its config, pick its recipe, start the workers
    when several processes are asked for (or FSDP needs a launcher), and print rank 0's result."""
    from hfllm.config import load_config
    from hfllm.config.distributed import fsdp_enabled
    from hfllm.config.schemas import schema_for
    from hfllm.launch import in_worker, is_main_process
    from hfllm.output import emit
    from hfllm.recipes import recipe_for

    flags = {"output_dir": str(output_dir) if output_dir else None}
    config = load_config(schema_for(command), config_path, sets, flags=flags)
    recipe = recipe_for(config)
    processes = (launch.get("num_processes") or 1) * (launch.get("num_machines") or 1)
    needs_launcher = fsdp_enabled(config.training.get("fsdp"))
    if not in_worker() and (processes > 1 or needs_launcher):
        finished = launch_workers(recipe, config, resume, overwrite, resume_force, needs_launcher, launch)
        if finished is not None:
            emit(finished)
        return
    result_ = run(config, resume, overwrite, resume_force, recipe=recipe)
    if is_main_process():
        emit(result_)


def launch_workers(recipe, config, resume, overwrite, resume_force, needs_launcher, launch) -> dict | None:
    """Start the workers under torchrun while this process holds the run dir's lock; return the result
    of a run that is already finished (no workers needed), else None. Raise SystemExit on failure."""
    from hfllm.launch import launch_if_asked
    from hfllm.train import hub_push
    from hfllm.train.facts import check_world_size_before_launch
    from hfllm.train.rundir import LOCK_HELD_ENV

    started = time.time()
    rundir = open_run(recipe, config, resume, overwrite, resume_force)
    try:
        if rundir.finished:
            push_if_pending(config, rundir)
            return result(rundir, read_metrics(rundir), "already_finished", started)
        processes = (launch.get("num_processes") or 1) * (launch.get("num_machines") or 1)
        hub_push.check_push(config)
        # Refused here, once, rather than by every worker after it loaded everything.
        check_world_size_before_launch(Path(config.output_dir), resume, overwrite, resume_force, processes)
        os.environ[LOCK_HELD_ENV] = str(rundir.path.resolve())
        code = launch_if_asked(needs_launcher=needs_launcher, **launch)
    finally:
        rundir.close()
    if code:
        raise SystemExit(code)
    return None
