"""Turn pydantic validation errors into one-line messages that name file:line:col and the key."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from hfllm.config.yamlio import KeyPath, Origins
from hfllm.errors import ConfigError


def to_config_error(
    exc: ValidationError, root: type[BaseModel], origins: Origins, source: str
) -> ConfigError:
    """Return a ConfigError for the first problem in `exc`, with its place and a suggestion."""
    problems = [_describe(err, root, origins, source) for err in exc.errors()]
    more = f"\n  ({len(problems) - 1} more problem(s) after this one)" if len(problems) > 1 else ""
    message, hint = problems[0]
    return ConfigError(message + more if not hint else message, (hint + more) if hint else None)


def _describe(
    err: dict[str, Any], root: type[BaseModel], origins: Origins, source: str
) -> tuple[str, str | None]:
    loc: KeyPath = tuple(p for p in err["loc"] if not _is_union_tag(p))
    key = ".".join(map(str, loc))
    kind = err["type"]
    if kind == "extra_forbidden":
        names = _field_names(root, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.6)
        parent = ".".join(map(str, loc[:-1]))
        if close:
            hint = f"did you mean `{'.'.join(filter(None, [parent, close[0]]))}`?"
        else:
            hint = f"the keys allowed here are: {', '.join(names)}" if names else None
        return f"{_where(loc, origins, source)}: unknown key `{key}`", hint
    if kind == "missing":
        return f"{_where(loc[:-1], origins, source)}: missing required key `{key}`", None
    got = err.get("input")
    if not loc and kind == "value_error":
        # A check across sections (a model validator): its message names the keys; the input is the whole config.
        return f"{source}: {err['msg'].removeprefix('Value error, ')}", None
    return f"{_where(loc, origins, source)}: `{key}`: {err['msg']} (got {got!r})", None


def _is_union_tag(part: Any) -> bool:
    # pydantic adds the member type to the location of union errors, e.g. ('lr', 'float'); drop it.
    return isinstance(part, str) and ("[" in part or part in {"int", "float", "str", "bool", "list", "dict"})


def _where(loc: KeyPath, origins: Origins, source: str) -> str:
    for cut in range(len(loc), 0, -1):
        if loc[:cut] in origins:
            return origins[loc[:cut]]
    return source


def _field_names(model: type[BaseModel], path: KeyPath) -> list[str]:
    """Return the keys allowed at `path` inside `model`, walking through nested sections."""
    current: Any = model
    for part in path:
        if isinstance(part, int):
            continue
        if (
            not (isinstance(current, type) and issubclass(current, BaseModel))
            or part not in current.model_fields
        ):
            return []
        current = _model_in(current.model_fields[part].annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _model_in(annotation: Any) -> Any:
    """Return the BaseModel class inside Optional[...] / list[...] / Union[...], if there is one."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, (typing._GenericAlias, types.GenericAlias, types.UnionType)) or typing.get_args(
        annotation
    ):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
