"""YAML reading that remembers where every key came from, and writing that round-trips."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from hfllm.errors import ConfigError


class ConfigLoader(yaml.SafeLoader):
    """YAML 1.2-style scalars on top of safe loading: `1e-3` is a float, `no`/`on` stay strings.

    PyYAML follows YAML 1.1, where `learning_rate: 1e-3` is a string and `eval_strategy: no` is
    false; both surprise people writing training configs.
    """


ConfigLoader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:float")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


# Bounds for hostile configs: YAML aliases can make a few lines expand to billions of nodes
# ("billion laughs"), so the nodes a config expands to, its nesting and its size are all capped.
MAX_NODES = 100_000
MAX_DEPTH = 64
MAX_BYTES = 4 * 1024 * 1024


def load_scalar(text: str) -> Any:
    """Return a YAML value parsed the way config files are (used by --set), with the same bounds."""
    loader = ConfigLoader(text)
    try:
        node = loader.get_single_node()
        return _construct(loader, node, (), {}, "--set", [MAX_NODES]) if node is not None else None
    finally:
        loader.dispose()


# A key path inside a config, e.g. ("data", "files", 0); origins map it to "file:line:col".
KeyPath = tuple[str | int, ...]
Origins = dict[KeyPath, str]


def read_config_file(path: Path) -> tuple[dict[str, Any], Origins]:
    """Return the mapping in a YAML config file and the file:line:col of each of its keys."""
    if not path.exists():
        raise ConfigError(
            f"config file not found: {path}",
            "check the path, or write one with `hfllm config init KIND -o FILE`",
        )
    if path.is_dir():
        raise ConfigError(f"config path is a directory, not a YAML file: {path}")
    if path.stat().st_size > MAX_BYTES:
        raise ConfigError(
            f"{path}: {path.stat().st_size:,} bytes is too large for a config (the limit is {MAX_BYTES:,})",
            "a config holds settings; put data in files that data.files names",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start}); is this really a YAML config?"
        ) from None
    return parse_yaml(text, str(path))


def parse_yaml(text: str, source: str) -> tuple[dict[str, Any], Origins]:
    """Return the mapping in YAML text and the source:line:col of each key (safe loading only)."""
    loader = ConfigLoader(text)
    try:
        node = loader.get_single_node()
        origins: Origins = {}
        budget = [MAX_NODES]
        data = _construct(loader, node, (), origins, source, budget) if node is not None else {}
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigError(f"{where}: malformed YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: malformed YAML: {exc}") from None
    finally:
        loader.dispose()
    if data is None:
        return {}, origins
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}:1:1: a config must be a mapping of keys to values, not {type(data).__name__}"
        )
    return data, origins


def _construct(
    loader: ConfigLoader, node: yaml.Node, path: KeyPath, origins: Origins, source: str, budget: list[int]
) -> Any:
    def where(n: yaml.Node) -> str:
        return f"{source}:{n.start_mark.line + 1}:{n.start_mark.column + 1}"

    budget[0] -= 1
    if budget[0] < 0:
        raise ConfigError(
            f"{where(node)}: the config expands to more than {MAX_NODES:,} values (YAML aliases repeating "
            "aliases?)",
            "write the settings out; anchors and aliases are for small repeated blocks",
        )
    if len(path) > MAX_DEPTH:
        raise ConfigError(f"{where(node)}: the config nests deeper than {MAX_DEPTH} levels")

    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves `<<: *anchor` merges
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise ConfigError(f"{where(key_node)}: keys must be strings, got {key!r}")
            if key in out:
                raise ConfigError(f"{where(key_node)}: duplicate key `{'.'.join(map(str, path + (key,)))}`")
            origins[path + (key,)] = where(key_node)
            out[key] = _construct(loader, value_node, path + (key,), origins, source, budget)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            origins[path + (i,)] = where(item)
            items.append(_construct(loader, item, path + (i,), origins, source, budget))
        return items
    return loader.construct_object(node, deep=True)


def dump_yaml(data: dict[str, Any]) -> str:
    """Return YAML text for a plain config mapping, keys in the order given."""
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
