"""What a training recipe supplies to the runner: the hooks where masked-LM pretraining, classification
fine-tuning and the next recipes differ. Everything else (run dir, launch checks, seeding, resume
facts, the train -> evaluate -> export order, signals, the result JSON) is the runner's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Inputs:
    """What a recipe's `setup` loaded and checked: the model, its tokenizer and the data it trains on."""

    model: Any
    tokenizer: Any
    data: Any  # hfllm.data.datadir.DataDir
    splits: dict[str, Any]  # train, and validation / test when the data has them
    model_name: str  # where the model came from, for the card and messages
    max_length: int | None = None
    # The model the run starts from (a dir, `package:NAME` or a Hub id); None from scratch. The card's
    # `base_model` (a Hub id only; the card's text names a local dir).
    base_model: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)  # extra run facts a resume must keep (labels...)
    info: dict[str, Any] = field(default_factory=dict)  # recipe facts for metrics.json (problem_type...)

    @property
    def validation(self) -> Any:
        """Return the validation split, or None when the data has none (or it is empty)."""
        split = self.splits.get("validation")
        return split if split is not None and len(split) else None


@dataclass
class Card:
    """The recipe's part of a model card; the runner adds the Hub metadata every card has (base_model,
    datasets, license, language, model-index with the results: hfllm.train.export.model_card)."""

    title: str
    summary: str
    pipeline_tag: str  # also the model-index task type
    data: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)  # besides `hfllm` and the pipeline tag


class Recipe:
    """Base class of the training recipes; each hook has the runner's default behaviour."""

    name = ""  # e.g. "masked-lm"
    command = ""  # the command that runs it: "pretrain" or "finetune"
    # Config keys a resumed run may not change: the checkpoints were made with them.
    must_match: tuple[str, ...] = ()
    # Keys of the per-split metrics that the command's JSON shows (metrics.json keeps them all).
    headline: tuple[str, ...] = ("loss",)

    def reads(self, config: Any) -> tuple[str, ...]:
        """Return the paths the run reads (its model, its data): --overwrite must never delete them."""
        return ()

    def setup(self, config: Any) -> Inputs:
        """Return the loaded and checked inputs. Nothing may be written here (the run has not started)."""
        raise NotImplementedError

    def training_settings(self, config: Any, inputs: Inputs, settings: dict[str, Any]) -> dict[str, Any]:
        """Return the TrainingArguments settings, adjusted for this recipe (metric for the best model...)."""
        return settings

    def trainer_parts(self, config: Any, inputs: Inputs) -> dict[str, Any]:
        """Return the Trainer arguments that differ per recipe: data_collator, compute_loss_func,
        compute_metrics, preprocess_logits_for_metrics, callbacks."""
        return {}

    def prepare_trainer(self, trainer: Any, inputs: Inputs) -> None:
        """Adjust the constructed Trainer before it trains (e.g. hook a sparse output layer onto its model)."""

    def split_metrics(self, name: str, values: dict[str, Any], inputs: Inputs) -> dict[str, Any]:
        """Return the metrics of one evaluated split (the Trainer's, without the split prefix), as reported."""
        return values

    def extra_metrics(self, trainer: Any, inputs: Inputs, metrics: dict[str, Any]) -> dict[str, Any]:
        """Return recipe metrics for metrics.json beyond the per-split ones (baselines, history...)."""
        return {}

    def card(self, config: Any, inputs: Inputs, metrics: dict[str, Any]) -> Card:
        """Return the recipe's part of the model card."""
        raise NotImplementedError

    def before_export(self, inputs: Inputs) -> None:
        """Adjust the model or tokenizer just before they are saved (e.g. the tokenizer's max length)."""


def lm_eval_history(log_history: list[dict[str, Any]], accuracy_key: str) -> list[dict[str, Any]]:
    """Return a language model's evaluations during training: step, loss per token, perplexity, accuracy.

    The final evaluate() of the kept model repeats the last step: the first evaluation of a step is kept.
    """
    import math

    entries = [e for e in log_history if "eval_loss" in e]
    evals = list({e["step"]: e for e in reversed(entries)}.values())[::-1]
    history = []
    for e in evals:
        loss = e.get("eval_token_loss", e.get("eval_loss"))
        history.append(
            {
                "step": e["step"],
                "loss": loss,
                "perplexity": math.exp(loss) if loss is not None and loss < 700 else None,
                accuracy_key: e.get(f"eval_{accuracy_key}"),
            }
        )
    return history
