"""Entity-level precision/recall/F1 of tag sequences, scored by the `seqeval` package in strict mode,
and token accuracy.

A local `evaluate` module shipped inside hfllm and loaded by path (offline). `scheme` names the tag
scheme (IOB2, IOBES, IOB1, BILOU); by default it is read from the tags (hfllm.tasks.tagging.tag_scheme).
Strict mode: an entity counts only when its prefixes are valid for the scheme (an I-X that follows O
starts nothing in IOB2) and type, start and end all match the gold entity.
"""

import warnings

import datasets
import evaluate
from seqeval.metrics import classification_report

from hfllm.tasks.tagging import seqeval_scheme, tag_scheme

_DESCRIPTION = (
    "Entity-level precision, recall and F1 (micro over entities and per type, seqeval strict mode) "
    "and token accuracy for IOB2 / IOBES tags."
)

_INPUTS = """
predictions: list of lists of str, the predicted tags of each sentence (e.g. ["B-PER", "I-PER", "O"]).
references: list of lists of str, the gold tags, the same lengths.
scheme: optional, IOB2, IOBES, IOB1 or BILOU (default: read from the tags).
"""


class Entities(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("string")),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
        )

    def _compute(self, predictions, references, scheme=None):
        tokens = correct_tokens = 0
        for sentence, (pred, gold) in enumerate(zip(predictions, references, strict=True)):
            if len(pred) != len(gold):
                raise ValueError(f"sentence {sentence}: {len(pred)} predicted tags for {len(gold)} gold tags")
            tokens += len(gold)
            correct_tokens += sum(p == g for p, g in zip(pred, gold, strict=True))
        scheme = scheme or tag_scheme(t for row in (*references, *predictions) for t in row)
        with warnings.catch_warnings():  # averages over no entity at all warn; they are reported as 0
            warnings.simplefilter("ignore")
            report = classification_report(
                references,
                predictions,
                mode="strict",
                scheme=seqeval_scheme(scheme),
                output_dict=True,
                zero_division=0,
            )
        micro = report.pop("micro avg")
        per_type = {
            kind: {
                "precision": float(row["precision"]),
                "recall": float(row["recall"]),
                "f1": float(row["f1-score"]),
                "support": int(row["support"]),
            }
            for kind, row in sorted(report.items())
            if not kind.endswith(" avg")
        }
        return {
            "entity_precision": float(micro["precision"]),
            "entity_recall": float(micro["recall"]),
            "entity_f1": float(micro["f1-score"]),
            "token_accuracy": correct_tokens / tokens if tokens else 0.0,
            "per_type": per_type,
            "scheme": scheme,
        }
