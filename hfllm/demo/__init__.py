"""`hfllm demo`: the whole pipeline on the bundled samples, offline, with a summary for people.

The four stages run the configs in `hfllm/configs/demo/` (the repo's `configs/demo/`), exactly as
`hfllm preprocess|pretrain|finetune --config configs/demo/...` would, with their paths moved under
the demo's output dir. Every stage is idempotent, so running the demo again reuses what is done.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from hfllm.config import load_config
from hfllm.config.shipped import CONFIGS_DIR
from hfllm.output import log
from hfllm.samples import classify_path, corpus_path

CONFIGS = CONFIGS_DIR / "demo"

# --quick: the same pipeline on a slice of the samples with tiny settings, for tests (< 1 minute).
QUICK = {
    "preprocess": ["tokenizer.train.vocab_size=2000", "packing.max_length=64"],
    "pretrain": [
        "model.config.hidden_size=32",
        "model.config.num_hidden_layers=2",
        "model.config.num_attention_heads=2",
        "model.config.intermediate_size=64",
        "training.max_steps=20",
        "training.eval_steps=10",
        "training.save_steps=10",
        "training.logging_steps=5",
    ],
    "finetune": [
        "training.max_steps=6",
        "training.logging_steps=2",
        "training.per_device_train_batch_size=8",
        "data.max_length=48",
    ],
}
QUICK_ROWS = {"corpus": 600, "classify": 400}


def run_demo(output_dir: Path, quick: bool = False) -> dict[str, Any]:
    """Return the demo's JSON result after running preprocess, pretrain, two fine-tunes and two evaluations."""
    from hfllm.config.schemas.finetune import FinetuneConfig
    from hfllm.config.schemas.preprocess import PreprocessConfig
    from hfllm.config.schemas.pretrain import PretrainConfig
    from hfllm.data.pipeline import run_preprocess
    from hfllm.inference.evaluate import run_evaluate
    from hfllm.train.runner import run

    started = time.time()
    out = Path(output_dir)
    corpus, classify = _samples(out, quick)
    paths = {name: out / name for name in ("data", "pretrain", "finetune-scratch", "finetune-minilm")}

    def config(schema, name: str, stage: str, flags: dict[str, Any]):
        sets = QUICK.get(stage, []) if quick else []
        return load_config(schema, CONFIGS / f"{name}.yaml", sets, flags)

    timings: dict[str, float] = {}

    def timed(stage: str, fn, *args, **kwargs):
        log.info("demo: %s", stage)
        t0 = time.time()
        result = fn(*args, **kwargs)
        timings[stage] = round(time.time() - t0, 1)
        return result

    data = timed(
        "preprocess",
        run_preprocess,
        config(
            PreprocessConfig,
            "preprocess",
            "preprocess",
            {"data.files": [_spelled(corpus)], "output_dir": str(paths["data"])},
        ),
    )
    pretrain = timed(
        "pretrain",
        run,
        config(
            PretrainConfig,
            "pretrain",
            "pretrain",
            {"data_dir": str(paths["data"]), "output_dir": str(paths["pretrain"])},
        ),
    )
    classifiers = {}
    for name, model in (("finetune-scratch", str(paths["pretrain"] / "model")), ("finetune-minilm", None)):
        flags = {
            "data.files": [_spelled(classify)],
            "output_dir": str(paths[name]),
            "model.name_or_path": model,
        }
        result = timed(name, run, config(FinetuneConfig, name, "finetune", flags))
        evaluation = timed(
            f"evaluate-{name}",
            _evaluate_once,
            run_evaluate,
            Path(result["model_dir"]),
            Path(result["data_dir"]),
            paths[name] / "eval-test",
        )
        classifiers[name] = {"finetune": result, "evaluate": evaluation}
    return _result(out, data, pretrain, classifiers, timings, time.time() - started)


def _spelled(path: Path) -> str:
    """Return `path` relative to the working dir when it lies below it, as configs/demo spell it.

    The input paths are part of preprocess's cache key: `hfllm preprocess --config
    configs/demo/preprocess.yaml` after `make demo` must find the demo's data up to date, not
    rebuild it (and retrain a vocabulary the pretrained model no longer matches).
    """
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


def _samples(out: Path, quick: bool) -> tuple[Path, Path]:
    """Return the corpus and labelled file to use: the bundled ones, or a slice of them for --quick."""
    if not quick:
        return corpus_path(), classify_path()
    out.mkdir(parents=True, exist_ok=True)
    sliced = []
    for source, rows in ((corpus_path(), QUICK_ROWS["corpus"]), (classify_path(), QUICK_ROWS["classify"])):
        dest = out / f"quick-{source.name}"
        if not dest.exists():
            with source.open(encoding="utf-8") as handle:
                lines = list(itertools.islice(handle, rows + 1))  # +1: the CSV header
            dest.write_text("".join(lines), encoding="utf-8")
        sliced.append(dest)
    return sliced[0], sliced[1]


def _evaluate_once(run_evaluate, model_dir: Path, data_dir: Path, output_dir: Path) -> dict[str, Any]:
    """Return the evaluation of a model, reusing metrics.json when it is newer than the model."""
    metrics = output_dir / "metrics.json"
    weights = model_dir / "model.safetensors"
    if metrics.exists() and weights.exists() and metrics.stat().st_mtime >= weights.stat().st_mtime:
        return {"status": "cached", "output_dir": str(output_dir), "metrics": json.loads(metrics.read_text())}
    return run_evaluate(model_dir, data_dir, "test", output_dir, overwrite=True)


def majority_baseline(predictions: Path) -> dict[str, float]:
    """Return accuracy and macro-F1 of always predicting the most frequent gold label of a predictions file."""
    gold = [json.loads(line)["gold"] for line in predictions.read_text(encoding="utf-8").splitlines() if line]
    counts = collections.Counter(gold)
    top, n_top = counts.most_common(1)[0]
    accuracy = n_top / len(gold)
    # Only the majority class has a non-zero F1: precision = accuracy, recall = 1.
    f1_top = 2 * accuracy / (1 + accuracy)
    return {"label": top, "accuracy": accuracy, "f1_macro": f1_top / len(counts), "classes": len(counts)}


def _result(out, data, pretrain, classifiers, timings, seconds) -> dict[str, Any]:
    scores = {}
    for name, runs in classifiers.items():
        metrics = runs["evaluate"]["metrics"]
        scores[name] = {
            "accuracy": metrics.get("accuracy"),
            "f1_macro": metrics.get("f1_macro"),
            "model_dir": runs["finetune"]["model_dir"],
            "data_dir": runs["finetune"]["data_dir"],
            "eval_dir": runs["evaluate"]["output_dir"],
        }
    baseline = majority_baseline(
        Path(classifiers["finetune-minilm"]["evaluate"]["output_dir"]) / "predictions.jsonl"
    )
    return {
        "status": "ok",
        "output_dir": str(out),
        "data_dir": data["output_dir"],
        "pretrain": {
            "model_dir": pretrain["model_dir"],
            "perplexity_start": _perplexity_at_start(Path(pretrain["run_dir"]) / "metrics.json"),
            **{
                key: pretrain["metrics"]["validation"].get(key)
                for key in ("perplexity", "unigram_perplexity", "masked_accuracy")
            },
        },
        "classifiers": scores,
        "majority_baseline": baseline,
        "timings_s": timings,
        "seconds": round(seconds, 1),
    }


def _perplexity_at_start(metrics_path: Path) -> float | None:
    history = json.loads(metrics_path.read_text()).get("eval_history") or []
    return history[0].get("perplexity") if history and history[0].get("step") == 0 else None


def summary(result: dict[str, Any]) -> str:
    """Return the few lines a person reads at the end of the demo."""
    pre, base = result["pretrain"], result["majority_baseline"]
    lines = [
        f"hfllm demo finished in {result['seconds']:.0f} s; everything is under {result['output_dir']}/",
        f"  pretraining a small BERT from scratch: validation perplexity {_num(pre['perplexity_start'])} "
        f"at step 0 -> {_num(pre['perplexity'])} (unigram baseline {_num(pre['unigram_perplexity'])}), "
        f"masked-token accuracy {_pct(pre['masked_accuracy'])}",
        f"  classifying Debian package descriptions into {base['classes']} sections (test split):",
        f"    majority-class baseline ('{base['label']}'):  accuracy {_pct(base['accuracy'])}  macro-F1 {_pct(base['f1_macro'])}",
    ]
    names = {
        "finetune-scratch": "from the demo's own BERT:   ",
        "finetune-minilm": "from all-MiniLM-L6-v2:      ",
    }
    for name, score in result["classifiers"].items():
        lines.append(
            f"    {names[name]}accuracy {_pct(score['accuracy'])}  macro-F1 {_pct(score['f1_macro'])}"
        )
    minilm = result["classifiers"]["finetune-minilm"]
    lines += [
        "  next:",
        f"    echo 'Command-line tool to edit audio files' | hfllm predict --model {minilm['model_dir']}",
        f"    hfllm evaluate --model {minilm['model_dir']} --data {minilm['data_dir']} --output-dir my-eval",
        "    hfllm recipes copy demo/preprocess mine.yaml  (then point data.files at your own text; "
        "`hfllm recipes` lists the others)",
    ]
    return "\n".join(lines) + "\n"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def print_summary(result: dict[str, Any]) -> None:
    sys.stderr.write("\n" + summary(result))
