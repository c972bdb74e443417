"""Masked-LM metrics: perplexity and masked-token accuracy over the masked positions.

A local `evaluate` module shipped inside hfllm and loaded by path (offline). One row per masked
token: the predicted id, the gold id and the token's negative log-likelihood (natural log);
perplexity is exp of the mean NLL over all masked tokens of the split, not a mean of per-batch values.
"""

import math

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Perplexity (exp of the mean NLL) and accuracy over masked tokens."

_INPUTS = """
predictions: list of int, the most likely token id at each masked position.
references: list of int, the original token id at each masked position.
nll: list of float, the negative log-likelihood of the original token at each masked position.
"""


class MaskedLm(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("int64"),
                    "references": datasets.Value("int64"),
                    "nll": datasets.Value("float64"),
                }
            ),
        )

    def _compute(self, predictions, references, nll):
        pred = np.asarray(predictions, dtype=np.int64)
        gold = np.asarray(references, dtype=np.int64)
        loss = float(np.mean(np.asarray(nll, dtype=np.float64))) if len(gold) else float("nan")
        return {
            "masked_token_accuracy": float((pred == gold).mean()) if len(gold) else float("nan"),
            "loss": loss,
            "perplexity": math.exp(min(loss, 700.0)) if len(gold) else float("nan"),
            "masked_tokens": int(len(gold)),
        }
