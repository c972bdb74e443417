"""The configuration reference (docs/config-reference.md), generated from the schemas.

Run `make docs` (python -m hfllm.config.reference > docs/config-reference.md); a test fails when
the file in the repo differs from what this prints, so the reference cannot drift from the code.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from hfllm.config.schemas import SCHEMAS, schema_for


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(json.dumps(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "**required**"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "(section)"
    text = json.dumps(value, default=str)
    return f"`{text}`" if len(text) <= 60 else f"`{text[:57]}...`"


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        description = (field.description or "").replace("\n", " ").replace("|", "\\|")
        rows.append(f"| `{key}` | {_type_name(field.annotation)} | {_default(field)} | {description} |")
        nested = _nested_model(field.annotation)
        if nested is not None:
            rows.extend(_rows(nested, f"{key}."))
    return rows


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


def reference() -> str:
    """Return the Markdown reference of every command's config keys."""
    out = [
        "# Configuration reference",
        "",
        "Generated from the schemas by `make docs`; do not edit by hand. Every key can be set in the",
        "YAML file or with `--set KEY=VALUE`. The `training:` section takes any field of the installed",
        "`transformers.TrainingArguments`; the values shown are hfllm's defaults on top of Transformers'.",
    ]
    for kind in sorted(SCHEMAS):
        model = schema_for(kind)
        out += ["", f"## `{kind}`", ""]
        if model.__doc__:
            out += [model.__doc__.strip().splitlines()[0], ""]
        out += ["| key | type | default | meaning |", "| --- | --- | --- | --- |", *_rows(model, "")]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(reference(), end="")
