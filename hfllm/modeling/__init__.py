"""Modeling: model and tokenizer builders, the masking collator, and preflight checks."""
