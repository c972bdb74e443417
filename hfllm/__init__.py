"""hfllm: from raw text to a trained, evaluated Transformer language model, driven by YAML."""

__version__ = "0.1.0"
