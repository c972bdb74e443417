"""Config system: YAML with positions, pydantic schemas, --set overrides, clear errors."""

from hfllm.config.loader import load_any, load_config, to_yaml, validate_config

__all__ = ["load_any", "load_config", "to_yaml", "validate_config"]
