"""`hfllm attention` as a library call: a model's attention weights for one text, every layer and head.

The model runs with eager attention, the implementation that materialises softmax(QK^T/sqrt(d))
and can return it (`output_attentions=True`); SDPA and flash kernels never hold the matrix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hfllm.errors import ConfigError, InputError
from hfllm.fsutil import atomic_write_text
from hfllm.owners import check_owner, write_marker

DEFAULT_OUTPUT = Path("runs/attention")


def run_attention(
    model_dir: Path,
    text: str,
    layer: int = -1,
    head: int | None = None,
    output_dir: Path | None = None,
    top_k: int = 3,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Return the summary of the attention of `model_dir` on `text`; write attention.json and heat maps.

    `layer`/`head` choose what the heat maps enlarge and what the per-token table reads (negative
    indices count from the end; no head: the mean over the layer's heads).
    """
    from hfllm.models.builders import position_offset
    from hfllm.models.loader import check_model_dir, load_tokenizer, resolve

    path = Path(resolve(str(model_dir), "--model").location)
    check_model_dir(path)
    config = _model_config(path)
    layer, head = _check_indices(config, layer, head)
    tokenizer = load_tokenizer(str(path), key="--model")
    ids = tokenizer(text, truncation=False)["input_ids"]
    _check_length(ids, config, tokenizer, position_offset(config))
    out = Path(output_dir) if output_dir is not None else DEFAULT_OUTPUT
    files = {
        "json": out / "attention.json",
        "heads": out / f"layer-{layer}-heads.png",
        "head": out / f"layer-{layer}-head-{head if head is not None else 'mean'}.png",
    }
    check_owner(out, "attention", "--overwrite" if overwrite else "")
    _refuse_existing(files, overwrite)
    attentions = attention_weights(path, ids)
    tokens = tokenizer.convert_ids_to_tokens(ids)
    causal = all(_upper_triangle_max(m) == 0.0 for per_layer in attentions for m in per_layer)
    data = {
        "model": str(path),
        "text": text,
        "tokens": tokens,
        "num_layers": len(attentions),
        "num_heads": len(attentions[0]),
        "causal": causal,
        "attentions": attentions,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_marker(out, "attention")
    atomic_write_text(files["json"], json.dumps(data, ensure_ascii=False) + "\n")
    from hfllm.analysis.attention_plots import plot_head, plot_heads

    plot_heads(attentions[layer], tokens, layer, files["heads"])
    chosen = attentions[layer][head] if head is not None else mean_matrix(attentions[layer])
    plot_head(chosen, tokens, layer, head, files["head"])
    return {
        "status": "ok",
        "model": str(path),
        "tokens": tokens,
        "num_layers": data["num_layers"],
        "num_heads": data["num_heads"],
        "causal": causal,
        "layer": layer,
        "head": head,
        "top": top_attended(chosen, tokens, top_k),
        "files": {key: str(value) for key, value in files.items()},
    }


def attention_weights(path: Path, ids: list[int]) -> list[list[list[list[float]]]]:
    """Return attentions[layer][head][query][key] of the model in `path` for the token ids `ids`."""
    import torch
    from transformers.utils import logging as hf_logging

    from hfllm.models.loader import BACKBONE, load_model

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a masked-LM or classifier checkpoint has head weights AutoModel skips
    try:
        # Eager attention: the fused kernels (SDPA, flash) never materialise the weights.
        model = load_model(str(path), BACKBONE, key="--model", attn_implementation="eager")
    finally:
        hf_logging.set_verbosity(verbosity)
    model.eval()
    with torch.no_grad():
        outputs = model(input_ids=torch.tensor([ids]), output_attentions=True)
    return [layer[0].float().tolist() for layer in outputs.attentions]


def _model_config(path: Path) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(path))
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{path / 'config.json'}: cannot read the model config: {exc}") from None


def _check_indices(config: Any, layer: int, head: int | None) -> tuple[int, int | None]:
    """Return (layer, head) as non-negative indices; ConfigError (exit 2) naming the valid range."""
    layers, heads = int(config.num_hidden_layers), int(config.num_attention_heads)
    if not -layers <= layer < layers:
        raise ConfigError(
            f"--layer {layer}: the model has {layers} layers (0 to {layers - 1}; -1 is the last)"
        )
    if head is not None and not -heads <= head < heads:
        raise ConfigError(f"--head {head}: the model has {heads} heads per layer (0 to {heads - 1})")
    return layer % layers, (head % heads if head is not None else None)


def _check_length(ids: list[int], config: Any, tokenizer: Any, offset: int) -> None:
    """Raise InputError (exit 3) when the text is empty or longer than the model's context."""
    if not ids:
        raise InputError("the text is empty: give the sentence to look at")
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    limits = [int(positions) - offset] if positions else []
    if 0 < getattr(tokenizer, "model_max_length", 0) < 1_000_000:
        limits.append(int(tokenizer.model_max_length))
    if limits and len(ids) > min(limits):
        raise InputError(
            f"the text is {len(ids)} tokens (special tokens included); the model's context is {min(limits)}",
            "shorten the text",
        )


def _refuse_existing(files: dict[str, Path], overwrite: bool) -> None:
    existing = [str(p) for p in files.values() if p.exists()]
    if existing and not overwrite:
        raise ConfigError(
            f"{existing[0]} already exists", "pass --overwrite to replace it, or choose another --output-dir"
        )


def mean_matrix(heads: list[list[list[float]]]) -> list[list[float]]:
    """Return the element-wise mean of the heads' matrices."""
    n = len(heads)
    return [[sum(h[i][j] for h in heads) / n for j in range(len(heads[0][i]))] for i in range(len(heads[0]))]


def _upper_triangle_max(matrix: list[list[float]]) -> float:
    return max((matrix[i][j] for i in range(len(matrix)) for j in range(i + 1, len(matrix))), default=0.0)


def top_attended(matrix: list[list[float]], tokens: list[str], k: int) -> list[dict[str, Any]]:
    """Return, for each token (query), the `k` tokens it attends to most, with their weights."""
    rows = []
    for i, row in enumerate(matrix):
        best = sorted(range(len(row)), key=lambda j: row[j], reverse=True)[:k]
        rows.append(
            {
                "index": i,
                "token": tokens[i],
                "attends_to": [{"index": j, "token": tokens[j], "weight": row[j]} for j in best],
            }
        )
    return rows


def render(result: dict[str, Any]) -> str:
    """Return the per-token table as text."""
    head = f"head {result['head']}" if result["head"] is not None else "mean over heads"
    lines = [
        f"{result['model']}: {len(result['tokens'])} tokens, {result['num_layers']} layers x "
        f"{result['num_heads']} heads{', causal mask (every weight above the diagonal is 0)' if result['causal'] else ''}",
        f"layer {result['layer']}, {head}: what each token attends to most",
    ]
    for row in result["top"]:
        targets = ", ".join(f"{t['token']} {t['weight']:.3f}" for t in row["attends_to"])
        lines.append(f"  {row['index']:>3} {row['token']:<15} -> {targets}")
    lines.append("files: " + ", ".join(result["files"].values()))
    return "\n".join(lines) + "\n"
