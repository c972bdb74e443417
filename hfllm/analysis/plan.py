"""What a training run will do, read from its config (or a model dir) and its data dir's manifest: the
model's config, batch and sequence sizes, precision, sharding, steps and evaluations. No weights are read.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hfllm.analysis.simulate import CAUSAL_LM, MASKED_LM, SEQUENCE, TOKEN
from hfllm.config.trackers import SPECIAL, tracker_names
from hfllm.errors import ConfigError, InputError

# Model dirs are sized as `hfllm finetune` would train them unless --batch-size / --max-length say otherwise.
MODEL_DIR_BATCH = 16
MODEL_DIR_MAX_LENGTH = 128
STRATEGIES = ("ddp", "zero1", "zero2", "zero3")


@dataclass
class Plan:
    """The facts inspect needs about one training run; `assumptions` lists every fact it had to guess."""

    source: str
    kind: str
    objective: str
    model_config: Any
    seq_len: int
    train_batch: int
    eval_batch: int | None
    accumulation: int = 1
    num_processes: int = 1
    precision: str = "fp32"
    precision_by_device: bool = False  # the recipe picks bf16 where the device runs it natively and it pays
    tf32: bool = False
    checkpointing: bool = False
    optimizer: str = "adamw_torch_fused"
    strategy: str = "ddp"
    max_steps: int = -1
    epochs: float = 1.0
    train_examples: int | None = None
    eval_examples: int | None = None
    eval_strategy: str = "no"
    eval_steps: float | None = None
    masked_share: float | None = None  # masked-LM pretraining: mlm_probability (the sparse head's rows)
    collate_seconds: float = 0.0  # per example, when the collator does real work (masked-LM masking)
    dataloader_workers: int = 0
    eval_on_start: bool = False
    trackers: list[str] = field(default_factory=list)  # training.report_to
    assumptions: list[str] = field(default_factory=list)

    @property
    def global_batch(self) -> int:
        return self.train_batch * self.accumulation * self.num_processes

    @property
    def steps(self) -> int | None:
        """Optimizer steps of the whole run (None when the train split's size is unknown)."""
        if self.max_steps > 0:
            return self.max_steps
        if self.train_examples is None:
            return None
        per_epoch = (
            math.ceil(self.train_examples / (self.train_batch * self.num_processes)) // self.accumulation
        )
        return max(1, math.ceil(per_epoch * self.epochs))


def plan_from_target(target: Path, sets: list[str] | None, num_processes: int) -> Plan:
    """Return the Plan of a config file (pretrain/finetune) or of a model dir (sized like a fine-tuning)."""
    if target.is_dir():
        if sets:
            raise ConfigError("--set applies to a config file; for a model dir use --batch-size/--max-length")
        return _plan_model_dir(target, num_processes)
    from hfllm.config import load_any

    config = load_any(target, sets)
    if config.kind == "pretrain":
        return _plan_pretrain(config, str(target), num_processes)
    if config.kind == "finetune":
        return _plan_finetune(config, str(target), num_processes)
    raise ConfigError(f"{target}: inspect sizes training runs; this is a `{config.kind}` config")


def _plan_pretrain(config: Any, source: str, num_processes: int) -> Plan:
    from hfllm.models.builders import position_offset

    notes: list[str] = []
    data = _manifest(Path(config.data_dir))
    tokenizer = None
    if config.model.name_or_path:
        model_config = _saved_config(config.model.name_or_path)
        seq_len = int(data["max_length"]) if data else _default_length(model_config, notes)
    elif data is not None:
        from hfllm.data.datadir import open_data_dir
        from hfllm.models.builders import new_model_config
        from hfllm.models.causal import new_causal_config

        tokenizer = open_data_dir(Path(config.data_dir), check_tokenizer=False).load_tokenizer()
        seq_len = int(data["max_length"])
        build = new_causal_config if config.objective == "causal" else new_model_config
        model_config = build(config.model.type, _new_model_overrides(config), tokenizer, seq_len)
    else:
        model_config = _new_config(config.model.type, _new_model_overrides(config))
        seq_len = model_config.max_position_embeddings - position_offset(model_config)
        notes.append(
            f"no data dir at {config.data_dir}: vocab_size {model_config.vocab_size} and special tokens are "
            f"{config.model.type}'s defaults, sequences {seq_len} tokens (max_position_embeddings)"
        )
    objective = _lm_objective(model_config)
    plan = _plan_training(
        source, "pretrain", objective, model_config, seq_len, config.training, num_processes
    )
    if objective == MASKED_LM:
        plan.masked_share = config.masking.mlm_probability
        plan.precision_by_device = "bf16" not in config.training and not config.training.get("fp16")
        if data is not None:
            _measure_masking(plan, config, tokenizer)
    _data_counts(plan, data, config.data_dir)
    plan.assumptions[:0] = notes
    return plan


def _plan_finetune(config: Any, source: str, num_processes: int) -> Plan:
    model_config = _saved_config(config.model.name_or_path)
    data_dir = Path(config.data.dir) if config.data.dir else Path(config.output_dir) / "data"
    data = _manifest(data_dir)
    seq_len = int(data["max_length"]) if data and data.get("max_length") else config.data.max_length
    objective = TOKEN if config.task == "token-classification" else SEQUENCE
    labels = len(data["label2id"]) if data and data.get("label2id") else None
    counts = None
    if labels is None and not config.data.dir:
        counts = _count_raw_files(config)
        labels = counts["labels"]
    if labels:
        model_config.num_labels = 1 if config.problem_type == "regression" else labels
    plan = _plan_training(
        source, "finetune", objective, model_config, seq_len, config.training, num_processes
    )
    if data is not None:
        _data_counts(plan, data, str(data_dir))
    elif counts is not None:
        plan.train_examples, plan.eval_examples = counts["train"], counts["validation"]
        plan.assumptions.append(
            f"split sizes estimated from {counts['rows']} rows in data.files and the split fractions; "
            f"every example counted at max_length {seq_len} (the longest a batch can be)"
        )
    return plan


def _plan_model_dir(path: Path, num_processes: int) -> Plan:
    model_config = _saved_config(str(path))
    objective = _objective_of_saved(model_config)
    training = {"per_device_train_batch_size": MODEL_DIR_BATCH, "per_device_eval_batch_size": 64}
    plan = _plan_training(
        str(path), "model", objective, model_config, MODEL_DIR_MAX_LENGTH, training, num_processes
    )
    plan.assumptions.append(
        f"a model dir has no training settings: sized as `hfllm finetune` trains it by default "
        f"(batch {MODEL_DIR_BATCH}, max_length {MODEL_DIR_MAX_LENGTH}, fp32, AdamW); change with "
        "--batch-size / --max-length"
    )
    return plan


def _plan_training(source, kind, objective, model_config, seq_len, training, num_processes) -> Plan:
    eval_strategy = str(training.get("eval_strategy") or "no")
    evaluates = eval_strategy not in ("no", "False", "false")
    plan = Plan(
        source=source,
        kind=kind,
        objective=objective,
        model_config=model_config,
        seq_len=int(seq_len),
        train_batch=int(training.get("per_device_train_batch_size") or 8),
        eval_batch=int(training.get("per_device_eval_batch_size") or 8) if evaluates else None,
        accumulation=int(training.get("gradient_accumulation_steps") or 1),
        num_processes=num_processes,
        precision="bf16" if training.get("bf16") else "fp16" if training.get("fp16") else "fp32",
        tf32=bool(training.get("tf32")),
        checkpointing=bool(
            training.get("activation_checkpointing") or training.get("gradient_checkpointing")
        ),
        optimizer=str(training.get("optim") or "adamw_torch_fused"),
        strategy=_strategy(training),
        max_steps=int(training.get("max_steps") or -1),
        epochs=float(training.get("num_train_epochs") or 1.0),
        eval_strategy=eval_strategy,
        eval_steps=float(training["eval_steps"]) if training.get("eval_steps") else None,
        eval_on_start=bool(training.get("eval_on_start")),
        dataloader_workers=int(training.get("dataloader_num_workers") or 0),
        trackers=[n for n in tracker_names(training.get("report_to")) if n not in SPECIAL],
    )
    return plan


def _measure_masking(plan: Plan, config: Any, tokenizer: Any = None, examples: int = 64) -> None:
    """Time the masked-LM collator on the first train examples: it hashes and masks each one in the
    training process (no dataloader workers), which is a visible share of a small model's step on a CPU.
    `tokenizer`: the data dir's, when the caller has loaded it already."""
    import time

    from hfllm.data.datadir import open_data_dir
    from hfllm.tasks.mlm_collator import make_mlm_collator

    data_dir = open_data_dir(Path(config.data_dir), check_tokenizer=False)
    train = data_dir.load_splits()["train"]
    rows = [train[i] for i in range(min(examples, len(train)))]
    if not rows:
        return
    collator = make_mlm_collator(tokenizer or data_dir.load_tokenizer(), config.masking, 0)
    collator(rows[:4])  # first call: imports and caches
    start = time.perf_counter()
    collator(rows)
    plan.collate_seconds = (time.perf_counter() - start) / len(rows)
    where = (
        "in the training process"
        if plan.dataloader_workers == 0
        else f"in {plan.dataloader_workers} dataloader workers, assumed hidden behind the steps"
    )
    plan.assumptions.append(
        f"masking: {plan.collate_seconds * 1e3:.3f} ms per example, timed on {len(rows)} train examples "
        f"({where})"
    )


def count_evaluations(plan: Plan) -> int:
    """Return how many evaluations the run makes (its schedule, the one at the start, and the final one)."""
    steps = plan.steps
    if plan.eval_batch is None or steps is None:
        return 0
    if plan.eval_strategy == "epoch":
        scheduled = max(1, math.ceil(plan.epochs))
    else:
        every = plan.eval_steps or 500.0
        interval = every * steps if every < 1 else every  # a float below 1 is a share of the run
        scheduled = int(steps // max(1.0, interval))
    return scheduled + int(plan.eval_on_start) + 1


def _data_counts(plan: Plan, manifest: dict[str, Any] | None, where: str) -> None:
    if manifest is None:
        if plan.max_steps <= 0:
            plan.assumptions.append(f"no manifest in {where}: the run's length in epochs is unknown")
        return
    splits = manifest.get("splits") or manifest.get("counts", {}).get("splits") or {}
    plan.train_examples = splits.get("train")
    plan.eval_examples = splits.get("validation") if plan.eval_batch else None


def _manifest(path: Path) -> dict[str, Any] | None:
    file = path / "manifest.json"
    if not file.is_file():
        return None
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{file}: unreadable manifest ({exc})", "rerun `hfllm preprocess --force`") from None
    return manifest if isinstance(manifest, dict) else None


def _new_config(model_type: str, overrides: dict[str, Any]) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.for_model(model_type, **overrides)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"model.type {model_type!r} / model.config: {exc}") from None


def _saved_config(name_or_path: str) -> Any:
    from transformers import AutoConfig

    from hfllm.models.loader import resolve

    path = Path(resolve(name_or_path).location).expanduser()
    if not (path / "config.json").is_file():
        raise InputError(
            f"{path}: no config.json; inspect reads a local model dir's config (no weights, no Hub)",
            "give a model dir written by `hfllm pretrain` or `hfllm finetune`",
        )
    try:
        return AutoConfig.from_pretrained(str(path))
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{path / 'config.json'}: cannot read the model config: {exc}") from None


def _default_length(model_config: Any, notes: list[str]) -> int:
    length = int(getattr(model_config, "max_position_embeddings", 512) or 512)
    notes.append(f"no data dir: sequences assumed {length} tokens (max_position_embeddings)")
    return length


def _new_model_overrides(config: Any) -> dict[str, Any]:
    """Return model.config as the masked-LM recipe builds a new model: dropout off (docs/speed.md)."""
    from hfllm.models.causal import model_type_table
    from hfllm.models.scratch import dropout_turned_off

    overrides = dict(config.model.config)
    if config.objective == "causal" or config.model.type not in model_type_table("masked"):
        return overrides
    return {**overrides, **dict.fromkeys(dropout_turned_off(config.model.type, overrides), 0.0)}


def _lm_objective(model_config: Any) -> str:
    from hfllm.models.causal import model_type_table

    return MASKED_LM if model_config.model_type in model_type_table("masked") else CAUSAL_LM


def _objective_of_saved(model_config: Any) -> str:
    for arch in getattr(model_config, "architectures", None) or []:
        for suffix, objective in (
            ("ForSequenceClassification", SEQUENCE),
            ("ForTokenClassification", TOKEN),
            ("ForCausalLM", CAUSAL_LM),
            ("LMHeadModel", CAUSAL_LM),
            ("ForMaskedLM", MASKED_LM),
            ("ForPreTraining", MASKED_LM),
        ):
            if arch.endswith(suffix):
                return objective
    return _lm_objective(model_config)


def _strategy(training: dict[str, Any]) -> str:
    """Return the sharding the training settings ask for: ddp (none) or a ZeRO stage (FSDP mapped to one)."""
    from hfllm.config.distributed import fsdp_enabled, read_json_object

    if training.get("deepspeed"):
        setting = training["deepspeed"]
        ds = (
            setting
            if isinstance(setting, dict)
            else read_json_object(str(setting), "training.deepspeed", "config")
        )
        stage = int((ds.get("zero_optimization") or {}).get("stage") or 0)
        return STRATEGIES[min(stage, 3)]
    fsdp = training.get("fsdp")
    if fsdp_enabled(fsdp):
        options = fsdp.split() if isinstance(fsdp, str) else fsdp if isinstance(fsdp, list) else []
        reshard = (training.get("fsdp_config") or {}).get("reshard_after_forward", True)
        return "zero2" if "shard_grad_op" in options or reshard is False else "zero3"
    return "ddp"


def _count_raw_files(config: Any) -> dict[str, int]:
    """Return rows, distinct labels and the expected split sizes of a finetune config's raw files."""
    from hfllm.config import validate_config
    from hfllm.config.schemas.preprocess import PreprocessConfig
    from hfllm.data.labelled import preprocess_config
    from hfllm.data.readers import iter_records
    from hfllm.data.sources import resolve_sources

    mapping = preprocess_config(config, config.model.name_or_path, Path(config.output_dir) / "data")
    pre = validate_config(PreprocessConfig, mapping, {}, "finetune data.files")
    rows, labels = 0, set()
    for source in resolve_sources(pre.data):
        for _, record, _ in iter_records(source, pre.data):
            rows += 1
            value = record.get(config.data.label_column)
            labels.update(map(str, value) if isinstance(value, list) else [str(value)])
    validation = round(rows * pre.split.validation)
    test = round(rows * pre.split.test)
    return {"rows": rows, "labels": len(labels), "train": rows - validation - test, "validation": validation}
