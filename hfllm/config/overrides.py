"""`--set a.b.c=VALUE` overrides: YAML-typed values that reach nested keys and list indices."""

from __future__ import annotations

from typing import Any

import yaml

from hfllm.config.yamlio import KeyPath, Origins, load_scalar
from hfllm.errors import ConfigError


def parse_set(expr: str) -> tuple[KeyPath, Any]:
    """Return the key path and the YAML-parsed value of one `--set KEY=VALUE` expression."""
    key, sep, raw = expr.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {expr!r}: expected KEY=VALUE, e.g. --set training.learning_rate=3e-4")
    parts = key.strip().split(".")
    if any(not p for p in parts):
        raise ConfigError(f"--set {expr!r}: empty part in key {key!r}")
    try:
        value = load_scalar(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {expr!r}: value is not valid YAML: {exc}") from None
    return tuple(int(p) if p.isdigit() else p for p in parts), value


def apply_override(data: dict[str, Any], path: KeyPath, value: Any, origin: str, origins: Origins) -> None:
    """Set `value` at `path` inside `data`, creating mappings and lists on the way."""
    node: Any = data
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        here = ".".join(map(str, path[: depth + 1]))
        if isinstance(part, int):
            if not isinstance(node, list):
                raise ConfigError(
                    f"{origin}: `{here}` indexes a list, but `{_parent(path, depth)}` is not a list"
                )
            if part > len(node):
                raise ConfigError(
                    f"{origin}: index {part} is past the end of `{_parent(path, depth)}` (length {len(node)})"
                )
            if part == len(node):
                node.append(None)
        elif not isinstance(node, dict):
            raise ConfigError(
                f"{origin}: `{_parent(path, depth)}` is not a mapping, so it has no key `{part}`"
            )
        if last:
            node[part] = value
            origins[path] = origin
            return
        child = node[part] if (isinstance(node, list) or part in node) else None
        if child is None:
            child = [] if isinstance(path[depth + 1], int) else {}
            node[part] = child
        node = child


def _parent(path: KeyPath, depth: int) -> str:
    return ".".join(map(str, path[:depth])) or "<root>"
