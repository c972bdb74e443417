"""`hfllm attention --explain`: the request's section 4.3 example, computed step by step and checked.

The request (mission/000_*.txt, section 4.3) takes six 3-dimensional word vectors for "The cat sat on the
mat", uses them directly as queries, keys and values, and computes the representation of "sat" with
Attention(Q, K, V) = softmax(QK^T / sqrt(d_k)) V. The numbers it prints are wrong; this module computes
the right ones with plain Python floats (no torch), so a test can check every step.
"""

from __future__ import annotations

import math
from typing import Any

# Section 4.3's own vectors, in its order.
TOKENS = ("The", "cat", "sat", "on", "the", "mat")
VECTORS = (
    (0.1, 0.2, 0.3),
    (0.4, 0.5, 0.6),
    (0.7, 0.8, 0.9),
    (0.2, 0.3, 0.4),
    (0.1, 0.2, 0.3),
    (0.5, 0.6, 0.7),
)
QUERY_TOKEN = "sat"
# What section 4.3 prints: six "attention weights", and the output it derives from them.
PRINTED_WEIGHTS = (0.2, 0.3, 0.5, 0.1, 0.1, 0.8)
PRINTED_OUTPUT = (0.47, 0.58, 0.69)


def weighted_sum(weights: tuple[float, ...] | list[float], values=VECTORS) -> list[float]:
    """Return sum_i weights[i] * values[i] (a weighted average when the weights sum to 1)."""
    return [sum(w * v[j] for w, v in zip(weights, values, strict=True)) for j in range(len(values[0]))]


def explain() -> dict[str, Any]:
    """Return every step of the section 4.3 computation and what the printed example got wrong."""
    query = VECTORS[TOKENS.index(QUERY_TOKEN)]
    d_k = len(query)
    scores = [sum(q * k for q, k in zip(query, key, strict=True)) for key in VECTORS]
    scaled = [s / math.sqrt(d_k) for s in scores]
    top = max(scaled)  # subtracting the max changes nothing mathematically and keeps exp() from overflowing
    exps = [math.exp(s - top) for s in scaled]
    weights = [e / sum(exps) for e in exps]
    output = weighted_sum(weights)
    printed_sum = sum(PRINTED_WEIGHTS)
    from_printed = weighted_sum(PRINTED_WEIGHTS)
    return {
        "tokens": list(TOKENS),
        "vectors": [list(v) for v in VECTORS],
        "query_token": QUERY_TOKEN,
        "d_k": d_k,
        "scores": scores,
        "scaled_scores": scaled,
        "weights": weights,
        "weights_sum": sum(weights),
        "output": output,
        "printed": {
            "weights": list(PRINTED_WEIGHTS),
            "weights_sum": printed_sum,
            "output": list(PRINTED_OUTPUT),
            "output_from_its_weights": from_printed,
            "output_from_its_weights_renormalised": [x / printed_sum for x in from_printed],
        },
        "errors": _errors(weights, output, printed_sum, from_printed),
    }


def _errors(weights, output, printed_sum, from_printed) -> list[str]:
    fmt = _fmt
    renormalised = [x / printed_sum for x in from_printed]
    return [
        "It writes the six numbers as the value of Attention(Q, K, V), but Attention(Q, K, V) is the weighted "
        f"sum of the value vectors, a {len(VECTORS[0])}-dimensional vector; the six numbers can only be the "
        "weights softmax(QK^T/sqrt(d_k)).",
        f"As weights they are not a softmax: they sum to {printed_sum:g}, not 1 (a softmax is positive and "
        "sums to 1).",
        f"They are not the softmax of these scores either: the correct weights are {fmt(weights)}; 'sat' itself "
        f"has the highest score (q.k = {sum(q * q for q in VECTORS[2]):.2f}) and gets the largest weight "
        f"({weights[2]:.4f}), while the printed example gives 'mat' the largest (0.8).",
        f"Its last step does not follow from its own weights: {fmt(PRINTED_WEIGHTS)} x V = {fmt(from_printed)} "
        f"({fmt(renormalised)} after dividing by their sum {printed_sum:g}), not the printed "
        f"{fmt(PRINTED_OUTPUT)}. The correct output is {fmt(output)}.",
        "The example also uses the word vectors themselves as Q, K and V; a Transformer layer first multiplies "
        "them by learned matrices W_Q, W_K and W_V (one set per head).",
    ]


def _fmt(values) -> str:
    """Return numbers as [a, b, ...] with at most 4 decimals, trailing zeros dropped."""
    return "[" + ", ".join(f"{v:.4f}".rstrip("0").rstrip(".") for v in values) + "]"


def render(result: dict[str, Any]) -> str:
    """Return the computation as text, step by step."""
    tokens, lines = result["tokens"], []
    lines.append("Section 4.3 of the request: the representation of 'sat' in \"The cat sat on the mat\".")
    lines.append("Its vectors, used directly as queries, keys and values (d_k = 3):")
    lines += [f"  {t:<4} {v}" for t, v in zip(tokens, result["vectors"], strict=True)]
    q = result["vectors"][tokens.index(result["query_token"])]
    lines.append(f"1. scores q.k_i with q = x_sat = {q}:")
    lines += [f"  {t:<4} {s:.4f}" for t, s in zip(tokens, result["scores"], strict=True)]
    lines.append(f"2. divided by sqrt(d_k) = sqrt(3) = {math.sqrt(3):.6f}:")
    lines += [f"  {t:<4} {s:.6f}" for t, s in zip(tokens, result["scaled_scores"], strict=True)]
    lines.append("3. softmax: weight_i = exp(s_i) / sum_j exp(s_j):")
    lines += [f"  {t:<4} {w:.6f}" for t, w in zip(tokens, result["weights"], strict=True)]
    lines.append(f"  sum  {result['weights_sum']:.6f}")
    lines.append(f"4. output = sum_i weight_i * v_i = {_fmt(result['output'])}")
    lines.append("Where the printed example goes wrong:")
    lines += [f"  - {e}" for e in result["errors"]]
    return "\n".join(lines) + "\n"
