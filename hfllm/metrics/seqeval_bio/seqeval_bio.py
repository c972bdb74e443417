"""Entity-level precision/recall/F1 for BIO tag sequences (seqeval/conlleval style), and token accuracy.

A local `evaluate` module shipped inside hfllm and loaded by path (offline), written here rather than
depending on seqeval. An entity is a maximal run that starts at `B-X` (or at an `I-X` that does not
continue an `X` run, as conlleval does) and continues through `I-X`; it counts as correct only when
type, start and end all match the gold entity.
"""

import datasets
import evaluate

_DESCRIPTION = "Entity-level precision, recall and F1 (micro over entities and per type) and token accuracy for BIO tags."

_INPUTS = """
predictions: list of lists of str, the predicted tags of each sentence (e.g. ["B-PER", "I-PER", "O"]).
references: list of lists of str, the gold tags, the same lengths.
"""


def split_tag(tag):
    """Return (prefix, type) of a tag: ("B", "PER") for "B-PER", ("O", "") for "O" or anything without a prefix."""
    prefix, sep, kind = str(tag).partition("-")
    if not sep or prefix not in ("B", "I"):
        return "O", ""
    return prefix, kind


def entities(tags):
    """Return the entities in a BIO tag sequence as (type, start, end) with `end` exclusive."""
    found = []
    start, current = None, None
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, kind = split_tag(tag)
        if start is not None and (prefix != "I" or kind != current):
            found.append((current, start, i))
            start = None
        if prefix in ("B", "I") and start is None:
            start, current = i, kind
    return found


def _prf(correct, predicted, gold):
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


class SeqevalBio(evaluate.Metric):
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

    def _compute(self, predictions, references):
        pred_entities, gold_entities = set(), set()
        tokens = correct_tokens = 0
        for sentence, (pred, gold) in enumerate(zip(predictions, references, strict=True)):
            if len(pred) != len(gold):
                raise ValueError(f"sentence {sentence}: {len(pred)} predicted tags for {len(gold)} gold tags")
            pred_entities.update((sentence, *e) for e in entities(pred))
            gold_entities.update((sentence, *e) for e in entities(gold))
            tokens += len(gold)
            correct_tokens += sum(p == g for p, g in zip(pred, gold, strict=True))
        hits = pred_entities & gold_entities
        precision, recall, f1 = _prf(len(hits), len(pred_entities), len(gold_entities))
        per_type = {}
        for kind in sorted({e[1] for e in pred_entities | gold_entities}):
            n_pred = sum(e[1] == kind for e in pred_entities)
            n_gold = sum(e[1] == kind for e in gold_entities)
            p, r, f = _prf(sum(e[1] == kind for e in hits), n_pred, n_gold)
            per_type[kind] = {"precision": p, "recall": r, "f1": f, "support": n_gold}
        return {
            "entity_precision": precision,
            "entity_recall": recall,
            "entity_f1": f1,
            "token_accuracy": correct_tokens / tokens if tokens else 0.0,
            "per_type": per_type,
        }
